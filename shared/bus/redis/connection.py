"""Where the Redis bus finds Redis: the URL read once into a ``Target``, and its client.

Every timeout and backoff the bus uses is a field of ``Timing``: an outage of Redis is found
and left within a fraction of a second, so that one shorter than a lease is only a hiccup.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, ParamSpec, TypeVar
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from phonepatch.shared.errors import BusError, ConfigError

__all__ = ["CONNECTION_ERRORS", "FAILURES", "Backoff", "Client", "Target", "Timing", "as_bus_error", "connect"]

Client = aioredis.Redis | RedisCluster
CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
FAILURES = (*CONNECTION_ERRORS, RedisError)  # out of reach, or refused

P = ParamSpec("P")
T = TypeVar("T")


def as_bus_error(method: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Raise a Redis that cannot be reached, or refuses, as ``BusError`` (callers know that one)."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except FAILURES as error:
            raise BusError(f"redis: {method.__name__} failed: {type(error).__name__}") from error

    return wrapper


@dataclass(frozen=True, slots=True)
class Timing:
    """How long the bus waits for Redis, and how it retries.

    ``retry_cap_s`` bounds the wait between attempts once Redis is out of reach (every loop of
    the bus retries with full jitter up to it), so each process finds Redis back within it;
    ``restore_wait_s`` is how long after Redis lost its data the sweeper waits before it gives
    back codes nobody holds: long enough for every holder to have set its leases again."""

    command_timeout_s: float = 2.0
    connect_timeout_s: float = 1.0
    command_retries: int = 2  # a command on a connection Redis dropped is sent again once re-made
    retry_base_s: float = 0.05
    retry_cap_s: float = 0.25
    restore_wait_s: float = 0.8
    subscribe_timeout_s: float = 3.0
    ping_s: float = 2.0  # an idle pub/sub connection is pinged; two silent pings end it
    pool_wait_s: float = 2.0  # a burst waits this long for one of the pool's connections
    close_timeout_s: float = 3.0
    max_connections: int = 32  # per process, besides the pub/sub connections


class Backoff:
    """Exponential backoff with full jitter: replicas that lost Redis together do not all come
    back in the same millisecond."""

    def __init__(self, timing: Timing) -> None:
        self._base, self._cap = timing.retry_base_s, timing.retry_cap_s
        self._attempt = 0

    def reset(self) -> None:
        self._attempt = 0

    def next_s(self) -> float:
        self._attempt += 1
        return random.uniform(0, min(self._cap, self._base * 2**self._attempt))


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed ``REDIS_URL``: one server (``redis://``, ``rediss://``, ``unix://``), a cluster
    (``redis+cluster://`` naming any node) or Sentinel
    (``redis+sentinel://[:password@]host:port[,host:port...]/service[/db]``)."""

    kind: Literal["server", "cluster", "sentinel"]
    url: str = ""
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> Target:
        """Raises ``ConfigError`` naming ``REDIS_URL`` for anything else."""
        scheme = url.split("://", 1)[0].lower()
        if scheme in ("redis", "rediss", "unix"):
            return cls("server", url)
        if scheme in ("redis+cluster", "rediss+cluster"):
            return cls("cluster", url.replace("+cluster", "", 1))
        if scheme != "redis+sentinel":
            raise ConfigError("REDIS_URL: expected redis://, rediss://, redis+cluster:// or redis+sentinel://")
        parts = urlsplit(url)
        netloc, password = parts.netloc, None
        if "@" in netloc:
            credentials, netloc = netloc.rsplit("@", 1)
            password = unquote(credentials.split(":", 1)[-1]) or None
        sentinels = []
        for host_port in netloc.split(","):
            host, _, port = host_port.rpartition(":")
            try:
                sentinels.append((host or host_port, int(port) if port and host else 26379))
            except ValueError:
                raise ConfigError(f"REDIS_URL: bad Sentinel port in {host_port!r}") from None
        path = [part for part in parts.path.split("/") if part]
        if not path:
            raise ConfigError("REDIS_URL: a redis+sentinel:// URL must name the service: .../mymaster")
        try:
            db = int(path[1]) if len(path) > 1 else 0
        except ValueError:
            raise ConfigError("REDIS_URL: the database after the service must be a number") from None
        return cls("sentinel", sentinels=tuple(sentinels), service=path[0], db=db, password=password)


def connect(target: Target, timing: Timing | None = None, **options: Any) -> Client:
    """A client for ``target`` whose commands fail within the timing's bounds and are sent
    again, on a new connection, when Redis dropped the one they were sent on."""
    timing = timing or Timing()
    options = {
        "socket_timeout": timing.command_timeout_s,
        "socket_connect_timeout": timing.connect_timeout_s,
        "retry": Retry(ExponentialWithJitterBackoff(timing.retry_base_s, timing.retry_cap_s), timing.command_retries),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
        **options,
    }
    if target.kind == "server":
        # A blocking pool: a burst (every game of a process leaving at once) waits for one of
        # its connections instead of failing with MaxConnectionsError.
        pool = aioredis.BlockingConnectionPool.from_url(
            target.url, max_connections=timing.max_connections, timeout=timing.pool_wait_s, **options
        )
        client = aioredis.Redis(connection_pool=pool)
        client.auto_close_connection_pool = True
        return client
    if target.kind == "cluster":
        options.pop("retry_on_error")
        return RedisCluster.from_url(target.url, **options)
    sentinel = Sentinel(
        list(target.sentinels),
        sentinel_kwargs={"password": target.password} if target.password else None,
        socket_timeout=timing.command_timeout_s,
        socket_connect_timeout=timing.connect_timeout_s,
    )
    return sentinel.master_for(target.service, password=target.password, db=target.db, **options)
