"""Structured JSON logs: structlog + orjson, context bound per session, secrets and numbers masked.

Configure once per process with ``configure_logging``. The redaction processor runs before the
renderer, so nothing it masks can reach any output. Our own events go through structlog alone
(the fast path); records from the standard library's ``logging`` (aiohttp, asyncio, redis,
picows), uncaught exceptions and warnings are rendered by the same processors through
``structlog.stdlib.ProcessorFormatter``, so every line a process writes is one JSON object.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import threading
from collections.abc import Callable, MutableMapping
from types import TracebackType
from typing import Any, TextIO

import orjson
import structlog

__all__ = ["configure_logging", "configured_level", "mask_phone_number", "redact", "get_logger"]

_SECRET_KEY = re.compile(r"(api_?key|auth_?token|token|secret|password|authorization)", re.I)
_PHONE_KEY = re.compile(
    r"^(from|to|caller|called|forwarded_?from|phone|phone_?number|caller_?number|number)$", re.I
)
# E.164 numbers (Twilio's From/To) and the same written with spaces or dashes.
_PHONE_TEXT = re.compile(r"\+\d[\d\s().-]{5,18}\d")
_MASK = "**********"
_configured_level = "info"


def mask_phone_number(number: str) -> str:
    """Keep the last two digits so a reader can tell numbers apart, hide the rest."""
    digits = [c for c in number if c.isdigit()]
    return "+" + "*" * max(len(digits) - 2, 0) + "".join(digits[-2:]) if digits else _MASK


def _redact_value(key: str, value: Any) -> Any:
    # The key is checked first, so a secret-named dict (``authorization={...}``) is masked whole.
    if _SECRET_KEY.search(key) and value not in (None, "", False):
        return _MASK
    if isinstance(value, dict):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(key, v) for v in value]
    if isinstance(value, str):
        if _PHONE_KEY.match(key) and any(c.isdigit() for c in value):
            return mask_phone_number(value)
        return _PHONE_TEXT.sub(lambda m: mask_phone_number(m.group()), value)
    return value


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: mask secret-named keys and phone numbers anywhere in the event."""
    for key in list(event_dict):
        event_dict[key] = _redact_value(key, event_dict[key])
    return event_dict


def configure_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """Set up structlog for this process: JSON lines, or colours when stderr is a terminal.

    Also routes stdlib logging, uncaught exceptions (main thread, other threads, unraisable) and
    warnings to the same stream in the same format. Calling it again replaces, never duplicates.
    """
    global _configured_level
    _configured_level = level
    out = stream or sys.stderr
    threshold = logging.getLevelName(level.upper())
    tty = out.isatty()
    factory: Any = structlog.PrintLoggerFactory(out) if tty else structlog.BytesLoggerFactory(getattr(out, "buffer", out))
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, *_processors(tty, orjson.dumps)],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    _route_stdlib_logging(out, threshold, tty)
    _install_exception_hooks()


def _processors(tty: bool, serializer: Callable[..., Any]) -> list[Any]:
    """The chain after context merging, for our events and for stdlib records alike."""
    processors: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        # Tracebacks become text before redaction, so numbers in exception messages are masked.
        structlog.processors.format_exc_info,
        redact,
    ]
    if tty:
        processors.append(structlog.dev.ConsoleRenderer())
    else:
        processors.append(structlog.processors.JSONRenderer(serializer=serializer))
    return processors


def _dumps_text(value: Any, **options: Any) -> str:
    """orjson for stdlib records: ``logging.Formatter.format`` must return ``str``."""
    return orjson.dumps(value, **options).decode()


# Libraries whose INFO lines repeat our own lifecycle events (picows logs every connection and
# disconnection): at ``info`` only their warnings and errors are kept; ``debug`` keeps everything.
_LIBRARY_FLOORS = {"picows": logging.WARNING}


class _ForeignRecordHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes stdlib records as structlog's lines; one per process (``configure_logging`` swaps it)."""

    def handleError(self, record: logging.LogRecord) -> None:
        # logging's own handleError prints a raw traceback (a bad %-template, a closed stream):
        # one masked JSON line instead, and nothing if even that cannot be written.
        with contextlib.suppress(Exception):
            structlog.get_logger(__name__).error(
                "log_record_unwritable", logger=record.name, template=str(record.msg), exc_info=True
            )


def _route_stdlib_logging(out: TextIO, threshold: int, tty: bool) -> None:
    handler = _ForeignRecordHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            # The record's logger name is read before remove_processors_meta drops the record.
            foreign_pre_chain=[structlog.contextvars.merge_contextvars, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *_processors(tty, _dumps_text)],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _ForeignRecordHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(threshold)
    for name, floor in _LIBRARY_FLOORS.items():
        logging.getLogger(name).setLevel(threshold if threshold <= logging.DEBUG else max(threshold, floor))
    logging.captureWarnings(True)  # warnings.warn would print "file:line: Warning: ..." lines


def _install_exception_hooks() -> None:
    """What the interpreter would print as a traceback becomes one ``error`` line instead."""
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread
    sys.unraisablehook = _log_unraisable


def _log_uncaught(
    exc_type: type[BaseException], exc_value: BaseException, traceback: TracebackType | None
) -> None:
    structlog.get_logger(__name__).error("uncaught_exception", exc_info=(exc_type, exc_value, traceback))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:  # as threading's own hook: a thread may end this way quietly
        return
    structlog.get_logger(__name__).error(
        "uncaught_exception",
        thread=args.thread.name if args.thread is not None else None,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )


def _log_unraisable(unraisable: Any) -> None:
    """``sys.unraisablehook``: an exception in ``__del__``, a finaliser or a GC callback."""
    try:
        where = repr(unraisable.object) if unraisable.object is not None else None
    except Exception:
        where = "<object repr() failed>"
    structlog.get_logger(__name__).error(
        "unraisable_exception",
        message=unraisable.err_msg or "Exception ignored in",
        object=where,
        exc_info=(unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback),
    )


def configured_level() -> str:
    """The level ``configure_logging`` last set here: child processes log at the same one."""
    return _configured_level


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
