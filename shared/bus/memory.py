"""The in-process bus: the same contract as the Redis bus, for one process and for tests."""

from __future__ import annotations

from collections.abc import Iterable

from phonepatch.shared.bus.base import Bus
from phonepatch.shared.bus.events import CallEvent, GameEvent
from phonepatch.shared.bus.queue import SessionQueue
from phonepatch.shared.errors import PoolExhaustedError, UnknownCodeError

__all__ = ["MemoryBus"]


class MemoryBus(Bus):
    """Pool, claims and channels in dictionaries; every operation completes without awaiting."""

    def __init__(self, codes: Iterable[str]) -> None:
        self._free = set(codes)
        self._taken: set[str] = set()
        self._claims: dict[str, str] = {}
        self._channels: dict[str, set[SessionQueue]] = {}

    async def take_code(self) -> str:
        if not self._free:
            raise PoolExhaustedError("every game code is in use")
        code = self._free.pop()
        self._taken.add(code)
        return code

    async def return_code(self, code: str) -> None:
        if code in self._taken:
            self._taken.discard(code)
            self._claims.pop(code, None)
            self._free.add(code)

    async def live_codes(self, *, max_age_s: float = 0.0) -> frozenset[str]:
        return frozenset(self._taken)  # always current: nothing to save

    async def claim_game(self, code: str, call_sid: str) -> bool:
        if code not in self._taken:
            raise UnknownCodeError("no live game holds this code")
        return self._claims.setdefault(code, call_sid) == call_sid

    async def release_claim(self, code: str, call_sid: str | None = None) -> str | None:
        holder = self._claims.get(code)
        if holder is None or (call_sid is not None and holder != call_sid):
            return None
        del self._claims[code]
        return holder

    async def claim_holder(self, code: str) -> str | None:
        return self._claims.get(code)

    async def publish_to_game(self, code: str, event: GameEvent) -> None:
        self._publish(self._game_channel(code), event)

    async def publish_to_call(self, call_sid: str, event: CallEvent) -> None:
        self._publish(self._call_channel(call_sid), event)

    def _publish(self, channel: str, event: GameEvent | CallEvent) -> None:
        for queue in self._channels.get(channel, ()):
            queue.deliver(event)

    def _game_channel(self, code: str) -> str:
        return f"game:{code}"

    def _call_channel(self, call_sid: str) -> str:
        return f"call:{call_sid}"

    async def _subscribe(self, channel: str, queue: SessionQueue) -> None:
        self._channels.setdefault(channel, set()).add(queue)

    async def _unsubscribe(self, channel: str, queue: SessionQueue) -> None:
        queues = self._channels.get(channel)
        if queues is not None:
            queues.discard(queue)
            if not queues:
                del self._channels[channel]
