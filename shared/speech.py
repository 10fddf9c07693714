"""Provider-neutral speech-to-text events.

Every speech-to-text provider turns its own wire format into these, so the call logic and the game
protocols never see a provider's raw dicts. ``raw_json`` keeps the provider's own JSON text where
one exists: game protocol v0 forwards Deepgram ``Results`` verbatim (ARCHITECTURE.md §1).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SpeechEvent", "SpeechStarted", "Transcript", "UtteranceEnd", "Word"]


@dataclass(frozen=True, slots=True)
class Word:
    """One recognised word; times are seconds from the start of the provider session."""

    word: str
    start_s: float
    end_s: float
    confidence: float
    punctuated_word: str | None = None


@dataclass(frozen=True, slots=True)
class Transcript:
    """An interim or final speech result for a stretch of audio.

    ``is_final`` means the text for this time range will not change; ``speech_final`` means the
    provider saw the end of an utterance. ``alternatives`` are other readings of the same audio,
    most likely first, where the provider gives them. ``raw_json`` is the provider's JSON text when
    it has one.
    """

    text: str
    is_final: bool
    speech_final: bool = False
    confidence: float = 0.0
    words: tuple[Word, ...] = ()
    start_s: float = 0.0
    duration_s: float = 0.0
    alternatives: tuple[str, ...] = ()
    raw_json: str | None = None


@dataclass(frozen=True, slots=True)
class UtteranceEnd:
    """No new word followed the last final word for the provider's utterance-end window."""

    last_word_end_s: float


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """The provider detected the start of speech at ``timestamp_s``."""

    timestamp_s: float


SpeechEvent = Transcript | UtteranceEnd | SpeechStarted
