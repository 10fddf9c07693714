"""The offline PocketSphinx provider, end to end: eSpeak speech in, the real engine, events out."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from phonepatch.shared.audio import FRAME_BYTES, frames_of, silence
from phonepatch.shared.errors import ProviderError
from phonepatch.shared.providers.espeak import synthesize_mulaw
from phonepatch.shared.providers.pocketsphinx import (
    PocketSphinxProvider,
    PocketSphinxSession,
    PocketSphinxTuning,
    jsgf_rule,
)
from phonepatch.shared.speech import SpeechEvent, SpeechStarted, Transcript, UtteranceEnd

TIMEOUT_S = 10.0 * float(os.environ.get("PHONEPATCH_TEST_TIME_SCALE", "1"))
CODES = ["forty two", "seventeen", "banana", "yes", "no"]


@pytest.fixture(scope="module", params=["threads", "process"])
def provider(request) -> Iterator[PocketSphinxProvider]:
    """One provider for the module, so later tests reuse the decoders earlier ones built: its
    engine in this process's threads, or in an engine process."""
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="stt") as executor:
        made = PocketSphinxProvider(executor=executor if request.param == "threads" else None)
        yield made
        asyncio.run(made.close())


def spoken(*texts: str, pause_ms: int = 1000) -> bytes:
    """Each text spoken after a pause, then a pause long enough for the endpointer to end it."""
    audio = b"".join(silence(pause_ms) + synthesize_mulaw(text) for text in texts)
    return audio + silence(pause_ms)


async def feed(session: PocketSphinxSession, audio: bytes) -> None:
    for frame in frames_of(audio):  # 20 ms frames, as Twilio sends them
        await session.send_audio(frame)


async def collect(session: PocketSphinxSession) -> list[SpeechEvent]:
    return [event async for event in session.events()]


async def run_call(session: PocketSphinxSession, audio: bytes) -> list[SpeechEvent]:
    """Send ``audio`` while reading events, then finish; all events until ``events`` ended."""
    async with asyncio.timeout(TIMEOUT_S), asyncio.TaskGroup() as group:
        events = group.create_task(collect(session))
        await feed(session, audio)
        await session.finish()
    return events.result()


def finals(events: Sequence[SpeechEvent]) -> list[Transcript]:
    return [event for event in events if isinstance(event, Transcript) and event.is_final]


def check_utterance_shape(events: Sequence[SpeechEvent]) -> None:
    """SpeechStarted, interim transcripts, one final, UtteranceEnd: per utterance, in order."""
    kinds = [type(event) for event in events if not (isinstance(event, Transcript) and not event.is_final)]
    utterances = len(kinds) // 3
    assert kinds == [SpeechStarted, Transcript, UtteranceEnd] * utterances
    for final in finals(events):
        assert final.speech_final and 0.0 <= final.confidence <= 1.0
        assert [word.word for word in final.words] == final.text.split()
        for word in final.words:
            assert final.start_s <= word.start_s < word.end_s <= final.start_s + final.duration_s + 0.05
            assert 0.0 <= word.confidence <= 1.0


class TestGrammar:
    async def test_a_code_said_over_a_read_back_is_not_heard_as_yes(self, provider):
        # Through yes and no words alone, eSpeak's "six zero" (voice en) came out as "yep".
        from phonepatch.shared.codes import default_codes
        from phonepatch.shared.entry import CodeEntry

        entry = CodeEntry(confirm_below=0.9, max_attempts=3, confirm_timeout_s=8.0)
        entry.start(default_codes())
        entry.on_speech("sixty", 0.1, default_codes(), 0.0)
        audio = silence(1000) + synthesize_mulaw("six zero", voice="en", rate_wpm=140) + silence(1000)
        async with provider.session(call_sid="CA-late-code") as session:
            await session.expect(entry.expected_phrases(default_codes()))
            events = await run_call(session, audio)
        assert [final.text for final in finals(events)] == ["six zero"]

    async def test_a_six_survives_the_phone_band(self, provider):
        # The /s/ of "six" lies mostly above 4 kHz; through phone audio the model heard these as
        # "... three" or "... eight" until number words got pronunciations with S as F.
        from phonepatch.shared.codes import default_codes, spoken_forms
        from phonepatch.shared.matching import match_code

        codes = default_codes()
        every_form = [form for code in codes for form in spoken_forms(code)]
        said = ["twenty six", "thirty six", "forty six", "seventy six", "ninety six", "six six"]
        async with provider.session(call_sid="CA-six") as session:
            await session.expect(every_form)
            events = await run_call(session, spoken(*said))
        heard = [match_code(final.text, codes) for final in finals(events)]
        assert heard == ["26", "36", "46", "76", "96", "66"]

    async def test_recognises_spoken_codes_among_the_expected(self, provider):
        async with provider.session(call_sid="CA1") as session:
            await session.expect(CODES)
            events = await run_call(session, spoken("banana", "forty two"))
        check_utterance_shape(events)
        assert [final.text for final in finals(events)] == ["banana", "forty two"]
        first, second = finals(events)
        assert first.start_s + first.duration_s <= second.start_s

    def test_the_grammar_is_a_prefix_tree_of_exactly_the_phrases(self):
        assert jsgf_rule(["forty two", "forty", "four"]) == "forty [ two ] | four"
        assert jsgf_rule(["i heard six", "i heard sixty", "was it six"]) == "i heard ( six | sixty ) | was it six"
        assert jsgf_rule(["yes"]) == "yes"

    async def test_a_phrase_and_a_longer_one_from_it_are_both_heard(self, provider):
        phrases = ["forty", "forty two", "forty two that is four two", "four two"]
        async with provider.session(call_sid="CA-prefix") as session:
            await session.expect(phrases)
            events = await run_call(session, spoken("forty", "forty two that is four two", "forty two"))
        assert [final.text for final in finals(events)] == ["forty", "forty two that is four two", "forty two"]

    async def test_recognises_yes_and_no(self, provider):
        async with provider.session(call_sid="CA1") as session:
            await session.expect(["yes", "no"])
            events = await run_call(session, spoken("yes", "no"))
        assert [final.text for final in finals(events)] == ["yes", "no"]

    async def test_phrases_with_unknown_words_are_dropped(self, provider):
        async with provider.session(call_sid="CA1") as session:
            await session.expect(["Forty  Two", "zzyzx qwrtp", "banana", "", "a;b"])
            events = await run_call(session, spoken("banana"))
        assert [final.text for final in finals(events)] == ["banana"]

    async def test_a_new_grammar_applies_from_the_next_utterance(self, provider):
        """``expect`` sent while an utterance runs leaves that utterance on the old grammar."""
        async with provider.session(call_sid="CA1") as session:
            await session.expect(CODES)
            async with asyncio.timeout(TIMEOUT_S), asyncio.TaskGroup() as group:
                events = group.create_task(collect(session))
                await feed(session, silence(1000) + synthesize_mulaw("banana"))
                await session.expect(["yes", "no"])  # the engine is inside "banana" by now
                await feed(session, spoken("yes"))
                await session.finish()
        assert [final.text for final in finals(events.result())] == ["banana", "yes"]

    async def test_concurrent_sessions_keep_their_own_grammar_and_audio(self, provider):
        async def call(call_sid: str, phrases: list[str], text: str) -> list[str]:
            async with provider.session(call_sid=call_sid) as session:
                await session.expect(phrases)
                return [final.text for final in finals(await run_call(session, spoken(text)))]

        results = await asyncio.gather(call("CA1", CODES, "forty two"), call("CA2", ["yes", "no"], "no"))
        assert results == [["forty two"], ["no"]]


class TestFreeSpeech:
    async def test_transcribes_a_sentence_after_leaving_grammar_mode(self, provider):
        async with provider.session(call_sid="CA1") as session:
            await session.expect(CODES)
            await session.expect(None)
            events = await run_call(session, spoken("can you hear me"))
        check_utterance_shape(events)
        heard = " ".join(final.text for final in finals(events)).split()
        assert {"can", "you", "hear", "me"} & set(heard), heard  # the 16 kHz model is weak on 8 kHz

    async def test_interim_transcripts_come_before_their_final(self, provider):
        tuning = PocketSphinxTuning(interim_interval_s=0.2)
        with ThreadPoolExecutor(max_workers=1) as executor:
            interim_provider = PocketSphinxProvider(tuning, executor=executor)
            async with interim_provider.session(call_sid="CA1") as session:
                events = await run_call(session, spoken("i want to play the game"))
        check_utterance_shape(events)
        kinds = [(type(event), getattr(event, "is_final", None)) for event in events]
        assert (Transcript, False) in kinds
        assert kinds.index((Transcript, False)) < kinds.index((Transcript, True))


class TestStream:
    async def test_silence_yields_no_transcript(self, provider):
        async with provider.session(call_sid="CA1") as session:
            events = await run_call(session, b"\xff" * FRAME_BYTES * 150)  # 3 s of mu-law silence
        assert events == []

    async def test_finish_ends_events_and_refuses_more_audio(self, provider):
        async with provider.session(call_sid="CA1") as session:
            await session.finish()
            await session.finish()  # a second finish is harmless
            async with asyncio.timeout(TIMEOUT_S):
                assert await collect(session) == []
            with pytest.raises(ProviderError):
                await session.send_audio(silence(20))

    async def test_finish_inside_speech_emits_the_last_utterance(self, provider):
        async with provider.session(call_sid="CA1") as session:
            await session.expect(CODES)
            events = await run_call(session, silence(1000) + synthesize_mulaw("forty two"))
        check_utterance_shape(events)
        assert [final.text for final in finals(events)] == ["forty two"]

    async def test_leaving_the_session_without_finish_cleans_up(self, provider):
        async with provider.session(call_sid="CA1") as session:
            await feed(session, silence(500) + synthesize_mulaw("banana"))
        # Nothing pending is left behind: warnings are errors, so a leaked task would fail the run.

    async def test_an_engine_failure_ends_events_with_provider_error(self):
        executor = ThreadPoolExecutor(max_workers=1)
        try:
            failing_provider = PocketSphinxProvider(executor=executor)
            async with failing_provider.session(call_sid="CA1") as session:
                executor.shutdown()  # the next engine job cannot run
                await session.send_audio(silence(20))
                with pytest.raises(ProviderError, match="pocketsphinx: decoding failed"):
                    async with asyncio.timeout(TIMEOUT_S):
                        await collect(session)
                with pytest.raises(ProviderError):
                    await session.send_audio(silence(20))
        finally:
            executor.shutdown()


class TestLoading:
    def test_an_unknown_decoder_option_names_the_package(self):
        tuning = PocketSphinxTuning(decoder_options={"no_such_option": 1})
        with ThreadPoolExecutor(max_workers=1) as executor, pytest.raises(ProviderError, match="pocketsphinx"):
            PocketSphinxProvider(tuning, executor=executor)

    def test_a_missing_model_names_the_package(self, tmp_path):
        tuning = PocketSphinxTuning(decoder_options={"hmm": str(tmp_path / "missing")})
        with ThreadPoolExecutor(max_workers=1) as executor, pytest.raises(ProviderError, match="pocketsphinx"):
            PocketSphinxProvider(tuning, executor=executor)

    @pytest.mark.parametrize("where", ["threads", "process"])
    async def test_a_broken_model_fails_when_the_decoder_loads(self, tmp_path, where):
        broken = tmp_path / "broken.lm"
        broken.write_text("this is not a language model\n")
        tuning = PocketSphinxTuning(decoder_options={"lm": str(broken)})
        with ThreadPoolExecutor(max_workers=1) as executor:
            provider = PocketSphinxProvider(tuning, executor=executor if where == "threads" else None)
            try:
                with pytest.raises(ProviderError, match="pocketsphinx: cannot load"):
                    await provider.warm_up()
                with pytest.raises(ProviderError, match="pocketsphinx: cannot load"):
                    async with provider.session(call_sid="CA1"):
                        pass
            finally:
                await provider.close()
