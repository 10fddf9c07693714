"""Messages carried by the bus: toward a game (keyed by code) and toward a call (keyed by call)."""

from __future__ import annotations

from dataclasses import dataclass

from phonepatch.shared.speech import Transcript

__all__ = [
    "BusGap",
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


@dataclass(frozen=True, slots=True)
class TranscriptReady:
    """A speech result of the patched call."""

    call_sid: str
    transcript: Transcript


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


GameEvent = CallConnected | TranscriptReady | CallEnded | CodeLost
CallEvent = GameText | GameLeft
