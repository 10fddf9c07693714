"""The bus's own work in the background: the heartbeat (leases, claims, give-backs and releases
to try again) and the sweeper, each retrying within ``retry_cap_s`` while Redis is out of reach.

Sessions hear what upkeep learns: a game whose lease is lost ``CodeLost``; a call whose game is
gone ``GameLeft`` (from this process, or published by whoever found out); and, once Redis has
been out of reach longer than a lease lives, every session ``BusLost``, once per outage.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


from phonepatch.shared.bus import wire
from phonepatch.shared.bus.events import BusLost, CallEnded, CodeLost, GameLeft
from phonepatch.shared.bus.redis.claims import Claims
from phonepatch.shared.bus.redis.connection import FAILURES, Backoff
from phonepatch.shared.bus.redis.leases import Leases
from phonepatch.shared.bus.redis.pool import Pool
from phonepatch.shared.bus.redis.topology import Topology
from phonepatch.shared.config import RedisSettings
from phonepatch.shared.logs import get_logger

__all__ = ["GAME_LOST", "Upkeep"]

log = get_logger(__name__)

GAME_LOST = "game lost"  # what a call hears when its game went without saying so


class Upkeep:
    def __init__(self, topology: Topology, leases: Leases, claims: Claims, pool: Pool, settings: RedisSettings) -> None:
        self._topology = topology
        self._keys = topology.keys
        self._leases, self._claims, self._pool = leases, claims, pool
        self._settings = settings
        self._loop = asyncio.get_running_loop()
        self._reached = self._loop.time()  # when Redis last answered a heartbeat
        self._lost_told = False
        self.closing = False

    def tasks(self) -> list[asyncio.Task[None]]:
        self._reached = self._loop.time()
        return [
            asyncio.create_task(self._every(self._settings.heartbeat_s, self.heartbeat, "bus_heartbeat_failed"), name="bus-heartbeat"),
            asyncio.create_task(self._every(self._settings.sweep_s, self.sweep, "bus_sweep_failed"), name="bus-sweeper"),
        ]

    async def _every(self, seconds: float, work: Callable[[], Awaitable[float | None]], failure: str) -> None:
        """Run ``work`` every ``seconds`` (or as soon as it asks), again and again within the
        backoff while it fails; a failure is logged once per outage, never fatal."""
        backoff, failing = Backoff(self._topology.timing), False
        wait_s = seconds
        while not self.closing:
            await asyncio.sleep(wait_s)
            try:
                asked = await work()
            except FAILURES as error:
                if not failing and not self.closing:
                    log.warning(failure, error=type(error).__name__)
                failing = True
                self._check_outage()
                wait_s = backoff.next_s()
                continue
            except Exception:  # a fault of ours: logged, and the upkeep goes on
                log.exception(failure)
                wait_s = seconds
                continue
            if failing:
                log.info(failure.replace("failed", "recovered"))
            failing = False
            backoff.reset()
            wait_s = min(seconds, asked) if asked else seconds

    def _check_outage(self) -> None:
        if self._lost_told or self._loop.time() - self._reached <= self._settings.lease_ttl_s:
            return
        self._lost_told = True
        router = self._topology.router
        log.error("bus_lost", sessions=sum(len(queues) for queues in router.routes.values()))
        router.deliver(list(router.routes), BusLost("message bus unavailable"))

    async def heartbeat(self) -> None:
        """Extend every lease and claim this process holds and tell those who lost theirs; try
        failed give-backs and releases again."""
        epoch = self._leases.epoch = await self._topology.client.get(self._keys.seeded)
        lost = await self._leases.renew(epoch)
        if lost is None:
            return  # Redis lost its data while the renewals ran: the next heartbeat sets them again
        dropped = await self._claims.renew(epoch, self._loop.time())
        self._reached, self._lost_told = self._loop.time(), False
        router = self._topology.router
        for code in lost:
            router.deliver([self._keys.game_channel(code)], CodeLost(code))
        for code, call_sid in dropped:
            log.warning("claim_dropped", code=code, call_sid=call_sid, reason=GAME_LOST)
            router.deliver([self._keys.call_channel(call_sid)], GameLeft(code, GAME_LOST))
        for code, call_sid in await self._leases.retry_leaving():
            await self._publish(self._keys.call_channel(call_sid), GameLeft(code, "game left"))
        for code, call_sid in await self._claims.retry_releasing():
            await self._publish(self._keys.game_channel(code), CallEnded(call_sid, "call ended"))

    async def sweep(self) -> float:
        """One sweep (see ``pool``); the calls whose game's code it gave back are told. Returns
        the seconds to wait before orphans may be given back."""
        wait_s, told = await self._pool.sweep()
        for code, call_sid in told:
            await self._publish(self._keys.call_channel(call_sid), GameLeft(code, GAME_LOST))
        return wait_s

    async def _publish(self, channel: str, event: GameLeft | CallEnded) -> None:
        await self._topology.publish(channel, wire.encode(event))
