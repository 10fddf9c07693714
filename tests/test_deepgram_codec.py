"""Deepgram live speech-to-text codec, grouped by PROTOCOLS.md §4 sections."""

from __future__ import annotations

import ast
import copy
import dataclasses
import importlib.util
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phonepatch.shared.errors import ProtocolError
from phonepatch.shared.protocol.deepgram import (
    CLOSE_STREAM,
    FINALIZE,
    KEEP_ALIVE,
    Metadata,
    OtherMessage,
    build_listen_url,
    encode_metadata,
    encode_results,
    encode_speech_started,
    encode_utterance_end,
    parse_control,
    parse_message,
    results_json,
)
from phonepatch.shared.speech import SpeechStarted, Transcript, UtteranceEnd, Word

FUZZ = settings(database=None, deadline=None, max_examples=75)
ROUND_TRIP = settings(database=None, deadline=None, max_examples=50)

# PROTOCOLS.md §4.4, verbatim.
RESULTS_JSON = """{
  "type": "Results",
  "channel_index": [0, 1],
  "duration": 1.12,
  "start": 4.28,
  "is_final": true,
  "speech_final": true,
  "from_finalize": false,
  "channel": {
    "alternatives": [{
      "transcript": "banana",
      "confidence": 0.93,
      "words": [{"word": "banana", "start": 4.46, "end": 4.98, "confidence": 0.93,
                 "punctuated_word": "Banana"}]
    }]
  },
  "metadata": {
    "request_id": "00000000-0000-4000-8000-000000000001",
    "model_uuid": "00000000-0000-4000-8000-000000000002",
    "model_info": {"name": "<model name>", "version": "<model version>", "arch": "<arch>"}
  }
}"""
UTTERANCE_END_JSON = '{"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": 4.98}'
SPEECH_STARTED_JSON = '{"type": "SpeechStarted", "channel": [0, 1], "timestamp": 4.4}'
METADATA_JSON = (
    '{"type": "Metadata", "transaction_key": "deprecated",\n'
    ' "request_id": "00000000-0000-4000-8000-000000000001",\n'
    ' "sha256": "<hex digest>", "created": "2026-01-01T12:00:00.000Z", '
    '"duration": 63.2, "channels": 1}'
)
EXAMPLES = [RESULTS_JSON, UTTERANCE_END_JSON, SPEECH_STARTED_JSON, METADATA_JSON]
MESSAGE_TYPES = (Transcript, UtteranceEnd, SpeechStarted, Metadata, OtherMessage)

BANANA = Transcript(
    text="banana",
    is_final=True,
    speech_final=True,
    confidence=0.93,
    words=(Word("banana", 4.46, 4.98, 0.93, "Banana"),),
    start_s=4.28,
    duration_s=1.12,
    raw_json=RESULTS_JSON,
)


def with_change(text: str, path: tuple[Any, ...], value: Any = ..., *, drop: bool = False) -> str:
    """``text`` re-serialised with the field at ``path`` replaced by ``value`` or dropped."""
    message = orjson.loads(text)
    parent = message
    for key in path[:-1]:
        parent = parent[key]
    if drop:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return orjson.dumps(message).decode()


class TestConnecting:
    """§4.1 Connecting and §4.2 query parameters: ``keyterm`` repeated once per term."""

    def test_keyterms_are_appended_to_an_existing_query(self) -> None:
        base = "wss://api.deepgram.com/v1/listen?model=nova-3&encoding=mulaw&sample_rate=8000"
        assert build_listen_url(base, keyterms=["apple", "banana"]) == (
            f"{base}&keyterm=apple&keyterm=banana"
        )

    def test_keyterms_start_a_query_when_there_is_none(self) -> None:
        assert build_listen_url("wss://dg.test/v1/listen", keyterms=["apple"]) == (
            "wss://dg.test/v1/listen?keyterm=apple"
        )

    def test_phrases_and_reserved_characters_are_percent_encoded(self) -> None:
        base = "wss://dg.test/v1/listen?model=nova-3"
        url = build_listen_url(base, keyterms=["big top", "a&b=c"])
        assert url == "wss://dg.test/v1/listen?model=nova-3&keyterm=big%20top&keyterm=a%26b%3Dc"

    def test_existing_query_is_kept_byte_for_byte(self) -> None:
        base = "wss://dg.test/v1/listen?keywords=a%3A2&tag=x+y"
        assert build_listen_url(base, keyterms=["z"]) == f"{base}&keyterm=z"

    @pytest.mark.parametrize("base", ["wss://dg.test/v1/listen?", "wss://dg.test/v1/listen?a=1&"])
    def test_trailing_separators_are_not_doubled(self, base: str) -> None:
        url = build_listen_url(base, keyterms=["z"])
        assert "?&" not in url and "&&" not in url
        assert url.endswith("keyterm=z")

    def test_no_keyterms_leaves_the_url_unchanged(self) -> None:
        base = "wss://api.deepgram.com/v1/listen?model=nova-3"
        assert build_listen_url(base) == base
        assert build_listen_url(base, keyterms=["", "  "]) == base

    @given(terms=st.lists(st.text(min_size=1, max_size=20).filter(str.strip), max_size=5))
    @ROUND_TRIP
    def test_every_term_comes_back_from_the_query(self, terms: list[str]) -> None:
        url = build_listen_url("wss://dg.test/v1/listen?model=nova-3", keyterms=terms)
        query = parse_qs(urlsplit(url).query, keep_blank_values=True)
        assert query.get("keyterm", []) == [term.strip() for term in terms]
        assert query["model"] == ["nova-3"]


class TestClientToDeepgram:
    """§4.3 Client → Deepgram control messages."""

    @pytest.mark.parametrize(
        ("frame", "kind"),
        [(KEEP_ALIVE, "KeepAlive"), (FINALIZE, "Finalize"), (CLOSE_STREAM, "CloseStream")],
    )
    def test_control_frames(self, frame: str, kind: str) -> None:
        assert orjson.loads(frame) == {"type": kind}
        assert parse_control(frame) == kind

    def test_keep_alive_is_exactly_as_documented(self) -> None:
        assert KEEP_ALIVE == '{"type":"KeepAlive"}'

    def test_parse_control_accepts_finalize_with_channel(self) -> None:
        assert parse_control('{"type": "Finalize", "channel": 0}') == "Finalize"

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ('{"type": "Results"}', "unknown type"),
            ('{"kind": "KeepAlive"}', "type is missing"),
            ("KeepAlive", "invalid JSON"),
        ],
    )
    def test_parse_control_rejects_other_frames(self, text: str, message: str) -> None:
        with pytest.raises(ProtocolError, match=message):
            parse_control(text)


class TestDeepgramToClient:
    """§4.4 Deepgram → client."""

    def test_results_example(self) -> None:
        assert parse_message(RESULTS_JSON) == BANANA

    def test_raw_json_is_the_text_exactly_as_received(self) -> None:
        transcript = parse_message(RESULTS_JSON.encode())
        assert isinstance(transcript, Transcript)
        assert transcript.raw_json == RESULTS_JSON

    def test_utterance_end_example(self) -> None:
        assert parse_message(UTTERANCE_END_JSON) == UtteranceEnd(last_word_end_s=4.98)

    def test_speech_started_example(self) -> None:
        assert parse_message(SPEECH_STARTED_JSON) == SpeechStarted(timestamp_s=4.4)

    def test_metadata_example(self) -> None:
        assert parse_message(METADATA_JSON) == Metadata(
            request_id="00000000-0000-4000-8000-000000000001", duration_s=63.2
        )

    @pytest.mark.parametrize("kind", ["Error", "Warning", "results", ""])
    def test_other_types_are_returned_not_raised(self, kind: str) -> None:
        assert parse_message(orjson.dumps({"type": kind, "x": 1})) == OtherMessage(kind)

    def test_empty_alternatives_read_as_empty_text(self) -> None:
        text = with_change(RESULTS_JSON, ("channel", "alternatives"), [])
        transcript = parse_message(text)
        assert transcript == Transcript(
            text="",
            is_final=True,
            speech_final=True,
            start_s=4.28,
            duration_s=1.12,
            raw_json=text,
        )

    def test_empty_transcript_is_a_transcript(self) -> None:
        text = with_change(RESULTS_JSON, ("channel", "alternatives", 0, "transcript"), "")
        text = with_change(text, ("channel", "alternatives", 0, "words"), [])
        transcript = parse_message(text)
        assert isinstance(transcript, Transcript)
        assert (transcript.text, transcript.words) == ("", ())

    def test_the_best_alternative_is_the_text_and_the_others_follow_it(self) -> None:
        best = orjson.loads(RESULTS_JSON)["channel"]["alternatives"][0]
        runner_up = {**best, "transcript": "bandana"}
        text = with_change(RESULTS_JSON, ("channel", "alternatives"), [best, runner_up])
        assert parse_message(text) == dataclasses.replace(
            BANANA, alternatives=("bandana",), raw_json=text
        )

    @pytest.mark.parametrize(
        ("path", "attribute", "default"),
        [
            (("speech_final",), "speech_final", False),
            (("start",), "start_s", 0.0),
            (("duration",), "duration_s", 0.0),
            (("channel", "alternatives", 0, "confidence"), "confidence", 0.0),
            (("channel", "alternatives", 0, "words"), "words", ()),
        ],
    )
    def test_optional_results_fields_have_defaults(
        self, path: tuple[Any, ...], attribute: str, default: object
    ) -> None:
        transcript = parse_message(with_change(RESULTS_JSON, path, drop=True))
        assert getattr(transcript, attribute) == default

    def test_punctuated_word_is_optional(self) -> None:
        path = ("channel", "alternatives", 0, "words", 0, "punctuated_word")
        transcript = parse_message(with_change(RESULTS_JSON, path, drop=True))
        assert isinstance(transcript, Transcript)
        assert transcript.words == (Word("banana", 4.46, 4.98, 0.93),)

    def test_unknown_fields_are_ignored(self) -> None:
        text = with_change(RESULTS_JSON, ("entities",), [{"label": "x"}])
        text = with_change(text, ("channel", "alternatives", 0, "languages"), ["en"])
        transcript = parse_message(text)
        assert isinstance(transcript, Transcript)
        assert transcript.text == "banana"

    @pytest.mark.parametrize(
        ("path", "message"),
        [
            (("type",), "message: type is missing"),
            (("is_final",), "Results: is_final is missing"),
            (("channel",), "Results: channel is missing"),
            (("channel", "alternatives"), "Results: channel.alternatives is missing"),
            (
                ("channel", "alternatives", 0, "transcript"),
                r"Results: channel.alternatives\[0\].transcript is missing",
            ),
            (
                ("channel", "alternatives", 0, "words", 0, "end"),
                r"Results: channel.alternatives\[0\].words\[0\].end is missing",
            ),
        ],
    )
    def test_missing_required_field_is_named(self, path: tuple[Any, ...], message: str) -> None:
        with pytest.raises(ProtocolError, match=f"^{message}$"):
            parse_message(with_change(RESULTS_JSON, path, drop=True))

    @pytest.mark.parametrize(
        ("text", "path", "value", "message"),
        [
            (RESULTS_JSON, ("type",), 3, "message: type must be a string"),
            (RESULTS_JSON, ("is_final",), "true", "is_final must be a boolean"),
            (RESULTS_JSON, ("is_final",), 1, "is_final must be a boolean"),
            (RESULTS_JSON, ("speech_final",), None, "speech_final must be a boolean"),
            (RESULTS_JSON, ("start",), "4.28", "start must be a number"),
            (RESULTS_JSON, ("duration",), True, "duration must be a number"),
            (RESULTS_JSON, ("channel",), [], "channel must be an object"),
            (RESULTS_JSON, ("channel", "alternatives"), {}, "alternatives must be an array"),
            (RESULTS_JSON, ("channel", "alternatives", 0), "x", r"alternatives\[0\] must be an"),
            (RESULTS_JSON, ("channel", "alternatives", 0, "words"), [1], r"words\[0\] must be"),
            (
                RESULTS_JSON,
                ("channel", "alternatives", 0, "words", 0, "punctuated_word"),
                1,
                "punctuated_word must be a string",
            ),
            (UTTERANCE_END_JSON, ("last_word_end",), None, "UtteranceEnd: last_word_end must be"),
            (SPEECH_STARTED_JSON, ("timestamp",), "4.4", "SpeechStarted: timestamp must be"),
            (METADATA_JSON, ("request_id",), 1, "Metadata: request_id must be a string"),
            (METADATA_JSON, ("duration",), {}, "Metadata: duration must be a number"),
        ],
    )
    def test_mistyped_field_is_named(
        self, text: str, path: tuple[Any, ...], value: object, message: str
    ) -> None:
        with pytest.raises(ProtocolError, match=message):
            parse_message(with_change(text, path, value))

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("", "invalid JSON"),
            ("{'type': 'Results'}", "invalid JSON"),
            (b"\xc3\x28", "invalid JSON"),
            ("[]", "not a JSON object"),
            ("1", "not a JSON object"),
        ],
    )
    def test_input_that_is_not_a_json_object_is_rejected(
        self, text: str | bytes, message: str
    ) -> None:
        with pytest.raises(ProtocolError, match=message):
            parse_message(text)


class TestResultsForV0:
    """§4.4 last paragraph: a non-Deepgram engine feeding v0 must emit the ``Results`` shape."""

    def test_raw_json_is_returned_unchanged(self) -> None:
        assert results_json(BANANA) == RESULTS_JSON

    def test_built_results_carry_what_v0_clients_read(self) -> None:
        results = orjson.loads(results_json(Transcript(text="forty two", is_final=True)))
        assert results["type"] == "Results"
        assert results["is_final"] is True
        assert results["channel"]["alternatives"][0]["transcript"] == "forty two"

    def test_built_results_have_the_documented_shape(self) -> None:
        t = Transcript(
            text="banana",
            is_final=True,
            speech_final=True,
            confidence=0.93,
            words=(Word("banana", 4.46, 4.98, 0.93, "Banana"),),
            start_s=4.28,
            duration_s=1.12,
        )
        built = orjson.loads(results_json(t))
        documented = orjson.loads(RESULTS_JSON)
        assert built.keys() == documented.keys()
        assert {key: built[key] for key in built if key != "metadata"} == {
            key: documented[key] for key in documented if key != "metadata"
        }
        assert built["metadata"].keys() == documented["metadata"].keys()
        assert isinstance(built["metadata"]["request_id"], str)

    def test_request_id_can_be_chosen(self) -> None:
        text = results_json(Transcript(text="", is_final=False), request_id="req-1")
        assert orjson.loads(text)["metadata"]["request_id"] == "req-1"


class TestIsFinalAndSpeechFinal:
    """§4.5 ``is_final``, ``speech_final`` and ``UtteranceEnd`` from a fake server."""

    @pytest.mark.parametrize(
        ("is_final", "speech_final"), [(False, False), (True, False), (True, True)]
    )
    def test_flags_pass_through(self, is_final: bool, speech_final: bool) -> None:
        text = encode_results(transcript="apple", is_final=is_final, speech_final=speech_final)
        transcript = parse_message(text)
        assert isinstance(transcript, Transcript)
        assert (transcript.is_final, transcript.speech_final) == (is_final, speech_final)

    def test_fake_results_time_words_evenly(self) -> None:
        text = encode_results(
            transcript="Hello, big world!", is_final=True, start_s=1.0, duration_s=1.5
        )
        transcript = parse_message(text)
        assert isinstance(transcript, Transcript)
        assert transcript.words == (
            Word("hello", 1.0, 1.5, 0.99, "Hello,"),
            Word("big", 1.5, 2.0, 0.99, "big"),
            Word("world", 2.0, 2.5, 0.99, "world!"),
        )

    def test_fake_results_from_empty_transcript_have_no_words(self) -> None:
        transcript = parse_message(encode_results(transcript="", is_final=True))
        assert isinstance(transcript, Transcript)
        assert (transcript.text, transcript.words) == ("", ())

    def test_utterance_end_and_speech_started_and_metadata(self) -> None:
        assert parse_message(encode_utterance_end(4.98)) == UtteranceEnd(4.98)
        assert parse_message(encode_speech_started(4.4)) == SpeechStarted(4.4)
        assert parse_message(encode_metadata("req-1", 63.2)) == Metadata("req-1", 63.2)

    def test_fake_frames_match_the_documented_keys(self) -> None:
        pairs = [
            (encode_utterance_end(4.98), UTTERANCE_END_JSON),
            (encode_speech_started(4.4), SPEECH_STARTED_JSON),
            (encode_metadata("00000000-0000-4000-8000-000000000001", 63.2), METADATA_JSON),
            (encode_results(transcript="banana", is_final=True), RESULTS_JSON),
        ]
        for encoded, documented in pairs:
            assert orjson.loads(encoded).keys() == orjson.loads(documented).keys()


# -- Properties: any input yields an event or ProtocolError; encoders round-trip ---------------

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
TIMES = st.floats(min_value=0, max_value=1e6, allow_nan=False)
FIELD_NAMES = [
    "type", "channel_index", "duration", "start", "is_final", "speech_final", "from_finalize",
    "channel", "alternatives", "transcript", "confidence", "words", "word", "end",
    "punctuated_word", "metadata", "request_id", "last_word_end", "timestamp",
]  # fmt: skip
TYPE_NAMES = ["Results", "UtteranceEnd", "SpeechStarted", "Metadata", "Error"]
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | FLOATS
    | TEXT
    | st.sampled_from(TYPE_NAMES)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(FIELD_NAMES) | TEXT, inner, max_size=4),
    max_leaves=8,
)
DROP = object()
WORDS = st.builds(
    Word,
    word=TEXT,
    start_s=TIMES,
    end_s=TIMES,
    confidence=st.floats(min_value=0, max_value=1),
    punctuated_word=st.none() | TEXT,
)


def parse_or_reject(text: str | bytes) -> object:
    """parse_message's result after checking its type, or None when it raised ProtocolError."""
    try:
        message = parse_message(text)
    except ProtocolError:
        return None
    assert isinstance(message, MESSAGE_TYPES)
    if isinstance(message, Transcript):
        assert isinstance(message.text, str)
        assert all(isinstance(word, Word) for word in message.words)
        assert message.raw_json == (text if isinstance(text, str) else text.decode())
    return message


def json_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [prefix] if prefix else []
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    else:
        items = []
    for key, child in items:
        paths += json_paths(child, (*prefix, key))
    return paths


def mutate(message: Any, path: tuple[Any, ...], replacement: Any) -> Any:
    mutated = copy.deepcopy(message)
    parent = mutated
    for key in path[:-1]:
        parent = parent[key]
    if replacement is DROP:
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement
    return mutated


class TestRobustness:
    """No input crashes the codec: it yields a message or ProtocolError (ARCHITECTURE.md §4)."""

    @given(text=st.text() | st.binary())
    @FUZZ
    def test_any_text_or_bytes(self, text: str | bytes) -> None:
        parse_or_reject(text)

    @given(
        message=st.dictionaries(st.sampled_from(FIELD_NAMES) | TEXT, JSON_VALUES, max_size=6),
        kind=st.sampled_from(TYPE_NAMES) | JSON_SCALARS,
    )
    @FUZZ
    def test_any_json_object(self, message: dict[str, Any], kind: object) -> None:
        parse_or_reject(orjson.dumps({**message, "type": kind}).decode())

    @given(data=st.data(), example=st.sampled_from(EXAMPLES))
    @FUZZ
    def test_real_messages_with_a_field_dropped_or_retyped(
        self, data: st.DataObject, example: str
    ) -> None:
        message = orjson.loads(example)
        path = data.draw(st.sampled_from(json_paths(message)))
        replacement = data.draw(st.just(DROP) | JSON_VALUES)
        parse_or_reject(orjson.dumps(mutate(message, path, replacement)))


class TestRoundTrips:
    """Encoders and ``results_json`` parse back to the values they were given."""

    @given(
        text=TEXT,
        is_final=st.booleans(),
        speech_final=st.booleans(),
        confidence=st.floats(min_value=0, max_value=1),
        words=st.lists(WORDS, max_size=4).map(tuple),
        start_s=TIMES,
        duration_s=TIMES,
        alternatives=st.lists(TEXT, max_size=3).map(tuple),
    )
    @ROUND_TRIP
    def test_results_json_of_a_neutral_transcript(self, **values: Any) -> None:
        t = Transcript(**values)
        text = results_json(t)
        assert parse_message(text) == Transcript(**values, raw_json=text)

    @given(
        transcript=TEXT,
        is_final=st.booleans(),
        speech_final=st.booleans(),
        start_s=TIMES,
        duration_s=TIMES,
        confidence=st.floats(min_value=0, max_value=1),
    )
    @ROUND_TRIP
    def test_encode_results(
        self,
        transcript: str,
        is_final: bool,
        speech_final: bool,
        start_s: float,
        duration_s: float,
        confidence: float,
    ) -> None:
        text = encode_results(
            transcript=transcript,
            is_final=is_final,
            speech_final=speech_final,
            start_s=start_s,
            duration_s=duration_s,
            confidence=confidence,
        )
        parsed = parse_message(text)
        assert isinstance(parsed, Transcript)
        assert (parsed.text, parsed.is_final, parsed.speech_final) == (
            transcript,
            is_final,
            speech_final,
        )
        assert (parsed.start_s, parsed.duration_s, parsed.confidence) == (
            start_s,
            duration_s,
            confidence,
        )
        assert [word.punctuated_word for word in parsed.words] == transcript.split()

    @given(seconds=TIMES, request_id=TEXT)
    @ROUND_TRIP
    def test_other_fake_server_frames(self, seconds: float, request_id: str) -> None:
        assert parse_message(encode_utterance_end(seconds)) == UtteranceEnd(seconds)
        assert parse_message(encode_speech_started(seconds)) == SpeechStarted(seconds)
        assert parse_message(encode_metadata(request_id, seconds)) == Metadata(request_id, seconds)


# -- STYLE.md: shared/protocol imports no I/O or clock ---------------------------------------

FORBIDDEN_IMPORTS = {"aiohttp", "asyncio", "datetime", "redis", "socket", "time", "websockets"}


def imported_modules(module_name: str) -> set[str]:
    """What ``module_name`` imports, following imports of phonepatch modules transitively."""
    found: set[str] = set()
    pending, seen = [module_name], set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None
        for node in ast.walk(ast.parse(Path(spec.origin).read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            found.update(names)
            pending += [imported for imported in names if imported.startswith("phonepatch.")]
    return found


def test_codec_imports_no_io_or_clock() -> None:
    imported = imported_modules("phonepatch.shared.protocol.deepgram")
    assert {name.split(".")[0] for name in imported}.isdisjoint(FORBIDDEN_IMPORTS)
