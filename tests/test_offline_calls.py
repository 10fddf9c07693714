"""Calls through the real server path with the offline engines: no scripted transcripts anywhere.

The caller speaks with eSpeak NG, the server recognises with PocketSphinx and reads codes back with
eSpeak NG, and the caller transcribes the read-back with PocketSphinx before answering.
"""

from __future__ import annotations

import asyncio
import dataclasses
from concurrent.futures import ThreadPoolExecutor

import pytest
from structlog.testing import capture_logs

from peers import TIMEOUT_S
from phonepatch.services.simulator.caller import Caller
from phonepatch.services.simulator.phone import PhoneSimulator
from phonepatch.shared.audio import silence
from phonepatch.shared.providers.pocketsphinx import PocketSphinxProvider

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def offline_settings(settings):
    speech = dataclasses.replace(settings.speech, stt="pocketsphinx", tts="espeak", max_attempts=4)
    return dataclasses.replace(settings, game_codes=("banana", "42", "pizza"), speech=speech)


@pytest.fixture
async def offline_server(start_server, offline_settings):
    return await start_server(offline_settings)


@pytest.fixture
def ears():
    with ThreadPoolExecutor(2) as executor:
        yield executor, PocketSphinxProvider(executor=executor)


def twilio_url(server) -> str:
    return server.base_url.replace("http", "ws") + "/twilio"


async def test_spoken_code_is_read_back_confirmed_and_patched(offline_server, ears):
    executor, stt = ears
    game = await offline_server.game()
    async with PhoneSimulator(offline_server.http, twilio_url(offline_server), speed=4) as phone:
        caller = Caller(
            phone, executor=executor, stt=stt, meant_code=game.code, say_on_hint=[game.code], pool=offline_server.gateway.settings.pool(), report=lambda _: None
        )
        listener = asyncio.create_task(caller.listen())
        try:
            await caller.say_code(game.code)
            assert await game.receive_text(timeout_s=12 * TIMEOUT_S) == "connected"
            assert caller.answers and caller.answers[-1] is True  # patched only after a "yes"
            assert all(kind != "readback" or answer for (_, kind), answer in zip(caller.heard, caller.answers))
            await caller.speak("hello")
            transcript = await game.receive_transcript()
            assert isinstance(transcript, str)
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)


async def test_keyed_code_needs_no_read_back(offline_server, ears):
    executor, stt = ears
    game = await offline_server.game()
    async with PhoneSimulator(offline_server.http, twilio_url(offline_server), speed=4) as phone:
        await phone.press("#")  # nothing entered: ignored
        with capture_logs() as logs:
            # a code no game holds gets a spoken hint, not a patch
            await phone.press("1234#")
            async with asyncio.timeout(TIMEOUT_S):
                while not any(e.get("kind") == "hint" for e in logs if e["event"] == "caller_prompted"):
                    await asyncio.sleep(0.05)
    assert game.code in await offline_server.gateway.bus.live_codes()


async def test_silence_patches_nobody_and_misses_end_politely(offline_server):
    game = await offline_server.game()
    async with PhoneSimulator(offline_server.http, twilio_url(offline_server), speed=8) as phone:
        await phone.say_audio(silence(3000))
        assert not phone.closed.is_set()
        for _ in range(4):  # max_attempts keyed misses end the call with a goodbye
            await phone.press("9#")
        heard = [await phone.next_heard(TIMEOUT_S * 6) for _ in range(5)]
        kinds = [entry.mark.rsplit("-", 1)[0] for entry in heard]
        assert kinds[0] == "prompt" and kinds[-1] == "goodbye"
        await asyncio.wait_for(phone.closed.wait(), TIMEOUT_S * 2)
    with pytest.raises(TimeoutError):
        await game.receive_text(timeout_s=0.2)


async def test_a_caller_who_says_nothing_is_asked_again_then_let_go(start_server, offline_settings):
    speech = dataclasses.replace(offline_settings.speech, listen_timeout_s=0.5, max_attempts=2)
    server = await start_server(dataclasses.replace(offline_settings, speech=speech))
    game = await server.game()
    async with PhoneSimulator(server.http, twilio_url(server), speed=4) as phone:
        with capture_logs() as logs:  # the phone sends silence all along, as Twilio does
            await asyncio.wait_for(phone.closed.wait(), TIMEOUT_S * 4)
    prompted = [e["kind"] for e in logs if e["event"] == "caller_prompted"]
    assert prompted == ["prompt", "hint", "goodbye"]
    with pytest.raises(TimeoutError):
        await game.receive_text(timeout_s=0.2)
