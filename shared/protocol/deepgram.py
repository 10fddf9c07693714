"""Deepgram live speech-to-text codec, ``/v1/listen`` websocket (PROTOCOLS.md §4).

Deepgram's text frames become the neutral events of ``phonepatch.shared.speech`` (plus ``Metadata``
and ``OtherMessage``), or ``ProtocolError``. Pure: no I/O, no clock.

- Client side: ``build_listen_url``, the control frames ``KEEP_ALIVE``, ``FINALIZE``,
  ``CLOSE_STREAM``, and ``parse_message``.
- ``results_json`` renders a neutral ``Transcript`` in Deepgram's ``Results`` shape for game
  protocol v0, whose clients read ``channel.alternatives[0].transcript`` and ``is_final`` (§4.4).
- Fake Deepgram servers in tests: ``encode_results``, ``encode_utterance_end``,
  ``encode_speech_started``, ``encode_metadata`` and ``parse_control``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from phonepatch.shared.errors import ProtocolError
from phonepatch.shared.protocol._fields import Fields, dumps, load_object
from phonepatch.shared.speech import SpeechEvent, SpeechStarted, Transcript, UtteranceEnd, Word

__all__ = [
    "CLOSE_STREAM",
    "CONTROL_TYPES",
    "FINALIZE",
    "KEEP_ALIVE",
    "NEUTRAL_REQUEST_ID",
    "DeepgramMessage",
    "Metadata",
    "OtherMessage",
    "build_listen_url",
    "encode_metadata",
    "encode_results",
    "encode_speech_started",
    "encode_utterance_end",
    "parse_control",
    "parse_message",
    "results_json",
]

# §4.3: control messages are text frames. KeepAlive resets the ~10 s idle timer, Finalize flushes
# buffered audio, CloseStream drains pending results and Metadata, then closes.
KEEP_ALIVE: Final = '{"type":"KeepAlive"}'
FINALIZE: Final = '{"type":"Finalize"}'
CLOSE_STREAM: Final = '{"type":"CloseStream"}'
CONTROL_TYPES: Final = frozenset({"KeepAlive", "Finalize", "CloseStream", "Configure"})

# request_id of Results rendered from a non-Deepgram transcript: v0 clients never read it.
NEUTRAL_REQUEST_ID: Final = "00000000-0000-0000-0000-000000000000"
_FAKE_REQUEST_ID: Final = "00000000-0000-4000-8000-000000000001"
_CHANNEL: Final = [0, 1]  # §4.4: channel 0 of 1
_PUNCTUATION: Final = ".,?!;:\"'"


@dataclass(frozen=True, slots=True)
class Metadata:
    """Summary Deepgram sends before closing, e.g. after ``CloseStream``."""

    request_id: str
    duration_s: float


@dataclass(frozen=True, slots=True)
class OtherMessage:
    """A message ``type`` this codec does not map; callers may log and ignore it."""

    type: str


DeepgramMessage = SpeechEvent | Metadata | OtherMessage


def parse_message(text: str | bytes) -> DeepgramMessage:
    """Parse one text frame from Deepgram.

    ``Results`` become a ``Transcript`` whose ``raw_json`` is the frame's text exactly as received
    (game protocol v0 forwards it verbatim). Raises ProtocolError for invalid JSON, a non-object,
    a missing or non-string ``type``, or a missing or mistyped field of a known type.
    """
    message = Fields(load_object(text), "message")
    kind = message.string("type")
    fields = Fields(message.raw, kind)
    match kind:
        case "Results":
            return _parse_results(fields, text if isinstance(text, str) else bytes(text).decode())
        case "UtteranceEnd":
            return UtteranceEnd(last_word_end_s=fields.number("last_word_end"))
        case "SpeechStarted":
            return SpeechStarted(timestamp_s=fields.number("timestamp"))
        case "Metadata":
            return Metadata(
                request_id=fields.string("request_id"), duration_s=fields.number("duration")
            )
        case _:
            return OtherMessage(kind)


def _parse_results(results: Fields, raw_json: str) -> Transcript:
    channel = results.object("channel")
    text, confidence, words = _parse_best_alternative(channel)
    return Transcript(
        text=text,
        is_final=results.boolean("is_final"),
        speech_final=results.boolean("speech_final", default=False),
        confidence=confidence,
        words=words,
        start_s=results.number("start", default=0.0),
        duration_s=results.number("duration", default=0.0),
        alternatives=_parse_other_transcripts(channel),
        raw_json=raw_json,
    )


def _parse_best_alternative(channel: Fields) -> tuple[str, float, tuple[Word, ...]]:
    # Alternatives come best first; silence can yield none at all, which reads as empty text.
    alternatives = channel.array("alternatives")
    if not alternatives:
        return "", 0.0, ()
    best = channel.element(alternatives, 0, "alternatives")
    words = best.array("words", default=[])
    return (
        best.string("transcript"),
        best.number("confidence", default=0.0),
        tuple(_parse_word(best.element(words, index, "words")) for index in range(len(words))),
    )


def _parse_other_transcripts(channel: Fields) -> tuple[str, ...]:
    alternatives = channel.array("alternatives")
    return tuple(
        channel.element(alternatives, index, "alternatives").string("transcript")
        for index in range(1, len(alternatives))
    )


def _parse_word(word: Fields) -> Word:
    return Word(
        word=word.string("word"),
        start_s=word.number("start"),
        end_s=word.number("end"),
        confidence=word.number("confidence", default=0.0),
        punctuated_word=word.nullable_string("punctuated_word"),
    )


def results_json(t: Transcript, *, request_id: str = NEUTRAL_REQUEST_ID) -> str:
    """Deepgram ``Results`` JSON text for ``t``: ``t.raw_json`` unchanged when set, else built.

    The built shape carries every field of §4.4 that v0 clients or Deepgram SDKs read, times and
    confidences as JSON floats; ``parse_message`` maps it back to ``t`` (with ``raw_json`` set).
    """
    if t.raw_json is not None:
        return t.raw_json
    alternative = {
        "transcript": t.text,
        "confidence": float(t.confidence),
        "words": [_word_json(word) for word in t.words],
    }
    results = {
        "type": "Results",
        "channel_index": _CHANNEL,
        "duration": float(t.duration_s),
        "start": float(t.start_s),
        "is_final": t.is_final,
        "speech_final": t.speech_final,
        "from_finalize": False,
        "channel": {"alternatives": [alternative, *map(_other_alternative_json, t.alternatives)]},
        "metadata": {
            "request_id": request_id,
            "model_uuid": NEUTRAL_REQUEST_ID,
            "model_info": {"name": "", "version": "", "arch": ""},
        },
    }
    return dumps(results)


def _other_alternative_json(transcript: str) -> dict[str, Any]:
    # Only the best reading has words and a confidence in phonepatch's transcripts.
    return {"transcript": transcript, "confidence": 0.0, "words": []}


def _word_json(word: Word) -> dict[str, Any]:
    rendered: dict[str, Any] = {
        "word": word.word,
        "start": float(word.start_s),
        "end": float(word.end_s),
        "confidence": float(word.confidence),
    }
    if word.punctuated_word is not None:
        rendered["punctuated_word"] = word.punctuated_word
    return rendered


def build_listen_url(base_url: str, *, keyterms: Iterable[str] = ()) -> str:
    """``base_url`` with one ``keyterm=`` parameter appended per term (§4.2, Nova-3 only).

    The existing query string is kept byte for byte; terms are percent-encoded (spaces as ``%20``).
    Blank terms are skipped: an empty ``keyterm`` brings nothing.
    """
    terms = [term.strip() for term in keyterms if term.strip()]
    if not terms:
        return base_url
    parts = urlsplit(base_url)
    added = urlencode([("keyterm", term) for term in terms], quote_via=quote)
    existing = parts.query.rstrip("&")
    query = f"{existing}&{added}" if existing else added
    return urlunsplit(parts._replace(query=query))


def parse_control(text: str | bytes) -> str:
    """The ``type`` of a client control frame (§4.3), for fake Deepgram servers.

    Raises ProtocolError for invalid JSON or a type outside ``CONTROL_TYPES``.
    """
    kind = Fields(load_object(text), "control message").string("type")
    if kind not in CONTROL_TYPES:
        raise ProtocolError("control message: unknown type")
    return kind


# -- Fake Deepgram server side (§4.4 shapes) ------------------------------------------------------


def encode_results(
    *,
    transcript: str,
    is_final: bool,
    speech_final: bool = False,
    start_s: float = 0.0,
    duration_s: float = 0.0,
    confidence: float = 0.99,
    request_id: str = _FAKE_REQUEST_ID,
) -> str:
    """A ``Results`` frame; words are ``transcript`` split on whitespace, evenly timed."""
    tokens = transcript.split()
    slot_s = duration_s / len(tokens) if tokens else 0.0
    words = tuple(
        Word(
            word=token.strip(_PUNCTUATION).lower() or token,
            start_s=start_s + index * slot_s,
            end_s=start_s + (index + 1) * slot_s,
            confidence=confidence,
            punctuated_word=token,
        )
        for index, token in enumerate(tokens)
    )
    t = Transcript(
        text=transcript,
        is_final=is_final,
        speech_final=speech_final,
        confidence=confidence,
        words=words,
        start_s=start_s,
        duration_s=duration_s,
    )
    return results_json(t, request_id=request_id)


def encode_utterance_end(last_word_end_s: float) -> str:
    """An ``UtteranceEnd`` frame."""
    last_word_end = float(last_word_end_s)
    return dumps({"type": "UtteranceEnd", "channel": _CHANNEL, "last_word_end": last_word_end})


def encode_speech_started(timestamp_s: float) -> str:
    """A ``SpeechStarted`` frame."""
    return dumps({"type": "SpeechStarted", "channel": _CHANNEL, "timestamp": float(timestamp_s)})


def encode_metadata(request_id: str, duration_s: float) -> str:
    """A ``Metadata`` frame; fields phonepatch does not read hold fixed placeholder values."""
    metadata = {
        "type": "Metadata",
        "transaction_key": "deprecated",
        "request_id": request_id,
        "sha256": "",
        "created": "1970-01-01T00:00:00.000Z",
        "duration": float(duration_s),
        "channels": 1,
    }
    return dumps(metadata)
