"""Twilio Media Streams codec, bidirectional streams (PROTOCOLS.md §1).

One text frame in, one typed message out, or ``ProtocolError``; typed commands in, text frames out.
Pure: no I/O, no clock. Error messages name the event and the field, never a field's value.

- Twilio → phonepatch: ``parse_event``; phonepatch → Twilio: ``encode_media``, ``encode_mark``,
  ``encode_clear``.
- The reverse direction, for the phone simulator and test peers that play Twilio:
  ``encode_connected`` … ``encode_stop`` build what Twilio sends, and ``parse_outbound`` checks what
  the server sent, as strictly as Twilio does (warning 31951 on a missing or extra field).

Frame types are the caller's job: Twilio sends only text frames, and a binary frame sent to Twilio
triggers warning 31950 (§1.3).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from phonepatch.shared.errors import ProtocolError
from phonepatch.shared.protocol._fields import Fields, dumps, load_object

__all__ = [
    "FRAME_BYTES",
    "FRAME_MS",
    "MEDIA_ENCODING",
    "MULAW_SILENCE",
    "SAMPLE_RATE_HZ",
    "Connected",
    "Dtmf",
    "Mark",
    "Media",
    "MediaFormat",
    "OutboundClear",
    "OutboundMark",
    "OutboundMedia",
    "Start",
    "Stop",
    "TwilioInbound",
    "TwilioOutbound",
    "UnknownEvent",
    "encode_clear",
    "encode_connected",
    "encode_dtmf",
    "encode_inbound_media",
    "encode_mark",
    "encode_mark_echo",
    "encode_media",
    "encode_start",
    "encode_stop",
    "parse_event",
    "parse_outbound",
]

# §0 and §1.5: G.711 mu-law, 8000 Hz, mono, one byte per sample; Twilio sends 20 ms frames [obs].
SAMPLE_RATE_HZ: Final = 8000
FRAME_MS: Final = 20
FRAME_BYTES: Final = SAMPLE_RATE_HZ * FRAME_MS // 1000
MULAW_SILENCE: Final = 0xFF
MEDIA_ENCODING: Final = "audio/x-mulaw"


# -- Twilio → phonepatch (§1.2) -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connected:
    """First frame of every stream; it carries no ``streamSid`` (§1.1 item 3)."""

    protocol: str
    version: str


@dataclass(frozen=True, slots=True)
class MediaFormat:
    """``start.mediaFormat``: always mu-law, 8000 Hz, one channel on phone calls."""

    encoding: str
    sample_rate_hz: int
    channels: int


@dataclass(frozen=True, slots=True)
class Start:
    """Stream metadata; nothing may be sent to Twilio before it arrives (§1.1 item 3).

    ``custom_parameters`` holds the TwiML ``<Parameter>`` name/value pairs as a tuple of pairs in
    wire order (a tuple keeps the event hashable); look one up with ``custom_parameter``.
    """

    stream_sid: str
    sequence_number: int
    call_sid: str
    account_sid: str
    tracks: tuple[str, ...]
    media_format: MediaFormat
    custom_parameters: tuple[tuple[str, str], ...] = ()

    def custom_parameter(self, name: str) -> str | None:
        """The value of the ``<Parameter>`` called ``name``, or None when the TwiML had none."""
        for key, value in self.custom_parameters:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class Media:
    """Caller audio: raw mu-law bytes, base64-decoded. ``payload`` is kept out of ``repr``."""

    stream_sid: str
    sequence_number: int
    track: str
    chunk: int
    timestamp_ms: int
    payload: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Dtmf:
    """One keypad press; ``digit`` is one character, expected ``0``-``9``, ``*`` or ``#``."""

    stream_sid: str
    sequence_number: int
    digit: str


@dataclass(frozen=True, slots=True)
class Mark:
    """Echo of a mark we sent: its audio was played, or discarded by a ``clear`` (§1.4)."""

    stream_sid: str
    sequence_number: int
    name: str


@dataclass(frozen=True, slots=True)
class Stop:
    """The stream stopped or the call ended; Twilio closes the socket next."""

    stream_sid: str
    sequence_number: int
    call_sid: str
    account_sid: str


@dataclass(frozen=True, slots=True)
class UnknownEvent:
    """An ``event`` this codec does not know; §1.2 says to ignore it, so it is not an error."""

    event: str


TwilioInbound = Connected | Start | Media | Dtmf | Mark | Stop | UnknownEvent


def parse_event(text: str | bytes) -> TwilioInbound:
    """Parse one text frame from Twilio.

    Raises ProtocolError for invalid JSON, a non-object, a missing or non-string ``event``, or a
    missing or mistyped field of a known event. Unknown events and unknown extra fields are
    ignored (§1.2). Counters (``sequenceNumber``, ``chunk``, ``timestamp``) are read from strings
    holding integers, as Twilio sends them, or from JSON integers.
    """
    message = Fields(load_object(text), "message")
    event = message.string("event")
    parse = _INBOUND_PARSERS.get(event)
    if parse is None:
        return UnknownEvent(event)
    return parse(Fields(message.raw, f"{event} event"))


def _parse_connected(message: Fields) -> Connected:
    return Connected(protocol=message.string("protocol"), version=message.string("version"))


def _parse_start(message: Fields) -> Start:
    start = message.object("start")
    stream_sid = message.string("streamSid")
    # start.streamSid repeats the top-level value [doc]; tolerate its absence, not a contradiction.
    if start.optional_string("streamSid", stream_sid) != stream_sid:
        raise ProtocolError("start event: start.streamSid differs from streamSid")
    media_format = start.object("mediaFormat")
    return Start(
        stream_sid=stream_sid,
        sequence_number=message.integer("sequenceNumber"),
        call_sid=start.string("callSid"),
        account_sid=start.string("accountSid"),
        tracks=start.strings("tracks"),
        media_format=MediaFormat(
            encoding=media_format.string("encoding"),
            sample_rate_hz=media_format.integer("sampleRate"),
            channels=media_format.integer("channels"),
        ),
        custom_parameters=start.string_pairs("customParameters"),
    )


def _parse_media(message: Fields) -> Media:
    media = message.object("media")
    return Media(
        stream_sid=message.string("streamSid"),
        sequence_number=message.integer("sequenceNumber"),
        track=media.string("track"),
        chunk=media.integer("chunk"),
        timestamp_ms=media.integer("timestamp"),
        payload=_decode_payload(media.string("payload"), "media.payload"),
    )


def _parse_dtmf(message: Fields) -> Dtmf:
    # dtmf.track is not read: nothing depends on it, and its value is convention, not contract.
    digit = message.object("dtmf").string("digit")
    if len(digit) != 1:
        raise ProtocolError("dtmf event: dtmf.digit must be one character")
    return Dtmf(
        stream_sid=message.string("streamSid"),
        sequence_number=message.integer("sequenceNumber"),
        digit=digit,
    )


def _parse_mark(message: Fields) -> Mark:
    return Mark(
        stream_sid=message.string("streamSid"),
        sequence_number=message.integer("sequenceNumber"),
        name=message.object("mark").string("name"),
    )


def _parse_stop(message: Fields) -> Stop:
    stop = message.object("stop")
    return Stop(
        stream_sid=message.string("streamSid"),
        sequence_number=message.integer("sequenceNumber"),
        call_sid=stop.string("callSid"),
        account_sid=stop.string("accountSid"),
    )


_INBOUND_PARSERS: Final[Mapping[str, Callable[[Fields], TwilioInbound]]] = {
    "connected": _parse_connected,
    "start": _parse_start,
    "media": _parse_media,
    "dtmf": _parse_dtmf,
    "mark": _parse_mark,
    "stop": _parse_stop,
}


# -- phonepatch → Twilio (§1.3): exactly the documented fields, nothing more ---------------------


def encode_media(stream_sid: str, mulaw: bytes) -> str:
    """Queue raw mu-law/8000 audio (no header) for playback; any length is accepted [doc]."""
    return dumps({"event": "media", "streamSid": stream_sid, "media": {"payload": _b64(mulaw)}})


def encode_mark(stream_sid: str, name: str) -> str:
    """Queue a marker; Twilio echoes it once the audio queued before it has played (§1.4)."""
    return dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def encode_clear(stream_sid: str) -> str:
    """Drop all queued audio; Twilio then echoes every pending mark (§1.4)."""
    return dumps({"event": "clear", "streamSid": stream_sid})


@dataclass(frozen=True, slots=True)
class OutboundMedia:
    """A ``media`` message sent to Twilio, payload base64-decoded."""

    stream_sid: str
    payload: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class OutboundMark:
    """A ``mark`` message sent to Twilio."""

    stream_sid: str
    name: str


@dataclass(frozen=True, slots=True)
class OutboundClear:
    """A ``clear`` message sent to Twilio."""

    stream_sid: str


TwilioOutbound = OutboundMedia | OutboundMark | OutboundClear

# Allowed keys per outbound event, top level and inside the event's own object (§1.3).
_OUTBOUND_KEYS: Final[Mapping[str, frozenset[str]]] = {
    "media": frozenset({"event", "streamSid", "media"}),
    "mark": frozenset({"event", "streamSid", "mark"}),
    "clear": frozenset({"event", "streamSid"}),
}
_OUTBOUND_BODY_KEYS: Final[Mapping[str, frozenset[str]]] = {
    "media": frozenset({"payload"}),
    "mark": frozenset({"name"}),
}


def parse_outbound(text: str | bytes) -> TwilioOutbound:
    """Parse a frame sent to Twilio, as strictly as Twilio checks it (for test peers).

    Raises ProtocolError for invalid JSON, an unknown event, or a missing, extra or mistyped field:
    each of these earns warning 31951 from Twilio (§1.3).
    """
    message = Fields(load_object(text), "outbound message")
    event = message.string("event")
    if event not in _OUTBOUND_KEYS:
        raise ProtocolError("outbound message: unknown event")
    message = Fields(message.raw, f"outbound {event}")
    message.exact_keys(_OUTBOUND_KEYS[event])
    stream_sid = message.string("streamSid")
    if event == "clear":
        return OutboundClear(stream_sid)
    body = message.object(event)
    body.exact_keys(_OUTBOUND_BODY_KEYS[event])
    if event == "mark":
        return OutboundMark(stream_sid, body.string("name"))
    return OutboundMedia(stream_sid, _decode_payload(body.string("payload"), "media.payload"))


# -- What Twilio sends, for simulators and test peers (§1.2) -------------------------------------


def encode_connected() -> str:
    """The ``connected`` frame Twilio sends first."""
    return dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})


def encode_start(
    *,
    stream_sid: str,
    call_sid: str,
    account_sid: str,
    sequence_number: int = 1,
    custom_parameters: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
) -> str:
    """A ``start`` frame for one inbound mu-law/8000 track, as ``<Connect><Stream>`` produces."""
    start = {
        "streamSid": stream_sid,
        "accountSid": account_sid,
        "callSid": call_sid,
        "tracks": ["inbound"],
        "mediaFormat": {"encoding": MEDIA_ENCODING, "sampleRate": SAMPLE_RATE_HZ, "channels": 1},
        "customParameters": dict(custom_parameters or {}),
    }
    return dumps(_numbered("start", stream_sid, sequence_number, start))


def encode_inbound_media(
    *, stream_sid: str, sequence_number: int, chunk: int, timestamp_ms: int, payload: bytes
) -> str:
    """A ``media`` frame of caller audio on the ``inbound`` track."""
    media = {
        "track": "inbound",
        "chunk": str(chunk),
        "timestamp": str(timestamp_ms),
        "payload": _b64(payload),
    }
    return dumps(_numbered("media", stream_sid, sequence_number, media))


def encode_dtmf(*, stream_sid: str, sequence_number: int, digit: str) -> str:
    """A ``dtmf`` frame for one key press."""
    dtmf = {"track": "inbound_track", "digit": digit}
    return dumps(_numbered("dtmf", stream_sid, sequence_number, dtmf))


def encode_mark_echo(*, stream_sid: str, sequence_number: int, name: str) -> str:
    """The ``mark`` frame Twilio sends back when a mark's audio has played or been cleared."""
    return dumps(_numbered("mark", stream_sid, sequence_number, {"name": name}))


def encode_stop(*, stream_sid: str, sequence_number: int, call_sid: str, account_sid: str) -> str:
    """The ``stop`` frame Twilio sends when the stream ends."""
    stop = {"accountSid": account_sid, "callSid": call_sid}
    return dumps(_numbered("stop", stream_sid, sequence_number, stop))


def _numbered(event: str, stream_sid: str, sequence_number: int, body: object) -> dict[str, Any]:
    # §1.1 items 4-5: every frame after `connected` has streamSid and a string sequenceNumber.
    return {
        "event": event,
        "sequenceNumber": str(sequence_number),
        "streamSid": stream_sid,
        event: body,
    }


# -- Helpers ---------------------------------------------------------------------------------------


def _b64(audio: bytes) -> str:
    # §1.5: standard alphabet with `=` padding.
    return base64.b64encode(audio).decode("ascii")


def _decode_payload(payload: str, path: str) -> bytes:
    try:
        # validate=True rejects characters outside the alphabet instead of skipping them.
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:  # ValueError: non-ASCII text
        raise ProtocolError(f"bad base64 in {path}") from exc
