"""A scripted caller: says text, plays WAVs, presses keys, and answers read-backs honestly.

An answer to a read-back comes from transcribing what was heard with the offline recogniser,
restricted to the code the caller meant and its near misses; it says "yes" only when the
transcription names the code it meant.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

from phonepatch.services.simulator.phone import Heard, PhoneSimulator
from phonepatch.shared.audio import frames_of, pcm_to_mulaw, read_wav
from phonepatch.shared.entry import readback_question
from phonepatch.shared.matching import normalize_words
from phonepatch.shared.providers.espeak import synthesize_mulaw
from phonepatch.shared.providers.pocketsphinx import PocketSphinxProvider, PocketSphinxTuning
from phonepatch.shared.providers.stt import SpeechToText
from phonepatch.shared.speech import Transcript

__all__ = [
    "EARS_TUNING",
    "Caller",
    "Keys",
    "Pause",
    "PlayWav",
    "ReadBackEars",
    "SayText",
    "Step",
    "caller_ears",
    "readback_candidates",
    "readback_ears",
    "transcribe",
]



@dataclass(frozen=True, slots=True)
class SayText:
    text: str


@dataclass(frozen=True, slots=True)
class PlayWav:
    path: str


@dataclass(frozen=True, slots=True)
class Keys:
    digits: str


@dataclass(frozen=True, slots=True)
class Pause:
    seconds: float


Step = SayText | PlayWav | Keys | Pause


@dataclass(frozen=True, slots=True)
class ReadBackEars:
    """What the caller listens for in a read-back: every phrase it may be heard as, and which of
    them name the code it meant or another code."""

    phrases: tuple[str, ...]
    meant: frozenset[str]
    others: frozenset[str]

    def confirms(self, finals: Sequence[str]) -> bool:
        """True when what was heard names the meant code and no other."""
        return any(final in self.meant for final in finals) and not any(
            final in self.others for final in finals
        )


def readback_ears(code: str, pool: Collection[str] | None = None) -> ReadBackEars:
    """What a read-back of ``code`` or of another code may sound like; ``code``'s phrases first.

    The other codes are those a recogniser could take for ``code``: digit codes at most two edits
    away (digits changed, dropped, added or swapped), and, for a word code, the single digits.
    Without the shorter and longer ones, a read-back of "nine nine" for a caller who meant "nine"
    could only be heard as one of the one-digit codes, and the caller would say yes to the wrong
    game; without those two edits away, "forty, that is four zero" was heard as "fourteen, that is
    one four" by a caller who meant 14. A caller who knows the ``pool`` (as a person who sees
    "4270" on screen knows how long codes are, and would not take "pizza" for it) listens for the
    codes of the pool among those, and for every word code of it: for the recogniser, codes that
    cannot be read back are room for errors ("zero two zero seven" heard as "zero two zero five
    seven"; 4-digit read-backs heard right went from 89 to 98 of 100 without them).

    Each question (first or later reading) is listened for whole, as a person takes it in, and
    sentence by sentence in case the recogniser ends an utterance at a full stop (see
    ``EARS_TUNING``).
    """
    if code.isdigit():
        near = _near_misses(code)
        if pool is None:
            others = [other for other in near if abs(len(other) - len(code)) <= 1]
        else:
            others = [other for other in pool if other != code and (other in near or not other.isdigit())]
    else:
        others = [str(n) for n in range(10)] if pool is None else [other for other in pool if other != code]
    codes = [code, *sorted(set(others))]
    by_code = {c: _question_phrases(c) for c in codes}
    neutral = set.intersection(*(set(phrases) for phrases in by_code.values()))
    meant = [phrase for phrase in by_code[code] if phrase not in neutral]
    heard_others = {phrase for c in codes[1:] for phrase in by_code[c]} - neutral - set(meant)
    phrases = [*meant, *sorted(heard_others), *sorted(neutral)]
    return ReadBackEars(tuple(dict.fromkeys(phrases)), frozenset(meant), frozenset(heard_others))


def readback_candidates(code: str, pool: Collection[str] | None = None) -> list[str]:
    """Every phrase a read-back of ``code`` or of another code may be heard as; ``code``'s first."""
    return list(readback_ears(code, pool).phrases)


def _question_phrases(code: str) -> list[str]:
    phrases = []
    for again in (False, True):
        question = readback_question(code, again=again)
        sentences = [part for part in re.split(r"(?<=[.?!])\s+", question) if part]
        for text in (question, *sentences):
            words = " ".join(normalize_words(text))
            if words:
                phrases.append(words)
    return list(dict.fromkeys(phrases))


def _near_misses(code: str) -> set[str]:
    """Codes at most two edits from ``code``: digits changed, dropped, added or swapped."""
    near = _one_edit(code)
    near |= {further for other in near for further in _one_edit(other)}
    return near - {code}


def _one_edit(code: str) -> set[str]:
    changed = {code[:i] + d + code[i + 1 :] for i in range(len(code)) for d in "0123456789"}
    dropped = {code[:i] + code[i + 1 :] for i in range(len(code))} if len(code) > 1 else set()
    added = {code[:i] + d + code[i:] for i in range(len(code) + 1) for d in "0123456789"}
    swapped = {code[:i] + code[i + 1] + code[i] + code[i + 2 :] for i in range(len(code) - 1)}
    return changed | dropped | added | swapped


# The simulated caller's recogniser waits for a second of quiet before it ends an utterance, so
# that a read-back is heard as one question: its number words and its digits ("forty eight, that
# is four eight") must then agree. Split at every pause (the provider's default), a piece could be
# misheard on its own, and the caller said no to its own code. Read-backs of codes 0..99 heard
# right (200, eSpeak en at 140 wpm): 190 split at pauses with pieces in the grammar, 195 whole.
# The window delays the start of speech too, hence the longer pre-roll.
EARS_TUNING = PocketSphinxTuning(endpoint_window_s=1.0, grammar_preroll_s=1.2)


def caller_ears(executor: Executor) -> PocketSphinxProvider:
    """The offline recogniser a simulated caller hears with."""
    return PocketSphinxProvider(EARS_TUNING, executor=executor)


_HEARINGS = itertools.count()


async def transcribe(stt: SpeechToText, mulaw: bytes, phrases: Sequence[str] | None) -> str:
    """Final transcripts of ``mulaw`` with the recogniser restricted to ``phrases`` (or free)."""
    return " ".join(await transcribe_finals(stt, mulaw, phrases))


async def transcribe_finals(stt: SpeechToText, mulaw: bytes, phrases: Sequence[str] | None) -> list[str]:
    """Each final transcript of ``mulaw``, with the recogniser restricted to ``phrases`` (or free)."""
    texts: list[str] = []
    # A session name of its own each time: the recogniser's dither is seeded by it, so that each
    # hearing meets other noise, as a person hearing the same words again would. With one name
    # for all, a misheard read-back ("eight eight one nine" as "six six one nine") was misheard the
    # same way on every try.
    async with stt.session(call_sid=f"simulator-{next(_HEARINGS)}") as session:
        await session.expect(phrases)
        for frame in frames_of(mulaw + b"\xff" * 8000):  # a second of silence ends the utterance
            await session.send_audio(frame)
        await session.finish()
        async for event in session.events():
            if isinstance(event, Transcript) and event.is_final and event.text:
                texts.append(event.text)
    return texts


class Caller:
    """Drives a ``PhoneSimulator`` through steps; answers read-backs while it does.

    With ``say_on_hint``, it says the next of those phrases whenever the server hints that it
    should try again, as a person would rephrase; with ``keys_after``, it keys a digit code in
    once that many spoken tries have failed, as the hint suggests. ``pool`` holds the
    server's codes, when the caller knows them (see :func:`readback_ears`).
    """

    def __init__(
        self,
        phone: PhoneSimulator,
        *,
        executor: Executor,
        stt: SpeechToText | None = None,
        meant_code: str | None = None,
        say_on_hint: Sequence[str] = (),
        keys_after: int | None = None,
        voice: str = "en-us",
        rate_wpm: int = 175,
        pool: Collection[str] | None = None,
        report: Callable[[str], None] = print,
    ) -> None:
        self.phone = phone
        self._executor = executor
        self._stt = stt
        self._meant_code = meant_code
        self._retries = itertools.cycle(say_on_hint) if say_on_hint else None
        self._keys_after = keys_after
        self._voice = voice
        self._rate_wpm = rate_wpm
        self._pool = pool
        self.report = report
        self.heard: list[tuple[Heard, str]] = []
        self.answers: list[bool] = []
        self.code_attempts: list[float] = []  # when each spoken try of the code ended (monotonic)

    async def speak(self, text: str) -> None:
        loop = asyncio.get_running_loop()
        mulaw = await loop.run_in_executor(
            self._executor, lambda: synthesize_mulaw(text, voice=self._voice, rate_wpm=self._rate_wpm)
        )
        await self.phone.say_audio(mulaw)

    async def say_code(self, text: str) -> None:
        """Speak one try of the code, noting when it ended."""
        self.report(f"caller says the code: {text}")
        await self.speak(text)
        self.code_attempts.append(time.monotonic())

    async def run_steps(self, steps: Sequence[Step]) -> None:
        for step in steps:
            match step:
                case SayText(text=text):
                    self.report(f"caller says: {text}")
                    await self.speak(text)
                case PlayWav(path=path):
                    self.report(f"caller plays: {path}")
                    pcm = await asyncio.get_running_loop().run_in_executor(self._executor, read_wav, path)
                    await self.phone.say_audio(pcm_to_mulaw(pcm))
                case Keys(digits=digits):
                    self.report(f"caller presses: {digits}")
                    await self.phone.press(digits)
                case Pause(seconds=seconds):
                    await asyncio.sleep(seconds)

    async def listen(self) -> None:
        """Handle everything the server plays until cancelled: answer read-backs, note the rest."""
        while True:
            heard = await self.phone.next_heard(timeout_s=3600)
            kind = heard.mark.rsplit("-", 1)[0]
            if kind == "readback" and self._meant_code is not None and self._stt is not None:
                await self._answer_readback(heard)
            else:
                self.heard.append((heard, kind))
                self.report(f"caller hears: {kind} ({heard.duration_s:.1f} s)")
                if kind == "hint" and self._retries is not None:
                    await self._try_again()

    async def _try_again(self) -> None:
        """Rephrase, or key the code in once speaking has failed ``keys_after`` times."""
        code = self._meant_code
        if self._keys_after is not None and len(self.code_attempts) >= self._keys_after and code and code.isdigit():
            self.report(f"caller keys it in: {code}#")
            await self.phone.press(code + "#")
            return
        again = next(self._retries)
        self.report(f"caller tries again: {again}")
        await self.say_code(again)

    async def _answer_readback(self, heard: Heard) -> None:
        ears = readback_ears(self._meant_code, self._pool)
        finals = await transcribe_finals(self._stt, heard.mulaw, ears.phrases)
        text = " | ".join(finals)
        right = ears.confirms(finals)
        self.heard.append((heard, "readback"))
        self.answers.append(right)
        self.report(f"caller hears: \"{text}\" -> answers {'yes' if right else 'no'}")
        await self.speak("yes" if right else "no")
