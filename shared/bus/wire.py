"""Bus events as bytes, for backends that carry them between processes (the Redis bus).

One JSON object per event, with a short ``t`` naming its kind. ``decode`` raises ``BusError`` for
anything it cannot read, so a foreign or corrupt message on a channel is dropped by the reader
instead of reaching a session.
"""

from __future__ import annotations

import functools
from typing import Any

import orjson

from phonepatch.shared.bus.events import CallConnected, CallEnded, CallEvent, GameEvent, GameLeft, GameText, TranscriptReady
from phonepatch.shared.errors import BusError
from phonepatch.shared.speech import Transcript, Word

__all__ = ["decode", "encode"]

_UNREADABLE = (KeyError, TypeError, ValueError)  # what reading a malformed message raises


def encode(event: GameEvent | CallEvent) -> bytes:
    """The bytes of ``event`` for a channel."""
    match event:
        case TranscriptReady(call_sid=call_sid, transcript=transcript):
            return orjson.dumps({"t": "transcript", "call": call_sid, "tr": _transcript(transcript)})
        case CallConnected(call_sid=call_sid):
            return orjson.dumps({"t": "connected", "call": call_sid})
        case CallEnded(call_sid=call_sid, reason=reason):
            return orjson.dumps({"t": "ended", "call": call_sid, "reason": reason})
        case GameText(code=code, text=text):
            return orjson.dumps({"t": "text", "code": code, "text": text})
        case GameLeft(code=code, reason=reason):
            return orjson.dumps({"t": "left", "code": code, "reason": reason})
    raise TypeError(f"not a bus event: {type(event).__name__}")


def decode(data: bytes | str) -> GameEvent | CallEvent:
    """The event ``data`` holds; raises ``BusError`` when it holds none."""
    try:
        message = orjson.loads(data)
        kind = message["t"]
        if kind == "transcript":
            call_sid, fields = _str(message["call"]), message["tr"]
            raw = fields["raw"]
            if raw is None:
                return TranscriptReady(call_sid, _read_transcript(fields))
            # The provider's own JSON: what a v0 game is sent. The rest is read if asked for.
            return TranscriptReady.unread(call_sid, bool(fields["final"]), _str(raw), functools.partial(_read_late, fields))
        if kind == "connected":
            return CallConnected(_str(message["call"]))
        if kind == "ended":
            return CallEnded(_str(message["call"]), _str(message["reason"]))
        if kind == "text":
            return GameText(_str(message["code"]), _str(message["text"]))
        if kind == "left":
            return GameLeft(_str(message["code"]), _str(message["reason"]))
    except (orjson.JSONDecodeError, *_UNREADABLE) as error:
        raise _unreadable(error) from None
    raise BusError(f"unknown bus message kind: {kind!r}")


def _transcript(transcript: Transcript) -> dict[str, Any]:
    return {
        "text": transcript.text,
        "final": transcript.is_final,
        "speech_final": transcript.speech_final,
        "confidence": transcript.confidence,
        "words": [
            [word.word, word.start_s, word.end_s, word.confidence, word.punctuated_word] for word in transcript.words
        ],
        "start": transcript.start_s,
        "duration": transcript.duration_s,
        "alternatives": list(transcript.alternatives),
        "raw": transcript.raw_json,
    }


def _read_transcript(data: dict[str, Any]) -> Transcript:
    # The hot path of a game-gateway (one call per transcript delivered): no generator is built
    # for the empty lists most transcripts carry.
    raw, words, alternatives = data["raw"], data["words"], data["alternatives"]
    return Transcript(
        text=_str(data["text"]),
        is_final=bool(data["final"]),
        speech_final=bool(data["speech_final"]),
        confidence=float(data["confidence"]),
        words=tuple(map(_read_word, words)) if words else (),
        start_s=float(data["start"]),
        duration_s=float(data["duration"]),
        alternatives=tuple(map(_str, alternatives)) if alternatives else (),
        raw_json=None if raw is None else _str(raw),
    )


def _read_late(data: dict[str, Any]) -> Transcript:
    """``_read_transcript`` for a transcript read late: a corrupt one is a ``BusError`` still."""
    try:
        return _read_transcript(data)
    except _UNREADABLE as error:
        raise _unreadable(error) from None


def _unreadable(error: Exception) -> BusError:
    return BusError(f"unreadable bus message: {type(error).__name__}")


def _read_word(word: list[Any]) -> Word:
    text, start, end, confidence, punctuated = word
    return Word(_str(text), float(start), float(end), float(confidence), punctuated if punctuated is None else _str(punctuated))


def _str(value: Any) -> str:
    if value.__class__ is not str:
        raise TypeError("expected a string")
    return value
