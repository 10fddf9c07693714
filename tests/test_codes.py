"""Code pools, grouped by rule: Damm check digits, generated pools, spoken forms, read-backs."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phonepatch.shared import codes
from phonepatch.shared.codes import (
    damm_check_digit,
    damm_is_valid,
    default_codes,
    generated_codes,
    readback,
    spoken_forms,
)
from phonepatch.shared.config import Settings
from phonepatch.shared.matching import match_code

FOUR_DIGIT_CODES = generated_codes(4)
payloads = st.text(alphabet="0123456789", min_size=1, max_size=12)


def with_check_digit(payload: str) -> str:
    return payload + damm_check_digit(payload)


def test_codes_module_imports_no_io_or_clock() -> None:
    """STYLE.md: pure modules import no I/O or clock (test_purity.py predates this module)."""
    tree = ast.parse(Path(codes.__file__).read_text(encoding="utf-8"))
    imported = {
        name.split(".")[0]
        for node in ast.walk(tree)
        for name in (
            [alias.name for alias in node.names] if isinstance(node, ast.Import)
            else [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
        )
    }
    assert not imported & {"aiohttp", "redis", "asyncio", "time", "datetime", "socket"}


class TestDammCheckDigit:
    @pytest.mark.parametrize(
        ("payload", "check"), [("572", "4"), ("", "0"), ("0", "0"), ("1", "3"), ("2000", "9")]
    )
    def test_known_check_digits(self, payload: str, check: str) -> None:
        assert damm_check_digit(payload) == check

    @pytest.mark.parametrize("payload", ["12a", "4 2", "\u0664\u0662", "\u00b2"])
    def test_non_ascii_digits_are_refused(self, payload: str) -> None:
        with pytest.raises(ValueError):
            damm_check_digit(payload)

    @given(payloads)
    def test_payload_with_its_check_digit_is_valid(self, payload: str) -> None:
        assert damm_is_valid(with_check_digit(payload))

    @given(payloads)
    def test_exactly_one_check_digit_makes_a_payload_valid(self, payload: str) -> None:
        assert [damm_is_valid(payload + digit) for digit in "0123456789"].count(True) == 1

    @pytest.mark.parametrize("code", ["", "abc", "57 24", "\u0665\u0667\u0662\u0664", "5724\n"])
    def test_non_digit_codes_are_not_valid(self, code: str) -> None:
        assert not damm_is_valid(code)


class TestDammDetectsErrors:
    """Every single-digit substitution and every adjacent transposition leaves the pool."""

    @given(payloads, st.data())
    def test_any_single_digit_substitution_is_detected(self, payload: str, data) -> None:
        code = with_check_digit(payload)
        position = data.draw(st.integers(0, len(code) - 1), label="position")
        wrong = data.draw(st.sampled_from("0123456789").filter(lambda d: d != code[position]))
        assert not damm_is_valid(code[:position] + wrong + code[position + 1 :])

    @given(payloads, st.data())
    def test_any_adjacent_transposition_is_detected(self, payload: str, data) -> None:
        code = with_check_digit(payload)
        swaps = [i for i in range(len(code) - 1) if code[i] != code[i + 1]]
        if not swaps:
            return  # swapping equal digits changes nothing
        i = data.draw(st.sampled_from(swaps), label="position")
        assert not damm_is_valid(code[:i] + code[i + 1] + code[i] + code[i + 2 :])

    def test_every_error_of_every_four_digit_code_is_detected(self) -> None:
        """Exhaustive over the whole 4-digit pool, the one most likely to be deployed."""
        pool = set(FOUR_DIGIT_CODES)
        for code in FOUR_DIGIT_CODES:
            for i, digit in enumerate(code):
                for wrong in "0123456789".replace(digit, ""):
                    assert code[:i] + wrong + code[i + 1 :] not in pool
            for i in range(3):
                swapped = code[:i] + code[i + 1] + code[i] + code[i + 2 :]
                assert swapped == code or swapped not in pool


class TestGeneratedCodes:
    @pytest.mark.parametrize("digits", [2, 3, 4, 5])
    def test_pool_holds_one_code_per_payload(self, digits: int) -> None:
        pool = generated_codes(digits)
        assert len(pool) == len(set(pool)) == 10 ** (digits - 1)
        assert all(len(code) == digits and damm_is_valid(code) for code in pool)

    def test_pool_is_every_valid_code_of_its_length_in_order(self) -> None:
        assert FOUR_DIGIT_CODES == tuple(
            code for code in (f"{n:04d}" for n in range(10_000)) if damm_is_valid(code)
        )

    def test_payloads_may_start_with_zero(self) -> None:
        assert FOUR_DIGIT_CODES[:3] == ("0000", "0013", "0021")

    @pytest.mark.parametrize("digits", [-1, 0, 1, 8])
    def test_lengths_outside_the_limits_are_refused(self, digits: int) -> None:
        with pytest.raises(ValueError, match="digits"):
            generated_codes(digits)


class TestDefaultCodes:
    def test_default_pool_is_0_to_99(self) -> None:
        assert default_codes() == tuple(str(n) for n in range(100))

    def test_default_pool_is_the_settings_default(self) -> None:
        assert default_codes() == Settings().game_codes


class TestSpokenForms:
    @pytest.mark.parametrize(
        ("code", "forms"),
        [
            ("0", ("zero",)),
            ("7", ("seven",)),
            ("10", ("ten", "one zero", "one oh")),
            ("42", ("forty two", "four two")),
            ("100", ("one hundred", "one zero zero", "one oh oh")),
            ("123", ("one hundred twenty three", "one hundred and twenty three", "one two three")),
            ("042", ("zero four two", "oh four two")),
            ("00", ("zero zero",)),
            ("0427", ("zero four two seven", "oh four two seven")),
            ("1234", ("one two three four",)),
            ("Apple  Pie!", ("apple pie",)),
            ("mario-kart", ("mario kart",)),
            ("...", ()),
        ],
    )
    def test_forms_by_kind_of_code(self, code: str, forms: tuple[str, ...]) -> None:
        assert spoken_forms(code) == forms

    def test_every_default_code_round_trips_through_the_matcher(self) -> None:
        for code in default_codes():
            for form in spoken_forms(code):
                assert match_code(form, {code}) == code, form

    def test_every_three_digit_code_round_trips_through_the_matcher(self) -> None:
        for code in generated_codes(3) + tuple(str(n) for n in range(100, 1000)):
            for form in spoken_forms(code):
                assert match_code(form, {code}) == code, form

    @settings(max_examples=300)
    @given(st.sampled_from(FOUR_DIGIT_CODES))
    def test_generated_codes_round_trip_through_the_matcher(self, code: str) -> None:
        for form in spoken_forms(code):
            assert match_code(form, {code}) == code, form

    @settings(max_examples=200)
    @given(st.sampled_from(FOUR_DIGIT_CODES))
    def test_generated_forms_name_no_other_code_of_the_pool(self, code: str) -> None:
        """A grammar of the whole pool stays unambiguous: each form names its own code only."""
        for form in spoken_forms(code):
            assert match_code(form, FOUR_DIGIT_CODES) == code, form

    @given(st.text(min_size=1, max_size=30))
    def test_any_word_code_round_trips_through_the_matcher(self, code: str) -> None:
        for form in spoken_forms(code):
            assert match_code(form, {code}) == code, form

    @given(st.one_of(st.text(max_size=30), st.integers(0, 10**9).map(str)))
    def test_forms_are_lowercase_words_one_space_apart(self, code: str) -> None:
        forms = spoken_forms(code)
        assert len(set(forms)) == len(forms)
        for form in forms:
            assert form == form.lower() and form.split(" ") == form.split()


class TestReadback:
    @pytest.mark.parametrize(
        ("code", "spoken"),
        [
            ("427", "four hundred twenty seven, that is four two seven"),
            ("42", "forty two, that is four two"),
            ("6", "six"),
            ("0", "zero"),
            ("0427", "zero four two seven"),
            ("4271", "four two seven one"),
            ("apple pie", "apple pie"),
        ],
    )
    def test_cardinal_then_digits_else_digits_word_codes_as_is(self, code: str, spoken: str) -> None:
        assert readback(code) == spoken

    @settings(max_examples=100)
    @given(st.sampled_from(FOUR_DIGIT_CODES + default_codes()))
    def test_each_reading_in_a_readback_matches_the_code(self, code: str) -> None:
        for reading in readback(code).split(", that is "):
            assert match_code(reading, {code}) == code
