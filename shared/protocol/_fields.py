"""Typed reads from decoded JSON objects, shared by the codecs in this package.

Every error is a ``ProtocolError`` that names the message and the dotted path of the field, never
the field's value. The codec chooses the message label (``where``): ``"start event"``,
``"Results"``, ``"outbound mark"`` and so on. Pure: no I/O, no clock.
"""

from __future__ import annotations

import re
from typing import Any, Final

import orjson

from phonepatch.shared.errors import ProtocolError

__all__ = ["Fields", "dumps", "load_object"]

# PROTOCOLS.md §1.1 item 5: Twilio counters are strings holding integers. Capping the digits keeps
# int() clear of CPython's limit on huge digit strings; the range check then keeps values in int64.
_DIGITS = re.compile(r"[0-9]{1,19}")
_MAX_INT = 2**63 - 1

_REQUIRED: Final = object()


def dumps(message: dict[str, Any]) -> str:
    """Compact JSON text for ``message``."""
    return orjson.dumps(message).decode()


def load_object(text: str | bytes) -> dict[str, Any]:
    """Decode one JSON object; raises ProtocolError for invalid JSON or any other JSON value."""
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError("invalid JSON") from exc
    if not isinstance(message, dict):
        raise ProtocolError("message is not a JSON object")
    return message


class Fields:
    """Typed reads from one decoded JSON object; errors name the message and the dotted path.

    Reads that take a ``default`` return it when the field is absent; without one, an absent field
    is an error. A present field of the wrong type is always an error.
    """

    __slots__ = ("_prefix", "_where", "raw")

    def __init__(self, raw: dict[str, Any], where: str, prefix: str = "") -> None:
        self.raw = raw
        self._where = where
        self._prefix = prefix

    def _error(self, key: str, problem: str) -> ProtocolError:
        return ProtocolError(f"{self._where}: {self._prefix}{key} {problem}")

    def _get(self, key: str, default: Any = _REQUIRED) -> Any:
        if key in self.raw:
            return self.raw[key]
        if default is _REQUIRED:
            raise self._error(key, "is missing")
        return default

    def object(self, key: str) -> Fields:
        value = self._get(key)
        if not isinstance(value, dict):
            raise self._error(key, "must be an object")
        return Fields(value, self._where, f"{self._prefix}{key}.")

    def element(self, items: list[Any], index: int, key: str) -> Fields:
        """Item ``index`` of ``items``, the array read from ``key``, which must be an object."""
        value = items[index]
        if not isinstance(value, dict):
            raise self._error(f"{key}[{index}]", "must be an object")
        return Fields(value, self._where, f"{self._prefix}{key}[{index}].")

    def array(self, key: str, default: Any = _REQUIRED) -> list[Any]:
        value = self._get(key, default)
        if not isinstance(value, list):
            raise self._error(key, "must be an array")
        return value

    def string(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str):
            raise self._error(key, "must be a string")
        return value

    def optional_string(self, key: str, default: str) -> str:
        """A string, or ``default`` when the field is absent; null is an error."""
        return self.string(key) if key in self.raw else default

    def nullable_string(self, key: str) -> str | None:
        """A string, or None when the field is absent or null."""
        if self.raw.get(key) is None:
            return None
        return self.string(key)

    def boolean(self, key: str, default: Any = _REQUIRED) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self._error(key, "must be a boolean")
        return value

    def number(self, key: str, default: Any = _REQUIRED) -> float:
        """A JSON integer or float (not a boolean), as a float."""
        value = self._get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._error(key, "must be a number")
        return float(value)

    def integer(self, key: str) -> int:
        """A non-negative integer sent as a string of digits or as a JSON number."""
        value = self._get(key)
        if isinstance(value, str) and _DIGITS.fullmatch(value):
            value = int(value)
        elif isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_INT:
            return value
        raise self._error(key, "must be a non-negative integer")

    def strings(self, key: str) -> tuple[str, ...]:
        value = self._get(key)
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self._error(key, "must be an array of strings")
        return tuple(value)

    def string_pairs(self, key: str) -> tuple[tuple[str, str], ...]:
        """An optional object of string values, as name/value pairs in wire order."""
        if key not in self.raw:
            return ()
        pairs = tuple(self.object(key).raw.items())
        if not all(isinstance(value, str) for _, value in pairs):
            raise self._error(key, "must map names to strings")
        return pairs

    def exact_keys(self, allowed: frozenset[str]) -> None:
        """Raise unless the object has every key in ``allowed`` and no other."""
        extra = self.raw.keys() - allowed
        if extra:
            raise self._error(sorted(extra)[0], "is not an allowed field")
        missing = allowed - self.raw.keys()
        if missing:
            raise self._error(sorted(missing)[0], "is missing")
