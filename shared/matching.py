"""Spoken code matching: map a transcript and the live codes to one code or none.

A transcript is split into words (:func:`normalize_words`). Codes made only of ASCII digits are
*digit codes*; any other code is a *word code*, matched as a contiguous run of whole words.

Digit codes are matched through *number runs*. A number run is a maximal stretch of number words:
numerals ("42"), "zero".."nine", "ten".."nineteen", "twenty".."ninety", "hundred", "thousand",
"and" between a scale word and a number, and "oh"/"o" when they sit next to a digit. Each run is
read as ONE code, never split into parts, so "twenty one" reads "21" and nothing else. A run has
at most one reading, tried in this order:

1. Cardinal: an English number up to 999 999 ("four hundred and twenty seven" → "427",
   "twelve hundred" → "1200", "zero" → "0").
2. Grouped: the concatenation of its parts, where a part is a digit word, a teen, a tens word
   with its following digit, or a numeral ("four two" → "42", "oh oh seven" → "007",
   "four twenty seven" → "427", "nineteen eighty four" → "1984", "4 2" → "42").

A run whose reading is a live digit code matches it; digit codes compare as strings, so
"forty two" matches "42" but not "042". A transcript that matches two different live codes is
ambiguous and matches none.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from itertools import groupby

__all__ = ["match_code", "normalize_words"]

_UNITS = {
    word: value
    for value, word in enumerate(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    )
}
_TEENS = {
    word: value + 10
    for value, word in enumerate(
        ["ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
         "eighteen", "nineteen"]
    )
}
_TENS = {
    word: (value + 2) * 10
    for value, word in enumerate(
        ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
    )
}
_SCALES = frozenset({"hundred", "thousand"})
_ZERO_LETTERS = frozenset({"oh", "o"})

# Apostrophes join ("it's" → "its"); a comma between digits is a thousands separator, which
# Deepgram's smart_format writes ("1,200"); any other punctuation, hyphens included, splits words.
_APOSTROPHES = re.compile(r"['\u2018\u2019\u02bc]")
_DIGIT_COMMA = re.compile(r"(?<=\d),(?=\d{3})")
_PUNCTUATION = re.compile(r"[^\w\s]|_")


def normalize_words(transcript: str) -> list[str]:
    """Lowercase ``transcript``, drop apostrophes, split on punctuation and whitespace."""
    text = _APOSTROPHES.sub("", transcript.lower())
    text = _DIGIT_COMMA.sub("", text)
    return _PUNCTUATION.sub(" ", text).split()


def match_code(transcript: str, codes: Iterable[str]) -> str | None:
    """Return the one live code that ``transcript`` says, or None if it says none or several."""
    words = normalize_words(transcript)
    digit_codes: set[str] = set()
    word_codes: dict[tuple[str, ...], set[str]] = {}
    for code in codes:
        if _is_numeral(code):
            digit_codes.add(code)
        elif code_words := tuple(normalize_words(code)):
            word_codes.setdefault(code_words, set()).add(code)
    found = {reading for reading in _read_runs(words) if reading in digit_codes}
    found.update(_find_word_codes(words, word_codes))
    return found.pop() if len(found) == 1 else None


def _find_word_codes(
    words: Sequence[str], word_codes: dict[tuple[str, ...], set[str]]
) -> set[str]:
    """Return the word codes whose words occur as a contiguous run in ``words``."""
    found: set[str] = set()
    for length in {len(code_words) for code_words in word_codes}:
        for start in range(len(words) - length + 1):
            found.update(word_codes.get(tuple(words[start : start + length]), ()))
    return found


def _read_runs(words: Sequence[str]) -> list[str]:
    """Return the reading of every number run in ``words`` that has one."""
    readings = []
    for run in _number_runs(words):
        reading = _read_cardinal(run)
        if reading is None:
            reading = _read_grouped(run)
        if reading is not None:
            readings.append(reading)
    return readings


def _number_runs(words: Sequence[str]) -> list[list[str]]:
    """Split ``words`` into maximal runs of number words, dropping everything else."""
    runs: list[list[str]] = []
    current: list[str] = []
    for word, is_number in zip(words, _number_word_flags(words)):
        if is_number:
            current.append(word)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return runs


def _number_word_flags(words: Sequence[str]) -> list[bool]:
    """Tell for each word whether it belongs to a number run."""
    flags = [_is_number_word(words, index) for index in range(len(words))]
    index = 0
    for is_zero_letter, stretch in groupby(words, key=_ZERO_LETTERS.__contains__):
        length = len(list(stretch))
        if is_zero_letter:
            # A lone "oh" is an interjection ("oh, it's forty two"); beside a digit it is a
            # zero ("four oh four", "oh oh seven"). Whole stretches are decided at once to
            # stay linear in the transcript length.
            before = words[index - 1] if index > 0 else ""
            after = words[index + length] if index + length < len(words) else ""
            is_zero = _is_digit_word(before) or _is_digit_word(after)
            flags[index : index + length] = [is_zero] * length
        index += length
    return flags


def _is_number_word(words: Sequence[str], index: int) -> bool:
    word = words[index]
    if word == "and":
        # "and" joins only "hundred and seven" or "thousand and five"; elsewhere it separates
        # two spoken codes ("forty two and forty three"), which must stay two runs.
        before = words[index - 1] if index > 0 else ""
        after = words[index + 1] if index + 1 < len(words) else ""
        return before in _SCALES and _is_value_word(after)
    return _is_value_word(word) or word in _SCALES


def _is_digit_word(word: str) -> bool:
    return word in _UNITS or _is_numeral(word)


def _is_value_word(word: str) -> bool:
    return word in _UNITS or word in _TEENS or word in _TENS or _is_numeral(word)


def _is_numeral(text: str) -> bool:
    # str.isdigit alone accepts other scripts' digits and superscripts, which are not codes.
    return text.isascii() and text.isdigit()


def _read_grouped(run: Sequence[str]) -> str | None:
    """Read ``run`` as concatenated parts ("four twenty seven" → "427"), or None."""
    parts: list[str] = []
    index = 0
    while index < len(run):
        parsed = _parse_part(run, index)
        if parsed is None:
            return None  # scale words and "and" belong to cardinal numbers only
        part, index = parsed
        parts.append(part)
    return "".join(parts)


def _parse_part(run: Sequence[str], index: int) -> tuple[str, int] | None:
    """Parse one part of a grouped reading at ``index``; return (digits, next index)."""
    word = run[index]
    if _is_numeral(word):
        return word, index + 1
    if word in _ZERO_LETTERS or word == "zero":
        return "0", index + 1
    parsed = _parse_below_hundred(run, index)
    return (str(parsed[0]), parsed[1]) if parsed is not None else None


def _read_cardinal(run: Sequence[str]) -> str | None:
    """Read ``run`` as one English number ("four hundred and twenty seven"), or None."""
    if len(run) == 1 and (run[0] == "zero" or _is_numeral(run[0])):
        return "0" if run[0] == "zero" else run[0]
    parsed = _parse_below_thousand(run, 0, allow_teen_hundreds=True)
    if parsed is None:
        return None
    value, index = parsed
    if index < len(run) and run[index] == "thousand" and value < 1000:
        value, index = value * 1000, _skip_and(run, index + 1)
        below = _parse_below_thousand(run, index, allow_teen_hundreds=False)
        if below is not None:
            value, index = value + below[0], below[1]
    return str(value) if index == len(run) else None


def _parse_below_thousand(
    run: Sequence[str], index: int, *, allow_teen_hundreds: bool
) -> tuple[int, int] | None:
    """Parse 1..999 at ``index`` (or 1100..9999 as "twelve hundred"); return (value, next)."""
    parsed = _parse_below_hundred(run, index)
    if parsed is None:
        return None
    value, index = parsed
    if index == len(run) or run[index] != "hundred":
        return parsed
    if value >= 10 and not allow_teen_hundreds:
        return None
    value, index = value * 100, _skip_and(run, index + 1)
    below = _parse_below_hundred(run, index)
    return (value + below[0], below[1]) if below is not None else (value, index)


def _parse_below_hundred(run: Sequence[str], index: int) -> tuple[int, int] | None:
    """Parse 1..99 in words at ``index``; a tens word takes a following nonzero digit word."""
    word = run[index] if index < len(run) else ""
    if word in _TENS:
        after = run[index + 1] if index + 1 < len(run) else ""
        if _UNITS.get(after, 0) > 0:
            return _TENS[word] + _UNITS[after], index + 2
        return _TENS[word], index + 1
    if word in _TEENS:
        return _TEENS[word], index + 1
    if _UNITS.get(word, 0) > 0:
        return _UNITS[word], index + 1
    return None


def _skip_and(run: Sequence[str], index: int) -> int:
    return index + 1 if index < len(run) and run[index] == "and" else index
