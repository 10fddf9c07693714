"""Game protocol v0, the seed's wire format (ARCHITECTURE.md §1, PROTOCOLS.md §4.4)."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phonepatch.shared.errors import ProtocolError
from phonepatch.shared.protocol.deepgram import encode_results, parse_message
from phonepatch.shared.protocol.game_v0 import (
    CONNECTED,
    encode_code,
    encode_phone_number,
    encode_transcript,
    parse_game_text,
)
from phonepatch.shared.speech import Transcript, Word

FUZZ = settings(database=None, deadline=None, max_examples=75)


class TestServerToGame:
    """Phone number, code, ``connected``, then each final result as Deepgram ``Results`` JSON."""

    def test_phone_number_and_code_are_sent_as_is(self) -> None:
        assert encode_phone_number("+15555550100") == "+15555550100"
        assert encode_code("42") == "42"
        assert encode_code("banana") == "banana"

    def test_connected_is_the_bare_word(self) -> None:
        assert CONNECTED == "connected"

    def test_interim_results_are_not_sent(self) -> None:
        """v0 clients treat any message with an ``is_final`` key as final."""
        assert encode_transcript(Transcript(text="forty", is_final=False)) is None
        interim = parse_message(encode_results(transcript="forty", is_final=False))
        assert isinstance(interim, Transcript)
        assert encode_transcript(interim) is None

    def test_deepgram_finals_are_forwarded_verbatim(self) -> None:
        raw = encode_results(transcript="forty two", is_final=True, speech_final=True)
        final = parse_message(raw)
        assert isinstance(final, Transcript)
        assert encode_transcript(final) == raw

    def test_neutral_finals_get_the_fields_v0_clients_read(self) -> None:
        final = Transcript(
            text="forty two",
            is_final=True,
            confidence=0.8,
            words=(Word("forty", 0.1, 0.4, 0.8), Word("two", 0.4, 0.7, 0.8)),
        )
        sent = encode_transcript(final)
        assert sent is not None
        results = orjson.loads(sent)
        assert results["is_final"] is True
        assert results["channel"]["alternatives"][0]["transcript"] == "forty two"

    def test_empty_finals_are_still_sent(self) -> None:
        """PROTOCOLS.md §4.5: v0 forwarding keeps Deepgram's raw behaviour."""
        sent = encode_transcript(Transcript(text="", is_final=True))
        assert sent is not None
        assert orjson.loads(sent)["channel"]["alternatives"][0]["transcript"] == ""


class TestGameToServer:
    """Every text message the game sends is spoken to the caller."""

    def test_text_is_stripped(self) -> None:
        assert parse_game_text("  Hello, caller!\n", max_chars=100) == "Hello, caller!"

    @pytest.mark.parametrize("text", ["", " ", "\n\t \r"])
    def test_empty_text_is_rejected(self, text: str) -> None:
        with pytest.raises(ProtocolError, match="game text is empty"):
            parse_game_text(text, max_chars=100)

    def test_text_at_the_limit_is_accepted(self) -> None:
        assert parse_game_text(" " + "a" * 10 + " ", max_chars=10) == "a" * 10

    def test_text_over_the_limit_is_rejected(self) -> None:
        with pytest.raises(ProtocolError, match="game text is longer than 10 characters"):
            parse_game_text("a" * 11, max_chars=10)

    @given(text=st.text(max_size=60), max_chars=st.integers(min_value=1, max_value=50))
    @FUZZ
    def test_any_text_is_spoken_text_or_protocol_error(self, text: str, max_chars: int) -> None:
        try:
            spoken = parse_game_text(text, max_chars=max_chars)
        except ProtocolError:
            assert not text.strip() or len(text.strip()) > max_chars
            return
        assert spoken == text.strip()
        assert 0 < len(spoken) <= max_chars


# -- STYLE.md: shared/protocol imports no I/O or clock ---------------------------------------

FORBIDDEN_IMPORTS = {"aiohttp", "asyncio", "datetime", "redis", "socket", "time", "websockets"}


def imported_modules(module_name: str) -> set[str]:
    """What ``module_name`` imports, following imports of phonepatch modules transitively."""
    found: set[str] = set()
    pending, seen = [module_name], set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None
        for node in ast.walk(ast.parse(Path(spec.origin).read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            found.update(names)
            pending += [imported for imported in names if imported.startswith("phonepatch.")]
    return found


def test_codec_imports_no_io_or_clock() -> None:
    imported = imported_modules("phonepatch.shared.protocol.game_v0")
    assert {name.split(".")[0] for name in imported}.isdisjoint(FORBIDDEN_IMPORTS)
