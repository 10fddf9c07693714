"""Structured JSON logs: structlog + orjson, context bound per session, secrets and numbers masked.

Configure once per process with ``configure_logging``. The redaction processor runs before the
renderer, so nothing it masks can reach any output.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
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
    """Set up structlog for this process: JSON lines, or colours when stderr is a terminal."""
    global _configured_level
    _configured_level = level
    out = stream or sys.stderr
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        # Tracebacks become text before redaction, so numbers in exception messages are masked.
        structlog.processors.format_exc_info,
        redact,
    ]
    if out.isatty():
        processors.append(structlog.dev.ConsoleRenderer())
        factory: Any = structlog.PrintLoggerFactory(out)
    else:
        processors.append(structlog.processors.JSONRenderer(serializer=orjson.dumps))
        factory = structlog.BytesLoggerFactory(getattr(out, "buffer", out))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )


def configured_level() -> str:
    """The level ``configure_logging`` last set here: child processes log at the same one."""
    return _configured_level


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
