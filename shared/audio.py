"""Phone audio: G.711 mu-law at 8 kHz (PROTOCOLS.md §7), resampling, framing and WAV files.

Mu-law goes through 256- and 65536-entry tables built once from the G.711 formula (byte for byte
what the standard library's deprecated ``audioop`` produces). Resampling is soxr's; a
``StreamResampler`` keeps its state across frames, as streamed phone audio needs.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soxr

__all__ = [
    "FRAME_BYTES",
    "PHONE_RATE_HZ",
    "StreamResampler",
    "add_dither",
    "frames_of",
    "mulaw_to_pcm",
    "pcm_to_mulaw",
    "read_wav",
    "resample",
    "silence",
    "write_wav",
]

PHONE_RATE_HZ = 8000
FRAME_BYTES = 160  # 20 ms of 8 kHz mu-law
_BIAS = 0x84


def _build_decode_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(codes & 0x80, -magnitude, magnitude).astype(np.int16)


def _build_encode_table() -> np.ndarray:
    # G.711 on 14-bit samples, as the reference implementation (and ``audioop``) does it.
    value = np.arange(-32768, 32768, dtype=np.int32) >> 2
    mask = np.where(value < 0, 0x7F, 0xFF)
    value = np.minimum(np.abs(value), 8159) + (_BIAS >> 2)
    segment_ends = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
    segment = np.searchsorted(segment_ends, value)
    code = (segment << 4) | ((value >> (segment + 1)) & 0x0F)
    return ((np.where(segment >= 8, 0x7F, code) ^ mask) & 0xFF).astype(np.uint8)


_DECODE = _build_decode_table()
_ENCODE = _build_encode_table()  # indexed by sample + 32768


def mulaw_to_pcm(mulaw: bytes) -> np.ndarray:
    """Decode mu-law bytes to 16-bit linear samples."""
    return _DECODE[np.frombuffer(mulaw, dtype=np.uint8)]


def pcm_to_mulaw(pcm: np.ndarray) -> bytes:
    """Encode 16-bit linear samples to mu-law bytes."""
    return _ENCODE[pcm.astype(np.int32) + 32768].tobytes()


def silence(duration_ms: int) -> bytes:
    """Mu-law silence (``0xFF``) of the given length at 8 kHz."""
    return b"\xff" * (PHONE_RATE_HZ * duration_ms // 1000)


def frames_of(mulaw: bytes, frame_bytes: int = FRAME_BYTES) -> Iterator[bytes]:
    """Cut audio into 20 ms frames; the last one is padded with silence."""
    for start in range(0, len(mulaw), frame_bytes):
        frame = mulaw[start : start + frame_bytes]
        yield frame + b"\xff" * (frame_bytes - len(frame))


def add_dither(pcm: np.ndarray, rng: np.random.Generator, sigma: float = 30.0) -> np.ndarray:
    """Add low white Gaussian noise: recognisers do badly on the exact zeros that mu-law silence
    decodes to (measured on eSpeak codes through PocketSphinx: ±4 LSB of dither 45/100 right,
    Gaussian sigma 30 70/100)."""
    noise = rng.normal(0.0, sigma, size=pcm.shape).astype(np.int32)
    return np.clip(pcm.astype(np.int32) + noise, -32768, 32767).astype(np.int16)


def resample(pcm: np.ndarray, in_rate_hz: int, out_rate_hz: int) -> np.ndarray:
    """Resample a whole clip (high quality; no streaming delay)."""
    if in_rate_hz == out_rate_hz:
        return pcm.astype(np.int16)
    return soxr.resample(pcm.astype(np.int16), in_rate_hz, out_rate_hz, quality="HQ")


class StreamResampler:
    """Resample a stream chunk by chunk, keeping filter state between chunks."""

    def __init__(self, in_rate_hz: int, out_rate_hz: int) -> None:
        self._stream = soxr.ResampleStream(in_rate_hz, out_rate_hz, 1, dtype="int16", quality="HQ")

    def feed(self, pcm: np.ndarray) -> np.ndarray:
        return self._stream.resample_chunk(pcm.astype(np.int16), last=False)

    def flush(self) -> np.ndarray:
        return self._stream.resample_chunk(np.zeros(0, dtype=np.int16), last=True)


def read_wav(source: str | Path | bytes, out_rate_hz: int = PHONE_RATE_HZ) -> np.ndarray:
    """Read a PCM WAV of any rate and channel count as mono 16-bit samples at ``out_rate_hz``.

    Raises ``ValueError`` naming what is wrong when the file is not 8/16/24/32-bit PCM WAV.
    """
    handle = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115
    with handle, wave.open(handle, "rb") as wav:
        width, channels, rate = wav.getsampwidth(), wav.getnchannels(), wav.getframerate()
        raw = wav.readframes(wav.getnframes())
    samples = _to_int16(raw, width)
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1).astype(np.int16)
    return resample(samples, rate, out_rate_hz)


def _to_int16(raw: bytes, width: int) -> np.ndarray:
    if width == 1:  # 8-bit WAV is unsigned
        return ((np.frombuffer(raw, np.uint8).astype(np.int16) - 128) << 8).astype(np.int16)
    if width == 2:
        return np.frombuffer(raw, "<i2").copy()
    if width == 3:
        bytes3 = np.frombuffer(raw, np.uint8).reshape(-1, 3)
        return (bytes3[:, 2].astype(np.int8).astype(np.int16) << 8 | bytes3[:, 1]).astype(np.int16)
    if width == 4:
        return (np.frombuffer(raw, "<i4") >> 16).astype(np.int16)
    raise ValueError(f"unsupported WAV sample width: {width * 8} bits")


def write_wav(path: str | Path, pcm: np.ndarray, rate_hz: int = PHONE_RATE_HZ) -> None:
    """Write mono 16-bit samples as a WAV file."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate_hz)
        wav.writeframes(pcm.astype("<i2").tobytes())
