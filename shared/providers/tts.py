"""The text-to-speech provider interface: text in, 8 kHz mu-law out, for the phone stream."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator

__all__ = ["TextToSpeech"]


class TextToSpeech(abc.ABC):
    """A speech synthesizer whose output goes straight into Twilio ``media`` payloads."""

    name: str

    @abc.abstractmethod
    def synthesize(self, text: str) -> AsyncIterator[bytes]:
        """Yield 8 kHz mu-law audio for ``text`` in chunks of any length, the first one as soon
        as it is ready. Raises ``ProviderError`` when synthesis fails."""
