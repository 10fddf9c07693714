"""One drill's deployment and clients: what it starts, who owns it, and the views faults judge.

``Drill`` owns every process, client and task it starts, and :meth:`Drill.close` stops them all.
The fault steps, the population and the judging are functions of a ``Drill`` in sibling modules.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import redis.asyncio as aioredis
from peers import API_KEY, FakeCall, FakeDeepgram, GameClient
from phonepatch.shared.bus.keys import Keys
from redis.exceptions import RedisError
from redis_server import RedisServer

from .clients import Call, Game
from .processes import Gateway
from .report import FaultReport, Reported
from .settings import CONNECT_TIMEOUT_S, PATCH_TIMEOUT_S, PREFIX, Mode

__all__ = ["Drill", "Sessions", "Snapshot"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Pool, leases and claims as Redis held them at one instant (MULTI/EXEC)."""

    free: frozenset[str]
    leases: dict[str, str]
    claims: dict[str, str]


@dataclass(slots=True)
class Sessions:
    """The drill's own games and calls (not probes) open when a fault began."""

    games: list[Game]
    calls: list[Call]


class Drill:
    """Everything one run starts and owns, and the reports of its faults."""

    def __init__(self, mode: Mode, rng: random.Random, workdir: Path) -> None:
        self.mode = mode
        self.rng = rng
        self.workdir = workdir
        self.keys = Keys(PREFIX)
        self.epoch = time.monotonic()
        self.redis = RedisServer()
        self.redis_down = False
        self.deepgram = FakeDeepgram()
        self.http: aiohttp.ClientSession | None = None
        self.store: aioredis.Redis | None = None
        self.gateways: list[Gateway] = []
        self.games: list[Game] = []
        self.calls: list[Call] = []
        self.reports: list[FaultReport] = []
        self.reported = Reported()
        self.phase = "start-up"
        self._config = workdir / "settings.json"
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ids = itertools.count(1)
        self._names: Counter[str] = Counter()

    def begin(self, title: str) -> FaultReport:
        """The report of the next fault, its heading printed."""
        report = FaultReport(len(self.reports), title)
        self.reports.append(report)
        self.phase = title
        print(f"\n== {report.number}. {title} ==", flush=True)
        return report

    # -- lifetime ------------------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(self.redis.start)
        await self.deepgram.start()
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        self.store = aioredis.Redis.from_url(self.redis.url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._config.write_text(json.dumps(self.mode.config()))
        roles = ["game-gateway", "game-gateway", "twilio-gateway", "twilio-gateway"]
        await asyncio.gather(*(self.start_gateway(role) for role in roles))

    async def close(self) -> dict[str, int | None]:
        """Stop everything this drill started; the exit status of each gateway still running."""
        statuses = {}
        for gateway in self.gateways:
            if gateway.alive:
                statuses[gateway.name] = await gateway.stop()
            elif not gateway.stopped:
                await gateway.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.http is not None:
            await self.http.close()
        if self.store is not None:
            await self.store.aclose()
        await self.deepgram.close()
        await asyncio.to_thread(self.redis.close)
        return statuses

    def spawn(self, work: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        """A task this drill owns: cancelled and awaited by :meth:`close`; a failure is printed."""
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            print(f"  (drill task {task.get_name()} failed: {task.exception()!r})", flush=True)

    async def start_gateway(self, role: str) -> Gateway:
        name = f"{role}-{self._names[role]}"
        self._names[role] += 1
        env = {
            **os.environ,
            "REDIS_URL": self.redis.url,
            "PHONEPATCH_REDIS_PREFIX": PREFIX,
            "DEEPGRAM_API_KEY": API_KEY,
            "DEEPGRAM_URL": self.deepgram.url,
            "TWILIO_PHONE_NUMBER": "+15550001111",
        }
        gateway = Gateway(role, name, workdir=self.workdir, config=self._config, env=env)
        self.gateways.append(gateway)
        await gateway.wait_healthy(self.http)
        return gateway

    def live(self, role: str) -> list[Gateway]:
        return [gateway for gateway in self.gateways if gateway.role == role and gateway.alive]

    # -- clients -------------------------------------------------------------------------------

    async def open_game(self, gateway: Gateway, *, probe: bool = False) -> Game | None:
        """A game on ``gateway`` that has read its number and code; None when it got no code."""
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                ws = await self.http.ws_connect(gateway.url + "/game")
        except (TimeoutError, aiohttp.ClientError, OSError):
            return None
        client = GameClient(ws)
        try:
            client.phone_number = await client.receive_text(CONNECT_TIMEOUT_S)
            client.code = await client.receive_text(CONNECT_TIMEOUT_S)
        except (AssertionError, TimeoutError, aiohttp.ClientError, OSError):
            await ws.close()
            return None
        game = Game(next(self._ids), gateway, client, epoch=self.epoch, probe=probe)
        self.games.append(game)
        self.spawn(game.read(), f"game-{game.gid}")
        return game

    async def dial(self, gateway: Gateway, *, probe: bool = False) -> Call | None:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                fake = await FakeCall.dial(self.http, gateway.url + "/twilio")
        except (TimeoutError, aiohttp.ClientError, OSError):
            return None
        call = Call(next(self._ids), gateway, fake, epoch=self.epoch, probe=probe)
        self.calls.append(call)
        self.spawn(call.read(), f"call-{call.cid}")
        interval_s = self.mode.talk_interval_s
        self.spawn(call.talk(interval_s, self.rng.uniform(0, interval_s)), f"talk-{call.cid}")
        return call

    async def patch(self, call: Call, game: Game) -> bool:
        """Key ``game``'s code on ``call``; True once the game has read ``connected``."""
        game.connected.clear()
        call.patch_mark = call.gateway.log.mark
        if not await call.press(game.code + "#"):
            return False
        try:
            async with asyncio.timeout(PATCH_TIMEOUT_S):
                await game.connected.wait()
        except TimeoutError:
            return False
        call.game, game.call = game, call
        return True

    def population_games(self) -> list[Game]:
        return [game for game in self.games if not game.probe and game.open]

    def population_calls(self) -> list[Call]:
        return [call for call in self.calls if not call.probe and call.open]

    def live_pairs(self, *, probes: bool = False) -> list[tuple[Call, Game]]:
        return [
            (call, call.game)
            for call in self.calls
            if (probes or not call.probe) and call.open and call.game is not None and call.game.open
            and call.game.call is call
        ]  # fmt: skip

    def free_games(self) -> list[Game]:
        """Population games with no live caller, those on the least-patched gateway first."""
        patched = Counter(game.gateway.name for _, game in self.live_pairs())
        free = [game for game in self.population_games() if game.call is None or not game.call.open or game.call.game is not game]
        return sorted(free, key=lambda game: patched[game.gateway.name])

    async def unclaimed_games(self, refused: set[Game]) -> list[Game]:
        """Free games, less those that refused a caller and those whose code Redis shows claimed
        (a stale claim is reported where it is found; patching into it again proves nothing)."""
        snapshot = await self.snapshot()
        claimed = set(snapshot.claims) if snapshot is not None else set()
        return [game for game in self.free_games() if game not in refused and game.code not in claimed]

    def sessions(self) -> Sessions:
        return Sessions(self.population_games(), self.population_calls())

    # -- Redis state ---------------------------------------------------------------------------

    async def snapshot(self) -> Snapshot | None:
        """Pool, leases and claims in one transaction; None while Redis does not answer."""
        codes = self.mode.codes
        try:
            async with self.store.pipeline(transaction=True) as pipe:
                pipe.smembers(self.keys.pool)
                pipe.mget([self.keys.lease(code) for code in codes])
                pipe.mget([self.keys.claim(code) for code in codes])
                free, leases, claims = await pipe.execute()
        except (RedisError, OSError):
            return None
        return Snapshot(
            free=frozenset(member.decode() for member in free),
            leases={code: value.decode() for code, value in zip(codes, leases, strict=True) if value is not None},
            claims={code: value.decode() for code, value in zip(codes, claims, strict=True) if value is not None},
        )
