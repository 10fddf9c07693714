"""The codes this process holds: taken with a lease naming the process, renewed by the heartbeat,
given back when their game leaves.

- **Take**: a code is popped and leased (``SET NX PX``) to a value naming this process and the
  take, so a lease lost and taken again by this same process is never mistaken for the old one.
  A stale pool entry (leased already) is dropped and another taken: at most one process ever
  holds a code.
- **Renew**: a lease that is gone is set again only when Redis lost its data since it was last
  seen (the seeded marker changed): its game still runs here. Otherwise it expired, or another
  holder has the code: the game is told it lost it.
- **Give back**: lease and claim deleted and the code back in the pool, in one script (two steps
  on a cluster). One that fails (Redis out of reach) is tried again by every heartbeat until it
  succeeds, and the call whose claim it dropped is then told the game left; the lease, no longer
  renewed, lapses meanwhile, so the sweeper gives the code back even if this process dies.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable, Coroutine
from typing import Any


from phonepatch.shared.bus.redis.connection import FAILURES
from phonepatch.shared.bus.redis.topology import Topology
from phonepatch.shared.errors import PoolExhaustedError
from phonepatch.shared.logs import get_logger

__all__ = ["Leases"]

log = get_logger(__name__)

Spawn = Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]]


class Leases:
    """``held``: code -> (lease value, the seeded marker when last seen held)."""

    def __init__(self, topology: Topology, codes: tuple[str, ...], ttl_ms: int, spawn: Spawn, holder: str | None) -> None:
        self._topology = topology
        self._keys = topology.keys
        self._codes = codes
        self._universe = frozenset(codes)
        self._ttl_ms = ttl_ms
        self._spawn = spawn
        self._holder = holder or f"{os.uname().nodename}:{os.getpid()}:{secrets.token_hex(4)}"
        self.held: dict[str, tuple[str, bytes | None]] = {}
        self.leaving: dict[str, str] = {}  # code -> lease value: give-backs to try again
        self.epoch: bytes | None = None  # the seeded marker: it changes when Redis loses its data
        self._takes = 0
        topology.on_cut = self._on_cut

    async def take(self) -> str:
        while True:
            self._takes += 1
            value = f"{self._holder}:{self._takes}"
            popped = await self._topology.take(value, self._ttl_ms)
            if popped is None:
                raise PoolExhaustedError("every game code is in use")
            if not popped:
                continue  # a stale pool entry: another process holds it
            code = popped.decode()
            if code not in self._universe:
                # Left by another configuration sharing the prefix: not ours to give, nor to keep.
                self._spawn(self._topology.give_back(code, value, to_pool=False))
                continue
            self.held[code] = (value, self.epoch)
            return code

    async def leave(self, code: str) -> str | None:
        """Give ``code`` back: the SID of the claim dropped; None too when this process does not
        hold it (any more). Raises a connection error when Redis is out of reach; the give-back
        is tried again."""
        held = self.held.pop(code, None)
        if held is None:
            return None
        self.leaving[code] = held[0]
        # Shielded: a session cancelled while it gives its code back still gives it back.
        return await asyncio.shield(self._spawn(self._give_back(code, held[0])))

    async def _give_back(self, code: str, value: str) -> str | None:
        dropped = await self._topology.give_back(code, value)
        if self.leaving.get(code) == value:
            del self.leaving[code]
        return dropped

    async def retry_leaving(self) -> list[tuple[str, str]]:
        """Try the give-backs that failed again: the (code, call SID) of each claim dropped."""
        told = []
        for code, value in list(self.leaving.items()):
            if (call_sid := await self._give_back(code, value)) is not None:
                told.append((code, call_sid))
        return told

    async def renew(self, epoch: bytes | None) -> list[str] | None:
        """Extend every lease; the codes whose lease is lost, or None when Redis lost its data
        while this ran (the next heartbeat sets the leases again)."""
        held = [(code, value, seen) for code, (value, seen) in self.held.items()]
        groups = [([self._keys.lease(code)], [value, self._ttl_ms, "1" if seen != epoch else "0"]) for code, value, seen in held]
        results = await self._topology.renew(self._topology.renew_leases, groups)
        if 0 in results and await self._topology.client.get(self._keys.seeded) != epoch:
            return None
        if 2 in results:
            log.warning("bus_leases_restored", count=results.count(2))
        lost = []
        for (code, value, _), kept in zip(held, results, strict=True):
            current = self.held.get(code)
            if current is None or current[0] != value:  # given back while the renewals ran
                if kept == 2:
                    self._spawn(self._topology.give_back(code, value))
            elif kept:
                self.held[code] = (value, epoch)
            else:
                del self.held[code]
                log.error("code_lease_lost", code=code)
                lost.append(code)
        return lost

    def _on_cut(self, taking: asyncio.Future[Any], value: str) -> None:
        self._spawn(self._give_back_taken(taking, value))

    async def _give_back_taken(self, taking: asyncio.Future[Any], value: str) -> None:
        """Once a take its caller gave up on has run, give back what it leased."""
        try:
            popped = await taking
        except FAILURES:
            await self._give_back_any(value)  # cut off: it may or may not have run
            return
        if popped:
            await self._topology.give_back(popped.decode(), value)

    async def _give_back_any(self, value: str) -> None:
        """Give back the code a cut-off take leased under ``value``, if it leased one: the
        leases of codes neither held nor free are looked up (the sweeper's view of orphans)."""
        free = {member.decode() for member in await self._topology.client.smembers(self._keys.pool)}
        candidates = [code for code in self._codes if code not in free and code not in self.held]
        for code, lease in zip(candidates, await self._topology.leases(candidates), strict=True):
            if lease is not None and lease.decode() == value:
                await self._topology.give_back(code, value)
                return
