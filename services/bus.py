"""The bus a process runs on: Redis when a URL is configured, else the in-memory bus."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from phonepatch.shared.bus import Bus, MemoryBus
from phonepatch.shared.config import Settings
from phonepatch.shared.logs import get_logger

__all__ = ["open_bus"]

log = get_logger(__name__)


@asynccontextmanager
async def open_bus(settings: Settings) -> AsyncIterator[Bus]:
    """Open the configured bus for the life of the context; raises ``BusError`` when Redis is
    configured but cannot be reached."""
    if settings.redis.url is None:
        bus: Bus = MemoryBus(settings.pool())
        log.info("bus_opened", backend="memory")
    else:
        from phonepatch.shared.bus.redis import RedisBus, connect_redis

        bus = await RedisBus.start(connect_redis(settings.redis.url.reveal()), settings.pool(), settings.redis)
        log.info("bus_opened", backend="redis", prefix=settings.redis.prefix)
    try:
        yield bus
    finally:
        await bus.close()
