"""The bus: code pool, game claims and messages between game sessions and call sessions.

One interface, two backends (``memory`` for one process, Redis for many). It is shaped after Redis
so every operation maps onto one atomic command or script:

- take a code: SPOP from the free pool (plus a lease in Redis); return a code: SADD;
- claim a game for a call: SET NX on the code's claim key; release: delete it if owned;
- publish toward a game (channel keyed by code) or toward a call (channel keyed by call SID);
- subscribe: a bounded ``SessionQueue`` per session, fed without ever awaiting the session.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Generic, TypeVar

from phonepatch.shared.bus.events import BusGap, CallEvent, GameEvent
from phonepatch.shared.bus.queue import SessionQueue

__all__ = ["Bus", "Subscription"]

E = TypeVar("E")


class Bus(abc.ABC):
    """What the gateways need from the shared state; every method is safe to cancel."""

    @abc.abstractmethod
    async def take_code(self) -> str:
        """Take a free code for a new game. Raises ``PoolExhaustedError`` when none is free."""

    @abc.abstractmethod
    async def return_code(self, code: str) -> None:
        """Give a taken code back to the pool, dropping any claim on it. Idempotent."""

    async def leave_game(self, code: str) -> str | None:
        """A game leaves: drop the claim on its code and give the code back (one step where the
        backend can). Returns the call SID whose claim was dropped, so that the call can be told,
        or None; None, touching nothing, when the code is no longer this game's (its lease was
        lost). Raises ``BusError`` when the call cannot be named; the code goes back even then,
        or (on Redis) when its lease runs out."""
        try:
            return await self.release_claim(code)
        finally:
            await self.return_code(code)

    @abc.abstractmethod
    async def live_codes(self, *, max_age_s: float = 0.0) -> frozenset[str]:
        """Codes currently held by connected games. With ``max_age_s``, an answer up to that old
        will do: a backend may then share one lookup between the sessions of a process."""

    @abc.abstractmethod
    async def claim_game(self, code: str, call_sid: str) -> bool:
        """Patch ``call_sid`` into the game holding ``code``; False if another call has it.

        Raises ``UnknownCodeError`` when no live game holds ``code``.
        """

    @abc.abstractmethod
    async def release_claim(self, code: str, call_sid: str | None = None) -> str | None:
        """Drop the claim on ``code`` (only if ``call_sid`` holds it, when given).

        Returns the call SID whose claim was dropped, or None.
        """

    @abc.abstractmethod
    async def claim_holder(self, code: str) -> str | None:
        """The call SID patched into the game holding ``code`` now, or None: what a session
        that missed events (``BusGap``) reads to learn where it stands."""

    @abc.abstractmethod
    async def publish_to_game(self, code: str, event: GameEvent) -> None:
        """Send ``event`` to the game holding ``code``; nobody listening is not an error."""

    @abc.abstractmethod
    async def publish_to_call(self, call_sid: str, event: CallEvent) -> None:
        """Send ``event`` to the session of ``call_sid``; nobody listening is not an error."""

    @abc.abstractmethod
    async def _subscribe(self, channel: str, queue: SessionQueue) -> None: ...

    @abc.abstractmethod
    async def _unsubscribe(self, channel: str, queue: SessionQueue) -> None: ...

    @abc.abstractmethod
    def _game_channel(self, code: str) -> str: ...

    @abc.abstractmethod
    def _call_channel(self, call_sid: str) -> str: ...

    def subscribe_game(
        self, code: str, *, depth: int, sink: Callable[[GameEvent | BusGap], None] | None = None
    ) -> Subscription[GameEvent]:
        """Receive what is published toward ``code`` while the context is open: queued, or handed
        to ``sink`` as it comes (which must not block)."""
        return Subscription(self, self._game_channel(code), SessionQueue(depth, sink))

    def subscribe_call(self, call_sid: str, *, depth: int) -> Subscription[CallEvent]:
        """Receive what is published toward ``call_sid`` while the context is open."""
        return Subscription(self, self._call_channel(call_sid), SessionQueue(depth))

    async def close(self) -> None:
        """Release connections; the default backend holds none."""


class Subscription(Generic[E]):
    """``async with``: subscribed on entry (the queue is returned), unsubscribed on exit. A class
    rather than a generator: a game-gateway opens one per game connect."""

    __slots__ = ("_bus", "_channel", "_queue")

    def __init__(self, bus: Bus, channel: str, queue: SessionQueue) -> None:
        self._bus, self._channel, self._queue = bus, channel, queue

    async def __aenter__(self) -> SessionQueue[E]:
        await self._bus._subscribe(self._channel, self._queue)  # noqa: SLF001 - the bus's own helper
        return self._queue

    async def __aexit__(self, *exc_info: object) -> None:
        await self._bus._unsubscribe(self._channel, self._queue)  # noqa: SLF001
