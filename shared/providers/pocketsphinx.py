"""Offline speech-to-text with PocketSphinx 5 and the US English model inside its wheel.

Phone audio (8 kHz mu-law) is decoded, dithered (the model does badly on the exact zeros of mu-law
silence), upsampled to the model's 16 kHz with filter state kept across frames, and cut into
utterances by ``pocketsphinx.Endpointer``. Speech, with a little audio either side, streams into a
``Decoder``; the endpointer's end of speech ends the utterance and yields its final transcript.
``expect`` switches the next utterance to a JSGF grammar of exactly the given phrases (as a prefix
tree, see ``jsgf_rule``); a grammar search that stops short of a whole phrase yields an empty final
rather than a fragment.

Processes: the Cython bindings hold the GIL inside every engine call, and the longest calls
(building a decoder, ~0.5 s; ending a long free-speech utterance, tens of ms) would stall every
socket of the process. So by default the engine runs in worker processes of its own
(``phonepatch.shared.providers.workers``), each with its decoders and the recognisers of the calls
given to it, one job at a time; a call's audio and commands reach it in order. A crashed engine
process ends the sessions it held with ``ProviderError`` and is replaced for the next call. With an
executor instead (the simulated caller's ears, tests), the engine runs in this process's threads:
decoders are then built once and reused, and audio goes to the decoder 10 ms per call, so that
no single call holds the GIL for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import re
import threading
import zlib
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from phonepatch.shared.audio import PHONE_RATE_HZ, StreamResampler, add_dither, mulaw_to_pcm
from phonepatch.shared.codes import NUMBER_WORDS
from phonepatch.shared.errors import ProviderError
from phonepatch.shared.logs import get_logger
from phonepatch.shared.providers.stt import SpeechSession, SpeechToText
from phonepatch.shared.providers.workers import ProcessWorker, ThreadWorker, Worker, WorkerGone
from phonepatch.shared.speech import SpeechEvent, SpeechStarted, Transcript, UtteranceEnd, Word

__all__ = ["PocketSphinxProvider", "PocketSphinxSession", "PocketSphinxTuning", "jsgf_rule"]

log = get_logger(__name__)

MODEL_RATE_HZ = 16000  # the bundled model is 16 kHz; ``samprate=8000`` with it recognises nothing
# Cepstral mean the live normalisation starts each call from: where it converges on phone speech
# through this pipeline (eSpeak voices at 8 kHz, upsampled). The model's own ("40,3,-1") suits
# wideband audio; with it, 12-phrase grammars got 26 of 96 spoken codes right, with this 51.
PHONE_CMN_INIT = "37.4,9.5,-32.8,43.1,-19.3,-1.4,6.2,-21.9,11.2,-14.6,-3.1,5.0,-15.3"
_DECODE_PIECE_BYTES = 2 * MODEL_RATE_HZ // 100  # 10 ms, one decoder frame
_ALT_PRONUNCIATION = re.compile(r"\(\d+\)$")
# Phone audio stops at 4 kHz, where most of an /s/ lies above: through this pipeline the wideband
# model hears "six" as "-ik-", or as "three" or "eight", and no code with a six was ever
# recognised. What is left of an /s/ in the band is weak broadband noise, which the model takes
# for an /f/. Number words in grammars therefore also get pronunciations with each S phone
# dropped or replaced by F (numbered from here, clear of the dictionary's own alternatives). Only
# number words: with the variants on every word, "say" lost its S too, and read-backs heard
# through a grammar of questions gained a digit ("four two three say yes"). Codes 0..99 right
# out of 100 through a grammar of every code (eSpeak en-us at 175 wpm / en at 140 wpm, cardinal):
# no variants 74/59, S dropped 83/77, S dropped or F 85/77 (the right code among the best three
# 94/94 -> 95/97). Read-backs heard right by the simulated caller, codes 0..99 (en-us 175 wpm):
# S dropped 92, S dropped or F 99; 4-digit codes (en 140 wpm) 82 -> 98. Replacing it by TH as
# well, or dropping F or TH phones, did worse.
_PHONE_BAND_SUBSTITUTES: Mapping[str, tuple[str, ...]] = {"S": ("", "F")}  # "": dropped
_PHONE_BAND_VARIANT_BASE = 10
_GRAMMAR_WORD = re.compile(r"^[a-z0-9][a-z0-9'.-]*$")  # nothing a JSGF token would misread


@dataclass(frozen=True, slots=True)
class PocketSphinxTuning:
    """Knobs of the offline engine; the defaults suit phone calls."""

    vad_mode: int = 0  # 0 (loose) .. 3 (strict): how sure the VAD must be that a frame is speech
    endpoint_window_s: float = 0.3  # the endpointer decides over this much audio
    endpoint_ratio: float = 0.9  # fraction of that window that must agree to switch state
    # Audio before the detected start also goes to the decoder: the VAD misses soft onsets. In a
    # grammar utterance, codes 0..99 right out of 100 (eSpeak en-us, 175 wpm, cardinal / digit by
    # digit): 72/74 with 0.15 s, 80/80 with 0.3 s, 72/78 with 0.45 s. Free speech, whose cepstral
    # mean is live, lost words with 0.3 s.
    preroll_s: float = 0.15
    grammar_preroll_s: float = 0.3
    postroll_s: float = 0.15  # audio after the detected end also goes to the decoder
    interim_interval_s: float = 0.5  # speech between interim transcripts; 0 turns them off
    max_utterance_s: float = 10.0  # longer speech is cut into several finals
    # Other phrases of a grammar a final may carry, from the lattice's N-best list: code entry
    # reads them back in turn when the caller refuses the best one. Codes 0..99, eSpeak en at
    # 140 wpm: the right code was the best phrase for 66 of 100, among the best two for 87, three 95.
    max_alternatives: int = 2
    nbest_depth: int = 60  # lattice paths examined for them (many differ only in silences)
    # Standard deviation of white noise added to the 16 kHz samples. Whole-utterance grammar
    # decoding of eSpeak codes 0..99 (number words / digit by digit), right out of 100: noise
    # sigma 30 at 8 kHz 67/72; sigma 100 at 16 kHz 73/76; sigma 200 at 16 kHz 74/78.
    dither_sigma: float = 200.0
    max_queued_chunks: int = 50  # audio and commands waiting for the engine (~1 s of frames)
    max_queued_events: int = 64
    max_idle_decoders: int = 2  # each idle decoder holds ~90 MB
    # Passed to ``pocketsphinx.Config``. Free speech with the model's defaults costs ~9 ms of
    # GIL-held CPU per 20 ms of audio and ~50 ms (up to 140) to end an utterance; without fwdflat
    # and with these per-frame limits, ~3 ms and ~10 ms (up to 26), for the same share of words
    # found on 8 kHz speech (about 1 in 4). Grammar searches are too small for the limits to bite.
    decoder_options: Mapping[str, Any] = field(
        default_factory=lambda: {"fwdflat": False, "maxhmmpf": 3000, "maxwpf": 10, "cmninit": PHONE_CMN_INIT}
    )


@dataclass(frozen=True, slots=True)
class _Expect:
    phrases: tuple[str, ...] | None


class _Marker(enum.Enum):  # an enum member stays itself when pickled to an engine process
    FINISH = "finish"  # inbox: no more audio
    END = "end"  # events: the session is over


_FINISH = _Marker.FINISH
_END = _Marker.END


class _Recognizer:
    """One session's engine state. Blocking: every method runs in the executor, one at a time."""

    def __init__(self, decoder: Any, endpointer: Any, tuning: PocketSphinxTuning, seed: int) -> None:
        self._decoder = decoder
        self._endpointer = endpointer
        self._tuning = tuning
        self._rng = np.random.default_rng(seed)
        self._resampler = StreamResampler(PHONE_RATE_HZ, MODEL_RATE_HZ)
        self._pending = bytearray()  # 16 kHz samples short of a whole endpointer frame
        self._recent = bytearray()  # the latest 16 kHz audio given to the endpointer, for pre-roll
        longest_preroll_s = max(tuning.preroll_s, tuning.grammar_preroll_s)
        self._recent_max_bytes = 2 * int((tuning.endpoint_window_s + longest_preroll_s + 0.1) * MODEL_RATE_HZ)
        self._fed_bytes = 0
        self._frame_rate_hz = decoder.config["frate"]
        self._wanted: frozenset[str] = frozenset()  # phrases for the next utterance; none: free
        self._grammar: tuple[frozenset[str], str] | None = None  # built phrase set, search name
        self._phrases: frozenset[str] = frozenset()  # the current utterance's; none: free
        self._grammars_built = 0
        self._in_utterance = False
        self._utterance_audio = bytearray()  # a grammar utterance's audio, decoded at its end
        self._utterance_start_s = 0.0
        self._speech_s = 0.0  # speech fed into the current utterance
        self._next_interim_s = 0.0
        self._last_interim = ""

    def handle(self, batch: Sequence[object]) -> list[SpeechEvent]:
        """Process queued audio and commands in order; ``_FINISH`` flushes and ends the stream."""
        events: list[SpeechEvent] = []
        for item in batch:
            if isinstance(item, bytes):
                self._feed(mulaw_to_pcm(item), events)
            elif isinstance(item, _Expect):
                self._wanted = self._known_phrases(item.phrases or ())
            elif item is _FINISH:
                self._finish(events)
        return events

    def reset(self) -> Any:
        """Make the decoder fit for another call (free speech, no grammars, fresh feature state)
        and hand it back."""
        self._decoder.activate_search()
        if self._grammar is not None:
            self._decoder.remove_search(self._grammar[1])
            self._grammar = None
        self._decoder.reinit_feat()
        return self._decoder

    def _feed(self, pcm: np.ndarray, events: list[SpeechEvent]) -> None:
        # Noise goes in after upsampling, so it also fills the empty band above 4 kHz that the
        # wideband model expects to hear something in (see ``PocketSphinxTuning.dither_sigma``).
        wideband = self._resampler.feed(pcm)
        self._pending += add_dither(wideband, self._rng, self._tuning.dither_sigma).tobytes()
        frame_bytes = self._endpointer.frame_bytes
        while len(self._pending) >= frame_bytes:
            frame = bytes(self._pending[:frame_bytes])
            del self._pending[:frame_bytes]
            self._remember(frame)
            self._on_speech(self._endpointer.process(frame), events)

    def _remember(self, frame: bytes) -> None:
        self._recent += frame
        del self._recent[: max(0, len(self._recent) - self._recent_max_bytes)]
        self._fed_bytes += len(frame)

    def _recent_audio(self, from_s: float, to_s: float) -> bytes:
        """Remembered audio between two stream times, as much of it as is still kept."""
        recent_start_byte = self._fed_bytes - len(self._recent)
        from_byte = max(recent_start_byte, 2 * round(from_s * MODEL_RATE_HZ))
        to_byte = max(from_byte, min(self._fed_bytes, 2 * round(to_s * MODEL_RATE_HZ)))
        return bytes(self._recent[from_byte - recent_start_byte : to_byte - recent_start_byte])

    def _finish(self, events: list[SpeechEvent]) -> None:
        self._pending += self._resampler.flush().tobytes()
        frame_bytes = self._endpointer.frame_bytes
        while len(self._pending) > frame_bytes:
            frame = bytes(self._pending[:frame_bytes])
            del self._pending[:frame_bytes]
            self._remember(frame)
            self._on_speech(self._endpointer.process(frame), events)
        if self._endpointer.in_speech:
            # end_stream is only for a stream that ends inside speech (its docstring), and it
            # fails on an empty buffer, so the tail is at least one sample.
            speech = self._endpointer.end_stream(bytes(self._pending) or bytes(2))
            if speech is not None:
                self._on_speech(speech, events, stream_ended=True)
        self._pending.clear()
        if self._in_utterance:
            self._end_utterance(events, speech_final=True)

    def _on_speech(
        self, speech: bytes | None, events: list[SpeechEvent], *, stream_ended: bool = False
    ) -> None:
        if speech is None:
            return
        if not self._in_utterance:
            speech_start_s = self._endpointer.speech_start
            # The VAD misses soft onsets (the "f" of "forty"): give the decoder some audio before.
            preroll_s = self._tuning.grammar_preroll_s if self._wanted else self._tuning.preroll_s
            preroll = self._recent_audio(speech_start_s - preroll_s, speech_start_s)
            self._start_utterance(speech_start_s - len(preroll) / 2 / MODEL_RATE_HZ)
            events.append(SpeechStarted(timestamp_s=speech_start_s))
            self._decode(preroll)
        self._decode(speech)
        if stream_ended:
            return
        if not self._endpointer.in_speech:
            end_s = self._endpointer.speech_end
            self._decode(self._recent_audio(end_s, end_s + self._tuning.postroll_s))
            self._end_utterance(events, speech_final=True)
        elif self._speech_s >= self._tuning.max_utterance_s:
            # Cut long speech: its final arrives now, and ending it costs less GIL time.
            self._end_utterance(events, speech_final=False)
            self._start_utterance(self._utterance_start_s + self._speech_s)
        elif self._tuning.interim_interval_s > 0 and self._speech_s >= self._next_interim_s:
            self._add_interim(events)

    def _decode(self, audio: bytes) -> None:
        self._speech_s += len(audio) / 2 / MODEL_RATE_HZ
        if self._phrases:
            # Grammar utterances are short: decode each whole at its end, so cepstral mean
            # normalisation sees all of it. Live CMN, still settling within a two-word code,
            # got 49 of 100 eSpeak codes right through a grammar of every code; whole-utterance
            # decoding 70 of 100 (the figure measured outside phonepatch was 77).
            self._utterance_audio += audio
            return
        for start in range(0, len(audio), _DECODE_PIECE_BYTES):
            # Small pieces: the bindings hold the GIL for a whole call (see the module docstring).
            self._decoder.process_raw(audio[start : start + _DECODE_PIECE_BYTES])

    def _start_utterance(self, start_s: float) -> None:
        self._apply_wanted_search()
        if self._phrases:
            # Live cepstral mean normalisation keeps running sums from earlier utterances (free
            # speech included), which ``set_cmn`` does not clear; a grammar utterance, decoded
            # whole, starts from fresh feature state so that its result depends on its audio
            # only. After a free-speech call, "forty two" was heard as "yes" without this.
            self._decoder.reinit_feat()
        self._utterance_audio = bytearray()
        self._decoder.start_utt()
        self._in_utterance = True
        self._utterance_start_s = start_s
        self._speech_s = 0.0
        self._next_interim_s = self._tuning.interim_interval_s
        self._last_interim = ""

    def _add_interim(self, events: list[SpeechEvent]) -> None:
        if self._phrases:
            return  # a grammar utterance is decoded at its end (see ``_decode``)
        self._next_interim_s = self._speech_s + self._tuning.interim_interval_s
        hypothesis = self._decoder.hyp()
        text = _clean_text(hypothesis.hypstr) if hypothesis is not None else ""
        if text and text != self._last_interim:
            self._last_interim = text
            events.append(Transcript(
                text=text, is_final=False, start_s=self._utterance_start_s, duration_s=self._speech_s
            ))

    def _end_utterance(self, events: list[SpeechEvent], *, speech_final: bool) -> None:
        if self._utterance_audio:
            self._decoder.process_raw(bytes(self._utterance_audio), full_utt=True)
            self._utterance_audio = bytearray()
        self._decoder.end_utt()
        self._in_utterance = False
        words = self._words()
        text = " ".join(word.word for word in words)
        alternatives: tuple[str, ...] = ()
        if self._phrases and text not in self._phrases:
            # The grammar search ended short of its final state and backed off to a partial
            # path ("forty" for "forty two"): that is none of the phrases, so nothing was heard.
            log.debug("grammar_not_completed", provider="pocketsphinx", words=len(words))
            words, text = (), ""
        elif self._phrases:
            alternatives = self._alternatives(text)
        # Not ``hyp().prob``: that posterior is of the whole path, which splits between
        # equivalent silence paths (0.33..0.5 for a clear "yes"); the words' own posteriors don't.
        confidence = sum(word.confidence for word in words) / len(words) if words else 0.0
        events.append(Transcript(
            text=text, is_final=True, speech_final=speech_final, confidence=confidence,
            words=words, start_s=self._utterance_start_s, duration_s=self._speech_s,
            alternatives=alternatives,
        ))
        if speech_final:
            last_word_end_s = words[-1].end_s if words else self._utterance_start_s + self._speech_s
            events.append(UtteranceEnd(last_word_end_s=last_word_end_s))

    def _alternatives(self, best: str) -> tuple[str, ...]:
        """Other whole phrases of the grammar for the finished utterance, most likely first."""
        found: dict[str, None] = {}
        wanted = self._tuning.max_alternatives
        if wanted <= 0:
            return ()
        for path in itertools.islice(self._decoder.nbest(), self._tuning.nbest_depth):
            if path is None:  # the bindings yield None for a lattice path with no hypothesis
                continue
            text = _clean_text(path.hypstr)
            if text != best and text in self._phrases:
                found[text] = None
                if len(found) >= wanted:
                    break
        return tuple(found)

    def _words(self) -> tuple[Word, ...]:
        """Real words of the finished utterance, timed from the session start.

        Confidence is the word's lattice posterior (``Segment.prob``; the bindings already turned
        it from log domain into 0..1, and rounding in log base 1.0001 can exceed 1 slightly).
        """
        words = []
        for segment in self._decoder.seg() or ():
            word = _ALT_PRONUNCIATION.sub("", segment.word)
            if _is_filler(word):
                continue
            words.append(Word(
                word=word,
                start_s=self._utterance_start_s + segment.start_frame / self._frame_rate_hz,
                end_s=self._utterance_start_s + (segment.end_frame + 1) / self._frame_rate_hz,
                confidence=min(1.0, max(0.0, segment.prob)),
            ))
        return tuple(words)

    def _apply_wanted_search(self) -> None:
        """Switch between free speech and a grammar of the wanted phrases; only between utterances."""
        self._phrases = self._wanted
        if not self._phrases:
            self._decoder.activate_search()
            return
        if self._grammar is None or self._grammar[0] != self._phrases:
            self._build_grammar(self._phrases)
        self._decoder.activate_search(self._grammar[1])

    def _build_grammar(self, phrases: frozenset[str]) -> None:
        # Each grammar gets a new search name: re-adding a name while it is the active search
        # frees it under the decoder and crashes the process (pocketsphinx 5.1.1).
        name = f"expect{self._grammars_built}"
        self._grammars_built += 1
        words = {word for phrase in phrases for word in phrase.split()}
        _add_phone_band_variants(self._decoder, words & NUMBER_WORDS)
        grammar = f"#JSGF V1.0;\ngrammar expect;\npublic <phrase> = {jsgf_rule(phrases)};\n"
        self._decoder.add_jsgf_string(name, grammar)
        self._decoder.activate_search(name)
        if self._grammar is not None:
            self._decoder.remove_search(self._grammar[1])
        self._grammar = (phrases, name)

    def _known_phrases(self, phrases: Iterable[str]) -> frozenset[str]:
        known = set()
        for phrase in phrases:
            missing = [word for word in phrase.split() if not self._is_known(word)]
            if missing:
                log.debug("expected_phrase_dropped", provider="pocketsphinx", unknown_words=missing)
            else:
                known.add(phrase)
        return frozenset(known)

    def _is_known(self, word: str) -> bool:
        return bool(_GRAMMAR_WORD.match(word)) and self._decoder.lookup_word(word) is not None


def jsgf_rule(phrases: Iterable[str]) -> str:
    """A JSGF rule body accepting exactly ``phrases`` (words separated by spaces), as a prefix tree.

    The same language as a flat list of alternatives, but the decoder's search shares every common
    start instead of following each phrase apart: the simulated caller's grammar of read-back
    questions (671 phrases, most starting "i heard" or "was it") decoded a 5 s read-back in 4.4 s
    as a flat list and in 0.5 s as a tree, with the same results.
    """
    tree: dict[str, dict] = {}
    for phrase in phrases:
        node = tree
        for word in phrase.split():
            node = node.setdefault(word, {})
        node[""] = {}  # a phrase ends here
    return _jsgf_node(tree, top=True)


def _jsgf_node(node: dict[str, dict], *, top: bool = False) -> str:
    branches = [f"{word} {_jsgf_node(rest)}".rstrip() for word, rest in sorted(node.items()) if word]
    body = " | ".join(branches)
    if "" in node and branches:
        return f"[ {body} ]"  # this phrase, or a longer one going on from here
    if len(branches) > 1 and not top:
        return f"( {body} )"
    return body


def _add_phone_band_variants(decoder: Any, words: Iterable[str]) -> None:
    """Give each word its phone-band pronunciations (see ``_PHONE_BAND_SUBSTITUTES``), once:
    the decoder's dictionary keeps them for later grammars."""
    for word in words:
        if decoder.lookup_word(f"{word}({_PHONE_BAND_VARIANT_BASE})") is not None:
            continue
        for number, phones in enumerate(_phone_band_variants(decoder.lookup_word(word) or "")):
            decoder.add_word(f"{word}({_PHONE_BAND_VARIANT_BASE + number})", phones, False)


def _phone_band_variants(pronunciation: str) -> list[str]:
    """Every other pronunciation made by dropping or substituting phones that the phone band
    blurs, each of them independently; none empty."""
    choices = [(phone, *_PHONE_BAND_SUBSTITUTES.get(phone, ())) for phone in pronunciation.split()]
    variants = {" ".join(phone for phone in combination if phone) for combination in itertools.product(*choices)}
    variants.discard(pronunciation)
    variants.discard("")
    return sorted(variants)


def _is_filler(word: str) -> bool:
    """``<s>``, ``</s>``, ``<sil>``, ``[NOISE]``, ``[SPEECH]``: the model's noise dictionary."""
    return word.startswith(("<", "[", "+"))


def _clean_text(hypstr: str) -> str:
    words = (_ALT_PRONUNCIATION.sub("", word) for word in hypstr.split())
    return " ".join(word for word in words if not _is_filler(word))


def _normalise_phrases(phrases: Sequence[str] | None) -> tuple[str, ...] | None:
    if phrases is None:
        return None
    return tuple(" ".join(phrase.lower().split()) for phrase in phrases if phrase.strip())


class _Engine:
    """The decoders of one worker and the recognisers of the calls given to it. Blocking: its
    methods run in a worker, one call at a time per session; sessions are named by ``key``."""

    def __init__(self, config_json: str, tuning: PocketSphinxTuning) -> None:
        self._engine = _import_engine()
        self._config_json = config_json
        self._tuning = tuning
        self._idle: list[Any] = []  # decoders ready for a call
        self._recognizers: dict[str, _Recognizer] = {}
        self._closed_early: set[str] = set()  # closed before their open ran (threads may race)
        self._lock = threading.Lock()  # a thread worker runs several sessions at once

    def warm_up(self, decoders: int) -> None:
        while self._idle_count() < decoders:
            decoder = self._new_decoder()
            with self._lock:
                self._idle.append(decoder)

    def open(self, key: str, seed: int) -> None:
        with self._lock:
            decoder = self._idle.pop() if self._idle else None
        recognizer = _Recognizer(decoder or self._new_decoder(), _build_endpointer(self._engine, self._tuning), self._tuning, seed)
        with self._lock:
            if key not in self._closed_early:
                self._recognizers[key] = recognizer
                return
            self._closed_early.discard(key)
        self._keep_decoder(recognizer, reusable=True)

    def handle(self, key: str, batch: Sequence[object]) -> list[SpeechEvent]:
        return self._recognizers[key].handle(batch)

    def close(self, key: str, reusable: bool) -> None:
        """Forget a session; keep its decoder for another call when it ended cleanly."""
        with self._lock:
            recognizer = self._recognizers.pop(key, None)
            if recognizer is None:
                self._closed_early.add(key)
                return
        self._keep_decoder(recognizer, reusable=reusable)

    def _keep_decoder(self, recognizer: _Recognizer, *, reusable: bool) -> None:
        if not reusable or self._idle_count() >= self._tuning.max_idle_decoders:
            return
        try:
            decoder = recognizer.reset()
        except (RuntimeError, KeyError, ValueError) as error:
            log.warning("decoder_reset_failed", provider="pocketsphinx", error=type(error).__name__)
            return
        with self._lock:
            self._idle.append(decoder)

    def open_sessions(self) -> int:
        with self._lock:
            return len(self._recognizers)

    def _idle_count(self) -> int:
        with self._lock:
            return len(self._idle)

    def _new_decoder(self) -> Any:
        try:
            # A copy per decoder: initialisation writes the model's parameters into its config.
            return self._engine.Decoder(self._engine.Config.parse_json(self._config_json))
        except (RuntimeError, ValueError, KeyError, OSError) as error:
            raise ProviderError(f"pocketsphinx: cannot load the speech model: {error}") from error


class PocketSphinxSession(SpeechSession):
    """One call's offline recognition. Audio and ``expect`` commands queue for one worker task,
    which hands them to the engine in order. ``send_audio`` waits while the engine is more than
    ``max_queued_chunks`` behind; ``events`` can be iterated once."""

    def __init__(self, worker: Worker, key: str, tuning: PocketSphinxTuning) -> None:
        self._worker = worker
        self._key = key
        self._inbox: asyncio.Queue[object] = asyncio.Queue(tuning.max_queued_chunks)
        self._events: asyncio.Queue[object] = asyncio.Queue(tuning.max_queued_events)
        self._failure: ProviderError | None = None
        self._finishing = False
        self.finished_cleanly = False  # the decoder ended outside an utterance and may be reused

    async def send_audio(self, mulaw: bytes) -> None:
        self._check_open()
        if mulaw:
            await self._inbox.put(bytes(mulaw))

    async def expect(self, phrases: Sequence[str] | None) -> None:
        """Restrict recognition to exactly one of ``phrases`` from the next utterance on.

        Phrases are lowercase words separated by spaces; those with a word the dictionary lacks
        are dropped (logged at debug). With None, or nothing left, recognition is free again.
        After ``finish`` no utterance is left to apply them to, so they are ignored.
        """
        if self._finishing and self._failure is None:
            return
        self._check_open()
        await self._inbox.put(_Expect(_normalise_phrases(phrases)))

    async def finish(self) -> None:
        if self._finishing or self._failure is not None:
            return
        self._finishing = True
        await self._inbox.put(_FINISH)

    async def events(self) -> AsyncIterator[SpeechEvent]:
        while True:
            item = await self._events.get()
            if item is _END:
                if self._failure is not None:
                    raise self._failure
                return
            yield item  # type: ignore[misc]

    def _check_open(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._finishing:
            raise ProviderError("pocketsphinx: the speech session is finished")

    async def run(self) -> None:
        """The worker: feed the engine until ``finish``; end ``events`` whatever happens."""
        try:
            await self._pump()
        except Exception as error:  # an engine fault ends this session only, through events()
            log.error("provider_failed", provider="pocketsphinx", error=type(error).__name__)
            reason = str(error) if isinstance(error, WorkerGone) else f"{type(error).__name__}: {error}"
            self._failure = ProviderError(f"pocketsphinx: decoding failed: {reason}")
            while not self._inbox.empty():  # wake a sender blocked on a full inbox; it then raises
                self._inbox.get_nowait()
        # Not in a finally: when cancelled, nobody is left to read the marker.
        await self._events.put(_END)

    async def _pump(self) -> None:
        while True:
            batch = [await self._inbox.get()]
            while not self._inbox.empty():  # catch up on a backlog in one engine job
                batch.append(self._inbox.get_nowait())
            events = await self._worker.call("handle", self._key, batch)
            for event in events:
                await self._publish(event)
            if _FINISH in batch:
                self.finished_cleanly = True
                return

    async def _publish(self, event: SpeechEvent) -> None:
        if isinstance(event, Transcript) and not event.is_final:
            with contextlib.suppress(asyncio.QueueFull):  # a slow reader loses interims only
                self._events.put_nowait(event)
            return
        await self._events.put(event)


class PocketSphinxProvider(SpeechToText):
    """PocketSphinx sessions, their engine in ``processes`` worker processes, or in ``executor``'s
    threads when one is given (see the module docstring).

    The model is checked at construction; raises ``ProviderError`` naming the ``pocketsphinx``
    package when it cannot be imported or its model is missing or invalid. Decoders (~0.5 s to
    build, ~90 MB each) are built by the engine and kept for reuse after a clean ``finish``. Each
    new call goes to the engine process with the fewest calls. ``close`` stops the processes.
    """

    name = "pocketsphinx"
    always_confirm = True  # a grammar maps every miss onto some live code (ARCHITECTURE §6)

    def __init__(
        self, tuning: PocketSphinxTuning | None = None, *, executor: Executor | None = None, processes: int = 1
    ) -> None:
        self._tuning = tuning or PocketSphinxTuning()
        engine = _import_engine()
        self._config_json = _base_config(engine, self._tuning.decoder_options).dumps()
        _build_endpointer(engine, self._tuning)  # bad endpointer tuning fails here, not in every call
        self._workers: list[Worker]
        if executor is not None:
            self._workers = [ThreadWorker(_Engine(self._config_json, self._tuning), executor)]
        else:
            self._workers = [self._spawn(number) for number in range(max(1, processes))]
        self._calls: dict[Worker, int] = dict.fromkeys(self._workers, 0)  # open sessions per worker
        self._keys = itertools.count()
        self._closing: set[asyncio.Task[None]] = set()

    def _spawn(self, number: int) -> ProcessWorker:
        return ProcessWorker(_Engine, self._config_json, self._tuning, name=f"pocketsphinx-{number}")

    @property
    def workers(self) -> tuple[Worker, ...]:
        return tuple(self._workers)

    async def warm_up(self, decoders: int = 1) -> None:
        """Build decoders ahead of calls, in every worker: start-up fails if the model does, and the
        first calls start without waiting ~0.5 s for a build. Raises ``ProviderError`` when the model
        cannot load."""
        await asyncio.gather(*(worker.call("warm_up", decoders) for worker in self._workers))

    async def close(self) -> None:
        await asyncio.gather(*self._closing, return_exceptions=True)
        await asyncio.gather(*(worker.close() for worker in self._workers))

    @contextlib.asynccontextmanager
    async def session(
        self, *, call_sid: str, keyterms: Sequence[str] = ()
    ) -> AsyncIterator[PocketSphinxSession]:
        """Open a session. ``keyterms`` are not used: call ``expect`` to restrict recognition."""
        worker = await self._least_busy()
        key = f"{call_sid}/{next(self._keys)}"
        seed = zlib.crc32(call_sid.encode())  # the dither, repeatable per call
        self._calls[worker] += 1
        try:
            try:
                await worker.call("open", key, seed)
            except WorkerGone as error:
                raise ProviderError(f"pocketsphinx: {error}") from error
            except asyncio.CancelledError:
                # Cut off (the call hung up) while the engine opened it: the engine forgets it
                # once it has, or it would keep a decoder (~90 MB) for nobody.
                self._close_later(worker, key)
                raise
            session = PocketSphinxSession(worker, key, self._tuning)
            pump = asyncio.create_task(session.run(), name=f"pocketsphinx-{call_sid}")
            try:
                yield session
            finally:
                pump.cancel()
                await asyncio.wait({pump})  # the pump keeps its own failures; wait never raises them
                # A cancelled pump may leave a thread worker's job running on this decoder: it is
                # only reused after a clean finish. A stopped process or executor (RuntimeError)
                # has nothing left to release.
                with contextlib.suppress(RuntimeError):
                    await worker.call("close", key, session.finished_cleanly)
        finally:
            self._calls[worker] -= 1
            if not self._calls[worker] and worker not in self._workers:
                del self._calls[worker]

    def _close_later(self, worker: Worker, key: str) -> None:
        async def close() -> None:
            with contextlib.suppress(RuntimeError, ProviderError):
                await worker.call("close", key, False)

        task = asyncio.create_task(close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _least_busy(self) -> Worker:
        """The worker with the fewest calls; a stopped engine process is replaced first (the
        calls it held have failed already, or fail at their next job)."""
        for number, worker in enumerate(self._workers):
            if not worker.alive:
                log.warning("engine_process_replaced", worker=getattr(worker, "name", ""), provider=self.name)
                await worker.close()
                self._workers[number] = self._spawn(number)
                self._calls[self._workers[number]] = 0
                if not self._calls[worker]:
                    del self._calls[worker]
        return min(self._workers, key=self._calls.__getitem__)


def _build_endpointer(engine: Any, tuning: PocketSphinxTuning) -> Any:
    try:
        return engine.Endpointer(
            window=tuning.endpoint_window_s,
            ratio=tuning.endpoint_ratio,
            vad_mode=tuning.vad_mode,
            sample_rate=MODEL_RATE_HZ,
        )
    except ValueError as error:
        raise ProviderError(f"pocketsphinx: bad endpointer tuning: {error}") from error


def _import_engine() -> Any:
    try:
        import pocketsphinx
    except ImportError as error:
        raise ProviderError("pocketsphinx: the pocketsphinx package is not installed") from error
    return pocketsphinx


def _base_config(engine: Any, options: Mapping[str, Any]) -> Any:
    """The shared configuration, checked once: unknown options and missing model files fail here."""
    try:
        config = engine.Config(**{"loglevel": "FATAL", **options})
    except (KeyError, ValueError) as error:
        raise ProviderError(f"pocketsphinx: bad decoder option: {error}") from error
    for key in ("hmm", "dict", "lm"):
        path = config[key]
        if path is not None and not Path(path).exists():
            raise ProviderError(f"pocketsphinx: the {key} model file is missing: {path}")
    return config
