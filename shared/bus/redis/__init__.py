"""The bus on Redis (one server, Sentinel or Cluster): see ``bus.RedisBus``."""

from typing import Any

from phonepatch.shared.bus.redis.bus import RedisBus
from phonepatch.shared.bus.redis.connection import Client, Target, Timing, connect

__all__ = ["RedisBus", "Timing", "connect_redis"]


def connect_redis(url: str, timing: Timing | None = None, **options: Any) -> Client:
    """A client for ``url`` (see ``Target``). Raises ``ConfigError`` for an unknown scheme."""
    return connect(Target.parse(url), timing, **options)
