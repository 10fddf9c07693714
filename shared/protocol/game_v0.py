"""Game protocol v0: what the seed's game clients expect on ``/game`` (ARCHITECTURE.md §1).

Server → game, all text frames, in this order: the phone number, the code, ``connected`` once a
caller has said the code, then each final speech result as Deepgram ``Results`` JSON. Game →
server: free text, spoken to the caller. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from phonepatch.shared.errors import ProtocolError
from phonepatch.shared.protocol.deepgram import results_json
from phonepatch.shared.speech import Transcript

__all__ = [
    "CONNECTED",
    "encode_code",
    "encode_phone_number",
    "encode_result",
    "encode_transcript",
    "parse_game_text",
]

CONNECTED: Final = "connected"


def encode_phone_number(number: str) -> str:
    """First frame after connect: the number to call, as configured."""
    return number


def encode_code(code: str) -> str:
    """Second frame after connect: the code the caller must say or key."""
    return code


def encode_transcript(t: Transcript) -> str | None:
    """Results JSON for a final result, None for an interim one (which must not be sent).

    v0 clients treat any message with an ``is_final`` key as final, so interim results would read
    as finished phrases. Finals with empty text are still sent: v0 keeps Deepgram's raw behaviour
    (PROTOCOLS.md §4.5). Deepgram results go out verbatim (``raw_json``).
    """
    return encode_result(t.is_final, t.raw_json, lambda: t)


def encode_result(is_final: bool, raw_json: str | None, read: Callable[[], Transcript]) -> str | None:
    """``encode_transcript`` for a result whose transcript may not have been read yet: ``read``
    is called only when there is no provider JSON to send as it is."""
    if not is_final:
        return None
    return raw_json if raw_json is not None else results_json(read())


def parse_game_text(text: str, *, max_chars: int) -> str:
    """The text a game wants spoken, stripped of surrounding whitespace.

    Raises ProtocolError when nothing is left after stripping or more than ``max_chars`` is.
    """
    stripped = text.strip()
    if not stripped:
        raise ProtocolError("game text is empty")
    if len(stripped) > max_chars:
        raise ProtocolError(f"game text is longer than {max_chars} characters")
    return stripped
