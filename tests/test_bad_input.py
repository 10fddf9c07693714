"""Bad input on either socket gets a clear error or close code and touches no other session."""

from __future__ import annotations

import asyncio
import base64

import aiohttp
import orjson
import pytest
from structlog.testing import capture_logs

from peers import TIMEOUT_S
from phonepatch.shared.protocol import twilio_media as media


async def patched_pair(server):
    game = await server.game()
    call = await server.call()
    await call.say(game.code)
    assert await game.receive_text() == "connected"
    return game, call


async def open_stream(server) -> aiohttp.ClientWebSocketResponse:
    ws = await server.http.ws_connect(server.base_url + "/twilio")
    server.clients.append(ws)
    return ws


async def close_of(ws: aiohttp.ClientWebSocketResponse) -> tuple[int | None, str]:
    async with asyncio.timeout(TIMEOUT_S):
        while True:
            message = await ws.receive()
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                return ws.close_code, message.extra or ""


class TestTwilioBeforeStart:
    async def test_media_before_start_closes_1008(self, small_server):
        ws = await open_stream(small_server)
        await ws.send_str(media.encode_connected())
        await ws.send_str(
            media.encode_inbound_media(stream_sid="MZ" + "1" * 32, sequence_number=1, chunk=1, timestamp_ms=20, payload=b"\xff")
        )
        code, reason = await close_of(ws)
        assert code == 1008 and "media before start" in reason

    async def test_malformed_json_before_start_closes_1008(self, small_server):
        ws = await open_stream(small_server)
        await ws.send_str("{not json")
        code, reason = await close_of(ws)
        assert code == 1008 and "json" in reason.lower()

    async def test_no_start_in_time_closes_1008(self, small_server):
        ws = await open_stream(small_server)
        await ws.send_str(media.encode_connected())
        code, reason = await close_of(ws)
        assert code == 1008 and "start" in reason

    async def test_binary_before_start_closes_1008(self, small_server):
        ws = await open_stream(small_server)
        await ws.send_bytes(b"\x00\x01")
        code, _ = await close_of(ws)
        assert code == 1008


class TestTwilioDuringCall:
    async def test_bad_frames_are_dropped_and_the_call_goes_on(self, small_server, deepgram):
        game, call = await patched_pair(small_server)
        bad_base64 = orjson.loads(
            media.encode_inbound_media(stream_sid=call.stream_sid, sequence_number=99, chunk=99, timestamp_ms=1, payload=b"x")
        )
        bad_base64["media"]["payload"] = "@@not base64@@"
        with capture_logs() as logs:
            await call.ws.send_str("{malformed")
            await call.ws.send_str(orjson.dumps(bad_base64).decode())
            await call.ws.send_bytes(b"\x00binary")
            await call.ws.send_str('{"event": "something-new", "streamSid": "MZ"}')
            await call.ws.send_str('{"event": "media", "streamSid": "MZ"}')
            await call.say("still talking")
            assert await game.receive_transcript() == "still talking"
        rejected = [entry for entry in logs if entry["event"] == "twilio_frame_rejected"]
        assert len(rejected) == 4  # the unknown event is ignored silently, as Twilio asks (§1.2)
        assert all(entry["log_level"] == "warning" for entry in rejected)

    async def test_oversized_frame_closes_1009_and_the_game_keeps_its_code(self, small_server):
        game, call = await patched_pair(small_server)
        huge = base64.b64encode(b"\xff" * 8000).decode()
        await call.ws.send_str(orjson.dumps({"event": "media", "streamSid": call.stream_sid, "media": {"payload": huge}}).decode())
        code, _ = await close_of(call.ws)
        assert code == 1009
        assert game.code in await small_server.gateway.bus.live_codes()
        next_call = await small_server.call()
        await next_call.say(game.code)
        assert await game.receive_text() == "connected"


@pytest.mark.parametrize("games_on", ["aiohttp", "picows"])
class TestGameSocket:
    async def test_binary_from_game_closes_1003_and_returns_the_code(self, small_server):
        game = await small_server.game()
        await game.ws.send_bytes(b"\x01\x02")
        assert await game.wait_closed() == 1003
        bus = small_server.gateway.bus
        async with asyncio.timeout(TIMEOUT_S):
            while game.code in await bus.live_codes():
                await asyncio.sleep(0.01)

    async def test_oversized_text_from_game_closes_1009(self, small_server):
        game = await small_server.game()
        await game.ws.send_str("x" * 5000)
        assert await game.wait_closed() == 1009

    async def test_text_from_game_is_accepted_before_and_during_a_call(self, small_server):
        game = await small_server.game()
        await game.ws.send_str("is anyone there?")
        call = await small_server.call()
        await call.say(game.code)
        assert await game.receive_text() == "connected"
        with capture_logs() as logs:
            await game.ws.send_str("What is your quest?")
            await game.ws.send_str("   ")
            async with asyncio.timeout(TIMEOUT_S):
                while not any(entry["event"] == "game_text_received" for entry in logs):
                    await asyncio.sleep(0.01)
        assert not game.ws.closed
        assert any(entry["event"] == "game_text_rejected" for entry in logs)

    async def test_unknown_code_by_keypad_is_refused(self, small_server):
        game = await small_server.game()
        unused = next(str(n) for n in range(100) if str(n) != game.code)
        call = await small_server.call()
        with capture_logs() as logs:
            await call.press(unused + "#")
            await call.press(game.code + "#")
            assert await game.receive_text() == "connected"
        prompts = [entry["kind"] for entry in logs if entry["event"] == "caller_prompted"]
        assert prompts[:2] == ["prompt", "hint"]  # the unknown code got a spoken hint, not a patch
