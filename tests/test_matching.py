"""Spoken code matching, grouped by rule (see the docstring of phonepatch.shared.matching)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phonepatch.shared import matching
from phonepatch.shared.matching import match_code, normalize_words

_ONES = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen",
]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_DIGIT_WORDS = _ONES[:10]

CODES_0_999 = frozenset(str(n) for n in range(1000))
_SALAD = [*_ONES, *_TENS[2:], "hundred", "thousand", "and", "oh", "o", "42", "007", "um"]


def to_words(n: int, *, use_and: bool = False, hyphen: bool = False) -> str:
    """Render 0 <= n <= 999 999 as English words: 427 → "four hundred twenty seven"."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, unit = divmod(n, 10)
        return _TENS[tens] + (("-" if hyphen else " ") + _ONES[unit] if unit else "")
    if n < 1000:
        head, rest = divmod(n, 100)
        words = f"{_ONES[head]} hundred"
    else:
        head, rest = divmod(n, 1000)
        words = f"{to_words(head, use_and=use_and, hyphen=hyphen)} thousand"
    if rest == 0:
        return words
    joiner = " and " if use_and and rest < 100 else " "
    return words + joiner + to_words(rest, use_and=use_and, hyphen=hyphen)


class TestToWordsRenderer:
    """The test-local renderer is itself right, or the round-trip property proves nothing."""

    @pytest.mark.parametrize(
        ("n", "kwargs", "expected"),
        [
            (0, {}, "zero"),
            (42, {"hyphen": True}, "forty-two"),
            (427, {}, "four hundred twenty seven"),
            (427, {"use_and": True}, "four hundred and twenty seven"),
            (1200, {}, "one thousand two hundred"),
            (2005, {"use_and": True}, "two thousand and five"),
        ],
    )
    def test_renders_english_number_words(self, n: int, kwargs: dict, expected: str) -> None:
        assert to_words(n, **kwargs) == expected


class TestNormalizeWords:
    def test_lowercases_and_splits_on_whitespace(self) -> None:
        assert normalize_words("  Forty\tTWO\n") == ["forty", "two"]

    def test_hyphens_split_words(self) -> None:
        assert normalize_words("forty-two") == ["forty", "two"]

    def test_apostrophes_are_removed(self) -> None:
        assert normalize_words("it's O\u2019Brien") == ["its", "obrien"]

    def test_punctuation_is_stripped(self) -> None:
        assert normalize_words("Um, forty two. Please!") == ["um", "forty", "two", "please"]

    def test_comma_between_digit_groups_is_a_thousands_separator(self) -> None:
        assert normalize_words("1,200 and 4, 2") == ["1200", "and", "4", "2"]

    def test_empty_transcript_has_no_words(self) -> None:
        assert normalize_words(" ... ") == []


class TestNumberForms:
    """Number words and digits alike name a digit code."""

    @pytest.mark.parametrize(
        "transcript",
        ["42", "forty two", "forty-two", "four two", "Forty Two.", "4 2", "FOUR, TWO!"],
    )
    def test_every_spoken_form_of_42_matches_42(self, transcript: str) -> None:
        assert match_code(transcript, CODES_0_999) == "42"

    @pytest.mark.parametrize(
        "transcript",
        [
            "four hundred twenty seven",
            "four hundred and twenty seven",
            "four two seven",
            "four twenty seven",
            "427",
            "4 2 7",
        ],
    )
    def test_every_spoken_form_of_427_matches_427(self, transcript: str) -> None:
        assert match_code(transcript, CODES_0_999) == "427"

    @pytest.mark.parametrize(
        ("transcript", "code"),
        [
            ("zero", "0"),
            ("ten", "10"),
            ("one hundred", "100"),
            ("four twenty", "420"),
            ("one thousand two hundred", "1200"),
            ("twelve hundred", "1200"),
            ("two thousand and five", "2005"),
            ("nineteen eighty four", "1984"),
            ("twenty twenty", "2020"),
            ("1,200", "1200"),
            ("nine hundred ninety nine thousand nine hundred ninety nine", "999999"),
        ],
    )
    def test_cardinal_and_grouped_readings(self, transcript: str, code: str) -> None:
        assert match_code(transcript, {code, "1", "2", "12", "100"}) == code

    @pytest.mark.parametrize(
        "transcript", ["hundred", "thousand", "four hundred thousand twelve hundred", "4 hundred"]
    )
    def test_runs_without_a_reading_match_nothing(self, transcript: str) -> None:
        assert match_code(transcript, CODES_0_999 | {"4", "400"}) is None


class TestLeadingZeros:
    """Digit codes compare as strings: "042" and "42" are different codes."""

    @pytest.mark.parametrize(
        "transcript", ["zero four two", "oh four two", "o four two", "042", "0 4 2", "oh 4 2"]
    )
    def test_digit_by_digit_reading_matches_code_with_leading_zero(self, transcript: str) -> None:
        assert match_code(transcript, {"042", "42"}) == "042"

    def test_double_oh_seven_read_digit_by_digit(self) -> None:
        assert match_code("oh oh seven", {"007", "7", "07"}) == "007"

    def test_cardinal_does_not_match_code_with_leading_zero(self) -> None:
        assert match_code("forty two", {"042"}) is None

    def test_leading_zero_does_not_match_code_without_it(self) -> None:
        assert match_code("zero four two", {"42"}) is None


class TestOhAsZero:
    """ "oh" and "o" are zero only beside a digit; alone they are an interjection."""

    def test_oh_between_digits_is_zero(self) -> None:
        assert match_code("four oh four", CODES_0_999) == "404"

    def test_oh_after_teen_and_before_digit_is_zero(self) -> None:
        assert match_code("nineteen oh five", {"1905", "19", "5"}) == "1905"

    def test_lone_oh_is_not_a_number(self) -> None:
        assert match_code("oh", {"0"}) is None

    def test_interjection_oh_does_not_make_the_code_ambiguous(self) -> None:
        assert match_code("Oh, it's forty two", {"0", "42", "042"}) == "42"

    def test_oh_before_a_tens_word_is_an_interjection(self) -> None:
        assert match_code("oh forty two", {"042", "42"}) == "42"


class TestWholeRunsOnly:
    """A maximal number run is read as one code, never as a part of it (no substring match)."""

    def test_twenty_one_never_matches_two_or_one(self) -> None:
        assert match_code("twenty one", {"1", "2"}) is None

    def test_twenty_one_matches_21_among_its_parts(self) -> None:
        assert match_code("twenty one", {"1", "2", "21"}) == "21"

    def test_twenty_one_is_never_read_as_201(self) -> None:
        assert match_code("twenty one", {"201", "20"}) is None

    def test_digit_words_only_match_their_concatenation(self) -> None:
        assert match_code("four two", {"4", "2"}) is None

    def test_run_matches_whole_code_not_its_first_digit(self) -> None:
        assert match_code("four two", {"42", "4"}) == "42"

    def test_numeral_does_not_match_its_own_digits(self) -> None:
        assert match_code("427", {"4", "42", "27"}) is None

    def test_word_code_does_not_match_inside_a_longer_word(self) -> None:
        assert match_code("bananas", {"banana"}) is None

    def test_code_words_joined_into_one_token_do_not_match(self) -> None:
        assert match_code("fortytwo", {"42", "4", "2"}) is None


class TestWordCodes:
    def test_word_code_matches_case_insensitively(self) -> None:
        assert match_code("BANANA!", {"banana", "apple"}) == "banana"

    def test_code_spelled_in_capitals_matches_lowercase_speech(self) -> None:
        assert match_code("banana", {"Banana"}) == "Banana"

    def test_multi_word_code_matches_contiguous_words(self) -> None:
        assert match_code("I want apple pie please", {"apple pie"}) == "apple pie"

    def test_multi_word_code_needs_its_words_adjacent(self) -> None:
        assert match_code("apple and pie", {"apple pie"}) is None

    def test_code_punctuation_is_ignored(self) -> None:
        assert match_code("apple pie", {"Apple-Pie!"}) == "Apple-Pie!"

    def test_codes_of_no_words_never_match(self) -> None:
        assert match_code("anything at all", {"", " ", "--"}) is None


class TestSurroundingWords:
    def test_filler_around_a_number_is_ignored(self) -> None:
        assert match_code("um it's forty two please", CODES_0_999) == "42"

    def test_filler_around_a_word_code_is_ignored(self) -> None:
        assert match_code("uh the code is banana I think", {"banana"}) == "banana"

    def test_and_outside_a_number_separates_runs(self) -> None:
        assert match_code("forty two and cheese", CODES_0_999) == "42"


class TestAmbiguity:
    """Two different live codes in one transcript match none (never a wrong patch)."""

    def test_two_numbers_naming_two_codes_match_none(self) -> None:
        assert match_code("forty two and forty three", CODES_0_999) is None

    def test_correction_naming_two_codes_matches_none(self) -> None:
        assert match_code("four two seven no four two eight", CODES_0_999) is None

    def test_same_code_said_twice_matches_it(self) -> None:
        assert match_code("forty two, I said 42", CODES_0_999) == "42"

    def test_number_and_word_code_together_match_none(self) -> None:
        assert match_code("banana forty two", {"banana", "42"}) is None

    def test_word_code_inside_longer_word_code_matches_none(self) -> None:
        assert match_code("apple pie", {"apple", "apple pie"}) is None

    def test_a_number_that_is_not_live_does_not_block_a_match(self) -> None:
        assert match_code("give me five, code forty two", {"42"}) == "42"


class TestNoMatch:
    def test_empty_transcript_matches_none(self) -> None:
        assert match_code("", CODES_0_999) is None

    def test_no_live_codes_matches_none(self) -> None:
        assert match_code("forty two", set()) is None

    def test_codes_may_be_any_iterable(self) -> None:
        assert match_code("seven", (str(n) for n in range(10))) == "7"


class TestProperties:
    @settings(deadline=None)
    @given(
        n=st.integers(0, 999),
        use_and=st.booleans(),
        hyphen=st.booleans(),
        numeral=st.booleans(),
    )
    def test_every_number_below_1000_round_trips(
        self, n: int, use_and: bool, hyphen: bool, numeral: bool
    ) -> None:
        spoken = str(n) if numeral else to_words(n, use_and=use_and, hyphen=hyphen)
        assert match_code(f"um it's {spoken} please", CODES_0_999) == str(n)

    @given(n=st.integers(0, 999_999), use_and=st.booleans())
    def test_every_number_below_a_million_round_trips(self, n: int, use_and: bool) -> None:
        codes = {str(n), str(n // 10), str(n % 1000), str(n // 1000)}
        assert match_code(to_words(n, use_and=use_and), codes) == str(n)

    @given(data=st.data(), code=st.text("0123456789", min_size=1, max_size=6))
    def test_digit_by_digit_reading_matches_exact_code(
        self, data: st.DataObject, code: str
    ) -> None:
        spoken = [data.draw(st.sampled_from(_digit_forms(digit))) for digit in code]
        if all(word in ("oh", "o") for word in spoken):
            spoken[0] = "zero"  # a run of bare "oh"s is an interjection by rule
        assert match_code(" ".join(spoken), {code, str(int(code))}) == code

    @given(a=st.integers(0, 99), b=st.integers(0, 99), hyphen=st.booleans())
    def test_saying_one_code_never_matches_another(self, a: int, b: int, hyphen: bool) -> None:
        if a != b:
            assert match_code(to_words(a, hyphen=hyphen), {str(b)}) is None
            assert match_code(" ".join(_DIGIT_WORDS[int(c)] for c in str(a)), {str(b)}) is None

    @given(
        transcript=st.text(),
        codes=st.sets(st.one_of(st.text("0123456789", max_size=4), st.text(max_size=8))),
    )
    def test_any_text_yields_a_live_code_or_none(self, transcript: str, codes: set[str]) -> None:
        assert match_code(transcript, codes) in codes | {None}

    @given(words=st.lists(st.sampled_from(_SALAD), max_size=12))
    def test_any_number_word_salad_yields_a_live_code_or_none(self, words: list[str]) -> None:
        assert match_code(" ".join(words), CODES_0_999) in CODES_0_999 | {None}


def _digit_forms(digit: str) -> list[str]:
    forms = [_DIGIT_WORDS[int(digit)], digit]
    return [*forms, "oh", "o"] if digit == "0" else forms


class TestPurity:
    """The matcher and keypad stay pure: no I/O or clock imports (STYLE.md)."""

    FORBIDDEN = frozenset({"asyncio", "aiohttp", "redis", "time", "datetime", "socket"})

    @pytest.mark.parametrize("module_name", ["matching.py", "keypad.py"])
    def test_module_imports_no_io_or_clock(self, module_name: str) -> None:
        source = Path(matching.__file__).with_name(module_name).read_text(encoding="utf-8")
        imported = set()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
        assert not imported & self.FORBIDDEN
