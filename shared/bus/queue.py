"""The bounded local queue behind one session's subscription.

The bus delivers with ``deliver``, which never awaits, so one slow session can never delay the
bus or another session. When the queue is full, the oldest interim transcript makes room; when
there is none, the queue records the overflow and ``get`` hands the session a ``BusGap`` so it
can tell its client or close it.

A session that can hand an event on without waiting (a socket whose ``send`` only buffers) gives
a ``sink`` instead: each event goes to it as it is delivered, and nothing is queued.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from phonepatch.shared.bus.events import BusGap, TranscriptReady
from phonepatch.shared.logs import get_logger

__all__ = ["SessionQueue"]

log = get_logger(__name__)

T = TypeVar("T")


def _is_interim(event: object) -> bool:
    return isinstance(event, TranscriptReady) and not event.is_final


class SessionQueue(Generic[T]):
    """A bounded FIFO with one consumer; ``deliver`` is safe to call from any task."""

    def __init__(self, maxsize: int, sink: Callable[[T | BusGap], None] | None = None) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._sink = sink
        self._items: deque[T | BusGap] = deque()
        self._maxsize = maxsize
        self._ready = asyncio.Event()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def deliver(self, event: T | BusGap) -> None:
        """Queue ``event`` without waiting; apply the overflow policy when full. With a sink,
        hand it on instead; a sink that fails is logged and never reaches the deliverer."""
        if self._sink is not None:
            try:
                self._sink(event)
            except Exception:
                log.exception("session_sink_failed")
            return
        if len(self._items) >= self._maxsize and not self._make_room():
            self.dropped += 1
            if not (self._items and isinstance(self._items[-1], BusGap)):
                self._items[-1] = BusGap("queue overflow")
            self._ready.set()
            return
        self._items.append(event)
        self._ready.set()

    def _make_room(self) -> bool:
        for index, item in enumerate(self._items):
            if _is_interim(item):
                del self._items[index]
                self.dropped += 1
                return True
        return False

    async def get(self) -> T | BusGap:
        """Wait for the next event (a ``BusGap`` marks where events were lost)."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()
