"""Code entry for one call as a pure state machine: it decides, the I/O layer acts.

The I/O layer feeds each input with the current time and performs the returned actions in order:
speak a :class:`Say`, claim the game for a :class:`Claim` and report back through
:meth:`CodeEntry.on_claim_result`, hang up on :class:`Hangup`, switch the recogniser on
:class:`Listen`. It sleeps until :attr:`CodeEntry.deadline` and then calls :meth:`CodeEntry.poll`.
Nothing here reads a clock or touches the pool.

Rules, by state:

- AWAITING_CODE: no input for a while after a prompt (``on_silence``) is a failed attempt;
  speech naming exactly one live code is claimed at once when the recogniser's
  confidence is at least ``confirm_below``; below it the code is read back (CONFIRMING), and the
  recogniser's other readings of the same speech that name other live codes are kept, at most
  ``MAX_OFFERS`` codes in all. A keypad entry that is a live code is claimed at once, with no
  read-back.
- CONFIRMING: a yes word or "#" claims the code read back; a no word or "*" rejects it and offers
  the next kept reading ("Was it ...?") or, with none left, ends the attempt; anything else
  repeats the question, at most ``MAX_REASKS`` times. No answer by the deadline ends the attempt.
  A complete keypad entry replaces the code read back.
- PATCHING: one claim is in flight; speech and keys are ignored until its result.
- PATCHED: the caller talks to the game; when the game leaves, entry starts over.
- ENDED: the machine hung up; every input is ignored.

Every entry that ends without a patch (no live code, every reading rejected, unanswered
read-back, claim refused) is one failed attempt; the ``max_attempts``-th ends the call with a
goodbye. A patch starts the count afresh.

A code the caller rejected is read back again, until the next patch, only after every other
reading of a later try: a recogniser that misheard it once tends to mishear the same way, so the
others come first; but it stays reachable, since the "no" may have been a slip, or the answer to
a read-back the caller misheard. (Left out of matching altogether, one such "no" locked the caller
out of their own game for the rest of the call: so ended each of the 6 failed calls in a run of the
speech benchmark's 400.)
"""

from __future__ import annotations

import enum
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

from phonepatch.shared.codes import readback, spoken_forms
from phonepatch.shared.matching import match_code, normalize_words

__all__ = [
    "CONFIRM_PHRASES",
    "MAX_OFFERS",
    "MAX_REASKS",
    "Claim",
    "CodeEntry",
    "EntryAction",
    "EntryState",
    "Hangup",
    "Listen",
    "Say",
    "readback_question",
]

SayKind = Literal["prompt", "readback", "hint", "connected", "goodbye", "game_left"]
ClaimVia = Literal["speech", "confirmed", "keypad"]

_YES_WORDS = ("yes", "yeah", "yep", "correct")
_NO_WORDS = ("no", "nope", "wrong")
# "not correct" and "that isn't correct" hold a yes word but mean no; a claim on them would patch
# the caller into a game they just refused.
_NEGATIONS = frozenset({"not", "isnt", "dont", "never"})
CONFIRM_PHRASES = _YES_WORDS + _NO_WORDS
MAX_REASKS = 2
MAX_OFFERS = 3  # codes read back for one spoken try: the best reading and two others

PROMPT = "Say or key in the code shown in your game."
_CONFIRM_QUESTION = "I heard {code}. Say yes or press pound to join."
_NEXT_QUESTION = "Was it {code}? Say yes or press pound to join."
_NO_MATCH_HINT = (
    "Sorry, I did not catch a valid code. Please say it again, or key it in and press pound."
)
_REJECTED_HINT = "Okay, please say the code again, or key it in and press pound."
_NO_INPUT_HINT = (
    "Sorry, I did not hear a code. Please say it again, or key it in and press pound."
)
_NO_ANSWER_HINT = (
    "Sorry, I did not get an answer. Please say the code again, or key it in and press pound."
)
_TAKEN = "That game already has a caller."
_TAKEN_HINT = "Please say or key in another code."
_GONE_HINT = "Sorry, that game is not available any more. Please say or key in another code."
_GOODBYE = "Sorry, I could not find that game. Goodbye."
_CONNECTED = "You are connected."
_GAME_LEFT = "The game has left. Say or key in a new code."


class EntryState(enum.Enum):
    AWAITING_CODE = enum.auto()
    CONFIRMING = enum.auto()
    PATCHING = enum.auto()
    PATCHED = enum.auto()
    ENDED = enum.auto()


@dataclass(frozen=True, slots=True)
class Say:
    """Speak ``text`` to the caller."""

    text: str
    kind: SayKind


@dataclass(frozen=True, slots=True)
class Claim:
    """Patch the caller into the game holding ``code``; report with ``on_claim_result``."""

    code: str
    via: ClaimVia


@dataclass(frozen=True, slots=True)
class Hangup:
    """End the call after speaking what came before."""

    reason: Literal["too_many_attempts"]


@dataclass(frozen=True, slots=True)
class Listen:
    """Switch the recogniser to expect ``phrases``, or to free speech when None."""

    phrases: tuple[str, ...] | None


EntryAction = Say | Claim | Hangup | Listen
Actions = tuple[EntryAction, ...]


class _Answer(enum.Enum):
    YES = enum.auto()
    NO = enum.auto()
    UNCLEAR = enum.auto()


class CodeEntry:
    """Decide, input by input, what one caller hears and which game they are patched into.

    Times are seconds on any clock that never goes backwards. ``Listen`` phrases for code entry
    come from the live codes of the latest input that carried them; when the pool changes, the I/O
    layer may refresh the recogniser with :meth:`expected_phrases`. Raises ValueError for a
    ``confirm_below`` outside 0..1, a ``max_attempts`` below 1 or a non-positive timeout.
    """

    def __init__(
        self,
        *,
        confirm_below: float,
        max_attempts: int,
        confirm_timeout_s: float,
        prompt: str = PROMPT,
    ) -> None:
        if not 0 <= confirm_below <= 1:
            raise ValueError("confirm_below must be within 0..1")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0 < confirm_timeout_s < math.inf:
            raise ValueError("confirm_timeout_s must be a positive number of seconds")
        self._confirm_below = confirm_below
        self._max_attempts = max_attempts
        self._confirm_timeout_s = confirm_timeout_s
        self._prompt = prompt
        self._state = EntryState.AWAITING_CODE
        self._live_codes: frozenset[str] = frozenset()
        self._code: str | None = None  # read back, being claimed, or patched, by state
        self._deadline: float | None = None
        self._failed_attempts = 0
        self._reasks = 0
        self._offers: list[str] = []  # other readings of the try being confirmed, next first
        self._asked_again = False  # the code read back is one of those
        self._rejected: set[str] = set()  # codes the caller said "no" to since the last patch

    @property
    def state(self) -> EntryState:
        return self._state

    @property
    def deadline(self) -> float | None:
        """When an unanswered read-back times out (call :meth:`poll` then), or None."""
        return self._deadline

    def expected_phrases(self, live_codes: Collection[str]) -> tuple[str, ...] | None:
        """Return the phrases a recogniser grammar should accept now, or None for no grammar."""
        if self._state is EntryState.AWAITING_CODE:
            return _code_phrases(live_codes)
        if self._state is EntryState.CONFIRMING:
            return _answer_phrases(live_codes)
        return None

    def start(self, live_codes: Collection[str]) -> Actions:
        """Greet the caller; returns nothing once entry has moved on."""
        if self._state is not EntryState.AWAITING_CODE:
            return ()
        self._live_codes = frozenset(live_codes)
        return (Say(self._prompt, "prompt"), Listen(_code_phrases(self._live_codes)))

    def on_speech(
        self,
        text: str,
        confidence: float,
        live_codes: Collection[str],
        now: float,
        alternatives: Sequence[str] = (),
    ) -> Actions:
        """Handle one final transcript; empty text and speech while patching are ignored.

        ``alternatives`` are the recogniser's other readings of the same speech, most likely
        first; those naming other live codes are offered in turn if the caller rejects the first.
        """
        self._live_codes = frozenset(live_codes)
        words = normalize_words(text)
        if not words:
            return ()
        if self._state is EntryState.CONFIRMING:
            if self._expired(now):
                return self._fail(_NO_ANSWER_HINT)
            return self._answer(_classify(words), now)
        if self._state is not EntryState.AWAITING_CODE:
            return ()
        code = match_code(text, self._live_codes)
        if code is None:
            return self._fail(_NO_MATCH_HINT)
        if confidence >= self._confirm_below and code not in self._rejected:
            return self._claim(code, "speech")
        others = (match_code(alternative, self._live_codes) for alternative in alternatives)
        readings = list(dict.fromkeys(reading for reading in (code, *others) if reading is not None))
        readings.sort(key=lambda reading: reading in self._rejected)  # stable: the recogniser's order
        first, *self._offers = readings[:MAX_OFFERS]
        return self._offer(first, now, again=False)

    def on_unrecognised(self, now: float) -> Actions:
        """Speech was heard but no words came of it: a miss while awaiting a code, an unclear
        answer while confirming, nothing otherwise."""
        if self._state is EntryState.AWAITING_CODE:
            return self._fail(_NO_MATCH_HINT)
        if self._state is EntryState.CONFIRMING:
            if self._expired(now):
                return self._fail(_NO_ANSWER_HINT)
            return self._answer(_Answer.UNCLEAR, now)
        return ()

    def on_silence(self, now: float) -> Actions:
        """The caller has said and keyed nothing for a while since the last prompt or hint: a
        failed attempt while awaiting a code (a hint is spoken, or the goodbye), nothing otherwise.
        The I/O layer times it, as telephone menus do, so that speech lost before it reached the
        recogniser does not leave the caller waiting in silence."""
        if self._state is EntryState.AWAITING_CODE:
            return self._fail(_NO_INPUT_HINT)
        return ()

    def on_question_played(self, now: float) -> None:
        """The read-back has finished playing: the caller has ``confirm_timeout_s`` from now to
        answer. (Timed from when it was queued, a long read-back and a caller who thinks before
        answering ran out of time, and the late "yes" was then taken for a new code.)"""
        if self._state is EntryState.CONFIRMING:
            self._deadline = now + self._confirm_timeout_s

    def on_keys(self, digits: str, live_codes: Collection[str], now: float) -> Actions:
        """Handle a completed keypad entry; a live code is claimed without confirmation."""
        self._live_codes = frozenset(live_codes)
        if self._state not in (EntryState.AWAITING_CODE, EntryState.CONFIRMING) or not digits:
            return ()
        if digits.isascii() and digits.isdigit() and digits in self._live_codes:
            return self._claim(digits, "keypad")
        return self._fail(_NO_MATCH_HINT)

    def on_key(self, key: str, now: float) -> Actions:
        """Handle a lone "#" (yes) or "*" (no) answering a read-back; other keys are ignored."""
        if self._state is not EntryState.CONFIRMING:
            return ()
        if self._expired(now):
            return self._fail(_NO_ANSWER_HINT)
        if key == "#":
            return self._answer(_Answer.YES, now)
        if key == "*":
            return self._answer(_Answer.NO, now)
        return ()

    def on_claim_result(self, code: str, claimed: bool | None) -> Actions:
        """Handle the outcome of the claim in flight: True patched, False taken, None unknown.

        A result for any other code, or with no claim in flight, is stale and ignored.
        """
        if self._state is not EntryState.PATCHING or code != self._code:
            return ()
        if claimed is True:
            self._state = EntryState.PATCHED
            self._failed_attempts = 0
            self._rejected.clear()
            return (Say(_CONNECTED, "connected"), Listen(None))
        if claimed is False:
            return (Say(_TAKEN, "hint"), *self._fail(_TAKEN_HINT))
        return self._fail(_GONE_HINT)

    def on_game_left(self) -> Actions:
        """Handle the patched game leaving: entry starts over, without its code."""
        if self._state is not EntryState.PATCHED:
            return ()
        self._live_codes -= {self._code}
        self._state = EntryState.AWAITING_CODE
        self._code = None
        return (Say(_GAME_LEFT, "game_left"), Listen(_code_phrases(self._live_codes)))

    def poll(self, now: float) -> Actions:
        """Time out an unanswered read-back once ``now`` reaches :attr:`deadline`."""
        if self._state is EntryState.CONFIRMING and self._expired(now):
            return self._fail(_NO_ANSWER_HINT)
        return ()

    def _expired(self, now: float) -> bool:
        return self._deadline is not None and now >= self._deadline

    def _offer(self, code: str, now: float, *, again: bool) -> Actions:
        self._state = EntryState.CONFIRMING
        self._code = code
        self._asked_again = again
        self._reasks = 0
        self._deadline = now + self._confirm_timeout_s
        return (Say(self._question(), "readback"), Listen(self.expected_phrases(self._live_codes)))

    def _answer(self, answer: _Answer, now: float) -> Actions:
        if answer is _Answer.YES and self._code is not None:  # always set while CONFIRMING
            return self._claim(self._code, "confirmed")
        if answer is _Answer.NO and self._code is not None:
            # The caller said this is not their code: no later try may land on it again.
            self._rejected.add(self._code)
            offers = [code for code in self._offers if code in self._live_codes]
            if offers:
                self._offers = offers[1:]
                return self._offer(offers[0], now, again=True)
            return self._fail(_REJECTED_HINT)
        self._reasks += 1
        if self._reasks > MAX_REASKS:
            return self._fail(_NO_ANSWER_HINT)
        self._deadline = now + self._confirm_timeout_s
        return (Say(self._question(), "readback"),)

    def _question(self) -> str:
        return readback_question(self._code or "", again=self._asked_again)

    def _claim(self, code: str, via: ClaimVia) -> Actions:
        self._state = EntryState.PATCHING
        self._code = code
        self._offers = []
        self._deadline = None
        return (Claim(code, via),)

    def _fail(self, hint: str) -> Actions:
        """Count one failed attempt; hint and listen for a code again, or say goodbye."""
        self._code = None
        self._offers = []
        self._deadline = None
        self._failed_attempts += 1
        if self._failed_attempts >= self._max_attempts:
            self._state = EntryState.ENDED
            return (Say(_GOODBYE, "goodbye"), Hangup("too_many_attempts"))
        previous, self._state = self._state, EntryState.AWAITING_CODE
        if previous is EntryState.AWAITING_CODE:
            return (Say(hint, "hint"),)
        return (Say(hint, "hint"), Listen(_code_phrases(self._live_codes)))


def _classify(words: Sequence[str]) -> _Answer:
    said = set(words)
    has_yes = not said.isdisjoint(_YES_WORDS)
    negated = not said.isdisjoint(_NEGATIONS)
    says_yes = has_yes and not negated
    says_no = not said.isdisjoint(_NO_WORDS) or (has_yes and negated)
    if says_yes != says_no:
        return _Answer.YES if says_yes else _Answer.NO
    return _Answer.UNCLEAR


def _answer_phrases(live_codes: Collection[str]) -> tuple[str, ...]:
    """What a recogniser listens for while a read-back is answered: yes and no words, and the
    codes as well. A grammar of yes and no alone makes every sound a yes or a no: a caller who
    said the code again, late, over a read-back was once heard as "yes" and patched into the game
    read back. With the codes beside them, such speech is a code, an unclear answer, and the
    question is asked again."""
    return tuple(dict.fromkeys((*CONFIRM_PHRASES, *_code_phrases(live_codes))))


def _code_phrases(live_codes: Collection[str]) -> tuple[str, ...]:
    """Every spoken form of every live code, in a stable order and without repeats."""
    return tuple(
        dict.fromkeys(form for code in sorted(live_codes) for form in spoken_forms(code))
    )


def readback_question(code: str, *, again: bool = False) -> str:
    """What the caller hears when a spoken ``code`` is read back for confirmation; ``again`` for
    another reading of the same speech, after the caller rejected one."""
    return (_NEXT_QUESTION if again else _CONFIRM_QUESTION).format(code=readback(code))
