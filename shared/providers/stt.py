"""The speech-to-text provider interface.

A provider opens one ``SpeechSession`` per call. The session takes 8 kHz mu-law audio as it
arrives and yields provider-neutral ``SpeechEvent``s (``phonepatch.shared.speech``).
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager

from phonepatch.shared.speech import SpeechEvent

__all__ = ["SpeechSession", "SpeechToText"]


class SpeechSession(abc.ABC):
    """One call's recognition session. The context manager that made it owns its cleanup."""

    @abc.abstractmethod
    async def send_audio(self, mulaw: bytes) -> None:
        """Feed 8 kHz mu-law audio. Raises ``ProviderError`` once the session has failed."""

    @abc.abstractmethod
    def events(self) -> AsyncIterator[SpeechEvent]:
        """Results in order. Ends after ``finish`` drained; raises ``ProviderError`` on a drop."""

    @abc.abstractmethod
    async def finish(self) -> None:
        """No more audio: ask for the remaining results; ``events`` then ends."""

    async def expect(self, phrases: Sequence[str] | None) -> None:
        """Bias recognition toward ``phrases`` (all the caller may say now), or None for free speech.

        A grammar-based engine restricts itself to them; a service may use them as hints or
        ignore them. The default ignores them.
        """


class SpeechToText(abc.ABC):
    """A speech-to-text engine or service."""

    name: str
    # True when the engine's confidence cannot vouch for a code: every spoken code is read back.
    always_confirm: bool = False

    async def warm_up(self) -> None:
        """Load what the first call would otherwise wait for; the default loads nothing."""

    async def close(self) -> None:
        """Release what the provider holds (engine processes); after its sessions have closed."""

    @abc.abstractmethod
    def session(
        self, *, call_sid: str, keyterms: Sequence[str] = ()
    ) -> AbstractAsyncContextManager[SpeechSession]:
        """Open a session for one call; raises ``ProviderError`` when it cannot be opened.

        ``keyterms`` are phrases the caller is likely to say (for example the live codes).
        """
