"""A real server on loopback, a v0 game client, a fake Twilio call and a fake Deepgram."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from peers import DROP_PHRASE, TIMEOUT_S, FakeDeepgram
from phonepatch.shared.protocol import twilio_media as media

# Every session here runs with its game on either server that carries games.
pytestmark = pytest.mark.parametrize("games_on", ["aiohttp", "picows"])


async def eventually(predicate, timeout_s: float = TIMEOUT_S) -> None:
    """Wait for a condition that only the server's own clean-up can make true."""
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.01)


async def patch_by_voice(server, game, phrase: str | None = None):
    call = await server.call()
    await call.say(phrase or game.code)
    assert await game.receive_text() == "connected"
    return call


class TestGameSession:
    async def test_game_gets_number_then_code(self, server):
        game = await server.game()
        assert game.phone_number == "+15550001111"
        assert game.code in {str(n) for n in range(100)}
        assert game.code in await server.gateway.bus.live_codes()

    async def test_pool_exhausted_closes_with_1013(self, start_server, settings):
        server = await start_server(dataclasses.replace(settings, game_codes=("apple",)))
        first = await server.game()
        assert first.code == "apple"
        refused = await server.http.ws_connect(server.game_url)
        message = await refused.receive(timeout=TIMEOUT_S)
        assert refused.close_code == 1013
        assert "no free game code" in (message.extra or "")

    async def test_code_returns_to_pool_once_on_disconnect(self, start_server, settings):
        server = await start_server(dataclasses.replace(settings, game_codes=("7",)))
        game = await server.game()
        await game.ws.close()
        bus = server.gateway.bus
        await eventually(lambda: bus._free == {"7"})  # noqa: SLF001 - the pool's own state
        again = await server.game()
        assert again.code == "7"


class TestSpokenCode:
    async def test_spoken_code_patches_and_finals_flow(self, server, deepgram: FakeDeepgram):
        game = await server.game()
        call = await patch_by_voice(server, game, f"it is {game.code} please")
        await call.say("hello game")
        assert await game.receive_transcript() == "hello game"
        session = deepgram.sessions[0]
        assert session.query["encoding"] == ["mulaw"] and session.query["sample_rate"] == ["8000"]
        assert session.empty_frames == 0
        await call.hang_up()
        await asyncio.wait_for(session.closed.wait(), TIMEOUT_S)
        assert session.close_stream
        # each inbound frame reached the provider on its own, not buffered into larger sends
        assert session.frames == session.audio_bytes // media.FRAME_BYTES

    async def test_number_words_match(self, start_server, settings):
        server = await start_server(dataclasses.replace(settings, game_codes=("42",)))
        game = await server.game()
        await patch_by_voice(server, game, "forty-two")

    async def test_word_codes_match(self, start_server, settings):
        server = await start_server(dataclasses.replace(settings, game_codes=("banana",)))
        game = await server.game()
        await patch_by_voice(server, game, "Banana!")

    async def test_wrong_code_then_right_code(self, start_server, settings):
        server = await start_server(dataclasses.replace(settings, game_codes=("12",)))
        game = await server.game()
        call = await server.call()
        await call.say("thirteen")
        await call.say("twelve")
        assert await game.receive_text() == "connected"
        await call.say("after the patch")
        assert await game.receive_transcript() == "after the patch"

    async def test_interim_results_are_not_sent_on_v0(self, server):
        game = await server.game()
        call = await patch_by_voice(server, game)
        await call.say("several words here")
        # the fake provider sends an interim result first; v0 must deliver only the final one
        assert await game.receive_transcript() == "several words here"


class TestKeypadCode:
    async def test_digits_and_pound(self, server):
        game = await server.game()
        call = await server.call()
        await call.press(game.code + "#")
        assert await game.receive_text() == "connected"
        await call.say("keyed in")
        assert await game.receive_transcript() == "keyed in"

    async def test_pause_ends_entry(self, server):
        game = await server.game()
        call = await server.call()
        await call.press(game.code)
        assert await game.receive_text() == "connected"

    async def test_star_clears(self, start_server, settings):
        server = await start_server(dataclasses.replace(settings, game_codes=("5",)))
        game = await server.game()
        call = await server.call()
        await call.press("9*5#")
        assert await game.receive_text() == "connected"


class TestConcurrency:
    async def test_two_games_two_calls_never_cross(self, server):
        game_a, game_b = await server.game(), await server.game()
        call_a, call_b = await asyncio.gather(server.call(), server.call())
        await asyncio.gather(call_a.say(game_a.code), call_b.say(game_b.code))
        assert await game_a.receive_text() == "connected"
        assert await game_b.receive_text() == "connected"
        await asyncio.gather(call_a.say("alpha speaking"), call_b.say("bravo speaking"))
        assert await game_a.receive_transcript() == "alpha speaking"
        assert await game_b.receive_transcript() == "bravo speaking"

    async def test_one_caller_per_game(self, server, deepgram):
        game = await server.game()
        first = await patch_by_voice(server, game)
        second = await server.call()
        await second.say(game.code)
        await second.say("intruder")
        await eventually(lambda: len(deepgram.sessions) == 2 and deepgram.sessions[1].phrases == [game.code, "intruder"])
        with pytest.raises(TimeoutError):
            await game.receive_text(timeout_s=0.3)
        await first.say("the real caller")
        assert await game.receive_transcript() == "the real caller"


class TestEndings:
    async def test_caller_hangs_up_game_keeps_code(self, server):
        game = await server.game()
        call = await patch_by_voice(server, game)
        await call.hang_up()
        assert game.code in await server.gateway.bus.live_codes()
        again = await patch_by_voice(server, game)
        await again.say("second caller")
        assert await game.receive_transcript() == "second caller"

    async def test_game_leaves_mid_call(self, server):
        game = await server.game()
        other = await server.game()
        call = await patch_by_voice(server, game)
        await game.ws.close()
        await eventually(lambda: game.code not in server.gateway.bus._taken)  # noqa: SLF001
        assert not call.ws.closed
        await call.say(other.code)  # the call is back at code entry
        assert await other.receive_text() == "connected"

    async def test_call_ends_mid_entry(self, server):
        game = await server.game()
        call = await server.call()
        await call.press("1")
        await call.hang_up()
        again = await patch_by_voice(server, game)
        assert not again.ws.closed


class TestProviderFailures:
    async def test_provider_refuses_ends_that_call_only(self, server, deepgram):
        game = await server.game()
        deepgram.refuse_status = 401
        refused = await server.call()
        assert await refused.wait_closed() == 1000
        deepgram.refuse_status = None
        await patch_by_voice(server, game)

    async def test_bad_key_is_refused(self, start_server, settings, deepgram):
        bad = dataclasses.replace(settings, deepgram=dataclasses.replace(settings.deepgram, api_key=None))
        server = await start_server(bad)
        call = await server.call()
        assert await call.wait_closed() == 1000
        assert deepgram.sessions == []

    async def test_provider_drop_ends_that_call_only(self, server):
        game_a, game_b = await server.game(), await server.game()
        call_a = await patch_by_voice(server, game_a)
        call_b = await patch_by_voice(server, game_b)
        await call_a.say(DROP_PHRASE)
        assert await call_a.wait_closed() == 1000
        await call_b.say("still here")
        assert await game_b.receive_transcript() == "still here"
        # game A keeps its code and can take the next caller
        await patch_by_voice(server, game_a)
