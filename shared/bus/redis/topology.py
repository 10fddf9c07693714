"""What differs between one Redis server (or Sentinel's master) and a Redis Cluster, one small
strategy object each: how scripts run, how a code is taken and given back, how many keys one
call may name, and which pub/sub connection carries a channel."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript

from phonepatch.shared.bus.keys import Keys
from phonepatch.shared.bus.redis import scripts
from phonepatch.shared.bus.redis.batching import Batches
from phonepatch.shared.bus.redis.connection import FAILURES, Client, Timing
from phonepatch.shared.bus.redis.pubsub import Link, Router

__all__ = ["Cluster", "OneServer", "Topology", "topology_of"]

_BATCH = 64  # codes renewed per script call: a step short enough not to hold up delivery

Group = tuple[list[str], list[Any]]  # the keys and arguments of one code


class Topology:
    """Shared by both: the client, the scripts, and the router's links. Pub/sub connections
    speak RESP2, where a message is a plain array: no push handler stands in its way."""

    def __init__(self, client: Client, keys: Keys, timing: Timing) -> None:
        self.client = client
        self.keys = keys
        self.timing = timing
        self.give_back_script = client.register_script(scripts.GIVE_BACK)
        self.renew_leases = client.register_script(scripts.RENEW_LEASES)
        self.renew_claims = client.register_script(scripts.RENEW_CLAIMS)
        self.claim = client.register_script(scripts.CLAIM)
        self.release = client.register_script(scripts.RELEASE)
        self.links: dict[str, Link] = {}
        self.router = Router(self.link_for, timing)
        # Runs work left to finish in the background (given by the bus, which waits for it).
        self.spawn: Callable[[Coroutine[Any, Any, Any]], object] = asyncio.ensure_future
        # One server: called with a take given up on and its lease value (the script may still run).
        self.on_cut: Callable[[asyncio.Future[Any], str], None] = lambda taking, value: None

    async def start(self) -> None:
        """Anything to learn before the first command."""

    def link_for(self, channel: str) -> Link:
        raise NotImplementedError

    async def run(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        return await script(keys=keys, args=args)

    async def give_back(self, code: str, value: str, *, to_pool: bool = True) -> str | None:
        """Drop lease (if ``value``'s, or gone) and claim, and put the code back in the pool.
        The SID of the claim dropped, or None (also when another holder has the code)."""
        raise NotImplementedError

    async def take(self, value: str, ttl_ms: int) -> bytes | None:
        """Pop a code and lease it to ``value``; None when the pool is empty. Cancelled or cut
        off, what it may have leased is given back (see ``on_cut``)."""
        raise NotImplementedError

    async def renew(self, script: AsyncScript, groups: list[Group]) -> list[int]:
        raise NotImplementedError

    async def leases(self, codes: list[str]) -> list[bytes | None]:
        raise NotImplementedError

    async def publish(self, channel: str, data: bytes) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        await asyncio.gather(*(link.close() for link in self.links.values()))

    async def close_client(self) -> None:
        with contextlib.suppress(*FAILURES):
            await self.client.aclose()
        manager = getattr(getattr(self.client, "connection_pool", None), "sentinel_manager", None)
        for sentinel in getattr(manager, "sentinels", ()):  # the connections that found the master
            with contextlib.suppress(*FAILURES):
                await sentinel.aclose()


class OneServer(Topology):
    """One server or Sentinel's master: a code's scripts name the pool too, and scripts of
    concurrent sessions go in one pipeline per turn of the loop."""

    client: aioredis.Redis

    def __init__(self, client: aioredis.Redis, keys: Keys, timing: Timing) -> None:
        super().__init__(client, keys, timing)
        self.take_script = client.register_script(scripts.TAKE)
        self.batches = Batches(client)

    def link_for(self, channel: str) -> Link:
        link = self.links.get("server")
        if link is None:
            pool = self.client.connection_pool
            make = lambda: pool.connection_class(**_pubsub_options(pool.connection_kwargs))  # noqa: E731
            link = self.links["server"] = Link("server", make, self.router, self.timing)
        return link

    async def run(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        return await self.batches.run(script, keys, args)

    async def take(self, value: str, ttl_ms: int) -> bytes | None:
        before, after = self.keys.lease_parts()
        taking = self.batches.run(self.take_script, [self.keys.pool], [before, after, value, ttl_ms])
        try:
            return await asyncio.shield(taking)
        except asyncio.CancelledError:
            self.on_cut(taking, value)
            raise

    async def give_back(self, code: str, value: str, *, to_pool: bool = True) -> str | None:
        keys = [self.keys.lease(code), self.keys.claim(code), *([self.keys.pool] if to_pool else [])]
        dropped = await self.batches.run(self.give_back_script, keys, [value, code])
        return dropped.decode() or None if dropped is not None else None

    async def renew(self, script: AsyncScript, groups: list[Group]) -> list[int]:
        results: list[int] = []
        for start in range(0, len(groups), _BATCH):
            batch = groups[start : start + _BATCH]
            results += await script(keys=[k for keys, _ in batch for k in keys], args=[a for _, args in batch for a in args])
        return results

    async def leases(self, codes: list[str]) -> list[bytes | None]:
        return await self.client.mget([self.keys.lease(code) for code in codes]) if codes else []

    async def publish(self, channel: str, data: bytes) -> None:
        await self.client.publish(channel, data)

    async def close(self) -> None:
        await self.batches.close()
        await super().close()


class Cluster(Topology):
    """Redis Cluster: the pool and a code's keys live in different slots, so taking and giving
    back are two steps (a crash between them leaves an orphan for the sweeper), each key is
    renewed in a call of its own, and channels are sharded, one pub/sub connection per node."""

    client: RedisCluster

    async def start(self) -> None:
        await self.client.initialize()

    def link_for(self, channel: str) -> Link:
        node = self.client.get_node_from_key(channel)
        link = self.links.get(node.name)
        if link is None:
            make = lambda: node.connection_class(**_pubsub_options(node.connection_kwargs))  # noqa: E731
            link = self.links[node.name] = Link(node.name, make, self.router, self.timing, sharded=True)
        return link

    async def take(self, value: str, ttl_ms: int) -> bytes | None:
        popped = await self.client.spop(self.keys.pool)
        if popped is None:
            return None
        try:
            leased = await self.client.set(self.keys.lease(popped.decode()), value, nx=True, px=ttl_ms)
        except BaseException:
            # Cancelled or cut off: the lease may or may not be set. Given back in the
            # background; if that fails too, the lease expires and the sweeper does it.
            self.spawn(self.give_back(popped.decode(), value))
            raise
        return popped if leased else b""  # b"": a stale pool entry, another process holds it

    async def give_back(self, code: str, value: str, *, to_pool: bool = True) -> str | None:
        dropped = await self.give_back_script(keys=[self.keys.lease(code), self.keys.claim(code)], args=[value, code])
        if dropped is None:
            return None
        if to_pool:
            await self.client.sadd(self.keys.pool, code)
        return dropped.decode() or None

    async def renew(self, script: AsyncScript, groups: list[Group]) -> list[int]:
        results: list[int] = []
        for start in range(0, len(groups), _BATCH):
            replies = await asyncio.gather(
                *(script(keys=keys, args=args) for keys, args in groups[start : start + _BATCH])
            )
            results += [reply[0] for reply in replies]
        return results

    async def leases(self, codes: list[str]) -> list[bytes | None]:
        return await self.client.mget_nonatomic([self.keys.lease(code) for code in codes]) if codes else []

    async def publish(self, channel: str, data: bytes) -> None:
        await self.client.spublish(channel, data)


def _pubsub_options(options: dict[str, Any]) -> dict[str, Any]:
    """A pub/sub connection's options: RESP2, hence none of RESP3's maintenance notifications."""
    kept = {key: value for key, value in options.items() if not key.startswith("maint_notifications")}
    return {**kept, "protocol": 2}


def topology_of(client: Client, keys: Keys, timing: Timing) -> Topology:
    return Cluster(client, keys, timing) if isinstance(client, RedisCluster) else OneServer(client, keys, timing)
