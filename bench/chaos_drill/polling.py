"""Waiting for what the drill can only poll: a log line, a Redis read, a client's state."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

from .settings import POLL_S

__all__ = ["wait_until"]


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
