"""Keypad (DTMF) code entry as a pure state machine.

Twilio sends one ``dtmf`` event per key press with no timestamp, and leaves deciding where an
entry ends to us (PROTOCOLS.md §1.2). The I/O layer feeds each key with the current time to
:meth:`KeypadCollector.press`, sleeps until :attr:`KeypadCollector.deadline`, then calls
:meth:`KeypadCollector.poll`. Nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from phonepatch.shared.errors import ProtocolError

__all__ = ["KeypadCollector", "KeypadResult"]

_DIGITS = frozenset("0123456789")
# Twilio documents 0-9, * and #; A-D exist on some (mostly military and test) keypads and carry
# no meaning for code entry, so they are tolerated rather than treated as a broken peer.
_IGNORED_KEYS = frozenset("ABCD")


@dataclass(frozen=True, slots=True)
class KeypadResult:
    """A finished keypad entry: the digits keyed and what ended the entry."""

    digits: str
    ended_by: Literal["pound", "pause", "max_digits"]


class KeypadCollector:
    """Collect key presses into entries ended by "#", a pause of ``pause_s``, or ``max_digits``.

    "*" clears the pending digits. Times are seconds on any clock that never goes backwards.
    Raises ValueError for a non-positive ``pause_s`` or ``max_digits``.
    """

    def __init__(self, pause_s: float, max_digits: int = 12) -> None:
        if not pause_s > 0:
            raise ValueError("pause_s must be positive")
        if max_digits < 1:
            raise ValueError("max_digits must be at least 1")
        self._pause_s = pause_s
        self._max_digits = max_digits
        self._digits = ""
        self._last_press_s = 0.0

    @property
    def digits(self) -> str:
        """The digits keyed so far in the current entry."""
        return self._digits

    @property
    def deadline(self) -> float | None:
        """The time at which a pause ends the pending entry, or None when nothing is pending."""
        return self._last_press_s + self._pause_s if self._digits else None

    def press(self, digit: str, now: float) -> KeypadResult | None:
        """Apply one key press at ``now``; return the entry it ends, if any.

        A press after the deadline first ends the pending entry by pause and returns it; the key
        then starts the next entry. Raises ProtocolError for a key no keypad has.
        """
        if digit in _IGNORED_KEYS:
            return None
        if digit not in _DIGITS and digit not in ("*", "#"):
            raise ProtocolError(f"not a keypad key: {digit!r:.16}")
        expired = self.poll(now)
        ended = self._apply(digit, now)
        # Both cannot be set: an entry can only be pending when max_digits > 1, and after the
        # flush a single key cannot reach max_digits or end an entry with "#".
        return expired if expired is not None else ended

    def poll(self, now: float) -> KeypadResult | None:
        """Return the pending entry if its pause deadline has passed at ``now``, else None."""
        deadline = self.deadline
        if deadline is not None and now >= deadline:
            return self._end("pause")
        return None

    def _apply(self, digit: str, now: float) -> KeypadResult | None:
        if digit == "#":
            return self._end("pound") if self._digits else None
        if digit == "*":
            self._digits = ""
            return None
        self._digits += digit
        self._last_press_s = now
        if len(self._digits) >= self._max_digits:
            return self._end("max_digits")
        return None

    def _end(self, ended_by: Literal["pound", "pause", "max_digits"]) -> KeypadResult:
        result = KeypadResult(self._digits, ended_by)
        self._digits = ""
        return result
