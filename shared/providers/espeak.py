"""Offline text-to-speech with eSpeak NG, whose library and voice data ship in ``espeakng-loader``.

The engine is a C library with one global state, so every synthesis holds one process-wide lock
and runs off the event loop. Output is resampled from eSpeak's 22,050 Hz to 8 kHz mu-law.
"""

from __future__ import annotations

import asyncio
import ctypes
import threading
from collections.abc import AsyncIterator
from concurrent.futures import Executor
from pathlib import Path

import numpy as np

from phonepatch.shared.audio import PHONE_RATE_HZ, pcm_to_mulaw, resample
from phonepatch.shared.errors import ProviderError
from phonepatch.shared.providers.tts import TextToSpeech

__all__ = ["EspeakEngine", "EspeakTTS", "synthesize_mulaw"]

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_RATE = 1
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
_MAX_TEXT_CHARS = 4000


class EspeakEngine:
    """The loaded eSpeak NG library. Use ``EspeakEngine.shared()``: the library is global state."""

    _instance: EspeakEngine | None = None
    _instance_lock = threading.Lock()

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as error:
            raise ProviderError("espeak: the espeakng-loader package is not installed") from error
        try:
            self._lib = ctypes.CDLL(espeakng_loader.get_library_path())
            data_dir = Path(espeakng_loader.get_data_path()).parent
        except (OSError, RuntimeError) as error:
            raise ProviderError(f"espeak: cannot load the library from espeakng-loader: {error}") from error
        self._lib.espeak_Initialize.restype = ctypes.c_int
        self.sample_rate_hz = self._lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, str(data_dir).encode(), 0
        )
        if self.sample_rate_hz <= 0:
            raise ProviderError("espeak: espeak_Initialize failed (voice data missing?)")
        self._chunks: list[np.ndarray] = []
        self._callback = _SYNTH_CALLBACK(self._collect)  # kept alive as long as the engine
        self._lib.espeak_SetSynthCallback(self._callback)
        self._lock = threading.Lock()

    @classmethod
    def shared(cls) -> EspeakEngine:
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _collect(self, wav: ctypes.POINTER(ctypes.c_short), count: int, _events: int) -> int:
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0

    def synthesize_pcm(self, text: str, *, voice: str = "en-us", rate_wpm: int = 175) -> np.ndarray:
        """Speak ``text``; 16-bit samples at ``sample_rate_hz``. Blocking: call off the loop."""
        encoded = text[:_MAX_TEXT_CHARS].encode() + b"\x00"
        with self._lock:
            self._chunks = []
            if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ProviderError(f"espeak: unknown voice {voice!r}")
            self._lib.espeak_SetParameter(_ESPEAK_RATE, int(rate_wpm), 0)
            status = self._lib.espeak_Synth(
                encoded, len(encoded), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
            )
            self._lib.espeak_Synchronize()
            chunks, self._chunks = self._chunks, []
        if status != 0:
            raise ProviderError(f"espeak: synthesis failed with status {status}")
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)


def synthesize_mulaw(text: str, *, voice: str = "en-us", rate_wpm: int = 175) -> bytes:
    """Speak ``text`` as 8 kHz mu-law (blocking)."""
    engine = EspeakEngine.shared()
    pcm = engine.synthesize_pcm(text, voice=voice, rate_wpm=rate_wpm)
    return pcm_to_mulaw(resample(pcm, engine.sample_rate_hz, PHONE_RATE_HZ))


class EspeakTTS(TextToSpeech):
    """eSpeak NG behind the text-to-speech interface; synthesis runs in ``executor``."""

    name = "espeak"

    def __init__(self, executor: Executor, *, voice: str = "en-us", rate_wpm: int = 175) -> None:
        EspeakEngine.shared()  # fail at start-up, naming the package, not on the first call
        self._executor = executor
        self._voice = voice
        self._rate_wpm = rate_wpm

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        for sentence in _sentences(text):
            yield await loop.run_in_executor(
                self._executor,
                lambda s=sentence: synthesize_mulaw(s, voice=self._voice, rate_wpm=self._rate_wpm),
            )


def _sentences(text: str) -> list[str]:
    """Split at sentence ends so the first audio is ready before the whole text is synthesized."""
    parts, current = [], []
    for word in text.split():
        current.append(word)
        if word.endswith((".", "!", "?")):
            parts.append(" ".join(current))
            current = []
    if current:
        parts.append(" ".join(current))
    return parts
