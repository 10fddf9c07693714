"""Logging: secrets and caller numbers never reach output; JSON lines carry level, time and context."""

from __future__ import annotations

import asyncio
import gc
import io
import logging
import re
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest
import structlog
import uvloop
from structlog.contextvars import bound_contextvars
from structlog.testing import capture_logs

from phonepatch.shared.config import Secret
from phonepatch.shared.logs import configure_logging, get_logger, mask_phone_number, redact

API_KEY = "dg-secret-0123456789abcdef"
CALLER = "+15551230000"
CALL_SID = "CA" + "0123456789abcdef" * 2
STREAM_SID = "MZ" + "fedcba9876543210" * 2
TIMESTAMP = "2024-05-01T12:34:56.789012Z"
MASK = "**********"


def redacted(**fields: Any) -> dict[str, Any]:
    return dict(redact(None, "info", {"event": "test_event", **fields}))


def flatten(value: Any) -> str:
    """Every string inside ``value`` (keys included) joined, so a leak anywhere is found."""
    return orjson.dumps(value, default=repr).decode()


class TestSecretKeys:
    @pytest.mark.parametrize(
        "key", ["api_key", "apikey", "auth_token", "authorization", "Authorization", "password",
                "deepgram_api_key", "token", "client_secret"]
    )
    def test_secret_named_key_is_masked(self, key: str) -> None:
        assert redacted(**{key: API_KEY})[key] == MASK

    def test_secret_named_key_inside_nested_dict_is_masked(self) -> None:
        event = redacted(request={"headers": {"Authorization": f"Token {API_KEY}"}, "path": "/v1"})
        assert event["request"]["headers"]["Authorization"] == MASK
        assert event["request"]["path"] == "/v1"

    def test_secret_named_key_holding_a_dict_is_masked_whole(self) -> None:
        event = redacted(authorization={"scheme": "Token", "credentials": API_KEY})
        assert API_KEY not in flatten(event)

    def test_secret_named_key_holding_a_list_is_masked(self) -> None:
        assert API_KEY not in flatten(redacted(api_keys=[API_KEY, "other"]))

    def test_secret_named_non_string_is_masked(self) -> None:
        assert redacted(password=123456)["password"] == MASK

    def test_empty_secret_stays_visibly_empty(self) -> None:
        """An absent key is worth seeing in a log line; there is nothing to hide."""
        assert redacted(api_key=None)["api_key"] is None
        assert redacted(api_key="")["api_key"] == ""


class TestPhoneNumbers:
    @pytest.mark.parametrize("key", ["from", "to", "caller", "called", "phone", "phone_number",
                                     "twilio_phone_number", "From"])
    def test_number_under_a_phone_key_is_masked(self, key: str) -> None:
        value = redacted(**{key: CALLER})[key]
        assert CALLER not in value
        assert value.endswith("00")

    def test_number_inside_free_text_is_masked(self) -> None:
        note = redacted(note=f"call from {CALLER} was patched")["note"]
        assert CALLER not in note
        assert note.startswith("call from +") and note.endswith("00 was patched")

    def test_number_in_the_event_name_is_masked(self) -> None:
        assert CALLER not in redact(None, "info", {"event": f"dialled {CALLER}"})["event"]

    def test_numbers_in_nested_dicts_and_lists_are_masked(self) -> None:
        event = redacted(
            call={"participants": [CALLER, {"number": "+447700900123"}], "note": f"to {CALLER}"},
            history=(CALLER, "+15559876543"),
        )
        text = flatten(event)
        for number in (CALLER, "+447700900123", "+15559876543", "5551230000", "7700900123"):
            assert number not in text

    def test_number_written_with_spaces_or_dashes_is_masked(self) -> None:
        assert "555" not in redacted(note="ring +1 555-123-0000 now")["note"]

    def test_mask_keeps_only_the_last_two_digits(self) -> None:
        masked = mask_phone_number(CALLER)
        assert masked == "+" + "*" * 9 + "00"
        assert mask_phone_number("+447700900123").endswith("23")

    def test_mask_of_a_string_without_digits_hides_it(self) -> None:
        assert mask_phone_number("anonymous") == MASK


class TestOrdinaryValues:
    @pytest.mark.parametrize(
        ("key", "value"),
        [
            ("call_sid", CALL_SID),
            ("stream_sid", STREAM_SID),
            ("code", "42"),
            ("at", TIMESTAMP),
            ("at", "2024-05-01T12:34:56+00:00"),
            ("reason", "going away"),
            ("frames", 1234567),
            ("duration_s", 12.5),
            ("transcript", "my code is forty two"),
        ],
    )
    def test_value_is_untouched(self, key: str, value: Any) -> None:
        assert redacted(**{key: value})[key] == value

    def test_event_name_is_untouched(self) -> None:
        assert redacted()["event"] == "test_event"


class TestCaptureLogs:
    """``capture_logs`` swaps the processor chain, so ``redact`` is added to it explicitly here."""

    def test_logged_event_reaches_output_redacted(self) -> None:
        with capture_logs(processors=[redact]) as logs:
            get_logger("test").info(
                "call_started", call_sid=CALL_SID, caller=CALLER, api_key=API_KEY,
                detail={"history": [f"from {CALLER}"]},
            )
        [entry] = logs
        assert entry["event"] == "call_started"
        assert entry["call_sid"] == CALL_SID
        assert entry["log_level"] == "info"
        assert entry["api_key"] == MASK
        assert CALLER not in flatten(entry)
        assert API_KEY not in flatten(entry)


@pytest.fixture
def json_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], tuple[io.TextIOWrapper, Any]]]:
    """Factory: configure JSON logging into a binary-backed stream; structlog's defaults, the
    stdlib root logger, warnings and the interpreter's exception hooks return after."""
    for module, hook in ((sys, "excepthook"), (sys, "unraisablehook"), (threading, "excepthook")):
        monkeypatch.setattr(module, hook, getattr(module, hook))
    root, picows = logging.getLogger(), logging.getLogger("picows")
    levels = root.level, picows.level

    def configure(level: str) -> tuple[io.TextIOWrapper, Any]:
        stream = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
        configure_logging(level, stream)
        return stream, get_logger("test")

    try:
        yield configure
    finally:
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()
        logging.captureWarnings(False)
        for handler in json_handlers():
            root.removeHandler(handler)
        root.setLevel(levels[0])
        picows.setLevel(levels[1])


def json_handlers() -> list[logging.Handler]:
    """The root handlers ``configure_logging`` installed (pytest keeps its own there too)."""
    return [h for h in logging.getLogger().handlers if isinstance(h.formatter, structlog.stdlib.ProcessorFormatter)]


def raw_output(stream: io.TextIOWrapper) -> bytes:
    return stream.buffer.getvalue()  # type: ignore[attr-defined]


def lines(stream: io.TextIOWrapper) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in raw_output(stream).splitlines()]


class TestJsonOutput:
    def test_each_line_is_json_with_event_level_and_utc_timestamp(self, json_logs: Any) -> None:
        stream, log = json_logs("info")
        before = datetime.now().astimezone()
        log.info("code_taken", code="42")
        [line] = lines(stream)
        assert line["event"] == "code_taken"
        assert line["level"] == "info"
        assert line["code"] == "42"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", line["timestamp"])
        stamped = datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00"))
        assert stamped.utcoffset() == timedelta(0)
        assert before - timedelta(minutes=1) < stamped < before + timedelta(minutes=1)

    def test_bound_context_appears_and_unbinds_on_exit(self, json_logs: Any) -> None:
        stream, log = json_logs("info")
        with bound_contextvars(code="42", call_sid=CALL_SID):
            log.info("call_patched")
        log.info("after_session")
        inside, after = lines(stream)
        assert (inside["code"], inside["call_sid"]) == ("42", CALL_SID)
        assert "code" not in after and "call_sid" not in after

    def test_secrets_and_numbers_never_reach_the_bytes(self, json_logs: Any) -> None:
        stream, log = json_logs("info")
        with bound_contextvars(caller=CALLER):
            log.info(
                "provider_connect", api_key=API_KEY, key=Secret(API_KEY),
                headers={"Authorization": f"Token {API_KEY}"}, note=f"call from {CALLER}",
            )
        raw = raw_output(stream)
        assert API_KEY.encode() not in raw
        assert CALLER.encode() not in raw
        assert b"5551230000" not in raw
        [line] = lines(stream)
        assert line["event"] == "provider_connect"

    def test_numbers_in_exception_text_are_masked(self, json_logs: Any) -> None:
        stream, log = json_logs("info")
        try:
            raise ValueError(f"call from {CALLER} failed")
        except ValueError:
            log.exception("call_failed")
        [line] = lines(stream)
        assert "ValueError" in line["exception"]
        assert CALLER.encode() not in raw_output(stream)

    def test_debug_is_dropped_at_info(self, json_logs: Any) -> None:
        stream, log = json_logs("info")
        log.debug("frame_received")
        log.info("call_started")
        log.warning("bad_client_input")
        assert [line["event"] for line in lines(stream)] == ["call_started", "bad_client_input"]

    def test_info_is_dropped_at_warning(self, json_logs: Any) -> None:
        stream, log = json_logs("warning")
        log.info("call_started")
        log.error("provider_unavailable")
        assert [(line["event"], line["level"]) for line in lines(stream)] == [
            ("provider_unavailable", "error")
        ]

    def test_debug_is_kept_at_debug(self, json_logs: Any) -> None:
        stream, log = json_logs("debug")
        log.debug("frame_received")
        assert [line["level"] for line in lines(stream)] == ["debug"]


def failure_with_a_number() -> ValueError:
    try:
        raise ValueError(f"call from {CALLER} failed")
    except ValueError as error:
        return error


class TestStdlibRecords:
    """Records of libraries that log with the standard library (aiohttp, asyncio, redis, picows)."""

    def test_error_with_traceback_is_one_masked_json_line(self, json_logs: Any) -> None:
        stream, _ = json_logs("info")
        logging.getLogger("asyncio").error("Exception in callback for %s", CALLER, exc_info=failure_with_a_number())
        [line] = lines(stream)
        assert line["logger"] == "asyncio"
        assert line["level"] == "error"
        assert line["event"] == "Exception in callback for +*********00"
        assert line["exception"].startswith("Traceback (most recent call last):")
        assert "ValueError: call from +*********00 failed" in line["exception"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", line["timestamp"])
        assert CALLER.encode() not in raw_output(stream)

    def test_bound_context_is_merged_and_masked(self, json_logs: Any) -> None:
        stream, _ = json_logs("info")
        with bound_contextvars(call_sid=CALL_SID, api_key=API_KEY):
            logging.getLogger("aiohttp.server").warning("Error handling request")
        [line] = lines(stream)
        assert (line["call_sid"], line["api_key"]) == (CALL_SID, MASK)

    def test_level_applies_to_stdlib_records(self, json_logs: Any) -> None:
        stream, _ = json_logs("warning")
        logging.getLogger("redis.asyncio.connection").info("connected")
        logging.getLogger("redis.asyncio.connection").warning("reconnecting")
        assert [(line["event"], line["level"]) for line in lines(stream)] == [("reconnecting", "warning")]

    def test_debug_records_are_kept_at_debug(self, json_logs: Any) -> None:
        stream, _ = json_logs("debug")
        logging.getLogger("asyncio").debug("Using selector: EpollSelector")
        assert [line["level"] for line in lines(stream)] == ["debug"]

    def test_picows_connection_lines_are_kept_only_at_debug(self, json_logs: Any) -> None:
        """picows logs each connection and disconnection at ``info``; our own events say the same."""
        stream, _ = json_logs("info")
        picows = logging.getLogger("picows.game-gateway")
        picows.info("New connection accepted")
        picows.error("WS parser error")
        stream_at_debug, _ = json_logs("debug")
        picows.info("New connection accepted")
        assert [line["event"] for line in lines(stream)] == ["WS parser error"]
        assert [line["event"] for line in lines(stream_at_debug)] == ["New connection accepted"]

    def test_configuring_twice_writes_each_record_once(self, json_logs: Any) -> None:
        first, _ = json_logs("info")
        second, _ = json_logs("info")
        logging.getLogger("aiohttp.websocket").warning("Client protocols don't overlap")
        assert lines(first) == []
        assert len(lines(second)) == 1
        assert len(json_handlers()) == 1


@pytest.mark.parametrize("loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"])
class TestLoopErrors:
    """The loop's default exception handler logs through the ``asyncio`` logger, on both loops."""

    def test_task_exception_never_retrieved_is_one_json_line(self, json_logs: Any, loop_factory: Any) -> None:
        stream, _ = json_logs("info")

        async def fail() -> None:
            raise failure_with_a_number()

        async def forget_a_failed_task() -> None:
            task = asyncio.get_running_loop().create_task(fail())
            await asyncio.wait([task])
            del task  # its exception was never retrieved: the task says so when collected
            gc.collect()

        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(forget_a_failed_task())
        [line] = lines(stream)
        assert line["event"].startswith("Task exception was never retrieved\n")
        assert (line["logger"], line["level"]) == ("asyncio", "error")
        assert "ValueError: call from +*********00 failed" in line["exception"]
        assert CALLER.encode() not in raw_output(stream)

    def test_exception_in_callback_is_one_json_line(self, json_logs: Any, loop_factory: Any) -> None:
        stream, _ = json_logs("info")

        def callback() -> None:
            raise failure_with_a_number()

        async def run_failing_callback() -> None:
            asyncio.get_running_loop().call_soon(callback)
            await asyncio.sleep(0)

        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(run_failing_callback())
        [line] = lines(stream)
        assert line["event"].startswith("Exception in callback")
        assert (line["logger"], line["level"]) == ("asyncio", "error")
        assert "ValueError: call from +*********00 failed" in line["exception"]
