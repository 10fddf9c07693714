"""Messages carried by the bus: toward a game (keyed by code) and toward a call (keyed by call)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from phonepatch.shared.speech import Transcript

__all__ = [
    "BusGap",
    "BusLost",
    "CallConnected",
    "CallEnded",
    "CallEvent",
    "CodeLost",
    "GameEvent",
    "GameLeft",
    "GameText",
    "TranscriptReady",
]


@dataclass(frozen=True, slots=True)
class CallConnected:
    """A call claimed the game; everything from ``call_sid`` belongs to it from now on."""

    call_sid: str


class TranscriptReady:
    """A speech result of the patched call.

    ``is_final`` and ``raw_json`` are its transcript's. Read off the wire with the provider's own
    JSON, the transcript itself is built only when asked for: a v0 game is sent that JSON as it
    is and needs nothing else, and building a Deepgram final's words cost a game-gateway a third
    of its CPU per transcript (bench/bus.py --transcripts deepgram: 76-78 us, against 53-56 for
    a bare final)."""

    __slots__ = ("call_sid", "is_final", "raw_json", "_transcript", "_read")
    __match_args__ = ("call_sid", "transcript")

    def __init__(self, call_sid: str, transcript: Transcript) -> None:
        self.call_sid = call_sid
        self.is_final = transcript.is_final
        self.raw_json = transcript.raw_json
        self._transcript: Transcript | None = transcript
        self._read: Callable[[], Transcript] | None = None

    @classmethod
    def unread(cls, call_sid: str, is_final: bool, raw_json: str, read: Callable[[], Transcript]) -> TranscriptReady:
        """A result whose transcript ``read`` builds when first asked for (it may raise the
        reader's error then, for a corrupt message)."""
        event = cls.__new__(cls)
        event.call_sid, event.is_final, event.raw_json = call_sid, is_final, raw_json
        event._transcript, event._read = None, read
        return event

    @property
    def transcript(self) -> Transcript:
        if self._transcript is None:
            assert self._read is not None
            self._transcript = self._read()
            self._read = None
        return self._transcript

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TranscriptReady):
            return NotImplemented
        return (self.call_sid, self.transcript) == (other.call_sid, other.transcript)

    def __hash__(self) -> int:
        return hash((self.call_sid, self.transcript))

    def __repr__(self) -> str:
        return f"TranscriptReady(call_sid={self.call_sid!r}, transcript={self.transcript!r})"


@dataclass(frozen=True, slots=True)
class CallEnded:
    """The patched call is over; the game keeps its code for the next call."""

    call_sid: str
    reason: str


@dataclass(frozen=True, slots=True)
class GameText:
    """Text the game wants spoken to the caller."""

    code: str
    text: str


@dataclass(frozen=True, slots=True)
class GameLeft:
    """The game holding ``code`` disconnected; its claim on the call is gone."""

    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class CodeLost:
    """This process no longer holds the game's code (its lease expired while Redis was out of
    reach): another game may be given the code, so this one must be closed."""

    code: str


@dataclass(frozen=True, slots=True)
class BusGap:
    """Messages for this session may have been lost (a queue overflowed or the bus reconnected)."""

    reason: str


@dataclass(frozen=True, slots=True)
class BusLost:
    """The bus has been out of reach for longer than a lease lives: this session's code or claim
    may be another's by now, so the session ends."""

    reason: str


GameEvent = CallConnected | TranscriptReady | CallEnded | CodeLost
CallEvent = GameText | GameLeft
