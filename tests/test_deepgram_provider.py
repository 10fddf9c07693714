"""The Deepgram live provider against a fake Deepgram that speaks the real wire protocol."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import aiohttp
import pytest

from peers import API_KEY, DROP_PHRASE, TIMEOUT_S, FakeDeepgram, speech_frame
from phonepatch.shared.config import DeepgramSettings, Secret
from phonepatch.shared.errors import ProviderError
from phonepatch.shared.providers.deepgram import DeepgramLive
from phonepatch.shared.speech import SpeechStarted, Transcript, UtteranceEnd


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def dg_settings(deepgram: FakeDeepgram) -> DeepgramSettings:
    return DeepgramSettings(api_key=Secret(API_KEY), url=deepgram.url, connect_timeout_s=1.0, keepalive_interval_s=0.05)


async def collect(session, count: int) -> list:
    events = []
    async with asyncio.timeout(TIMEOUT_S):
        async for event in session.events():
            events.append(event)
            if len(events) == count:
                return events
    return events


class TestSession:
    async def test_audio_up_results_down(self, http, dg_settings, deepgram):
        provider = DeepgramLive(dg_settings, http)
        async with provider.session(call_sid="CA1", keyterms=["forty two"]) as session:
            await session.send_audio(b"")  # never sent: an empty frame closes Deepgram's stream
            await session.send_audio(speech_frame("forty two"))
            events = await collect(session, 4)
        assert [type(event) for event in events] == [SpeechStarted, Transcript, Transcript, UtteranceEnd]
        interim, final = events[1], events[2]
        assert (interim.is_final, final.is_final, final.speech_final) == (False, True, True)
        assert final.text == "forty two" and final.raw_json is not None
        record = deepgram.sessions[0]
        assert record.frames == 1 and record.empty_frames == 0
        assert record.query["keyterm"] == ["forty two"]

    async def test_finish_drains_and_ends_cleanly(self, http, dg_settings, deepgram):
        provider = DeepgramLive(dg_settings, http)
        async with provider.session(call_sid="CA1") as session:
            await session.finish()
            assert await collect(session, 10) == []
        assert deepgram.sessions[0].close_stream

    async def test_keepalive_while_no_audio(self, http, dg_settings, deepgram):
        provider = DeepgramLive(dg_settings, http)
        async with provider.session(call_sid="CA1"):
            async with asyncio.timeout(TIMEOUT_S):
                while not deepgram.sessions or deepgram.sessions[0].keepalives < 2:
                    await asyncio.sleep(0.01)


class TestFailures:
    async def test_refusal_names_the_status(self, http, dg_settings, deepgram):
        deepgram.refuse_status = 401
        with pytest.raises(ProviderError, match="HTTP 401"):
            async with DeepgramLive(dg_settings, http).session(call_sid="CA1"):
                pass

    async def test_wrong_key_is_refused(self, http, dg_settings):
        settings = dataclasses.replace(dg_settings, api_key=Secret("wrong"))
        with pytest.raises(ProviderError, match="401"):
            async with DeepgramLive(settings, http).session(call_sid="CA1"):
                pass

    async def test_missing_key_is_a_provider_error(self, http, dg_settings):
        settings = dataclasses.replace(dg_settings, api_key=None)
        with pytest.raises(ProviderError, match="DEEPGRAM_API_KEY"):
            async with DeepgramLive(settings, http).session(call_sid="CA1"):
                pass

    async def test_drop_raises_with_deepgram_reason(self, http, dg_settings):
        async with DeepgramLive(dg_settings, http).session(call_sid="CA1") as session:
            await session.send_audio(speech_frame(DROP_PHRASE))
            with pytest.raises(ProviderError, match="NET-0001"):
                await collect(session, 10)

    async def test_connect_timeout(self, http, dg_settings):
        accepted: list[asyncio.StreamWriter] = []
        silent = await asyncio.start_server(lambda _, writer: accepted.append(writer), "127.0.0.1", 0)
        port = silent.sockets[0].getsockname()[1]
        settings = dataclasses.replace(dg_settings, url=f"ws://127.0.0.1:{port}/v1/listen", connect_timeout_s=0.2)
        try:
            with pytest.raises(ProviderError, match="in time"):
                async with DeepgramLive(settings, http).session(call_sid="CA1"):
                    pass
        finally:
            for writer in accepted:
                writer.close()
            silent.close()
            await silent.wait_closed()

    async def test_unreachable(self, http, dg_settings):
        with socket_port() as port:
            pass  # the port is free again: nothing listens on it
        settings = dataclasses.replace(dg_settings, url=f"ws://127.0.0.1:{port}/v1/listen")
        with pytest.raises(ProviderError, match="unreachable"):
            async with DeepgramLive(settings, http).session(call_sid="CA1"):
                pass


class socket_port:
    """Reserve a free loopback port for the length of a ``with`` block."""

    def __enter__(self) -> int:
        import socket

        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        return self._socket.getsockname()[1]

    def __exit__(self, *exc_info) -> None:
        self._socket.close()
