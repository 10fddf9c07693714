"""Fake peers that speak the real wire protocols on loopback, and record what they receive.

- ``FakeDeepgram``: an aiohttp server speaking Deepgram's live API (PROTOCOLS.md §4). "Speech" is
  carried inside the audio: a frame starting with ``SPEECH_MAGIC`` holds a phrase, so the phrase
  travels the real path (Twilio base64 → server → binary frame to the provider) and each call's
  words come back on its own provider session only.
- ``FakeCall``: a Twilio Media Streams peer (PROTOCOLS.md §1) driving ``/twilio``.
- ``GameClient``: a v0 game client on ``/game``.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from phonepatch.shared.protocol import deepgram as dg
from phonepatch.shared.protocol import twilio_media as media

# Every wait in the tests is bounded by a multiple of this (scale it on a slow machine).
TIMEOUT_S = 5.0 * float(os.environ.get("PHONEPATCH_TEST_TIME_SCALE", "1"))

API_KEY = "dg-test-key-0123456789"
SPEECH_MAGIC = b"\x00\x01SAY:"
DROP_PHRASE = "<drop the session>"
_SILENCE = bytes([media.MULAW_SILENCE]) * media.FRAME_BYTES


def speech_frame(phrase: str) -> bytes:
    """A 20 ms frame that the fake provider hears as ``phrase``."""
    body = SPEECH_MAGIC + phrase.encode() + b"\x00"
    if len(body) > media.FRAME_BYTES:
        raise ValueError("phrase too long for one frame")
    return body + _SILENCE[len(body) :]


def heard_phrase(frame: bytes) -> str | None:
    if not frame.startswith(SPEECH_MAGIC):
        return None
    return frame[len(SPEECH_MAGIC) :].split(b"\x00", 1)[0].decode()


@dataclass
class ProviderSession:
    """What one provider websocket received."""

    query: dict[str, list[str]]
    frames: int = 0
    audio_bytes: int = 0
    empty_frames: int = 0
    keepalives: int = 0
    close_stream: bool = False
    phrases: list[str] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)


class FakeDeepgram:
    """A loopback Deepgram live server: 401 on a bad key, scripted results per heard phrase."""

    def __init__(self) -> None:
        self.refuse_status: int | None = None
        self.sessions: list[ProviderSession] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/listen?model=nova-3&encoding=mulaw&sample_rate=8000"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/listen", self._listen)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _listen(self, request: web.Request) -> web.StreamResponse:
        if self.refuse_status is not None or request.headers.get("Authorization") != f"Token {API_KEY}":
            status = self.refuse_status or 401
            return web.json_response(
                {"err_code": "INVALID_AUTH", "err_msg": "Invalid credentials."},
                status=status,
                headers={"dg-error": "Invalid credentials.", "dg-request-id": "fake-request"},
            )
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        record = ProviderSession(query={k: request.query.getall(k) for k in request.query})
        self.sessions.append(record)
        try:
            await self._serve(ws, record)
        finally:
            record.closed.set()
        return ws

    async def _serve(self, ws: web.WebSocketResponse, record: ProviderSession) -> None:
        clock = itertools.count()
        async for message in ws:
            if message.type is aiohttp.WSMsgType.BINARY:
                record.frames += 1
                record.audio_bytes += len(message.data)
                if not message.data:
                    record.empty_frames += 1
                phrase = heard_phrase(message.data)
                if phrase == DROP_PHRASE:
                    await ws.close(code=1011, message=b"NET-0001")
                elif phrase is not None:
                    record.phrases.append(phrase)
                    await self._reply(ws, phrase, float(next(clock)))
            elif message.type is aiohttp.WSMsgType.TEXT:
                control = dg.parse_control(message.data)
                if control == "KeepAlive":
                    record.keepalives += 1
                elif control == "CloseStream":
                    record.close_stream = True
                    await ws.send_str(dg.encode_metadata("fake-request", float(next(clock))))
                    await ws.close(code=1000)

    @staticmethod
    async def _reply(ws: web.WebSocketResponse, phrase: str, start_s: float) -> None:
        first_word = phrase.split()[0] if phrase.split() else ""
        await ws.send_str(dg.encode_speech_started(start_s))
        await ws.send_str(dg.encode_results(transcript=first_word, is_final=False, start_s=start_s, duration_s=0.5))
        await ws.send_str(
            dg.encode_results(transcript=phrase, is_final=True, speech_final=True, start_s=start_s, duration_s=1.0)
        )
        await ws.send_str(dg.encode_utterance_end(start_s + 1.0))


class FakeCall:
    """A Twilio Media Streams peer: ``connected``, ``start``, paced ``media``, ``dtmf``, ``stop``."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, call_sid: str, stream_sid: str) -> None:
        self.ws = ws
        self.call_sid = call_sid
        self.stream_sid = stream_sid
        self.account_sid = "AC" + "0" * 32
        self._sequence = itertools.count(1)
        self._chunk = itertools.count(1)

    @classmethod
    async def dial(cls, http: aiohttp.ClientSession, url: str) -> FakeCall:
        ws = await http.ws_connect(url)
        call = cls(ws, "CA" + secrets.token_hex(16), "MZ" + secrets.token_hex(16))
        await ws.send_str(media.encode_connected())
        await ws.send_str(
            media.encode_start(
                stream_sid=call.stream_sid,
                call_sid=call.call_sid,
                account_sid=call.account_sid,
                sequence_number=next(call._sequence),
            )
        )
        return call

    async def send_frame(self, frame: bytes) -> None:
        chunk = next(self._chunk)
        await self.ws.send_str(
            media.encode_inbound_media(
                stream_sid=self.stream_sid,
                sequence_number=next(self._sequence),
                chunk=chunk,
                timestamp_ms=chunk * media.FRAME_MS,
                payload=frame,
            )
        )

    async def say(self, phrase: str, *, silence_frames: int = 3) -> None:
        for _ in range(silence_frames):
            await self.send_frame(_SILENCE)
        await self.send_frame(speech_frame(phrase))
        for _ in range(silence_frames):
            await self.send_frame(_SILENCE)

    async def press(self, keys: str) -> None:
        for digit in keys:
            await self.ws.send_str(
                media.encode_dtmf(stream_sid=self.stream_sid, sequence_number=next(self._sequence), digit=digit)
            )

    async def send_stop(self) -> None:
        """Send ``stop`` only: for a caller whose socket another task reads."""
        await self.ws.send_str(
            media.encode_stop(
                stream_sid=self.stream_sid,
                sequence_number=next(self._sequence),
                call_sid=self.call_sid,
                account_sid=self.account_sid,
            )
        )

    async def hang_up(self) -> None:
        await self.send_stop()
        await self.wait_closed()

    async def wait_closed(self) -> int | None:
        """Wait for the server to close the stream; returns the close code."""
        async with asyncio.timeout(TIMEOUT_S):
            while not self.ws.closed:
                message = await self.ws.receive()
                if message.type is aiohttp.WSMsgType.TEXT:
                    media.parse_outbound(message.data)  # anything we are sent must be valid
        return self.ws.close_code


class GameClient:
    """A v0 game: reads its number and code, then ``connected`` and transcripts."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.phone_number = ""
        self.code = ""

    @classmethod
    async def connect(cls, http: aiohttp.ClientSession, url: str) -> GameClient:
        game = cls(await http.ws_connect(url))
        game.phone_number = await game.receive_text()
        game.code = await game.receive_text()
        return game

    async def receive_text(self, timeout_s: float = TIMEOUT_S) -> str:
        async with asyncio.timeout(timeout_s):
            message = await self.ws.receive()
        if message.type is not aiohttp.WSMsgType.TEXT:
            raise AssertionError(f"expected a text message, got {message.type.name} {message.data!r}")
        return message.data

    async def receive_transcript(self) -> str:
        """The transcript of the next final result (v0 sends finals only)."""
        result = dg.parse_message(await self.receive_text())
        if not getattr(result, "is_final", False):
            raise AssertionError(f"expected a final result, got {result!r}")
        return result.text

    async def wait_closed(self) -> int | None:
        async with asyncio.timeout(TIMEOUT_S):
            while not self.ws.closed:
                await self.ws.receive()
        return self.ws.close_code
