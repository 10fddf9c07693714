"""The eSpeak NG provider: real synthesis from the library shipped in espeakng-loader."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from phonepatch.shared.audio import mulaw_to_pcm
from phonepatch.shared.errors import ProviderError
from phonepatch.shared.providers.espeak import EspeakEngine, EspeakTTS, synthesize_mulaw


def test_speech_is_8k_mulaw_of_plausible_length():
    mulaw = synthesize_mulaw("four two seven")
    assert 0.5 < len(mulaw) / 8000 < 3.0
    assert np.abs(mulaw_to_pcm(mulaw)).max() > 5000  # audible, not silence


def test_rate_changes_duration():
    slow = synthesize_mulaw("the quick brown fox", rate_wpm=120)
    fast = synthesize_mulaw("the quick brown fox", rate_wpm=260)
    assert len(slow) > 1.5 * len(fast)


def test_unknown_voice_is_a_provider_error():
    with pytest.raises(ProviderError, match="voice"):
        EspeakEngine.shared().synthesize_pcm("hello", voice="no-such-voice")


async def test_provider_yields_audio_per_sentence():
    with ThreadPoolExecutor(1) as executor:
        tts = EspeakTTS(executor)
        chunks = [chunk async for chunk in tts.synthesize("Hello there. You are connected.")]
    assert len(chunks) == 2 and all(len(chunk) > 1600 for chunk in chunks)
