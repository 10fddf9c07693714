"""Code pools and how a code sounds: Damm check digits, generated pools, spoken forms, read-backs.

A *generated* code is ``digits - 1`` payload digits followed by one Damm check digit, so every
single mistyped or misheard digit and every swap of two neighbouring digits turns a code into one
that is not in the pool (Damm, 2004). Codes made only of ASCII digits are *digit codes*, anything
else a *word code*, exactly as :mod:`phonepatch.shared.matching` tells them apart.
"""

from __future__ import annotations

from phonepatch.shared.matching import normalize_words

__all__ = [
    "MAX_GENERATED_DIGITS",
    "MIN_GENERATED_DIGITS",
    "NUMBER_WORDS",
    "damm_check_digit",
    "damm_is_valid",
    "default_codes",
    "generated_codes",
    "readback",
    "spoken_forms",
]

# The weakly totally anti-symmetric quasigroup of order 10 from Damm's thesis; row is the interim
# digit, column the next input digit. Its zero diagonal makes a code ending in its check digit
# reduce to 0.
_DAMM_TABLE = (
    (0, 3, 1, 7, 5, 9, 8, 6, 4, 2),
    (7, 0, 9, 2, 1, 5, 4, 8, 6, 3),
    (4, 2, 0, 6, 8, 7, 1, 3, 5, 9),
    (1, 7, 5, 0, 9, 8, 3, 4, 2, 6),
    (6, 1, 2, 3, 0, 4, 5, 9, 7, 8),
    (3, 6, 7, 4, 2, 0, 9, 5, 8, 1),
    (5, 8, 6, 9, 7, 2, 0, 1, 3, 4),
    (8, 9, 4, 5, 3, 6, 2, 0, 1, 7),
    (9, 4, 3, 8, 6, 1, 7, 2, 0, 5),
    (2, 5, 8, 1, 4, 3, 6, 7, 9, 0),
)
# 10**6 codes of 7 digits is already far more games than one server holds at once; longer pools
# would only cost memory (every code is a string) and make callers say more digits.
MIN_GENERATED_DIGITS = 2
MAX_GENERATED_DIGITS = 7
# The matcher reads cardinals up to 999 999, but nobody says "four thousand two hundred and
# seven" for a game code; past three digits callers read codes digit by digit.
_MAX_CARDINAL_DIGITS = 3

_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_TEEN_WORDS = (
    "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
    "eighteen", "nineteen",
)
_TENS_WORDS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
# Every word of a digit code's spoken forms.
NUMBER_WORDS = frozenset({*_DIGIT_WORDS, *_TEEN_WORDS, *_TENS_WORDS[2:], "hundred", "and", "oh"})


def damm_check_digit(digits: str) -> str:
    """Return the Damm check digit for the ASCII digits ``digits`` ("572" → "4").

    Raises ValueError if ``digits`` holds anything but ASCII digits.
    """
    if digits and not _is_digit_code(digits):
        raise ValueError("Damm check digits are defined for ASCII digits only")
    return str(_damm_interim(digits))


def damm_is_valid(code: str) -> bool:
    """Tell whether ``code`` is ASCII digits ending in their Damm check digit."""
    return _is_digit_code(code) and _damm_interim(code) == 0


def generated_codes(digits: int) -> tuple[str, ...]:
    """Return every Damm-valid code of ``digits`` characters, in ascending order.

    That is ``10 ** (digits - 1)`` codes; payloads may start with "0". Raises ValueError when
    ``digits`` is outside MIN_GENERATED_DIGITS..MAX_GENERATED_DIGITS.
    """
    if not MIN_GENERATED_DIGITS <= digits <= MAX_GENERATED_DIGITS:
        raise ValueError(
            f"digits must be {MIN_GENERATED_DIGITS}..{MAX_GENERATED_DIGITS}, got {digits!r}"
        )
    # Extend every payload prefix by one digit at a time, carrying its interim digit, so each
    # code costs one table lookup instead of one per digit.
    prefixes: list[tuple[str, int]] = [("", 0)]
    for _ in range(digits - 1):
        prefixes = [
            (prefix + str(digit), _DAMM_TABLE[interim][digit])
            for prefix, interim in prefixes
            for digit in range(10)
        ]
    return tuple(prefix + str(interim) for prefix, interim in prefixes)


def default_codes() -> tuple[str, ...]:
    """Return the default pool, "0" to "99", as ``Settings.game_codes`` has it."""
    return tuple(str(number) for number in range(100))


def spoken_forms(code: str) -> tuple[str, ...]:
    """Return the phrases a caller may say for ``code``: lowercase words, one space apart.

    A digit code of up to three digits without a leading zero has its cardinal readings ("one
    hundred twenty three", "one hundred and twenty three") and its digits ("one two three");
    longer digit codes and those with a leading zero only their digits, with "zero" and, beside
    another digit, "oh". A word code is its own normalised words; a code with no words has none.
    Each form matches ``code`` under :func:`~phonepatch.shared.matching.match_code`.
    """
    if not _is_digit_code(code):
        words = normalize_words(code)
        return (" ".join(words),) if words else ()
    forms: list[str] = []
    if len(code) <= _MAX_CARDINAL_DIGITS and (code == "0" or not code.startswith("0")):
        forms.extend(_cardinal_forms(int(code)))
    forms.append(_spell_digits(code))
    # "oh" is a zero only next to a digit word; alone, or in a run of only "oh"s, it is an
    # interjection to the matcher, so all-zero codes keep "zero".
    if "0" in code and code.strip("0"):
        forms.append(_spell_digits(code, zero="oh"))
    return tuple(dict.fromkeys(forms))


def readback(code: str) -> str:
    """Return how the server reads ``code`` back.

    A digit code with a cardinal reading gets it and then its digits ("forty two, that is four
    two"): two renderings of one code are harder to mishear together than either alone (eSpeak
    read-backs of codes 0..99 heard right by the simulated caller: 59 of 100 digit by digit, 88
    as cardinals, 92 as both). Other digit codes are read digit by digit, word codes as they are.
    """
    if not _is_digit_code(code):
        return code
    forms = spoken_forms(code)
    digits = _spell_digits(code)
    return f"{forms[0]}, that is {digits}" if forms[0] != digits else digits


def _is_digit_code(code: str) -> bool:
    # str.isdigit alone accepts other scripts' digits and superscripts, as matching notes.
    return code.isascii() and code.isdigit()


def _damm_interim(digits: str) -> int:
    interim = 0
    for digit in digits:
        interim = _DAMM_TABLE[interim][int(digit)]
    return interim


def _spell_digits(code: str, *, zero: str = "zero") -> str:
    return " ".join(zero if digit == "0" else _DIGIT_WORDS[int(digit)] for digit in code)


def _cardinal_forms(number: int) -> tuple[str, ...]:
    """English readings of 0 <= ``number`` <= 999, with and without "and" after "hundred"."""
    hundreds, rest = divmod(number, 100)
    if not hundreds:
        return (_below_hundred(rest),)
    head = f"{_DIGIT_WORDS[hundreds]} hundred"
    if not rest:
        return (head,)
    tail = _below_hundred(rest)
    return (f"{head} {tail}", f"{head} and {tail}")


def _below_hundred(number: int) -> str:
    if number < 10:
        return _DIGIT_WORDS[number]
    if number < 20:
        return _TEEN_WORDS[number - 10]
    tens, unit = divmod(number, 10)
    return f"{_TENS_WORDS[tens]} {_DIGIT_WORDS[unit]}" if unit else _TENS_WORDS[tens]
