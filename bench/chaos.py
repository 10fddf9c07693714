"""Chaos drill: faults on a two-by-two phonepatch deployment, one at a time, judged as they heal.

On loopback only, it starts its own ``redis-server`` (nothing on disk), the fake Deepgram of
``tests/peers.py`` (in this process), two ``phonepatch game-gateway`` and two ``phonepatch
twilio-gateway`` processes, each logging JSON lines to its own file. Games connect to both
game-gateways; keyed calls (``code#``) from both twilio-gateways patch into distinct games; every
patched call keeps talking (one speech frame every few hundred ms), so transcripts flow all along.
Then, one at a time, with recovery checks between:

1. ``kill -9`` a game-gateway, 2. ``kill -9`` a twilio-gateway (a replacement starts at once);
3. Redis restarted empty after a short outage, 4. after a longer one (both under the lease TTL);
5. one game stops reading its socket while its call talks fast;
6. every client leaves.

After each it prints one line per figure: sessions ended (only those of the killed process may),
calls told their game left (``game_left`` in the twilio-gateway log), codes lost, codes held twice,
stale claims, seconds until every orphaned code is patchable again (then proven by taking it with a
new game and patching a new call into it), process crashes besides the killed one, and log lines
that are not JSON; and whether the survivors keep working (a transcript reaches each game, a game
text reaches each call, a new game on each game-gateway takes a new call from each twilio-gateway).
What it holds the deployment to (README, "Scale out on Redis"):

- a Redis outage shorter than the lease TTL ends no session, every session is told of the gap, and
  within 2 s of Redis answering again transcripts, game texts, new games and new calls work;
- a killed game-gateway's codes are back within lease TTL + sweep interval, and are patchable then;
  its games' calls are told (``game_left``), go back to code entry and can key another game;
- a killed twilio-gateway's claims lapse within the claim TTL; its games stay up for a new caller;
- a game that stops reading delays no other session. (On loopback the kernel holds a few MB for
  it, so it usually catches up; if its gateway drops it instead, that must be with 1008.)

What only a gateway can see is read from its log: ``game_left`` (a call told its game left),
``game_text_received`` (a game's text reached its call), ``game_missed_events`` and
``call_missed_events`` (a session told of a gap); the names are constants below. Redis is read in
one MULTI/EXEC per look: the pool set, and each code's lease and claim (``shared/bus/keys.py``).

    python bench/chaos.py --short        # CI: 20 games, 6 calls, 3 s TTLs; 30-60 s
    python bench/chaos.py                # 100 games, 30 calls, default TTLs (10 s); 1-2 minutes
    python bench/chaos.py --seed 7 --keep-logs /tmp/chaos

Ends with a JSON summary; exits 1 naming every violation, 2 when the drill itself cannot run.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import itertools
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from peers import API_KEY, FakeCall, FakeDeepgram, GameClient, speech_frame  # noqa: E402
from redis_server import RedisServer, free_port  # noqa: E402

from phonepatch.shared.bus.keys import Keys  # noqa: E402
from phonepatch.shared.config import RedisSettings  # noqa: E402
from phonepatch.shared.protocol import deepgram as dg  # noqa: E402
from phonepatch.shared.protocol import twilio_media as media  # noqa: E402

PREFIX = "chaos"
CONNECT_TIMEOUT_S = 3.0  # a game's or a call's socket, and a game's first two texts
PATCH_TIMEOUT_S = 2.0  # keys pressed -> "connected" at the game
CLOSE_TIMEOUT_S = 3.0
START_TIMEOUT_S = 30.0  # a gateway process up to /healthz
TOLERANCE_S = 1.0  # on top of TTL-based limits: polling and heartbeat phase
WORKS_WITHIN_S = 3.0  # survivors of a kill or a stall: a transcript and a text get through
REDIS_RECOVERY_S = 2.0  # after Redis answers again: transcripts, texts, new games and calls work
STALL_DELAY_LIMIT_S = 1.0  # other games' transcripts while one game reads nothing
_BASELINE_S = 2.0  # other games' transcripts just before the stall, to compare with
POLL_S = 0.1
# What the gateways log, as the drill reads it (each line also carries the session's call_sid or code).
GAME_LEFT = "game_left"  # a call heard that its game left
GAME_TEXT_RECEIVED = "game_text_received"  # a game's text reached its call
GAP_TOLD = {"game": "game_missed_events", "call": "call_missed_events"}  # a session told of a bus gap
CODE_REJECTED = "code_rejected"
CALL_ENDED, GAME_ENDED = "call_ended", "game_session_ended"  # with the reason, for the report
SILENCE = bytes([media.MULAW_SILENCE]) * media.FRAME_BYTES
_PHRASE = re.compile(r"^g(\d+) c(\d+) s(\d+) t(\d+)")
_PHRASE_BYTES = media.FRAME_BYTES - 16  # what speech_frame() fits in one frame, with room to spare

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Mode:
    """How big and how fast one drill is."""

    name: str
    games: int
    calls: int
    codes: tuple[str, ...]
    redis: RedisSettings
    outages_s: tuple[float, float]
    talk_interval_s: float
    stall_s: float
    burst_interval_s: float
    recovery_s: float  # to bring the population back after a fault
    budget_s: float  # the whole drill, start-up and shutdown included
    timing_in_config: bool  # False: the gateways run on the default TTLs

    def config(self) -> dict[str, Any]:
        """The gateways' settings file."""
        settings: dict[str, Any] = {
            "game_codes": list(self.codes),
            "stt_provider": "deepgram",
            "tts_provider": "none",  # game texts are seen arriving in the twilio-gateway's log
            "keypad_pause_s": 0.3,
            "close_timeout_s": 2.0,
            "listen_timeout_s": 60.0,  # a caller back at code entry waits for the drill, not a hint
        }
        if self.timing_in_config:
            settings |= {
                "redis_lease_ttl_s": self.redis.lease_ttl_s,
                "redis_heartbeat_s": self.redis.heartbeat_s,
                "redis_sweep_s": self.redis.sweep_s,
                "redis_claim_ttl_s": self.redis.claim_ttl_s,
            }
        return settings


SHORT = Mode(
    name="short", games=20, calls=6, codes=tuple(str(n) for n in range(10, 42)),
    redis=RedisSettings(lease_ttl_s=3.0, heartbeat_s=0.5, sweep_s=0.5, claim_ttl_s=3.0),
    outages_s=(1.0, 2.5), talk_interval_s=0.3, stall_s=4.0, burst_interval_s=0.02, recovery_s=10.0,
    budget_s=170.0,
    timing_in_config=True,
)  # fmt: skip
FULL = Mode(
    name="full", games=100, calls=30, codes=tuple(str(n) for n in range(100, 230)),
    redis=RedisSettings(), outages_s=(2.0, 8.0), talk_interval_s=0.4, stall_s=6.0, burst_interval_s=0.02,
    recovery_s=30.0, budget_s=600.0, timing_in_config=False,
)  # fmt: skip


async def wait_until(condition: Callable[[], bool | Awaitable[bool]], deadline: float) -> float | None:
    """The monotonic time at which ``condition`` was first seen true (checked every ``POLL_S``),
    or None once ``deadline`` (monotonic) has passed."""
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        now = time.monotonic()
        if result:
            return now
        if now >= deadline:
            return None
        await asyncio.sleep(min(POLL_S, max(0.0, deadline - now)))


def seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f} s"


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# -- processes -----------------------------------------------------------------------------------


class ProcessLog:
    """The lines one process wrote to its log file, read as they come."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = []
        self.bad_lines: list[str] = []
        self._by_event: dict[str, list[int]] = {}
        self._offset = 0
        self._partial = b""
        self._polled_at = 0.0

    def poll(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._polled_at < POLL_S / 2:
            return
        self._polled_at = now
        try:
            with self.path.open("rb") as file:
                file.seek(self._offset)
                chunk = file.read()
        except FileNotFoundError:
            return
        self._offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()  # a line still being written (or cut short by kill -9)
        for line in lines:
            self._take(line)

    def _take(self, line: bytes) -> None:
        if not line.strip():
            return
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            self.bad_lines.append(line.decode(errors="replace")[:300])
            return
        self._by_event.setdefault(str(record.get("event")), []).append(len(self.records))
        self.records.append(record)

    @property
    def mark(self) -> int:
        """Where the lines from now on begin."""
        self.poll(force=True)
        return len(self.records)

    def find(self, event: str, since: int = 0, **fields: Any) -> list[dict[str, Any]]:
        """Records of ``event`` at or after ``since`` whose fields have the given values."""
        self.poll()
        found = []
        for index in self._by_event.get(event, ()):
            record = self.records[index]
            if index >= since and all(record.get(key) == value for key, value in fields.items()):
                found.append(record)
        return found


class Gateway:
    """One ``phonepatch game-gateway`` or ``twilio-gateway`` process, logging to its own file."""

    def __init__(self, role: str, name: str, *, workdir: Path, config: Path, env: dict[str, str]) -> None:
        self.role = role
        self.name = name
        self.port = free_port()
        self.log = ProcessLog(workdir / f"{name}.log")
        self.killed = False
        self.stopped = False
        self._log_file = self.log.path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "phonepatch.services", role, "--port", str(self.port), "--config", str(config)],
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def wait_healthy(self, http: aiohttp.ClientSession) -> None:
        """Raises RuntimeError when the process exits or does not answer in time."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if not self.alive:
                raise RuntimeError(f"{self.name} exited at start (status {self.process.returncode})")
            try:
                async with asyncio.timeout(1.0):
                    async with http.get(f"http://127.0.0.1:{self.port}/healthz") as response:
                        if response.status == 200:
                            return
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer /healthz within {START_TIMEOUT_S:.0f} s")

    def kill(self) -> None:
        """SIGKILL: no goodbye, nothing given back."""
        self.killed = True
        self.process.kill()
        self.process.wait(timeout=10)

    async def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after ``CLOSE_TIMEOUT_S`` x 3; the exit status (None: killed)."""
        self.stopped = True
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 3 * CLOSE_TIMEOUT_S
            while self.alive and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        status = self.process.poll()
        if status is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._log_file.close()
        return status

    def tail(self, lines: int = 3) -> list[str]:
        return self.log.path.read_text(errors="replace").splitlines()[-lines:]


# -- clients -------------------------------------------------------------------------------------


class Game:
    """One game socket of the drill: a task reads it and records what came."""

    def __init__(self, gid: int, gateway: Gateway, client: GameClient, *, epoch: float, probe: bool) -> None:
        self.gid = gid
        self.gateway = gateway
        self.ws = client.ws
        self.code = client.code
        self.probe = probe
        self.call: Call | None = None
        self.log_mark = gateway.log.mark  # this game's session logs from here on
        self.latest_spoken: dict[int, float] = {}  # call id -> when its newest transcript here was spoken
        self.latencies: list[tuple[float, float]] = []  # (received at, seconds under way)
        self.bytes_read = 0
        self.misrouted = 0  # transcripts spoken toward another game
        self.out_of_order = 0
        self.strange: list[str] = []
        self.connected = asyncio.Event()
        self.reading = asyncio.Event()
        self.reading.set()
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self._epoch = epoch
        self._last_seq: dict[int, int] = {}

    @property
    def open(self) -> bool:
        return not self.closed.is_set() and self.gateway.alive

    async def read(self) -> None:
        try:
            while True:
                await self.reading.wait()
                message = await self.ws.receive()
                if message.type is aiohttp.WSMsgType.TEXT:
                    self.bytes_read += len(message.data)
                    self._on_text(message.data)
                elif message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    return
        finally:
            self.close_code = self.ws.close_code
            self.closed.set()

    def _on_text(self, text: str) -> None:
        if text == "connected":
            self.connected.set()
            return
        try:
            result = dg.parse_message(text)
        except Exception:  # noqa: BLE001 - anything unreadable is recorded, not fatal
            self.strange.append(text[:120])
            return
        found = _PHRASE.match(getattr(result, "text", "") or "")
        if found is None:
            self.strange.append(text[:120])
            return
        gid, cid, seq, spoken_ms = (int(part) for part in found.groups())
        now = time.monotonic()
        spoken = self._epoch + spoken_ms / 1000
        self.misrouted += gid != self.gid
        self.out_of_order += seq <= self._last_seq.get(cid, 0)
        self._last_seq[cid] = max(seq, self._last_seq.get(cid, 0))
        self.latest_spoken[cid] = max(spoken, self.latest_spoken.get(cid, 0.0))
        self.latencies.append((now, now - spoken))

    async def send_text(self, text: str) -> bool:
        try:
            await self.ws.send_str(text)
            return True
        except (ConnectionError, RuntimeError, aiohttp.ClientError):
            return False

    async def close(self) -> None:
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self.ws.close()
                await self.closed.wait()
        except (TimeoutError, ConnectionError, aiohttp.ClientError):
            pass


class Call:
    """One caller: a task reads its stream, another talks toward its game (silence when it has none)."""

    def __init__(self, cid: int, gateway: Gateway, fake: FakeCall, *, epoch: float, probe: bool) -> None:
        self.cid = cid
        self.gateway = gateway
        self.fake = fake
        self.sid = fake.call_sid
        self.probe = probe
        self.game: Game | None = None
        self.patch_mark = 0  # the gateway's log position when this call last keyed a game
        self.burst_s: float | None = None  # talking fast and long (the stall)
        self.phrases = 0
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self._epoch = epoch
        self._lock = asyncio.Lock()  # one writer on the socket: the talker, key presses, stop
        self._seq = itertools.count(1)

    @property
    def open(self) -> bool:
        return not self.closed.is_set() and self.gateway.alive

    @property
    def game_alive(self) -> bool:
        return self.game is not None and self.game.open

    def told_game_left(self) -> bool:
        """Whether the gateway told this call that the game it last keyed left."""
        return bool(self.gateway.log.find(GAME_LEFT, self.patch_mark, call_sid=self.sid))

    async def read(self) -> None:
        try:
            while True:
                message = await self.fake.ws.receive()
                if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    return
        finally:
            self.close_code = self.fake.ws.close_code
            self.closed.set()

    async def talk(self, interval_s: float, offset_s: float) -> None:
        """A speech frame toward a live game every ``interval_s``; silence otherwise, as a phone line
        carries (the gateway drops a stream that sends nothing). A caller told the game left stops
        talking, as a person would: speech at code entry would count as failed tries."""
        await asyncio.sleep(offset_s)
        while not self.closed.is_set():
            game = self.game
            talking = game is not None and game.open and not self.told_game_left()
            frame = speech_frame(self._phrase(game)) if talking else SILENCE
            if not await self._guarded(lambda: self.fake.send_frame(frame)):
                return
            await asyncio.sleep(self.burst_s or interval_s)

    def _phrase(self, game: Game) -> str:
        spoken_ms = round((time.monotonic() - self._epoch) * 1000)
        self.phrases += 1
        phrase = f"g{game.gid} c{self.cid} s{next(self._seq)} t{spoken_ms}"
        if self.burst_s:  # one-letter words up to a full frame: Deepgram's final lists each word
            phrase += " x" * ((_PHRASE_BYTES - len(phrase)) // 2)
        return phrase

    async def press(self, keys: str) -> bool:
        return await self._guarded(lambda: self.fake.press(keys))

    async def hang_up(self) -> None:
        if self.closed.is_set():
            return
        await self._guarded(self.fake.send_stop)
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self.closed.wait()
        except TimeoutError:
            await self.fake.ws.close()

    async def _guarded(self, send: Callable[[], Awaitable[None]]) -> bool:
        """Run ``send`` as the socket's only writer; False once the socket is gone."""
        async with self._lock:
            try:
                await send()
                return True
            except (ConnectionError, RuntimeError, aiohttp.ClientError):
                return False


# -- judging -------------------------------------------------------------------------------------


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


@dataclass(slots=True)
class FaultReport:
    """The figures of one fault, printed as they are taken."""

    number: int
    title: str
    figures: dict[str, Any] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    def figure(self, key: str, label: str, value: Any, shown: str | None = None, violation: str | None = None) -> None:
        self.figures[key] = value
        print(f"  {label}: {shown if shown is not None else value}", flush=True)
        if violation:
            self.violate(violation)

    def violate(self, violation: str) -> None:
        self.violations.append(violation)
        print(f"  VIOLATION: {violation}", flush=True)


# -- the drill -----------------------------------------------------------------------------------


class Drill:
    """Everything one run starts, and the faults it runs."""

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
        self.phase = "start-up"
        self._config = workdir / "settings.json"
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ids = itertools.count(1)
        self._names: Counter[str] = Counter()
        self._crashes_reported: set[str] = set()
        self.bad_lines_reported: dict[str, int] = {}
        self._transcripts_reported = (0, 0)
        self._errors_reported: dict[str, int] = {}

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

    # -- the population ------------------------------------------------------------------------

    async def populate(self, report: FaultReport) -> None:
        """Connect the games, then patch each call into a game of its own, on every pairing."""
        await self.top_up_games(time.monotonic() + self.mode.recovery_s)
        games = self.population_games()
        codes = Counter(game.code for game in games)
        report.figure("games", "games connected", len(games), f"{len(games)} of {self.mode.games}",
                      None if len(games) == self.mode.games else f"only {len(games)} of {self.mode.games} games connected")  # fmt: skip
        twice = [code for code, count in codes.items() if count > 1]
        if twice:
            report.violate(f"games given the same code: {twice}")
        failures = await self.top_up_calls(time.monotonic() + self.mode.recovery_s)
        pairs = len(self.live_pairs())
        report.figure("calls", "calls patched", pairs, f"{pairs} of {self.mode.calls} (game read 'connected')",
                      None if pairs == self.mode.calls and not failures else f"{failures} calls failed to patch")  # fmt: skip
        await self.flow(report, time.monotonic(), pairs=self.live_pairs(), limit_s=WORKS_WITHIN_S, window_s=WORKS_WITHIN_S + 2)

    async def top_up_games(self, deadline: float) -> int:
        """Connect games until there are ``mode.games`` (or ``deadline``); returns how many
        failed to connect. Each goes to the gateway with the fewest games and failures."""
        failed: Counter[str] = Counter()
        while (missing := self.mode.games - len(self.population_games())) > 0 and time.monotonic() < deadline:
            count = Counter(game.gateway.name for game in self.population_games())
            gateways = sorted(self.live("game-gateway"), key=lambda gateway: (failed[gateway.name], count[gateway.name]))
            if not gateways:
                break
            batch = [gateways[n % len(gateways)] for n in range(min(missing, 8))]
            opened = await asyncio.gather(*(self.open_game(gateway) for gateway in batch))
            failed.update(gateway.name for gateway, game in zip(batch, opened, strict=True) if game is None)
            if None in opened:
                await asyncio.sleep(0.2)
        return sum(failed.values())

    async def top_up_calls(self, deadline: float, refused: set[Game] | None = None) -> int:
        """Dial and patch calls until ``mode.calls`` are patched, while free games last and until
        ``deadline``; returns how many dials or patches failed. A game that refused a caller is
        added to ``refused`` and not tried again; a gateway that failed is tried last."""
        refused = set() if refused is None else refused
        failed: Counter[str] = Counter()
        while len(self.live_pairs()) < self.mode.calls and time.monotonic() < deadline:
            count = Counter(call.gateway.name for call in self.population_calls())
            gateways = sorted(self.live("twilio-gateway"), key=lambda gateway: (failed[gateway.name], count[gateway.name]))
            games = await self.unclaimed_games(refused)
            if not gateways or not games:
                break
            call = await self.dial(gateways[0])
            if call is None:
                failed[gateways[0].name] += 1
                await asyncio.sleep(0.2)
            elif not await self.patch(call, games[0]):
                failed[gateways[0].name] += 1
                if self._refused(call):
                    refused.add(games[0])
                await call.hang_up()
        return sum(failed.values())

    @staticmethod
    def _refused(call: Call) -> bool:
        """Whether the gateway turned the call's keys down because the game has a caller."""
        return bool(call.gateway.log.find(CODE_REJECTED, call.patch_mark, call_sid=call.sid, reason="game already has a caller"))

    async def replenish(self, report: FaultReport) -> None:
        """Back to the full population. A call whose game is gone keys another if it was told;
        one never told is hung up (its claim goes with it) and replaced."""
        lonely = [call for call in self.population_calls() if not call.game_alive]
        told = [call for call in lonely if call.told_game_left()]
        await asyncio.gather(*(call.hang_up() for call in lonely if call not in told))
        deadline = time.monotonic() + self.mode.recovery_s
        failures = await self.top_up_games(deadline)
        refused: set[Game] = set()
        for call in told:
            games = await self.unclaimed_games(refused)
            if not games or not await self.patch(call, games[0]):
                failures += 1
                refused.update(games[:1])
                await call.hang_up()
        failures += await self.top_up_calls(deadline, refused)
        if refused:
            print(f"  games that refused a caller: {sorted(game.code for game in refused)}", flush=True)
        games, pairs = len(self.population_games()), len(self.live_pairs())
        if games < self.mode.games or pairs < self.mode.calls:
            report.violate(f"recovery: {games} of {self.mode.games} games and {pairs} of {self.mode.calls} "
                           f"patched calls restored ({failures} connects or patches failed)")  # fmt: skip

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

    def judge(self, snapshot: Snapshot) -> dict[str, list[str]]:
        """What is wrong with ``snapshot`` given the games and calls alive now."""
        live = [game for game in self.games if game.open]
        shown = Counter(game.code for game in live)
        leased = set(snapshot.leases)
        lost = [
            code + (" (leased)" if code in leased else "") + (" (claimed)" if code in snapshot.claims else "")
            for code in self.mode.codes if code not in snapshot.free and not (code in leased and shown[code])
        ]  # fmt: skip
        twice = {code for code, count in shown.items() if count > 1} | (snapshot.free & leased) | (snapshot.free & set(shown))
        calls = {call.sid: call for call in self.calls}
        stale = [
            f"{code}:{sid[:8]}" for code, sid in snapshot.claims.items()
            if not self._claim_holds(code, calls.get(sid), leased)
        ]  # fmt: skip
        missing = [game.code for call, game in self.live_pairs(probes=True) if snapshot.claims.get(game.code) != call.sid]
        return {"codes_lost": lost, "codes_held_twice": sorted(twice), "stale_claims": sorted(stale), "claims_missing": sorted(missing)}

    @staticmethod
    def _claim_holds(code: str, call: Call | None, leased: set[str]) -> bool:
        """A claim is right when its call is open and patched into the live game holding its code."""
        return call is not None and call.open and call.game_alive and call.game.code == code and code in leased

    async def settle(self, report: FaultReport, within_s: float) -> None:
        """Wait (bounded) for pool, leases and claims to be right, then report what is still wrong."""
        judged: dict[str, list[str]] = {"redis_unreachable": ["no answer"]}

        async def right() -> bool:
            nonlocal judged
            snapshot = await self.snapshot()
            judged = self.judge(snapshot) if snapshot is not None else {"redis_unreachable": ["no answer"]}
            return not any(judged.values())

        await wait_until(right, time.monotonic() + within_s)
        if "redis_unreachable" in judged:
            report.violate("Redis did not answer the drill's reads")
            return
        labels = {
            "codes_lost": "codes lost", "codes_held_twice": "codes held twice", "stale_claims": "stale claims",
            "claims_missing": "patched calls without their claim",
        }  # fmt: skip
        for key, label in labels.items():
            wrong = judged[key]
            shown = f"{len(wrong)}" + (f" {wrong[:8]}" if wrong else "")
            report.figure(key, label, len(wrong), shown, f"{label}: {wrong[:8]}" if wrong else None)

    # -- common figures ------------------------------------------------------------------------

    def ended(self, report: FaultReport, before: Sessions, expected: Callable[[Game | Call], bool]) -> None:
        """Sessions of ``before`` that ended: the expected ones, and the rest (violations)."""
        gone: list[Game | Call] = [game for game in before.games if not game.open] + [call for call in before.calls if not call.open]
        allowed = [session for session in gone if expected(session)]
        wrong = [session for session in gone if not expected(session)]
        games = sum(isinstance(session, Game) for session in wrong)
        shown = f"{len(gone)} ({len(allowed)} expected; {games} games and {len(wrong) - games} calls not)"
        report.figures["sessions_ended_unexpectedly"] = len(wrong)
        violation = None
        if wrong:
            violation = f"{len(wrong)} sessions ended that should not have, e.g. " + "; ".join(self.why_ended(s) for s in wrong[:3])
        report.figure("sessions_ended", "sessions ended", len(gone), shown, violation)

    def why_ended(self, session: Game | Call) -> str:
        """What the session's own process logged as it ended."""
        if isinstance(session, Call):
            lines = session.gateway.log.find(CALL_ENDED, call_sid=session.sid)
            reason = lines[-1].get("reason") if lines else "no call_ended line"
            return f"call {session.sid[:10]} on {session.gateway.name}: {reason!r} (close {session.close_code})"
        lines = session.gateway.log.find(GAME_ENDED, session.log_mark, code=session.code)
        reason = lines[0].get("reason") if lines else "no game_session_ended line"
        return f"game {session.code} on {session.gateway.name}: {reason!r} (close {session.close_code})"

    def process_figures(self, report: FaultReport) -> None:
        crashed = []
        for gateway in self.gateways:
            if not gateway.killed and not gateway.stopped and not gateway.alive and gateway.name not in self._crashes_reported:
                self._crashes_reported.add(gateway.name)
                crashed.append(f"{gateway.name} exited {gateway.process.returncode}: {gateway.tail()}")
        if not self.redis_down and (self.redis.process is None or self.redis.process.poll() is not None):
            if "redis" not in self._crashes_reported:
                self._crashes_reported.add("redis")
                crashed.append("redis-server is not running")
        report.figure("process_crashes", "process crashes besides the killed one", len(crashed),
                      violation=f"processes died: {crashed}" if crashed else None)  # fmt: skip
        bad = []
        for gateway in self.gateways:
            gateway.log.poll(force=True)
            seen = self.bad_lines_reported.get(gateway.name, 0)
            bad += [f"{gateway.name}: {line}" for line in gateway.log.bad_lines[seen:]]
            self.bad_lines_reported[gateway.name] = len(gateway.log.bad_lines)
        report.figure("non_json_log_lines", "non-JSON log lines", len(bad),
                      violation=f"{len(bad)} log lines are not JSON, e.g. {bad[:3]}" if bad else None)  # fmt: skip
        errors: Counter[str] = Counter()
        for gateway in self.gateways:
            seen = self._errors_reported.get(gateway.name, 0)
            for record in gateway.log.records[seen:]:
                if record.get("level") in ("error", "critical"):
                    errors[str(record.get("event")).split("\n")[0][:60]] += 1
            self._errors_reported[gateway.name] = len(gateway.log.records)
        report.figures["error_log_lines"] = dict(errors)
        shown = ", ".join(f"{event} x{count}" for event, count in errors.most_common(5))
        print(f"  error-level log lines (for information): {sum(errors.values())}" + (f" ({shown})" if errors else ""), flush=True)
        strange = [text for game in self.games for text in game.strange]
        misrouted = sum(game.misrouted for game in self.games)
        order = sum(game.out_of_order for game in self.games)
        reported_misrouted, reported_order = self._transcripts_reported
        self._transcripts_reported = misrouted, order
        misrouted, order = misrouted - reported_misrouted, order - reported_order
        report.figure("misrouted_transcripts", "transcripts at the wrong game", misrouted,
                      violation=f"{misrouted} transcripts reached a game they were not spoken to" if misrouted else None)  # fmt: skip
        report.figure("out_of_order_transcripts", "transcripts out of order or twice", order,
                      violation=f"{order} transcripts came out of order or twice" if order else None)  # fmt: skip
        if strange:
            report.violate(f"games read {len(strange)} texts that are no transcript of the drill, e.g. {strange[:2]}")
        for game in self.games:
            game.strange.clear()

    async def flow(self, report: FaultReport, since: float, *, pairs: list[tuple[Call, Game]], limit_s: float,
                   window_s: float) -> None:  # fmt: skip
        """Each pair, from ``since``: a transcript spoken reaches the game, a game text reaches the call."""
        deadline = since + window_s
        marks = {gateway.name: gateway.log.mark for gateway in self.live("twilio-gateway")}
        heard: dict[int, float] = {}
        texts: dict[int, float] = {}

        def transcripts_in() -> bool:
            for call, game in pairs:
                if call.cid not in heard and game.latest_spoken.get(call.cid, 0.0) >= since:
                    heard[call.cid] = time.monotonic()
            return len(heard) == len(pairs)

        async def texts_in() -> None:
            while len(texts) < len(pairs) and time.monotonic() < deadline:
                for n, (call, game) in enumerate(pairs):
                    if call.cid not in texts and game.open:
                        await game.send_text(f"text {n} from game {game.gid}")
                resend_at = time.monotonic() + 0.5
                while time.monotonic() < min(resend_at, deadline) and len(texts) < len(pairs):
                    for call, _ in pairs:
                        mark = marks.get(call.gateway.name, 0)
                        if call.cid not in texts and call.gateway.log.find(GAME_TEXT_RECEIVED, mark, call_sid=call.sid):
                            texts[call.cid] = time.monotonic()
                    await asyncio.sleep(POLL_S)

        await asyncio.gather(wait_until(transcripts_in, deadline), texts_in())
        for key, label, got in (("transcripts", "a transcript reaches each game", heard), ("game_texts", "a game text reaches each call", texts)):
            slowest = max(got.values()) - since if len(got) == len(pairs) and got else None
            late = slowest is None or slowest > limit_s
            shown = f"{len(got)} of {len(pairs)} pairs, all within {seconds(slowest)} (limit {limit_s:.1f} s)"
            if not pairs:
                shown = "n/a (no pair)"
            report.figure(key + "_s", label, slowest, shown,
                          f"{label}: {len(got)} of {len(pairs)} pairs, slowest {seconds(slowest)} (limit {limit_s:.1f} s)" if late and pairs else None)  # fmt: skip

    async def new_sessions(self, report: FaultReport, since: float, *, limit_s: float, window_s: float) -> None:
        """On every pairing of live game-gateway and twilio-gateway: a new game connects, a new call
        patches into it, a transcript and a game text get through. Then both leave."""
        deadline = since + window_s
        pairings = [(games, calls) for games in self.live("game-gateway") for calls in self.live("twilio-gateway")]
        results = await asyncio.gather(*(self._new_pair(games, calls, since, deadline) for games, calls in pairings))
        games_at = [result[0] for result in results]
        works_at = [result[1] for result in results]
        for key, label, times in (("new_game_s", "a new game connects, on each game-gateway", games_at),
                                  ("new_call_s", "a new call patches into it and talks, on each pairing", works_at)):  # fmt: skip
            done = [t for t in times if t is not None]
            slowest = max(done) if len(done) == len(times) and done else None
            late = slowest is None or slowest > limit_s
            shown = f"{len(done)} of {len(times)}, all within {seconds(slowest)} (limit {limit_s:.1f} s)"
            report.figure(key, label, slowest, shown,
                          f"{label}: {len(done)} of {len(times)}, slowest {seconds(slowest)} (limit {limit_s:.1f} s)" if late else None)  # fmt: skip

    async def _new_pair(self, games_at: Gateway, calls_at: Gateway, since: float, deadline: float) -> tuple[float | None, float | None]:
        """(seconds until the game got a code, seconds until the pair worked), from ``since``."""
        game: Game | None = None
        game_s: float | None = None
        try:
            while time.monotonic() < deadline:
                if game is None or not game.open:
                    game = await self.open_game(games_at, probe=True)
                    if game is None:
                        await asyncio.sleep(0.2)
                        continue
                    game_s = game_s if game_s is not None else time.monotonic() - since
                if await self._probe_call(calls_at, game, deadline):
                    return game_s, time.monotonic() - since
                await asyncio.sleep(0.2)
            return game_s, None
        finally:
            if game is not None:
                await game.close()

    async def _probe_call(self, gateway: Gateway, game: Game, deadline: float) -> bool:
        call = await self.dial(gateway, probe=True)
        if call is None:
            return False
        try:
            if not await self.patch(call, game):
                return False
            began = time.monotonic()
            mark = gateway.log.mark
            heard = await wait_until(lambda: game.latest_spoken.get(call.cid, 0.0) >= began, min(deadline, began + WORKS_WITHIN_S))
            if heard is None or not await game.send_text("a probe's text"):
                return False
            told = await wait_until(lambda: bool(gateway.log.find(GAME_TEXT_RECEIVED, mark, call_sid=call.sid)),
                                    min(deadline, began + WORKS_WITHIN_S))  # fmt: skip
            return told is not None
        finally:
            await call.hang_up()

    # -- faults --------------------------------------------------------------------------------

    def begin(self, title: str) -> FaultReport:
        report = FaultReport(len(self.reports), title)
        self.reports.append(report)
        self.phase = title
        print(f"\n== {report.number}. {title} ==", flush=True)
        return report

    async def kill_game_gateway(self) -> None:
        ttl = self.mode.redis
        victim = self.rng.choice(self.live("game-gateway"))
        report = self.begin(f"kill -9 {victim.name} (pid {victim.process.pid})")
        before = self.sessions()
        orphaned_games = [game for game in before.games if game.gateway is victim]
        orphaned_codes = {game.code for game in orphaned_games}
        orphaned_calls = [game.call for game in orphaned_games if game.call is not None and game.call.open and game.call.game is game]
        survivors = [(call, game) for call, game in self.live_pairs() if game.gateway is not victim]
        print(f"  {len(orphaned_games)} games on it, {len(orphaned_calls)} of them patched; {len(survivors)} pairs elsewhere", flush=True)
        killed_at = time.monotonic()
        victim.kill()
        replacement = self.spawn(self.start_gateway("game-gateway"), "replacement")
        limit_s = ttl.lease_ttl_s + ttl.sweep_s + TOLERANCE_S
        _, (patchable, told) = await asyncio.gather(
            self.flow(report, killed_at, pairs=survivors, limit_s=WORKS_WITHIN_S, window_s=WORKS_WITHIN_S + 2),
            self._watch_orphans(orphaned_codes, orphaned_calls, killed_at, limit_s + 2),
        )
        self._told_figure(report, orphaned_calls, told, limit_s)
        self._patchable_figure(report, orphaned_codes, patchable, limit_s, "back in the pool, unclaimed")
        self.ended(report, before, lambda session: session.gateway is victim)
        await self._await_replacement(report, replacement)
        await self.settle(report, within_s=2.0)
        await self._prove_patchable(report, orphaned_codes, [call for call in orphaned_calls if call in told])
        await self.replenish(report)
        await self.new_sessions(report, time.monotonic(), limit_s=WORKS_WITHIN_S, window_s=WORKS_WITHIN_S + 2)
        self.process_figures(report)

    async def _watch_orphans(self, codes: set[str], calls: list[Call], since: float, window_s: float) -> tuple[dict[str, float], dict[Call, float]]:
        """When each code was first seen free and unclaimed, and each call told its game left."""
        patchable: dict[str, float] = {}
        told: dict[Call, float] = {}

        async def all_seen() -> bool:
            snapshot = await self.snapshot()
            now = time.monotonic() - since
            if snapshot is not None:
                for code in codes - patchable.keys():
                    if code in snapshot.free and code not in snapshot.claims:
                        patchable[code] = now
            for call in calls:
                if call not in told and call.told_game_left():
                    told[call] = now
            return len(patchable) == len(codes) and len(told) == len(calls)

        await wait_until(all_seen, since + window_s)
        return patchable, told

    @staticmethod
    def _told_figure(report: FaultReport, calls: list[Call], told: dict[Call, float], limit_s: float) -> None:
        slowest = max(told.values(), default=None)
        shown = f"{len(told)} of {len(calls)} ('game_left' logged" + (f", the last after {seconds(slowest)})" if told else ")")
        late = slowest is not None and slowest > limit_s
        violation = None
        if len(told) < len(calls) or late:
            violation = f"calls told their game left: {len(told)} of {len(calls)}, the last after {seconds(slowest)} (limit {limit_s:.1f} s)"
        report.figure("calls_told", "calls told", len(told), shown, violation)
        report.figures["calls_orphaned"] = len(calls)

    @staticmethod
    def _patchable_figure(report: FaultReport, codes: set[str], patchable: dict[str, float], limit_s: float, what: str) -> None:
        slowest = max(patchable.values()) if codes and len(patchable) == len(codes) else None
        if not codes:
            report.figure("patchable_s", "seconds until every orphaned code is patchable", None, "n/a (no code orphaned)")
            return
        shown = f"{seconds(slowest)} for {len(codes)} codes ({what}; limit {limit_s:.1f} s)"
        if slowest is None:
            shown += f"; {len(codes) - len(patchable)} never were"
        violation = None
        if slowest is None or slowest > limit_s:
            stuck = sorted(codes - patchable.keys())[:8]
            violation = f"orphaned codes patchable after {seconds(slowest)} (limit {limit_s:.1f} s); not yet: {stuck}"
        report.figure("patchable_s", "seconds until every orphaned code is patchable", slowest, shown, violation)

    async def _await_replacement(self, report: FaultReport, replacement: asyncio.Task[Gateway]) -> None:
        try:
            await replacement
        except RuntimeError as error:
            report.violate(f"the replacement gateway did not start: {error}")

    async def _prove_patchable(self, report: FaultReport, codes: set[str], told_calls: list[Call]) -> None:
        """Take each orphaned code with a new game, then patch a call into it: a told caller keys
        it again, else a new call does (and hangs up)."""
        held = await self._take_codes(codes)
        waiting = [call for call in told_calls if call.open and not call.game_alive]
        semaphore = asyncio.Semaphore(8)

        async def patch_into(game: Game) -> bool:
            async with semaphore:
                if waiting:
                    call = waiting.pop()
                    return await self.patch(call, game)
                gateways = self.live("twilio-gateway")
                call = await self.dial(self.rng.choice(gateways), probe=True) if gateways else None
                if call is None:
                    return False
                try:
                    return await self.patch(call, game)
                finally:
                    await call.hang_up()

        patched = await asyncio.gather(*(patch_into(game) for game in held.values()))
        count = sum(patched)
        shown = f"{len(held)} of {len(codes)} taken by a new game, {count} of those patched by a call"
        violation = None
        if codes and (len(held) < len(codes) or count < len(held)):
            violation = f"orphaned codes: {len(held)} of {len(codes)} taken again, {count} patched"
        report.figure("orphaned_codes_patched", "orphaned codes taken and patched", count, shown, violation)

    async def _take_codes(self, codes: set[str]) -> dict[str, Game]:
        """New games until each of ``codes`` that is free is held; extras beyond the population's
        size leave again."""
        held: dict[str, Game] = {}
        extra: list[Game] = []
        for attempt in range(len(self.mode.codes) + 4):
            snapshot = await self.snapshot()
            wanted = codes - held.keys()
            if snapshot is None or not wanted & snapshot.free:
                break
            gateways = self.live("game-gateway")
            game = await self.open_game(gateways[attempt % len(gateways)]) if gateways else None
            if game is None:
                await asyncio.sleep(0.1)
            elif game.code in wanted:
                held[game.code] = game
            else:
                extra.append(game)
        surplus = len(self.population_games()) - self.mode.games
        await asyncio.gather(*(game.close() for game in extra[: max(0, surplus)]))
        return held

    async def kill_twilio_gateway(self) -> None:
        ttl = self.mode.redis
        victim = self.rng.choice(self.live("twilio-gateway"))
        report = self.begin(f"kill -9 {victim.name} (pid {victim.process.pid})")
        before = self.sessions()
        lost_calls = [call for call in before.calls if call.gateway is victim]
        widowed = [call.game for call in lost_calls if call.game_alive and call.game.call is call]
        sids = {call.sid for call in lost_calls}
        survivors = [(call, game) for call, game in self.live_pairs() if call.gateway is not victim]
        print(f"  {len(lost_calls)} calls on it, {len(widowed)} of them patched; {len(survivors)} pairs elsewhere", flush=True)
        killed_at = time.monotonic()
        victim.kill()
        replacement = self.spawn(self.start_gateway("twilio-gateway"), "replacement")
        limit_s = ttl.claim_ttl_s + TOLERANCE_S
        lapsed: dict[str, float] = {}

        async def claims_gone() -> bool:
            snapshot = await self.snapshot()
            if snapshot is not None:
                for game in widowed:
                    if game.code not in lapsed and snapshot.claims.get(game.code) not in sids:
                        lapsed[game.code] = time.monotonic() - killed_at
            return len(lapsed) == len(widowed)

        await asyncio.gather(
            self.flow(report, killed_at, pairs=survivors, limit_s=WORKS_WITHIN_S, window_s=WORKS_WITHIN_S + 2),
            wait_until(claims_gone, killed_at + limit_s + 3),
        )
        report.figure("calls_told", "calls told", None, "n/a (no call lost its game)")
        self._patchable_figure(report, {game.code for game in widowed}, lapsed, limit_s, "its claim lapsed, the game still holds it")
        self.ended(report, before, lambda session: session.gateway is victim)
        await self._await_replacement(report, replacement)
        await self._new_callers(report, widowed)
        await self.settle(report, within_s=2.0)
        await self.replenish(report)
        await self.new_sessions(report, time.monotonic(), limit_s=WORKS_WITHIN_S, window_s=WORKS_WITHIN_S + 2)
        self.process_figures(report)

    async def _new_callers(self, report: FaultReport, games: list[Game]) -> None:
        """Each game whose caller's gateway died takes a new caller (who stays on)."""
        patched = 0
        for n, game in enumerate(games):
            gateways = self.live("twilio-gateway")
            call = await self.dial(gateways[n % len(gateways)]) if gateways and game.open else None
            if call is not None and await self.patch(call, game):
                patched += 1
            elif call is not None:
                await call.hang_up()
        report.figure("widowed_games_repatched", "games whose caller died take a new caller", patched, f"{patched} of {len(games)}",
                      None if patched == len(games) else f"only {patched} of {len(games)} games took a new caller")  # fmt: skip

    async def restart_redis(self, down_s: float) -> None:
        ttl = self.mode.redis
        report = self.begin(f"Redis down {down_s:g} s, back empty on the same port")
        before = self.sessions()
        marks = {gateway.name: gateway.log.mark for gateway in self.gateways if gateway.alive}
        pairs = self.live_pairs()
        self.redis_down = True
        await asyncio.to_thread(self.redis.stop)
        await asyncio.sleep(down_s)
        await asyncio.to_thread(self.redis.start)
        self.redis_down = False
        up_at = time.monotonic()
        window_s = ttl.lease_ttl_s + 2 * ttl.heartbeat_s + ttl.sweep_s + 3
        told = self.spawn(self._told_of_gap(before, marks, up_at + window_s), "gap-watch")
        try:
            live_pairs = [pair for pair in pairs if pair[0].open and pair[1].open]
            await asyncio.gather(
                self.flow(report, up_at, pairs=live_pairs, limit_s=REDIS_RECOVERY_S, window_s=window_s),
                self.new_sessions(report, up_at, limit_s=REDIS_RECOVERY_S, window_s=window_s),
            )
        finally:
            told_count, open_count = await told
        report.figure("told_of_gap", "sessions told of the gap", told_count, f"{told_count} of {open_count} open sessions",
                      None if told_count == open_count else f"only {told_count} of {open_count} open sessions were told of the gap")  # fmt: skip
        report.figure("calls_told", "calls told", None, "n/a (no game was killed)")
        report.figure("patchable_s", "seconds until every orphaned code is patchable", None, "n/a (no code orphaned)")
        self.ended(report, before, lambda session: False)
        settled_by = up_at + 3 * ttl.heartbeat_s + ttl.sweep_s + TOLERANCE_S
        await asyncio.sleep(max(0.0, settled_by - time.monotonic()))
        await self.settle(report, within_s=2.0)
        await self.replenish(report)
        self.process_figures(report)

    async def _told_of_gap(self, before: Sessions, marks: dict[str, int], deadline: float) -> tuple[int, int]:
        """(sessions told of the gap, sessions of ``before`` still open) once all are, or at ``deadline``."""

        def told(session: Game | Call) -> bool:
            since = marks.get(session.gateway.name, 0)
            if isinstance(session, Game):
                return bool(session.gateway.log.find(GAP_TOLD["game"], since, code=session.code))
            return bool(session.gateway.log.find(GAP_TOLD["call"], since, call_sid=session.sid))

        def sessions() -> list[Game | Call]:
            return [session for session in [*before.games, *before.calls] if session.open]

        await wait_until(lambda: all(told(session) for session in sessions()), deadline)
        still = sessions()
        return sum(told(session) for session in still), len(still)

    async def stall_a_game(self) -> None:
        report = self.begin("one game stops reading while its call talks fast")
        if not self.live_pairs():  # the last recovery fell short (reported there): one more try
            await self.top_up_calls(time.monotonic() + self.mode.recovery_s)
        pairs = self.live_pairs()
        if not pairs:
            report.violate("no patched pair to stall")
            return
        call, stalled = self.rng.choice(pairs)
        before = self.sessions()
        others = [game for game in before.games if game is not stalled]
        print(f"  game {stalled.code} on {stalled.gateway.name}, its call on {call.gateway.name}; {self.mode.stall_s:g} s", flush=True)
        await asyncio.sleep(_BASELINE_S)  # transcripts to compare with, whatever came just before
        stalled_at = time.monotonic()
        stalled.reading.clear()
        phrases, read = call.phrases, stalled.bytes_read
        call.burst_s = self.mode.burst_interval_s
        await asyncio.sleep(self.mode.stall_s)
        call.burst_s = None
        phrases = call.phrases - phrases
        resumed_at = time.monotonic()
        stalled.reading.set()
        caught_up = await wait_until(lambda: stalled.closed.is_set() or stalled.latest_spoken.get(call.cid, 0.0) >= resumed_at,
                                     resumed_at + 10)  # fmt: skip
        print(f"  its call spoke {phrases} long phrases meanwhile; the game then read {(stalled.bytes_read - read) / 1e6:.2f} MB",
              flush=True)  # fmt: skip
        report.figures["stall_phrases"] = phrases
        report.figures["stall_bytes_read_after"] = stalled.bytes_read - read
        self._stall_delays(report, others, stalled_at, resumed_at)
        dropped = stalled.closed.is_set()
        outcome = f"dropped by its gateway (close {stalled.close_code})" if dropped else (
            "kept, and caught up" if caught_up is not None else "kept, but nothing new arrived within 10 s")
        report.figure("stalled_game", "the stalled game", outcome, violation=None if dropped or caught_up is not None else
                      "the stalled game neither caught up nor was dropped")  # fmt: skip
        if dropped and stalled.close_code != 1008:
            report.violate(f"the stalled game was closed with {stalled.close_code}, not 1008 (reads too slowly)")
        limit_s = TOLERANCE_S + 1
        if dropped:
            patchable, told = await self._watch_orphans({stalled.code}, [call], resumed_at, limit_s + 2)
            self._told_figure(report, [call], told, limit_s)
            self._patchable_figure(report, {stalled.code}, patchable, limit_s, "back in the pool, unclaimed")
        else:
            report.figure("calls_told", "calls told", None, "n/a (the game stayed)")
            report.figure("patchable_s", "seconds until every orphaned code is patchable", None, "n/a (no code orphaned)")
        self.ended(report, before, lambda session: session is stalled and stalled.close_code == 1008)
        await self.settle(report, within_s=2.0)
        await self.replenish(report)
        self.process_figures(report)

    def _stall_delays(self, report: FaultReport, others: list[Game], began: float, ended: float) -> None:
        """How long other games' transcripts took before and during the stall."""

        def delays(start: float, end: float) -> list[float]:
            return [delay for game in others for at, delay in game.latencies if start <= at <= end]

        baseline, during = delays(began - _BASELINE_S, began), delays(began, ended)
        worst = max(during, default=None)
        for label, values in (("before", baseline), ("during", during)):
            p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
            print(f"  other games' transcripts {label}: {len(values)}, p50 {seconds(p50)}, p99 {seconds(p99)}, "
                  f"max {seconds(max(values, default=None))}", flush=True)  # fmt: skip
        report.figures["others_during_stall"] = {"count": len(during), "p99_s": percentile(during, 0.99), "max_s": worst}
        if not during:
            report.violate("no other game received a transcript during the stall")
        elif worst > STALL_DELAY_LIMIT_S:
            report.violate(f"other games' transcripts took up to {worst:.2f} s during the stall (limit {STALL_DELAY_LIMIT_S:.1f} s)")

    async def everyone_leaves(self) -> None:
        report = self.begin("every client leaves")
        before = Sessions([game for game in self.games if game.open], [call for call in self.calls if call.open])
        await asyncio.gather(*(call.hang_up() for call in before.calls), *(game.close() for game in before.games))
        left_at = time.monotonic()
        still = [session for session in [*before.games, *before.calls] if session.open]
        ended = len(before.games) + len(before.calls) - len(still)
        report.figures["sessions_ended_unexpectedly"] = 0
        report.figure("sessions_ended", "sessions ended", ended, f"{ended} of {len(before.games) + len(before.calls)}",
                      f"{len(still)} sessions still open after everyone left" if still else None)  # fmt: skip
        report.figure("calls_told", "calls told", None, "n/a (the calls left too)")
        every = set(self.mode.codes)
        limit_s = TOLERANCE_S + 1

        async def all_back() -> bool:
            snapshot = await self.snapshot()
            return snapshot is not None and snapshot.free == every and not snapshot.leases and not snapshot.claims

        backstop_s = self.mode.redis.lease_ttl_s + self.mode.redis.sweep_s + TOLERANCE_S
        back = await wait_until(all_back, left_at + backstop_s)
        back_s = None if back is None else back - left_at
        late = back_s is None or back_s > limit_s
        report.figure("patchable_s", "seconds until every code is back in the pool (no lease, no claim)", back_s,
                      f"{seconds(back_s)} (given back as each game leaves: limit {limit_s:.1f} s)",
                      f"codes back in the pool after {seconds(back_s)}, not at once as their games left (limit {limit_s:.1f} s)"
                      if late else None)  # fmt: skip
        # Lost means not back even after the lease TTL, the backstop for a give-back that failed.
        await self.settle(report, within_s=0.5)
        self.process_figures(report)


# -- running it ----------------------------------------------------------------------------------


async def run(drill: Drill) -> list[str]:
    """The drill from start-up to shutdown; the violations it found."""
    problems: list[str] = []
    try:
        async with asyncio.timeout(drill.mode.budget_s):
            await drill.start()
            report = drill.begin(f"start: {drill.mode.games} games, {drill.mode.calls} calls on 2 + 2 gateways")
            await drill.populate(report)
            drill.process_figures(report)
            await drill.kill_game_gateway()
            await drill.kill_twilio_gateway()
            for down_s in drill.mode.outages_s:
                await drill.restart_redis(down_s)
            await drill.stall_a_game()
            await drill.everyone_leaves()
    except TimeoutError:
        problems.append(f"the drill did not finish within {drill.mode.budget_s:.0f} s (during: {drill.phase})")
    except RuntimeError as error:
        problems.append(f"the drill could not go on ({drill.phase}): {error}")
    finally:
        statuses = await drill.close()
    print("\n== shutdown (SIGTERM) ==", flush=True)
    for name, status in statuses.items():
        print(f"  {name} exited {status}", flush=True)
        if status != 0:
            problems.append(f"{name} exited {status} on SIGTERM")
    for gateway in drill.gateways:
        gateway.log.poll(force=True)
    bad = [line for gateway in drill.gateways for line in gateway.log.bad_lines[drill.bad_lines_reported.get(gateway.name, 0):]]
    if bad:
        problems.append(f"{len(bad)} more log lines are not JSON, e.g. {bad[:3]}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help="the CI variant: 20 games, 6 calls, 3 s TTLs")
    parser.add_argument("--seed", type=int, default=None, help="which gateways die and which game stalls")
    parser.add_argument("--keep-logs", metavar="DIR", type=Path, help="write the gateways' logs here and keep them")
    args = parser.parse_args(argv)
    mode = SHORT if args.short else FULL
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    print(f"chaos drill ({mode.name}), seed {seed}, {os.cpu_count()} cores", flush=True)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="phonepatch-chaos-") as scratch:
        workdir = args.keep_logs or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        drill = Drill(mode, random.Random(seed), workdir)
        try:
            problems = asyncio.run(run(drill))
        except Exception as error:  # noqa: BLE001 - the drill itself broke: say so, exit 2
            print(f"chaos: the drill could not run: {error!r}", file=sys.stderr)
            return 2
    violations = [f"{report.number}. {report.title}: {v}" for report in drill.reports for v in report.violations] + problems
    summary = {
        "mode": mode.name, "seed": seed, "seconds": round(time.monotonic() - began, 1), "ok": not violations,
        "violations": violations,
        "faults": [{"fault": report.title, **report.figures, "violations": report.violations} for report in drill.reports],
    }  # fmt: skip
    print("\n== summary ==", flush=True)
    print(json.dumps(summary, indent=1, default=str), flush=True)
    if violations:
        print(f"\nFAILED: {len(violations)} violations", flush=True)
        for violation in violations:
            print(f"- {violation}", flush=True)
        return 1
    print("\nOK: no violation", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
