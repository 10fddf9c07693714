"""Twilio Media Streams codec, grouped by PROTOCOLS.md §1 sections."""

from __future__ import annotations

import ast
import base64
import copy
import importlib.util
from dataclasses import fields
from pathlib import Path
from typing import Any, get_type_hints

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phonepatch.shared.errors import ProtocolError
from phonepatch.shared.protocol.twilio_media import (
    FRAME_BYTES,
    FRAME_MS,
    MULAW_SILENCE,
    SAMPLE_RATE_HZ,
    Connected,
    Dtmf,
    Mark,
    Media,
    MediaFormat,
    OutboundClear,
    OutboundMark,
    OutboundMedia,
    Start,
    Stop,
    UnknownEvent,
    encode_clear,
    encode_connected,
    encode_dtmf,
    encode_inbound_media,
    encode_mark,
    encode_mark_echo,
    encode_media,
    encode_start,
    encode_stop,
    parse_event,
    parse_outbound,
)

FUZZ = settings(database=None, deadline=None, max_examples=75)
ROUND_TRIP = settings(database=None, deadline=None, max_examples=50)

STREAM_SID = "MZ1111aaaa2222bbbb3333cccc4444dddd"
ACCOUNT_SID = "AC00000000000000000000000000000000"
CALL_SID = "CA5555eeee6666ffff7777aaaa8888bbbb"
SILENT_FRAME_B64 = "/" * 212 + "/w=="  # §0: a silent 20 ms frame

# PROTOCOLS.md §1.2, verbatim.
CONNECTED_JSON = '{"event": "connected", "protocol": "Call", "version": "1.0.0"}'
START_JSON = """{
  "event": "start",
  "sequenceNumber": "1",
  "streamSid": "MZ1111aaaa2222bbbb3333cccc4444dddd",
  "start": {
    "streamSid": "MZ1111aaaa2222bbbb3333cccc4444dddd",
    "accountSid": "AC00000000000000000000000000000000",
    "callSid": "CA5555eeee6666ffff7777aaaa8888bbbb",
    "tracks": ["inbound"],
    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    "customParameters": {"call_token": "q3Vx9w"}
  }
}"""
# §1.2 elides the payload as "////////…///w=="; this is the full silent frame it abbreviates.
MEDIA_JSON = """{
  "event": "media",
  "sequenceNumber": "2",
  "streamSid": "MZ1111aaaa2222bbbb3333cccc4444dddd",
  "media": {"track": "inbound", "chunk": "1", "timestamp": "20", "payload": "%s"}
}""" % SILENT_FRAME_B64
DTMF_JSON = '{"event": "dtmf", "sequenceNumber": "57", "streamSid": "MZ1111aaaa2222bbbb3333cccc4444dddd", "dtmf": {"track": "inbound_track", "digit": "4"}}'  # noqa: E501
MARK_JSON = '{"event": "mark", "sequenceNumber": "90", "streamSid": "MZ1111aaaa2222bbbb3333cccc4444dddd", "mark": {"name": "say-17"}}'  # noqa: E501
STOP_JSON = '{"event": "stop", "sequenceNumber": "212", "streamSid": "MZ1111aaaa2222bbbb3333cccc4444dddd", "stop": {"accountSid": "AC00000000000000000000000000000000", "callSid": "CA5555eeee6666ffff7777aaaa8888bbbb"}}'  # noqa: E501
INBOUND_EXAMPLES = [CONNECTED_JSON, START_JSON, MEDIA_JSON, DTMF_JSON, MARK_JSON, STOP_JSON]

# PROTOCOLS.md §1.3, verbatim except the media payload, elided there as "f39+fn5/f39/…".
OUTBOUND_MEDIA_JSON = '{"event": "media", "streamSid": "MZ1111aaaa2222bbbb3333cccc4444dddd", "media": {"payload": "f39+fn5/f39/"}}'  # noqa: E501
OUTBOUND_MARK_JSON = '{"event": "mark", "streamSid": "MZ1111aaaa2222bbbb3333cccc4444dddd", "mark": {"name": "say-17"}}'  # noqa: E501
OUTBOUND_CLEAR_JSON = '{"event": "clear", "streamSid": "MZ1111aaaa2222bbbb3333cccc4444dddd"}'
OUTBOUND_EXAMPLES = [OUTBOUND_MEDIA_JSON, OUTBOUND_MARK_JSON, OUTBOUND_CLEAR_JSON]

INBOUND_TYPES = (Connected, Start, Media, Dtmf, Mark, Stop, UnknownEvent)
OUTBOUND_TYPES = (OutboundMedia, OutboundMark, OutboundClear)


def with_change(text: str, path: tuple[str, ...], value: Any = ..., *, drop: bool = False) -> str:
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


def assert_well_typed(event: object) -> None:
    """Every str/int/bytes field of a parsed event holds exactly that type."""
    hints = get_type_hints(type(event))
    for item in fields(event):
        hint, value = hints[item.name], getattr(event, item.name)
        if hint in (str, int, bytes):
            assert type(value) is hint, item.name


class TestLifecycleAndOrdering:
    """§1.1 Lifecycle and ordering."""

    def test_connected_has_no_stream_sid_or_sequence_number(self) -> None:
        assert parse_event(encode_connected()) == Connected(protocol="Call", version="1.0.0")

    def test_counters_are_read_from_strings(self) -> None:
        media = parse_event(MEDIA_JSON)
        assert isinstance(media, Media)
        assert (media.sequence_number, media.chunk, media.timestamp_ms) == (2, 1, 20)

    def test_counters_sent_as_json_integers_are_accepted(self) -> None:
        text = with_change(with_change(MEDIA_JSON, ("sequenceNumber",), 2), ("media", "chunk"), 1)
        assert parse_event(text) == parse_event(MEDIA_JSON)

    @pytest.mark.parametrize(
        "bad", ["", "-1", "1.5", " 1", "0x10", "١", "9" * 19, "1" * 20, -1, 1.5, True]
    )
    def test_counter_that_is_not_a_non_negative_integer_is_rejected(self, bad: object) -> None:
        with pytest.raises(ProtocolError, match="media event: sequenceNumber must be"):
            parse_event(with_change(MEDIA_JSON, ("sequenceNumber",), bad))

    def test_a_whole_stream_parses_in_order(self) -> None:
        frames = [
            encode_connected(),
            encode_start(stream_sid=STREAM_SID, call_sid=CALL_SID, account_sid=ACCOUNT_SID),
            encode_inbound_media(
                stream_sid=STREAM_SID, sequence_number=2, chunk=1, timestamp_ms=20, payload=b"\xff"
            ),
            encode_dtmf(stream_sid=STREAM_SID, sequence_number=3, digit="#"),
            encode_mark_echo(stream_sid=STREAM_SID, sequence_number=4, name="say-1"),
            encode_stop(
                stream_sid=STREAM_SID, sequence_number=5, call_sid=CALL_SID, account_sid=ACCOUNT_SID
            ),
        ]
        events = [parse_event(frame) for frame in frames]
        assert [type(event) for event in events] == [Connected, Start, Media, Dtmf, Mark, Stop]
        assert [getattr(event, "sequence_number", 0) for event in events] == [0, 1, 2, 3, 4, 5]


class TestMessagesFromTwilio:
    """§1.2 Messages from Twilio."""

    def test_connected_example(self) -> None:
        assert parse_event(CONNECTED_JSON) == Connected(protocol="Call", version="1.0.0")

    def test_start_example(self) -> None:
        assert parse_event(START_JSON) == Start(
            stream_sid=STREAM_SID,
            sequence_number=1,
            call_sid=CALL_SID,
            account_sid=ACCOUNT_SID,
            tracks=("inbound",),
            media_format=MediaFormat(encoding="audio/x-mulaw", sample_rate_hz=8000, channels=1),
            custom_parameters=(("call_token", "q3Vx9w"),),
        )

    def test_media_example(self) -> None:
        assert parse_event(MEDIA_JSON) == Media(
            stream_sid=STREAM_SID,
            sequence_number=2,
            track="inbound",
            chunk=1,
            timestamp_ms=20,
            payload=bytes([MULAW_SILENCE]) * FRAME_BYTES,
        )

    def test_dtmf_example(self) -> None:
        assert parse_event(DTMF_JSON) == Dtmf(stream_sid=STREAM_SID, sequence_number=57, digit="4")

    def test_mark_example(self) -> None:
        assert parse_event(MARK_JSON) == Mark(
            stream_sid=STREAM_SID, sequence_number=90, name="say-17"
        )

    def test_stop_example(self) -> None:
        assert parse_event(STOP_JSON) == Stop(
            stream_sid=STREAM_SID, sequence_number=212, call_sid=CALL_SID, account_sid=ACCOUNT_SID
        )

    def test_bytes_input_parses_like_text(self) -> None:
        assert parse_event(START_JSON.encode()) == parse_event(START_JSON)

    def test_unknown_event_is_returned_not_raised(self) -> None:
        assert parse_event('{"event": "hologram", "streamSid": 7}') == UnknownEvent("hologram")

    def test_unknown_extra_fields_are_ignored(self) -> None:
        text = with_change(with_change(MARK_JSON, ("extra",), [1]), ("mark", "extra"), {})
        assert parse_event(text) == parse_event(MARK_JSON)

    def test_custom_parameter_lookup(self) -> None:
        start = parse_event(START_JSON)
        assert isinstance(start, Start)
        assert start.custom_parameter("call_token") == "q3Vx9w"
        assert start.custom_parameter("absent") is None

    def test_missing_custom_parameters_read_as_none(self) -> None:
        start = parse_event(with_change(START_JSON, ("start", "customParameters"), drop=True))
        assert isinstance(start, Start)
        assert start.custom_parameters == ()

    def test_sample_rate_as_float_number_is_accepted(self) -> None:
        start = parse_event(with_change(START_JSON, ("start", "mediaFormat", "sampleRate"), 8000.0))
        assert isinstance(start, Start)
        assert start.media_format.sample_rate_hz == SAMPLE_RATE_HZ

    def test_start_stream_sid_may_be_absent_but_must_not_differ(self) -> None:
        assert parse_event(with_change(START_JSON, ("start", "streamSid"), drop=True)) == (
            parse_event(START_JSON)
        )
        with pytest.raises(ProtocolError, match="start.streamSid differs"):
            parse_event(with_change(START_JSON, ("start", "streamSid"), "MZother"))

    @pytest.mark.parametrize("track", ["inbound", "outbound_track", None])
    def test_dtmf_track_is_not_checked(self, track: str | None) -> None:
        text = with_change(DTMF_JSON, ("dtmf", "track"), track, drop=track is None)
        assert parse_event(text) == parse_event(DTMF_JSON)

    @pytest.mark.parametrize("digit", ["", "12", 4])
    def test_dtmf_digit_must_be_one_character(self, digit: object) -> None:
        with pytest.raises(ProtocolError, match="dtmf event: dtmf.digit must be"):
            parse_event(with_change(DTMF_JSON, ("dtmf", "digit"), digit))

    @pytest.mark.parametrize(
        ("text", "path", "message"),
        [
            (CONNECTED_JSON, ("protocol",), "connected event: protocol is missing"),
            (START_JSON, ("streamSid",), "start event: streamSid is missing"),
            (START_JSON, ("start", "callSid"), "start event: start.callSid is missing"),
            (START_JSON, ("start", "mediaFormat"), "start event: start.mediaFormat is missing"),
            (START_JSON, ("start", "tracks"), "start event: start.tracks is missing"),
            (MEDIA_JSON, ("media", "payload"), "media event: media.payload is missing"),
            (MEDIA_JSON, ("media", "timestamp"), "media event: media.timestamp is missing"),
            (MEDIA_JSON, ("sequenceNumber",), "media event: sequenceNumber is missing"),
            (DTMF_JSON, ("dtmf",), "dtmf event: dtmf is missing"),
            (MARK_JSON, ("mark", "name"), "mark event: mark.name is missing"),
            (STOP_JSON, ("stop", "accountSid"), "stop event: stop.accountSid is missing"),
            (STOP_JSON, ("event",), "message: event is missing"),
        ],
    )
    def test_missing_field_is_named(self, text: str, path: tuple[str, ...], message: str) -> None:
        with pytest.raises(ProtocolError, match=f"^{message}$"):
            parse_event(with_change(text, path, drop=True))

    @pytest.mark.parametrize(
        ("text", "path", "value", "message"),
        [
            (CONNECTED_JSON, ("event",), 1, "message: event must be a string"),
            (START_JSON, ("start",), "x", "start event: start must be an object"),
            (START_JSON, ("start", "tracks"), "inbound", "start.tracks must be an array"),
            (START_JSON, ("start", "tracks"), [1], "start.tracks must be an array of strings"),
            (START_JSON, ("start", "customParameters"), {"a": 1}, "must map names to strings"),
            (START_JSON, ("start", "mediaFormat", "channels"), "one", "channels must be"),
            (START_JSON, ("start", "mediaFormat", "sampleRate"), 8000.5, "sampleRate must be"),
            (MEDIA_JSON, ("streamSid",), None, "media event: streamSid must be a string"),
            (MEDIA_JSON, ("media", "payload"), 5, "media.payload must be a string"),
            (MARK_JSON, ("mark",), ["say-17"], "mark event: mark must be an object"),
        ],
    )
    def test_mistyped_field_is_named(
        self, text: str, path: tuple[str, ...], value: object, message: str
    ) -> None:
        with pytest.raises(ProtocolError, match=message):
            parse_event(with_change(text, path, value))

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("", "invalid JSON"),
            ("{", "invalid JSON"),
            (b"\xff\xfe", "invalid JSON"),
            ("\ud800", "invalid JSON"),
            ("[]", "not a JSON object"),
            ('"media"', "not a JSON object"),
            ("null", "not a JSON object"),
        ],
    )
    def test_input_that_is_not_a_json_object_is_rejected(
        self, text: str | bytes, message: str
    ) -> None:
        with pytest.raises(ProtocolError, match=message):
            parse_event(text)

    def test_media_payload_is_not_in_repr(self) -> None:
        assert "payload" not in repr(parse_event(MEDIA_JSON))


class TestMessagesToTwilio:
    """§1.3 Messages to Twilio: exactly the documented fields."""

    def test_media_has_exactly_the_documented_fields(self) -> None:
        assert orjson.loads(encode_media(STREAM_SID, b"\x7f\x7f~~~\x7f\x7f\x7f\x7f")) == (
            orjson.loads(OUTBOUND_MEDIA_JSON)
        )

    def test_mark_has_exactly_the_documented_fields(self) -> None:
        assert orjson.loads(encode_mark(STREAM_SID, "say-17")) == orjson.loads(OUTBOUND_MARK_JSON)

    def test_clear_has_exactly_the_documented_fields(self) -> None:
        assert orjson.loads(encode_clear(STREAM_SID)) == orjson.loads(OUTBOUND_CLEAR_JSON)

    def test_encoders_return_compact_text(self) -> None:
        assert encode_clear(STREAM_SID) == OUTBOUND_CLEAR_JSON.replace(" ", "")

    def test_parse_outbound_examples(self) -> None:
        assert [parse_outbound(text) for text in OUTBOUND_EXAMPLES] == [
            OutboundMedia(STREAM_SID, base64.b64decode("f39+fn5/f39/")),
            OutboundMark(STREAM_SID, "say-17"),
            OutboundClear(STREAM_SID),
        ]

    @pytest.mark.parametrize(
        ("text", "path", "message"),
        [
            (OUTBOUND_CLEAR_JSON, ("sequenceNumber",), "outbound clear: sequenceNumber is not"),
            (OUTBOUND_MARK_JSON, ("mark", "track"), "outbound mark: mark.track is not"),
            (OUTBOUND_MEDIA_JSON, ("media", "track"), "outbound media: media.track is not"),
            (OUTBOUND_MEDIA_JSON, ("mark",), "outbound media: mark is not"),
        ],
    )
    def test_parse_outbound_rejects_extra_fields(
        self, text: str, path: tuple[str, ...], message: str
    ) -> None:
        """Twilio answers an unexpected field with warning 31951, so test peers must too."""
        with pytest.raises(ProtocolError, match=message):
            parse_outbound(with_change(text, path, "inbound"))

    @pytest.mark.parametrize(
        ("text", "path", "message"),
        [
            (OUTBOUND_CLEAR_JSON, ("streamSid",), "outbound clear: streamSid is missing"),
            (OUTBOUND_MARK_JSON, ("mark", "name"), "outbound mark: mark.name is missing"),
            (OUTBOUND_MEDIA_JSON, ("media",), "outbound media: media is missing"),
            (OUTBOUND_MEDIA_JSON, ("event",), "outbound message: event is missing"),
        ],
    )
    def test_parse_outbound_rejects_missing_fields(
        self, text: str, path: tuple[str, ...], message: str
    ) -> None:
        with pytest.raises(ProtocolError, match=message):
            parse_outbound(with_change(text, path, drop=True))

    @pytest.mark.parametrize("event", ["connected", "start", "stop", "dtmf", "Clear"])
    def test_parse_outbound_rejects_events_twilio_does_not_accept(self, event: str) -> None:
        with pytest.raises(ProtocolError, match="unknown event"):
            parse_outbound(with_change(OUTBOUND_CLEAR_JSON, ("event",), event))

    def test_parse_outbound_checks_payload_base64(self) -> None:
        with pytest.raises(ProtocolError, match="bad base64 in media.payload"):
            parse_outbound(with_change(OUTBOUND_MEDIA_JSON, ("media", "payload"), "f39+fn5/f39"))


class TestFramingAndPacing:
    """§1.5 Framing and pacing (and the numbers of §0)."""

    def test_constants(self) -> None:
        assert (FRAME_BYTES, SAMPLE_RATE_HZ, FRAME_MS, MULAW_SILENCE) == (160, 8000, 20, 0xFF)
        assert FRAME_BYTES == SAMPLE_RATE_HZ * FRAME_MS // 1000

    def test_silent_frame_encodes_as_documented(self) -> None:
        sent = orjson.loads(encode_media(STREAM_SID, bytes([MULAW_SILENCE]) * FRAME_BYTES))
        assert sent["media"]["payload"] == SILENT_FRAME_B64

    @given(frame=st.binary(min_size=FRAME_BYTES, max_size=FRAME_BYTES))
    @ROUND_TRIP
    def test_a_frame_is_216_base64_characters_ending_in_padding(self, frame: bytes) -> None:
        payload = orjson.loads(encode_media(STREAM_SID, frame))["media"]["payload"]
        assert len(payload) == 216
        assert payload.endswith("==")

    @pytest.mark.parametrize("payload", ["", "/w==", "AAAA" * 1000])
    def test_any_payload_length_is_accepted(self, payload: str) -> None:
        media = parse_event(with_change(MEDIA_JSON, ("media", "payload"), payload))
        assert isinstance(media, Media)
        assert media.payload == base64.b64decode(payload)

    @pytest.mark.parametrize(
        "payload",
        ["////" + "@@@@", "/w=", "/w", "/w===", "/w==/w==", "/ w==", "/w==\n", "//-_", "//é="],
    )
    def test_bad_base64_is_rejected(self, payload: str) -> None:
        with pytest.raises(ProtocolError, match="^bad base64 in media.payload$"):
            parse_event(with_change(MEDIA_JSON, ("media", "payload"), payload))


# -- Properties: any input yields an event or ProtocolError; encoders round-trip ---------------

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
SIDS = st.sampled_from([STREAM_SID, CALL_SID, ACCOUNT_SID]) | TEXT
COUNTERS = st.integers(min_value=0, max_value=2**63 - 1)
FIELD_NAMES = [
    "event", "streamSid", "sequenceNumber", "start", "media", "dtmf", "mark", "stop",
    "protocol", "version", "accountSid", "callSid", "tracks", "customParameters",
    "mediaFormat", "encoding", "sampleRate", "channels", "track", "chunk", "timestamp",
    "payload", "digit", "name",
]  # fmt: skip
EVENT_NAMES = ["connected", "start", "media", "dtmf", "mark", "stop", "clear"]
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
    | st.sampled_from(["1", "20", SILENT_FRAME_B64, "4", *EVENT_NAMES])
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(FIELD_NAMES) | TEXT, inner, max_size=4),
    max_leaves=8,
)
DROP = object()


def parse_or_reject(text: str | bytes) -> object:
    """parse_event's result after checking its type, or None when it raised ProtocolError."""
    try:
        event = parse_event(text)
    except ProtocolError:
        return None
    assert isinstance(event, INBOUND_TYPES)
    assert_well_typed(event)
    return event


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
    """§8 and ARCHITECTURE.md §4: no input crashes the codec; it gets an event or ProtocolError."""

    @given(text=st.text() | st.binary())
    @FUZZ
    def test_any_text_or_bytes(self, text: str | bytes) -> None:
        parse_or_reject(text)

    @given(
        message=st.dictionaries(st.sampled_from(FIELD_NAMES) | TEXT, JSON_VALUES, max_size=6),
        event=st.sampled_from(EVENT_NAMES) | JSON_SCALARS,
    )
    @FUZZ
    def test_any_json_object(self, message: dict[str, Any], event: object) -> None:
        parse_or_reject(orjson.dumps({**message, "event": event}))

    @given(data=st.data(), example=st.sampled_from(INBOUND_EXAMPLES))
    @FUZZ
    def test_real_messages_with_a_field_dropped_or_retyped(
        self, data: st.DataObject, example: str
    ) -> None:
        message = orjson.loads(example)
        path = data.draw(st.sampled_from(json_paths(message)))
        replacement = data.draw(st.just(DROP) | JSON_VALUES)
        parse_or_reject(orjson.dumps(mutate(message, path, replacement)))

    @given(data=st.data(), example=st.sampled_from(OUTBOUND_EXAMPLES))
    @FUZZ
    def test_outbound_parser_on_mutated_messages(self, data: st.DataObject, example: str) -> None:
        message = orjson.loads(example)
        path = data.draw(st.sampled_from(json_paths(message)))
        replacement = data.draw(st.just(DROP) | JSON_VALUES)
        try:
            parsed = parse_outbound(orjson.dumps(mutate(message, path, replacement)))
        except ProtocolError:
            return
        assert isinstance(parsed, OUTBOUND_TYPES)
        assert_well_typed(parsed)


class TestRoundTrips:
    """Every encoder's output parses back to the values it was given."""

    @given(
        stream_sid=SIDS,
        call_sid=SIDS,
        account_sid=SIDS,
        sequence_number=COUNTERS,
        parameters=st.dictionaries(TEXT, TEXT, max_size=4),
    )
    @ROUND_TRIP
    def test_start(
        self,
        stream_sid: str,
        call_sid: str,
        account_sid: str,
        sequence_number: int,
        parameters: dict[str, str],
    ) -> None:
        text = encode_start(
            stream_sid=stream_sid,
            call_sid=call_sid,
            account_sid=account_sid,
            sequence_number=sequence_number,
            custom_parameters=parameters,
        )
        assert parse_event(text) == Start(
            stream_sid=stream_sid,
            sequence_number=sequence_number,
            call_sid=call_sid,
            account_sid=account_sid,
            tracks=("inbound",),
            media_format=MediaFormat("audio/x-mulaw", SAMPLE_RATE_HZ, 1),
            custom_parameters=tuple(parameters.items()),
        )

    def test_start_accepts_pairs_from_a_parsed_start(self) -> None:
        start = parse_event(START_JSON)
        assert isinstance(start, Start)
        text = encode_start(
            stream_sid=start.stream_sid,
            call_sid=start.call_sid,
            account_sid=start.account_sid,
            custom_parameters=start.custom_parameters,
        )
        assert parse_event(text) == start

    @given(
        stream_sid=SIDS,
        sequence_number=COUNTERS,
        chunk=COUNTERS,
        timestamp_ms=COUNTERS,
        payload=st.binary(max_size=4 * FRAME_BYTES),
    )
    @ROUND_TRIP
    def test_inbound_media(
        self, stream_sid: str, sequence_number: int, chunk: int, timestamp_ms: int, payload: bytes
    ) -> None:
        text = encode_inbound_media(
            stream_sid=stream_sid,
            sequence_number=sequence_number,
            chunk=chunk,
            timestamp_ms=timestamp_ms,
            payload=payload,
        )
        assert parse_event(text) == Media(
            stream_sid, sequence_number, "inbound", chunk, timestamp_ms, payload
        )

    @given(stream_sid=SIDS, sequence_number=COUNTERS, digit=st.sampled_from("0123456789*#"))
    @ROUND_TRIP
    def test_dtmf(self, stream_sid: str, sequence_number: int, digit: str) -> None:
        text = encode_dtmf(stream_sid=stream_sid, sequence_number=sequence_number, digit=digit)
        assert parse_event(text) == Dtmf(stream_sid, sequence_number, digit)

    @given(stream_sid=SIDS, sequence_number=COUNTERS, name=TEXT)
    @ROUND_TRIP
    def test_mark_echo(self, stream_sid: str, sequence_number: int, name: str) -> None:
        text = encode_mark_echo(stream_sid=stream_sid, sequence_number=sequence_number, name=name)
        assert parse_event(text) == Mark(stream_sid, sequence_number, name)

    @given(stream_sid=SIDS, sequence_number=COUNTERS, call_sid=SIDS, account_sid=SIDS)
    @ROUND_TRIP
    def test_stop(self, stream_sid: str, sequence_number: int, call_sid: str, account_sid: str):
        text = encode_stop(
            stream_sid=stream_sid,
            sequence_number=sequence_number,
            call_sid=call_sid,
            account_sid=account_sid,
        )
        assert parse_event(text) == Stop(stream_sid, sequence_number, call_sid, account_sid)

    @given(stream_sid=SIDS, payload=st.binary(max_size=4 * FRAME_BYTES), name=TEXT)
    @ROUND_TRIP
    def test_outbound(self, stream_sid: str, payload: bytes, name: str) -> None:
        media = OutboundMedia(stream_sid, payload)
        assert parse_outbound(encode_media(stream_sid, payload)) == media
        assert parse_outbound(encode_mark(stream_sid, name)) == OutboundMark(stream_sid, name)
        assert parse_outbound(encode_clear(stream_sid)) == OutboundClear(stream_sid)


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
    imported = imported_modules("phonepatch.shared.protocol.twilio_media")
    assert {name.split(".")[0] for name in imported}.isdisjoint(FORBIDDEN_IMPORTS)
