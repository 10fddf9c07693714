"""Choose and build the speech providers named in the settings (one registry line per provider)."""

from __future__ import annotations

from concurrent.futures import Executor

import aiohttp

from phonepatch.shared.config import Settings
from phonepatch.shared.providers.stt import SpeechToText
from phonepatch.shared.providers.tts import TextToSpeech

__all__ = ["build_stt", "build_tts", "stt_name"]


def stt_name(settings: Settings) -> str:
    """The speech-to-text provider to use: "auto" means Deepgram with a key, else offline."""
    if settings.speech.stt != "auto":
        return settings.speech.stt
    return "deepgram" if settings.deepgram.api_key is not None else "pocketsphinx"


def build_stt(settings: Settings, *, executor: Executor, http: aiohttp.ClientSession) -> SpeechToText:
    """Raises ``ProviderError`` naming the package when an engine cannot load."""
    name = stt_name(settings)
    if name == "deepgram":
        from phonepatch.shared.providers.deepgram import DeepgramLive

        return DeepgramLive(settings.deepgram, http)
    from phonepatch.shared.providers.pocketsphinx import PocketSphinxProvider

    processes = settings.speech.stt_processes
    return PocketSphinxProvider(executor=executor if processes == 0 else None, processes=processes)


def build_tts(settings: Settings, *, executor: Executor) -> TextToSpeech | None:
    if settings.speech.tts == "none":
        return None
    from phonepatch.shared.providers.espeak import EspeakTTS

    return EspeakTTS(executor, voice=settings.speech.voice, rate_wpm=settings.speech.rate_wpm)
