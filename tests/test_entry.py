"""Code entry for one call, grouped by rule (see the docstring of phonepatch.shared.entry)."""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Collection
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from phonepatch.shared import entry as entry_module
from phonepatch.shared.codes import generated_codes, readback, spoken_forms
from phonepatch.shared.entry import (
    CONFIRM_PHRASES,
    MAX_OFFERS,
    MAX_REASKS,
    Claim,
    CodeEntry,
    EntryAction,
    EntryState,
    Hangup,
    Listen,
    Say,
    readback_question,
)
from phonepatch.shared.matching import match_code, normalize_words

CONFIRM_BELOW = 0.8
MAX_ATTEMPTS = 3
TIMEOUT_S = 10.0
LIVE = frozenset({"7", "42", "43", "427", "0427", "apple pie"})

PROMPT = Say("Say or key in the code shown in your game.", "prompt")
NO_MATCH = Say(
    "Sorry, I did not catch a valid code. Please say it again, or key it in and press pound.",
    "hint",
)
REJECTED = Say("Okay, please say the code again, or key it in and press pound.", "hint")
GOODBYE = Say("Sorry, I could not find that game. Goodbye.", "goodbye")
CONNECTED = Say("You are connected.", "connected")
GAME_LEFT = Say("The game has left. Say or key in a new code.", "game_left")
TAKEN = Say("That game already has a caller.", "hint")
YES_WORDS = ("yes", "yeah", "yep", "correct")
NO_WORDS = ("no", "nope", "wrong")


def question(code: str, *, again: bool = False) -> Say:
    if again:
        return Say(f"Was it {readback(code)}? Say yes or press pound to join.", "readback")
    return Say(f"I heard {readback(code)}. Say yes or press pound to join.", "readback")


def listen_for(live_codes: Collection[str]) -> Listen:
    forms = (form for code in sorted(live_codes) for form in spoken_forms(code))
    return Listen(tuple(dict.fromkeys(forms)))


def hint_kinds(actions: tuple[EntryAction, ...]) -> list[str]:
    return [action.kind for action in actions if isinstance(action, Say)]


@pytest.fixture
def entry() -> CodeEntry:
    code_entry = CodeEntry(
        confirm_below=CONFIRM_BELOW, max_attempts=MAX_ATTEMPTS, confirm_timeout_s=TIMEOUT_S
    )
    code_entry.start(LIVE)
    return code_entry


def confirming(entry: CodeEntry, code: str = "427", now: float = 0.0) -> CodeEntry:
    """Bring ``entry`` to CONFIRMING with ``code`` read back at ``now``."""
    entry.on_speech(readback(code), 0.5, LIVE, now)
    assert entry.state is EntryState.CONFIRMING
    return entry


def patched(entry: CodeEntry, code: str = "42") -> CodeEntry:
    entry.on_keys(code, LIVE, 0.0)
    entry.on_claim_result(code, True)
    assert entry.state is EntryState.PATCHED
    return entry


def test_entry_module_imports_no_io_or_clock() -> None:
    """STYLE.md: pure modules import no I/O or clock (test_purity.py predates this module)."""
    tree = ast.parse(Path(entry_module.__file__).read_text(encoding="utf-8"))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert not imported & {"aiohttp", "redis", "asyncio", "time", "datetime", "socket"}


class TestActions:
    @pytest.mark.parametrize(
        "action", [Say("hi", "prompt"), Claim("42", "keypad"), Hangup("too_many_attempts"),
                   Listen(None)]
    )
    def test_actions_are_frozen_and_slotted(self, action: EntryAction) -> None:
        assert not hasattr(action, "__dict__")
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(action, dataclasses.fields(action)[0].name, "x")


class TestConstruction:
    @pytest.mark.parametrize(
        "kwargs",
        [
            {"confirm_below": -0.1}, {"confirm_below": 1.5}, {"confirm_below": float("nan")},
            {"max_attempts": 0}, {"confirm_timeout_s": 0.0}, {"confirm_timeout_s": float("inf")},
        ],
    )
    def test_bad_settings_are_refused(self, kwargs: dict) -> None:
        settings_ = {"confirm_below": 0.5, "max_attempts": 3, "confirm_timeout_s": 5.0, **kwargs}
        with pytest.raises(ValueError):
            CodeEntry(**settings_)

    def test_new_entry_awaits_a_code_with_no_deadline(self) -> None:
        entry = CodeEntry(confirm_below=0.5, max_attempts=3, confirm_timeout_s=5.0)
        assert entry.state is EntryState.AWAITING_CODE
        assert entry.deadline is None


class TestStart:
    def test_start_prompts_and_listens_for_live_codes(self) -> None:
        entry = CodeEntry(confirm_below=0.5, max_attempts=3, confirm_timeout_s=5.0)
        assert entry.start(LIVE) == (PROMPT, listen_for(LIVE))

    def test_prompt_text_can_come_from_settings(self) -> None:
        entry = CodeEntry(confirm_below=0.5, max_attempts=3, confirm_timeout_s=5.0, prompt="Hi.")
        assert entry.start(LIVE)[0] == Say("Hi.", "prompt")

    def test_start_after_entry_moved_on_does_nothing(self, entry: CodeEntry) -> None:
        confirming(entry)
        assert entry.start(LIVE) == ()


class TestConfidentSpeech:
    @pytest.mark.parametrize(
        ("text", "code"),
        [("forty two", "42"), ("four hundred and twenty seven", "427"),
         ("it's zero four two seven", "0427"), ("Apple pie!", "apple pie")],
    )
    def test_speech_naming_one_live_code_is_claimed_at_once(
        self, entry: CodeEntry, text: str, code: str
    ) -> None:
        assert entry.on_speech(text, 0.95, LIVE, 0.0) == (Claim(code, "speech"),)
        assert entry.state is EntryState.PATCHING

    def test_confidence_equal_to_the_threshold_needs_no_confirmation(
        self, entry: CodeEntry
    ) -> None:
        assert entry.on_speech("forty two", CONFIRM_BELOW, LIVE, 0.0) == (Claim("42", "speech"),)

    def test_only_codes_live_at_this_moment_match(self, entry: CodeEntry) -> None:
        assert entry.on_speech("forty two", 0.95, {"43"}, 0.0) == (NO_MATCH,)


class TestLowConfidenceSpeech:
    def test_code_is_read_back_and_the_recogniser_listens_for_yes_or_no(
        self, entry: CodeEntry
    ) -> None:
        actions = entry.on_speech("four twenty seven", 0.5, LIVE, 3.0)
        assert actions == (
            Say(
                "I heard four hundred twenty seven, that is four two seven. "
                "Say yes or press pound to join.",
                "readback",
            ),
            Listen(entry.expected_phrases(LIVE)),
        )
        assert entry.state is EntryState.CONFIRMING
        assert entry.deadline == 3.0 + TIMEOUT_S

    def test_the_answer_grammar_holds_the_codes_so_a_repeated_code_is_no_yes(
        self, entry: CodeEntry
    ) -> None:
        entry.on_speech("forty two", 0.5, LIVE, 0.0)
        phrases = entry.expected_phrases(LIVE)
        assert set(CONFIRM_PHRASES) <= set(phrases) and "forty two" in phrases
        # said again over the read-back, the code is an unclear answer: asked again, no claim
        assert entry.on_speech("forty two", 0.5, LIVE, 1.0) == (question("42"),)
        assert entry.state is EntryState.CONFIRMING

    def test_word_code_is_read_back_as_itself(self, entry: CodeEntry) -> None:
        assert entry.on_speech("apple pie", 0.1, LIVE, 0.0)[0] == question("apple pie")

    def test_nan_confidence_is_not_confident(self, entry: CodeEntry) -> None:
        entry.on_speech("forty two", float("nan"), LIVE, 0.0)
        assert entry.state is EntryState.CONFIRMING


class TestConfirming:
    @pytest.mark.parametrize("text", [*YES_WORDS, "Yes please.", "yeah that's it", "correct!"])
    def test_yes_word_claims_the_code_read_back(self, entry: CodeEntry, text: str) -> None:
        confirming(entry, "427")
        assert entry.on_speech(text, 0.3, LIVE, 1.0) == (Claim("427", "confirmed"),)
        assert entry.state is EntryState.PATCHING
        assert entry.deadline is None

    def test_pound_claims_the_code_read_back(self, entry: CodeEntry) -> None:
        confirming(entry, "427")
        assert entry.on_key("#", 1.0) == (Claim("427", "confirmed"),)

    @pytest.mark.parametrize(
        "text", [*NO_WORDS, "No, forty two.", "not correct", "that isn't correct"]
    )
    def test_no_word_drops_the_code_and_asks_again(self, entry: CodeEntry, text: str) -> None:
        confirming(entry, "427")
        assert entry.on_speech(text, 0.9, LIVE, 1.0) == (REJECTED, listen_for(LIVE))
        assert entry.state is EntryState.AWAITING_CODE
        assert entry.deadline is None

    def test_star_drops_the_code_and_asks_again(self, entry: CodeEntry) -> None:
        confirming(entry, "427")
        assert entry.on_key("*", 1.0) == (REJECTED, listen_for(LIVE))
        assert entry.state is EntryState.AWAITING_CODE

    @pytest.mark.parametrize("text", ["um", "forty two", "yes no", "maybe"])
    def test_anything_else_repeats_the_question(self, entry: CodeEntry, text: str) -> None:
        confirming(entry, "427")
        assert entry.on_speech(text, 0.9, LIVE, 4.0) == (question("427"),)
        assert entry.state is EntryState.CONFIRMING
        assert entry.deadline == 4.0 + TIMEOUT_S

    def test_question_is_repeated_a_few_times_then_entry_starts_over(
        self, entry: CodeEntry
    ) -> None:
        confirming(entry, "427")
        for _ in range(MAX_REASKS):
            assert entry.on_speech("um", 0.9, LIVE, 1.0) == (question("427"),)
        actions = entry.on_speech("um", 0.9, LIVE, 1.0)
        assert hint_kinds(actions) == ["hint"] and actions[-1] == listen_for(LIVE)
        assert entry.state is EntryState.AWAITING_CODE

    @pytest.mark.parametrize("key", ["1", "0", "A"])
    def test_other_single_keys_are_ignored(self, entry: CodeEntry, key: str) -> None:
        confirming(entry)
        assert entry.on_key(key, 1.0) == ()
        assert entry.state is EntryState.CONFIRMING

    def test_empty_speech_is_ignored(self, entry: CodeEntry) -> None:
        confirming(entry)
        assert entry.on_speech(" ... ", 0.9, LIVE, 1.0) == ()
        assert entry.state is EntryState.CONFIRMING

    def test_keyed_code_replaces_the_code_read_back(self, entry: CodeEntry) -> None:
        confirming(entry, "427")
        assert entry.on_keys("42", LIVE, 1.0) == (Claim("42", "keypad"),)

    def test_keyed_dead_code_drops_the_code_read_back(self, entry: CodeEntry) -> None:
        confirming(entry, "427")
        assert entry.on_keys("99", LIVE, 1.0) == (NO_MATCH, listen_for(LIVE))
        assert entry.on_key("#", 2.0) == ()


class TestConfirmationTimeout:
    def test_poll_before_the_deadline_does_nothing(self, entry: CodeEntry) -> None:
        confirming(entry, now=0.0)
        assert entry.poll(TIMEOUT_S - 0.001) == ()
        assert entry.state is EntryState.CONFIRMING

    def test_poll_at_the_deadline_starts_entry_over_with_a_hint(self, entry: CodeEntry) -> None:
        confirming(entry, now=0.0)
        actions = entry.poll(TIMEOUT_S)
        assert hint_kinds(actions) == ["hint"] and actions[-1] == listen_for(LIVE)
        assert entry.state is EntryState.AWAITING_CODE
        assert entry.deadline is None

    @pytest.mark.parametrize("late", ["yes", "#"])
    def test_an_answer_after_the_deadline_claims_nothing(self, entry: CodeEntry, late: str) -> None:
        confirming(entry, now=0.0)
        if late == "#":
            actions = entry.on_key("#", TIMEOUT_S + 1)
        else:
            actions = entry.on_speech("yes", 0.9, LIVE, TIMEOUT_S + 1)
        assert not any(isinstance(action, Claim) for action in actions)
        assert entry.state is EntryState.AWAITING_CODE

    def test_poll_outside_confirming_does_nothing(self, entry: CodeEntry) -> None:
        assert entry.poll(1e9) == ()


class TestKeypad:
    def test_keyed_live_code_is_claimed_without_confirmation(self, entry: CodeEntry) -> None:
        assert entry.on_keys("0427", LIVE, 0.0) == (Claim("0427", "keypad"),)
        assert entry.state is EntryState.PATCHING

    @pytest.mark.parametrize("digits", ["427 ", "99", "04270", "427#"])
    def test_keyed_entry_must_be_a_live_code_exactly(self, entry: CodeEntry, digits: str) -> None:
        assert entry.on_keys(digits, LIVE, 0.0) == (NO_MATCH,)

    def test_damm_invalid_code_is_a_miss_in_a_generated_pool(self) -> None:
        pool = generated_codes(4)
        entry = CodeEntry(confirm_below=0.5, max_attempts=3, confirm_timeout_s=5.0)
        entry.start(pool)
        assert entry.on_keys("0013", pool, 0.0) == (Claim("0013", "keypad"),)
        entry = CodeEntry(confirm_below=0.5, max_attempts=3, confirm_timeout_s=5.0)
        assert entry.on_keys("0031", pool, 0.0) == (NO_MATCH,)  # "0013" transposed

    def test_keyed_word_code_never_matches(self, entry: CodeEntry) -> None:
        assert entry.on_keys("apple pie", LIVE, 0.0) == (NO_MATCH,)

    def test_empty_keyed_entry_is_ignored(self, entry: CodeEntry) -> None:
        assert entry.on_keys("", LIVE, 0.0) == ()


class TestMisses:
    @pytest.mark.parametrize("text", ["ninety nine", "banana", "forty two and forty three"])
    def test_speech_naming_no_single_live_code_is_a_miss(self, entry: CodeEntry, text: str) -> None:
        assert entry.on_speech(text, 0.95, LIVE, 0.0) == (NO_MATCH,)
        assert entry.state is EntryState.AWAITING_CODE

    def test_last_allowed_miss_says_goodbye_and_hangs_up(self, entry: CodeEntry) -> None:
        for _ in range(MAX_ATTEMPTS - 1):
            assert entry.on_keys("99", LIVE, 0.0) == (NO_MATCH,)
        assert entry.on_speech("ninety nine", 0.9, LIVE, 0.0) == (
            GOODBYE, Hangup("too_many_attempts"),
        )
        assert entry.state is EntryState.ENDED

    def test_rejected_read_back_counts_as_a_miss(self, entry: CodeEntry) -> None:
        codes = ["42", "43", "7"]
        for code in codes[: MAX_ATTEMPTS - 1]:
            confirming(entry, code)
            entry.on_key("*", 1.0)
        confirming(entry, codes[MAX_ATTEMPTS - 1])
        assert entry.on_key("*", 1.0) == (GOODBYE, Hangup("too_many_attempts"))

    def test_ended_entry_ignores_every_input(self, entry: CodeEntry) -> None:
        for _ in range(MAX_ATTEMPTS):
            entry.on_keys("99", LIVE, 0.0)
        assert entry.state is EntryState.ENDED
        assert entry.on_speech("forty two", 1.0, LIVE, 1.0) == ()
        assert entry.on_keys("42", LIVE, 1.0) == ()
        assert entry.on_key("#", 1.0) == ()
        assert entry.on_claim_result("42", True) == ()
        assert entry.on_game_left() == ()
        assert entry.poll(1e9) == ()
        assert entry.start(LIVE) == ()

    def test_empty_speech_is_not_a_miss(self, entry: CodeEntry) -> None:
        for _ in range(MAX_ATTEMPTS + 1):
            assert entry.on_speech("", 0.9, LIVE, 0.0) == ()
        assert entry.state is EntryState.AWAITING_CODE


class TestClaimResults:
    def test_claimed_patches_the_caller_and_frees_the_recogniser(self, entry: CodeEntry) -> None:
        entry.on_keys("42", LIVE, 0.0)
        assert entry.on_claim_result("42", True) == (CONNECTED, Listen(None))
        assert entry.state is EntryState.PATCHED

    def test_taken_game_is_reported_and_counts_as_a_miss(self, entry: CodeEntry) -> None:
        entry.on_keys("42", LIVE, 0.0)
        actions = entry.on_claim_result("42", False)
        assert actions[0] == TAKEN
        assert hint_kinds(actions) == ["hint", "hint"] and actions[-1] == listen_for(LIVE)
        assert entry.state is EntryState.AWAITING_CODE

    def test_taken_game_on_the_last_attempt_says_goodbye(self) -> None:
        entry = CodeEntry(confirm_below=0.5, max_attempts=1, confirm_timeout_s=5.0)
        entry.on_keys("42", LIVE, 0.0)
        assert entry.on_claim_result("42", False) == (
            TAKEN, GOODBYE, Hangup("too_many_attempts"),
        )

    def test_unknown_code_counts_as_a_miss(self, entry: CodeEntry) -> None:
        entry.on_keys("42", LIVE, 0.0)
        actions = entry.on_claim_result("42", None)
        assert hint_kinds(actions) == ["hint"] and actions[-1] == listen_for(LIVE)
        assert entry.state is EntryState.AWAITING_CODE

    def test_result_for_another_code_is_ignored(self, entry: CodeEntry) -> None:
        entry.on_keys("42", LIVE, 0.0)
        assert entry.on_claim_result("43", True) == ()
        assert entry.state is EntryState.PATCHING

    def test_result_with_no_claim_in_flight_is_ignored(self, entry: CodeEntry) -> None:
        assert entry.on_claim_result("42", True) == ()
        assert entry.state is EntryState.AWAITING_CODE

    def test_patch_gives_the_caller_fresh_attempts(self, entry: CodeEntry) -> None:
        for _ in range(MAX_ATTEMPTS - 1):
            entry.on_keys("99", LIVE, 0.0)
        patched(entry)
        entry.on_game_left()
        for _ in range(MAX_ATTEMPTS - 1):
            assert entry.on_keys("99", LIVE, 0.0) == (NO_MATCH,)


class TestPatchingAndPatched:
    @pytest.mark.parametrize("state", ["patching", "patched"])
    def test_speech_and_keys_are_ignored(self, entry: CodeEntry, state: str) -> None:
        if state == "patched":
            patched(entry)
        else:
            entry.on_keys("42", LIVE, 0.0)
        assert entry.on_speech("forty three", 1.0, LIVE, 1.0) == ()
        assert entry.on_keys("43", LIVE, 1.0) == ()
        assert entry.on_key("#", 1.0) == ()


class TestGameLeft:
    def test_patched_caller_starts_over_without_the_game_that_left(self, entry: CodeEntry) -> None:
        patched(entry, "42")
        assert entry.on_game_left() == (GAME_LEFT, listen_for(LIVE - {"42"}))
        assert entry.state is EntryState.AWAITING_CODE

    @pytest.mark.parametrize("state", ["awaiting", "confirming", "patching"])
    def test_game_left_outside_patched_is_ignored(self, entry: CodeEntry, state: str) -> None:
        if state == "confirming":
            confirming(entry)
        elif state == "patching":
            entry.on_keys("42", LIVE, 0.0)
        before = entry.state
        assert entry.on_game_left() == ()
        assert entry.state is before


class TestExpectedPhrases:
    def test_awaiting_code_expects_the_spoken_forms_of_the_live_codes(
        self, entry: CodeEntry
    ) -> None:
        assert entry.expected_phrases({"42", "apple pie"}) == (
            "forty two", "four two", "apple pie",
        )

    def test_confirming_expects_yes_and_no_words_then_the_codes(self, entry: CodeEntry) -> None:
        confirming(entry)
        phrases = entry.expected_phrases(LIVE)
        assert phrases[: len(YES_WORDS) + len(NO_WORDS)] == (*YES_WORDS, *NO_WORDS)
        assert set(phrases[len(YES_WORDS) + len(NO_WORDS) :]) == {
            form for code in LIVE for form in spoken_forms(code)
        } - set(YES_WORDS + NO_WORDS)

    def test_patching_and_patched_expect_no_grammar(self, entry: CodeEntry) -> None:
        entry.on_keys("42", LIVE, 0.0)
        assert entry.expected_phrases(LIVE) is None
        entry.on_claim_result("42", True)
        assert entry.expected_phrases(LIVE) is None


# Stateful property: the caller is only ever patched into a code they said or keyed.

POOL = ("7", "42", "43", "427", "0427", "apple pie", "apple", "0013")
_FORMS = [form for code in POOL for form in spoken_forms(code)]
_SALAD = sorted({word for form in _FORMS for word in form.split()}
                | {*YES_WORDS, *NO_WORDS, "not", "isnt", "and", "um", "oh", "hundred"})
texts = st.one_of(
    st.sampled_from(_FORMS + list(CONFIRM_PHRASES) + ["", "not correct", "um"]),
    st.lists(st.sampled_from(_SALAD), max_size=6).map(" ".join),
    st.text(max_size=20),
)
live_sets = st.one_of(st.just(frozenset(POOL)), st.frozensets(st.sampled_from(POOL)))
confidences = st.one_of(st.floats(0.0, 1.0), st.sampled_from([CONFIRM_BELOW, float("nan")]))
# Prefixes and extensions of live codes are the near misses a lax keypad rule would accept.
_NEAR_KEYED = sorted({code[:end] + tail for code in POOL if code.isdigit()
                      for end in range(len(code) + 1) for tail in ("", "0", "7")})
keyed = st.one_of(st.sampled_from(_NEAR_KEYED), st.text(alphabet="0123456789", max_size=5))


class EntryMachine(RuleBasedStateMachine):
    """Drives CodeEntry with arbitrary inputs and checks every Claim against what was said."""

    def __init__(self) -> None:
        super().__init__()
        self.entry = CodeEntry(
            confirm_below=CONFIRM_BELOW, max_attempts=MAX_ATTEMPTS, confirm_timeout_s=TIMEOUT_S
        )
        self.now = 0.0
        self.offered: str | None = None  # the code the caller heard read back
        self.readings: set[str] = set()  # other codes the try being confirmed may have named
        self.asked_again = False  # the code read back is one of those
        self.in_flight: str | None = None
        self.patched = False
        self.hung_up = False

    @initialize(live=live_sets)
    def start(self, live: frozenset[str]) -> None:
        self.settle(self.entry.start(live), allowed=set())

    @rule(
        text=texts,
        confidence=confidences,
        live=live_sets,
        alternatives=st.lists(texts, max_size=3).map(tuple),
    )
    def speak(
        self, text: str, confidence: float, live: frozenset[str], alternatives: tuple[str, ...]
    ) -> None:
        was_confirming = self.entry.state is EntryState.CONFIRMING
        actions = self.entry.on_speech(text, confidence, live, self.now, alternatives)
        heard = match_code(text, live)
        allowed = set()
        if confidence >= CONFIRM_BELOW and heard is not None:
            allowed.add(Claim(heard, "speech"))
        if self.offered is not None and set(normalize_words(text)) & set(YES_WORDS):
            allowed.add(Claim(self.offered, "confirmed"))
        if not was_confirming and any(
            isinstance(action, Say) and action.kind == "readback" for action in actions
        ):
            # A read-back must repeat exactly what the caller just said; later ones may offer
            # the other readings of the same speech.
            assert heard is not None and not confidence >= CONFIRM_BELOW
            self.offered = heard
            self.asked_again = False
            self.readings = {match_code(other, live) for other in alternatives} - {None, heard}
        self.settle(actions, allowed)

    @rule(digits=keyed, live=live_sets)
    def key_in(self, digits: str, live: frozenset[str]) -> None:
        actions = self.entry.on_keys(digits, live, self.now)
        self.settle(actions, {Claim(digits, "keypad")} if digits in live else set())

    @rule(key=st.one_of(st.sampled_from("#*0123456789A"), st.text(max_size=2)))
    def press(self, key: str) -> None:
        actions = self.entry.on_key(key, self.now)
        allowed = {Claim(self.offered, "confirmed")} if key == "#" and self.offered else set()
        self.settle(actions, allowed)

    @rule(for_in_flight=st.booleans(), claimed=st.sampled_from([True, False, None]))
    def claim_result(self, for_in_flight: bool, claimed: bool | None) -> None:
        code = self.in_flight if for_in_flight and self.in_flight else "43"
        actions = self.entry.on_claim_result(code, claimed)
        if code == self.in_flight:
            self.in_flight = None
            self.patched = claimed is True
            assert (CONNECTED in actions) == (claimed is True)
        self.settle(actions, allowed=set())

    @rule()
    def game_left(self) -> None:
        actions = self.entry.on_game_left()
        assert bool(actions) == (self.patched and not self.hung_up)
        self.patched = False
        self.settle(actions, allowed=set())

    @rule(delay_s=st.floats(0.0, TIMEOUT_S * 1.5))
    def wait(self, delay_s: float) -> None:
        self.now += delay_s
        self.settle(self.entry.poll(self.now), allowed=set())

    def settle(self, actions: tuple[EntryAction, ...], allowed: set[Claim]) -> None:
        """Check one input's actions and update what the test knows of the call."""
        if self.hung_up:
            assert actions == ()
        claims = [action for action in actions if isinstance(action, Claim)]
        assert len(claims) <= 1
        for claim in claims:
            assert claim in allowed, (claim, allowed)
            assert self.in_flight is None and not self.patched
            self.in_flight = claim.code
        for action in actions:
            if isinstance(action, Say) and action.kind == "readback":
                if action != question(self.offered or "", again=self.asked_again):
                    # Not a repeat: another reading of the same try, offered after a "no".
                    offered = next(
                        (code for code in self.readings if action == question(code, again=True)),
                        None,
                    )
                    assert offered is not None, (action, self.readings)
                    self.readings.discard(offered)
                    self.offered = offered
                    self.asked_again = True
        if any(isinstance(action, Hangup) for action in actions):
            assert actions[-2:] == (GOODBYE, Hangup("too_many_attempts"))
            self.hung_up = True
        if self.entry.state is not EntryState.CONFIRMING:
            self.offered = None

    @invariant()
    def deadline_is_set_exactly_while_confirming(self) -> None:
        assert (self.entry.deadline is not None) == (self.entry.state is EntryState.CONFIRMING)

    @invariant()
    def ended_exactly_after_hangup(self) -> None:
        assert (self.entry.state is EntryState.ENDED) == self.hung_up


EntryMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=20, deadline=None
)
TestEntryMachine = EntryMachine.TestCase


class TestUnrecognisedSpeech:
    def test_is_a_miss_while_awaiting_a_code(self):
        entry = CodeEntry(confirm_below=0.9, max_attempts=2, confirm_timeout_s=5.0)
        entry.start({"42"})
        actions = entry.on_unrecognised(now=0.0)
        assert [type(action) for action in actions] == [Say] and actions[0].kind == "hint"
        assert [type(action) for action in entry.on_unrecognised(now=1.0)] == [Say, Hangup]

    def test_is_an_unclear_answer_while_confirming(self):
        entry = CodeEntry(confirm_below=0.9, max_attempts=3, confirm_timeout_s=5.0)
        entry.start({"42"})
        entry.on_speech("forty two", 0.1, {"42"}, now=0.0)
        actions = entry.on_unrecognised(now=1.0)
        assert actions == (Say(readback_question("42"), "readback"),)
        assert entry.state is EntryState.CONFIRMING

    def test_is_ignored_once_patched(self):
        entry = CodeEntry(confirm_below=0.9, max_attempts=3, confirm_timeout_s=5.0)
        entry.start({"42"})
        entry.on_keys("42", {"42"}, now=0.0)
        entry.on_claim_result("42", True)
        assert entry.on_unrecognised(now=1.0) == ()


class TestRejectedReadBack:
    def test_a_later_try_reads_back_its_other_readings_before_the_rejected_code(self):
        entry = CodeEntry(confirm_below=0.9, max_attempts=3, confirm_timeout_s=5.0)
        live = {"87", "67"}
        entry.start(live)
        entry.on_speech("eighty seven", 0.1, live, now=0.0)
        entry.on_speech("no", 0.1, live, now=1.0)
        assert entry.on_speech("eighty seven", 0.1, live, 2.0, ("sixty seven",))[0] == question("67")
        assert entry.on_speech("no", 0.1, live, now=3.0)[0] == question("87", again=True)
        assert entry.on_speech("yes", 0.1, live, now=4.0) == (Claim("87", "confirmed"),)

    def test_a_rejected_code_stays_reachable_a_no_may_have_been_a_slip(self):
        entry = CodeEntry(confirm_below=0.9, max_attempts=3, confirm_timeout_s=5.0)
        live = {"87", "67"}
        entry.start(live)
        entry.on_speech("eighty seven", 0.1, live, now=0.0)
        actions = entry.on_speech("no", 0.1, live, now=1.0)
        listen = [action for action in actions if isinstance(action, Listen)]
        assert listen and "eighty seven" in listen[0].phrases
        assert entry.on_speech("eighty seven", 0.1, live, now=2.0)[0] == question("87")

    def test_a_rejected_code_is_read_back_even_when_heard_with_confidence(self):
        entry = CodeEntry(confirm_below=0.9, max_attempts=3, confirm_timeout_s=5.0)
        entry.start({"87"})
        entry.on_speech("eighty seven", 0.1, {"87"}, now=0.0)
        entry.on_key("*", now=1.0)
        assert entry.on_speech("eighty seven", 0.99, {"87"}, now=2.0)[0] == question("87")

    def test_the_rejected_code_can_still_be_keyed(self):
        entry = CodeEntry(confirm_below=0.9, max_attempts=3, confirm_timeout_s=5.0)
        entry.start({"87"})
        entry.on_speech("eighty seven", 0.1, {"87"}, now=0.0)
        entry.on_key("*", now=1.0)
        assert entry.on_keys("87", {"87"}, now=2.0) == (Claim("87", "keypad"),)


class TestOtherReadings:
    """A refused read-back offers the recogniser's next reading of the same speech."""

    def test_a_no_offers_the_next_reading_without_counting_a_miss(self, entry: CodeEntry) -> None:
        entry.on_speech("forty two", 0.1, LIVE, 0.0, ("forty three", "seven"))
        assert entry.on_key("*", 1.0) == (question("43", again=True), Listen(entry.expected_phrases(LIVE)))
        assert entry.on_speech("no", 0.1, LIVE, 2.0)[0] == question("7", again=True)
        assert entry.on_speech("yes", 0.1, LIVE, 3.0) == (Claim("7", "confirmed"),)

    def test_readings_of_no_live_code_or_the_same_code_are_skipped_a_rejected_one_comes_last(
        self, entry: CodeEntry
    ) -> None:
        confirming(entry, "7")
        entry.on_key("*", 1.0)  # rejected: read back after the other readings of a later try
        entry.on_speech("forty two", 0.1, LIVE, 2.0, ("ninety nine", "forty two", "seven", "forty three"))
        assert entry.on_key("*", 3.0)[0] == question("43", again=True)
        assert entry.on_key("*", 4.0)[0] == question("7", again=True)

    def test_every_reading_refused_is_one_miss(self) -> None:
        entry = CodeEntry(confirm_below=0.9, max_attempts=2, confirm_timeout_s=5.0)
        entry.start(LIVE)
        entry.on_speech("forty two", 0.1, LIVE, 0.0, ("forty three",))
        entry.on_key("*", 1.0)
        assert entry.on_key("*", 2.0) == (REJECTED, listen_for(LIVE))
        entry.on_speech("seven", 0.1, LIVE, 3.0)
        assert entry.on_key("*", 4.0) == (GOODBYE, Hangup("too_many_attempts"))

    def test_at_most_max_offers_codes_are_read_back_for_one_try(self, entry: CodeEntry) -> None:
        entry.on_speech("forty two", 0.1, LIVE, 0.0, ("forty three", "seven", "four two seven"))
        said = [entry.on_key("*", float(second))[0] for second in range(1, MAX_OFFERS + 1)]
        assert said[:-1] == [question("43", again=True), question("7", again=True)]
        assert said[-1] == REJECTED
        assert len(said) == MAX_OFFERS

    def test_a_confident_code_is_claimed_and_its_readings_unused(self, entry: CodeEntry) -> None:
        assert entry.on_speech("forty two", 0.95, LIVE, 0.0, ("forty three",)) == (
            Claim("42", "speech"),
        )

    def test_rejections_last_until_a_patch(self) -> None:
        entry = CodeEntry(confirm_below=0.9, max_attempts=5, confirm_timeout_s=5.0)
        entry.start(LIVE)
        for code in ("42", "43"):
            confirming(entry, code)
            entry.on_key("*", 1.0)
        assert entry.on_speech("forty two", 0.1, LIVE, 2.0, ("seven",))[0] == question("7")
        entry.on_keys("7", LIVE, 3.0)
        entry.on_claim_result("7", True)
        entry.on_game_left()
        assert entry.on_speech("forty two", 0.1, LIVE, 4.0, ("forty three",))[0] == question("42")


class TestSilence:
    def test_silence_while_awaiting_a_code_is_a_failed_attempt(self):
        entry = CodeEntry(confirm_below=0.9, max_attempts=2, confirm_timeout_s=5.0)
        entry.start(LIVE)
        actions = entry.on_silence(10.0)
        assert [type(action) for action in actions] == [Say] and actions[0].kind == "hint"
        assert "did not hear" in actions[0].text
        assert entry.state is EntryState.AWAITING_CODE
        assert [type(action) for action in entry.on_silence(20.0)] == [Say, Hangup]
        assert entry.state is EntryState.ENDED

    def test_silence_is_ignored_once_entry_has_moved_on(self):
        entry = CodeEntry(confirm_below=0.9, max_attempts=3, confirm_timeout_s=5.0)
        entry.start(LIVE)
        entry.on_speech("forty two", 0.5, LIVE, 0.0)
        assert entry.state is EntryState.CONFIRMING
        assert entry.on_silence(1.0) == ()


class TestAnswerClock:
    def test_the_answer_time_runs_from_when_the_read_back_has_played(self):
        entry = CodeEntry(confirm_below=0.9, max_attempts=3, confirm_timeout_s=5.0)
        entry.start(LIVE)
        entry.on_speech("forty two", 0.5, LIVE, 0.0)
        assert entry.deadline == 5.0
        entry.on_question_played(4.0)  # a long read-back
        assert entry.deadline == 9.0
        assert entry.poll(6.0) == ()
        assert entry.on_speech("yes", 0.5, LIVE, 8.0) == (Claim("42", "confirmed"),)

    def test_played_is_ignored_outside_a_read_back(self):
        entry = CodeEntry(confirm_below=0.9, max_attempts=3, confirm_timeout_s=5.0)
        entry.start(LIVE)
        entry.on_question_played(4.0)
        assert entry.deadline is None
