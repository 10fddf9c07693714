"""``RedisBus``: the bus contract on Redis, for any number of gateway processes.

The parts, one concern each: ``connection`` (the URL, the client, timing), ``topology`` (one
server or Sentinel; Cluster), ``leases`` (codes held), ``claims`` (calls patched), ``pool``
(sweeper and live codes), ``pubsub`` (channels), ``upkeep`` (heartbeat and sweeper loops).
Key and channel names come from ``keys.Keys``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

from phonepatch.shared.bus import wire
from phonepatch.shared.bus.base import Bus
from phonepatch.shared.bus.events import CallEnded, CallEvent, GameEvent
from phonepatch.shared.bus.keys import Keys
from phonepatch.shared.bus.queue import SessionQueue
from phonepatch.shared.bus.redis.claims import Claims
from phonepatch.shared.bus.redis.connection import FAILURES, Client, Timing, as_bus_error
from phonepatch.shared.bus.redis.leases import Leases
from phonepatch.shared.bus.redis.pool import Pool
from phonepatch.shared.bus.redis.topology import topology_of
from phonepatch.shared.bus.redis.upkeep import Upkeep
from phonepatch.shared.config import RedisSettings
from phonepatch.shared.errors import BusError
from phonepatch.shared.logs import get_logger

__all__ = ["RedisBus"]

log = get_logger(__name__)

T = TypeVar("T")


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class RedisBus(Bus):
    """Build with :meth:`start`; :meth:`close` gives back what it still holds."""

    def __init__(
        self, client: Client, codes: Iterable[str], settings: RedisSettings | None = None, *,
        holder: str | None = None, timing: Timing | None = None,
    ) -> None:  # fmt: skip
        settings = settings or RedisSettings()
        self.timing = timing or Timing()
        self.topology = topology = topology_of(client, Keys(settings.prefix), self.timing)
        self._keys = topology.keys
        self._background: set[asyncio.Task[Any]] = set()
        topology.spawn = self._spawn
        codes = tuple(dict.fromkeys(codes))
        self._leases = Leases(topology, codes, _ms(settings.lease_ttl_s), self._spawn, holder)
        grace_s = max(2 * self.timing.restore_wait_s, 2 * settings.heartbeat_s)
        self._claims = Claims(topology, _ms(settings.claim_ttl_s), grace_s)
        self._pool = Pool(topology, codes, self.timing.restore_wait_s)
        self._upkeep = Upkeep(topology, self._leases, self._claims, self._pool, settings)
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    async def start(
        cls, client: Client, codes: Iterable[str], settings: RedisSettings | None = None, *,
        holder: str | None = None, timing: Timing | None = None,
    ) -> RedisBus:  # fmt: skip
        """Seed the pool (on a Redis that never held it, that takes ``restore_wait_s``), then
        start the upkeep. Raises ``BusError`` when Redis cannot be reached."""
        bus = cls(client, codes, settings, holder=holder, timing=timing)
        try:
            await bus.topology.start()
            while wait_s := await bus.sweep():
                await asyncio.sleep(wait_s)
            bus._leases.epoch = await client.get(bus._keys.seeded)
        except FAILURES as error:
            await bus.topology.close_client()
            raise BusError(f"redis: cannot reach the server: {type(error).__name__}: {error}") from None
        bus._tasks = bus._upkeep.tasks()
        return bus

    def _spawn(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_log_failure)
        return task

    # -- codes and claims ----------------------------------------------------------------------

    @as_bus_error
    async def take_code(self) -> str:
        return await self._leases.take()

    async def return_code(self, code: str) -> None:
        with contextlib.suppress(BusError):  # given back by a later heartbeat, or the sweeper
            await self.leave_game(code)

    @as_bus_error
    async def leave_game(self, code: str) -> str | None:
        self._claims.held.pop(code, None)
        return await self._leases.leave(code)

    @as_bus_error
    async def live_codes(self, *, max_age_s: float = 0.0) -> frozenset[str]:
        return await self._pool.live_codes(max_age_s)

    @as_bus_error
    async def claim_game(self, code: str, call_sid: str) -> bool:
        return await self._claims.claim(code, call_sid, self._leases.epoch)

    @as_bus_error
    async def release_claim(self, code: str, call_sid: str | None = None) -> str | None:
        return await self._claims.release(code, call_sid)

    @as_bus_error
    async def claim_holder(self, code: str) -> str | None:
        holder = await self.topology.client.get(self._keys.claim(code))
        return holder.decode() if holder is not None else None

    async def heartbeat(self) -> None:
        await self._upkeep.heartbeat()

    async def sweep(self) -> float:
        return await self._upkeep.sweep()

    # -- channels ------------------------------------------------------------------------------

    @as_bus_error
    async def publish_to_game(self, code: str, event: GameEvent) -> None:
        await self.topology.publish(self._keys.game_channel(code), wire.encode(event))

    @as_bus_error
    async def publish_to_call(self, call_sid: str, event: CallEvent) -> None:
        await self.topology.publish(self._keys.call_channel(call_sid), wire.encode(event))

    def _game_channel(self, code: str) -> str:
        return self._keys.game_channel(code)

    def _call_channel(self, call_sid: str) -> str:
        return self._keys.call_channel(call_sid)

    async def _subscribe(self, channel: str, queue: SessionQueue) -> None:
        await self.topology.router.subscribe(channel, queue)

    async def _unsubscribe(self, channel: str, queue: SessionQueue) -> None:
        await self.topology.router.unsubscribe(channel, queue)

    # -- closing -------------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop the upkeep, give back every code and claim still held (bounded), close the
        connections."""
        self._upkeep.closing = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self.timing.close_timeout_s)
        self._tasks = []
        try:
            async with asyncio.timeout(self.timing.close_timeout_s):
                for code in list(self._leases.held):
                    await self.return_code(code)
                for code, claim in list(self._claims.held.items()):  # calls whose end did not
                    if await self.release_claim(code, claim.call_sid):  # get as far as releasing
                        await self.publish_to_game(code, CallEnded(claim.call_sid, "server shutting down"))
                await self._upkeep.heartbeat()  # give-backs and releases that failed before
                await asyncio.gather(*self._background, return_exceptions=True)
        except (TimeoutError, BusError, *FAILURES) as error:
            left = len(self._leases.held) + len(self._leases.leaving)
            log.warning("bus_codes_left_to_expire", count=left, error=type(error).__name__)
        await self.topology.close()
        await self.topology.close_client()


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("bus_give_back_failed", error=type(task.exception()).__name__)
