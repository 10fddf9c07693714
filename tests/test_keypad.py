"""Keypad (DTMF) entry, grouped by rule: digits, "#", "*", pause, max_digits, other keys."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phonepatch.shared.errors import ProtocolError
from phonepatch.shared.keypad import KeypadCollector, KeypadResult

PAUSE_S = 3.0


def press_all(collector: KeypadCollector, keys: str, now: float = 0.0) -> list[KeypadResult]:
    """Press each key at ``now`` and return the results that came out."""
    results = [collector.press(key, now) for key in keys]
    return [result for result in results if result is not None]


@pytest.fixture
def collector() -> KeypadCollector:
    return KeypadCollector(pause_s=PAUSE_S)


class TestKeypadResult:
    def test_result_is_frozen(self) -> None:
        result = KeypadResult("42", "pound")
        with pytest.raises(dataclasses.FrozenInstanceError):
            result.digits = "43"  # type: ignore[misc]

    def test_result_is_slotted(self) -> None:
        assert not hasattr(KeypadResult("42", "pound"), "__dict__")


class TestDigits:
    def test_new_collector_has_nothing_pending(self, collector: KeypadCollector) -> None:
        assert collector.digits == ""
        assert collector.deadline is None

    def test_digits_accumulate_without_a_result(self, collector: KeypadCollector) -> None:
        assert press_all(collector, "042") == []
        assert collector.digits == "042"

    def test_deadline_is_a_pause_after_the_last_digit(self, collector: KeypadCollector) -> None:
        collector.press("4", 10.0)
        collector.press("2", 11.5)
        assert collector.deadline == 11.5 + PAUSE_S


class TestPound:
    def test_pound_ends_entry_with_the_digits(self, collector: KeypadCollector) -> None:
        assert press_all(collector, "42#") == [KeypadResult("42", "pound")]

    def test_pound_resets_pending_digits(self, collector: KeypadCollector) -> None:
        press_all(collector, "42#")
        assert collector.digits == ""
        assert collector.deadline is None

    def test_pound_with_nothing_pending_returns_none(self, collector: KeypadCollector) -> None:
        assert collector.press("#", 0.0) is None
        assert collector.deadline is None

    def test_leading_zeros_are_kept(self, collector: KeypadCollector) -> None:
        assert press_all(collector, "007#") == [KeypadResult("007", "pound")]


class TestStar:
    def test_star_clears_pending_digits(self, collector: KeypadCollector) -> None:
        assert press_all(collector, "42*") == []
        assert collector.digits == ""
        assert collector.deadline is None

    def test_digits_after_star_start_a_new_entry(self, collector: KeypadCollector) -> None:
        assert press_all(collector, "9*42#") == [KeypadResult("42", "pound")]

    def test_star_cancels_the_pause(self, collector: KeypadCollector) -> None:
        collector.press("4", 0.0)
        collector.press("*", 1.0)
        assert collector.poll(100.0) is None


class TestPause:
    def test_poll_before_deadline_returns_none(self, collector: KeypadCollector) -> None:
        collector.press("4", 0.0)
        assert collector.poll(PAUSE_S - 0.001) is None
        assert collector.digits == "4"

    def test_poll_at_deadline_ends_entry(self, collector: KeypadCollector) -> None:
        collector.press("4", 0.0)
        collector.press("2", 1.0)
        assert collector.poll(1.0 + PAUSE_S) == KeypadResult("42", "pause")

    def test_entry_ended_by_pause_is_returned_once(self, collector: KeypadCollector) -> None:
        collector.press("4", 0.0)
        collector.poll(PAUSE_S)
        assert collector.poll(PAUSE_S + 1.0) is None
        assert collector.deadline is None

    def test_each_digit_pushes_the_deadline_back(self, collector: KeypadCollector) -> None:
        collector.press("4", 0.0)
        collector.press("2", PAUSE_S - 0.5)
        assert collector.poll(PAUSE_S) is None

    def test_poll_with_nothing_pending_returns_none(self, collector: KeypadCollector) -> None:
        assert collector.poll(1e9) is None

    def test_late_press_returns_expired_entry_and_starts_next(
        self, collector: KeypadCollector
    ) -> None:
        """A key arriving after the deadline, before any poll, still ends the old entry first."""
        collector.press("4", 0.0)
        assert collector.press("7", PAUSE_S + 1.0) == KeypadResult("4", "pause")
        assert collector.digits == "7"
        assert collector.deadline == 2 * PAUSE_S + 1.0

    def test_late_pound_returns_expired_entry_once(self, collector: KeypadCollector) -> None:
        collector.press("4", 0.0)
        assert collector.press("#", PAUSE_S) == KeypadResult("4", "pause")
        assert collector.deadline is None


class TestMaxDigits:
    def test_reaching_max_digits_ends_entry(self) -> None:
        collector = KeypadCollector(pause_s=PAUSE_S, max_digits=3)
        assert press_all(collector, "1234") == [KeypadResult("123", "max_digits")]
        assert collector.digits == "4"

    def test_single_digit_entries(self) -> None:
        collector = KeypadCollector(pause_s=PAUSE_S, max_digits=1)
        assert press_all(collector, "12") == [
            KeypadResult("1", "max_digits"),
            KeypadResult("2", "max_digits"),
        ]
        assert collector.deadline is None

    def test_default_max_digits_is_twelve(self, collector: KeypadCollector) -> None:
        assert press_all(collector, "1234567890123") == [
            KeypadResult("123456789012", "max_digits")
        ]


class TestOtherKeys:
    @pytest.mark.parametrize("key", ["A", "B", "C", "D"])
    def test_letter_keys_are_ignored(self, collector: KeypadCollector, key: str) -> None:
        collector.press("4", 0.0)
        assert collector.press(key, 1.0) is None
        assert collector.digits == "4"
        assert collector.deadline == PAUSE_S

    def test_ignored_key_after_deadline_leaves_entry_for_poll(
        self, collector: KeypadCollector
    ) -> None:
        collector.press("4", 0.0)
        assert collector.press("A", PAUSE_S + 1.0) is None
        assert collector.poll(PAUSE_S + 1.0) == KeypadResult("4", "pause")

    @pytest.mark.parametrize("key", ["", "a", "x", "42", " 4", "\u0664", "##", "E"])
    def test_unknown_keys_raise_protocol_error(self, collector: KeypadCollector, key: str) -> None:
        collector.press("4", 0.0)
        with pytest.raises(ProtocolError):
            collector.press(key, 1.0)
        assert collector.digits == "4"

    def test_error_message_is_bounded(self, collector: KeypadCollector) -> None:
        with pytest.raises(ProtocolError) as caught:
            collector.press("9" * 10_000, 0.0)
        assert len(str(caught.value)) < 64


class TestConstruction:
    @pytest.mark.parametrize("pause_s", [0.0, -1.0, float("nan")])
    def test_pause_must_be_positive(self, pause_s: float) -> None:
        with pytest.raises(ValueError, match="pause_s"):
            KeypadCollector(pause_s=pause_s)

    def test_max_digits_must_be_positive(self) -> None:
        with pytest.raises(ValueError, match="max_digits"):
            KeypadCollector(pause_s=PAUSE_S, max_digits=0)


class TestProperties:
    @settings(deadline=None)
    @given(
        presses=st.lists(
            st.tuples(st.sampled_from("0123456789*#"), st.floats(0.0, 5.0)), max_size=40
        ),
        max_digits=st.integers(1, 6),
    )
    def test_any_press_sequence_yields_only_digit_entries(
        self, presses: list[tuple[str, float]], max_digits: int
    ) -> None:
        collector = KeypadCollector(pause_s=PAUSE_S, max_digits=max_digits)
        now = 0.0
        for key, gap_s in presses:
            now += gap_s
            for result in (collector.press(key, now), collector.poll(now)):
                if result is not None:
                    assert result.digits.isdigit() and result.digits.isascii()
                    assert 1 <= len(result.digits) <= max_digits
            assert len(collector.digits) < max_digits
            assert (collector.deadline is None) == (collector.digits == "")

    @given(digits=st.text("0123456789", min_size=1, max_size=12), end=st.sampled_from("#p"))
    def test_keyed_digits_come_back_unchanged(self, digits: str, end: str) -> None:
        collector = KeypadCollector(pause_s=PAUSE_S)
        results = press_all(collector, digits)
        if len(digits) < 12:
            ended = collector.press("#", 0.0) if end == "#" else collector.poll(PAUSE_S)
            results += [ended] if ended is not None else []
        assert [result.digits for result in results] == [digits]
