"""Phone audio helpers: G.711 mu-law, framing, resampling, WAV files (PROTOCOLS.md §7)."""

from __future__ import annotations

import warnings
import wave

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phonepatch.shared import audio


class TestMulaw:
    """§7.1: decode and encode byte for byte as the G.711 reference does."""

    def test_known_codes(self):
        pcm = audio.mulaw_to_pcm(bytes([0xFF, 0x7F, 0x80, 0x00]))
        assert pcm.tolist() == [0, 0, 32124, -32124]

    def test_zero_encodes_to_ff(self):
        assert audio.pcm_to_mulaw(np.zeros(3, dtype=np.int16)) == b"\xff\xff\xff"

    def test_same_bytes_as_the_standard_library(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import audioop  # deprecated in 3.11, gone in 3.13: used here only as the reference
        every_sample = np.arange(-32768, 32768, dtype=np.int16)
        assert audio.pcm_to_mulaw(every_sample) == audioop.lin2ulaw(every_sample.astype("<i2").tobytes(), 2)
        every_code = bytes(range(256))
        assert audio.mulaw_to_pcm(every_code).astype("<i2").tobytes() == audioop.ulaw2lin(every_code, 2)

    @given(st.binary(max_size=400))
    def test_decode_encode_is_identity_on_codes(self, mulaw):
        # 0x7F (negative zero) decodes to 0, which encodes back as 0xFF
        assert audio.pcm_to_mulaw(audio.mulaw_to_pcm(mulaw)) == mulaw.replace(b"\x7f", b"\xff")


class TestFraming:
    def test_frames_are_160_bytes_and_padded_with_silence(self):
        frames = list(audio.frames_of(b"\x01" * 200))
        assert [len(frame) for frame in frames] == [160, 160]
        assert frames[1] == b"\x01" * 40 + b"\xff" * 120

    def test_silence_length(self):
        assert audio.silence(20) == b"\xff" * 160


class TestResampling:
    def test_clip_resampling_keeps_duration(self):
        tone = (8000 * np.sin(np.arange(22050) * 2 * np.pi * 440 / 22050)).astype(np.int16)
        assert len(audio.resample(tone, 22050, 8000)) == pytest.approx(8000, abs=2)

    @settings(max_examples=20, deadline=None)
    @given(st.lists(st.integers(1, 400), min_size=1, max_size=30))
    def test_streamed_upsampling_keeps_every_sample(self, chunk_sizes):
        stream = audio.StreamResampler(8000, 16000)
        out = [stream.feed(np.zeros(size, dtype=np.int16)) for size in chunk_sizes]
        total = sum(len(chunk) for chunk in out) + len(stream.flush())
        assert total == pytest.approx(2 * sum(chunk_sizes), abs=2)

    def test_dither_is_low_noise(self):
        noisy = audio.add_dither(np.zeros(8000, dtype=np.int16), np.random.default_rng(1))
        assert 20 < noisy.std() < 40 and np.abs(noisy).max() < 200


class TestWav:
    def test_any_rate_and_channels_become_mono_8k(self, tmp_path):
        path = tmp_path / "stereo.wav"
        with wave.open(str(path), "wb") as wav:
            wav.setnchannels(2)
            wav.setsampwidth(2)
            wav.setframerate(44100)
            wav.writeframes(np.full(44100 * 2, 1000, dtype="<i2").tobytes())
        pcm = audio.read_wav(path)
        assert len(pcm) == pytest.approx(8000, abs=2)
        assert abs(int(np.median(pcm)) - 1000) < 5

    def test_write_then_read(self, tmp_path):
        path = tmp_path / "mono.wav"
        audio.write_wav(path, np.arange(800, dtype=np.int16))
        assert audio.read_wav(path).tolist() == list(range(800))

    def test_not_a_wav_is_a_clear_error(self, tmp_path):
        path = tmp_path / "noise.wav"
        path.write_bytes(b"not a wav file at all")
        with pytest.raises((ValueError, EOFError, wave.Error)):
            audio.read_wav(path)
