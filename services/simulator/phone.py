"""A phone call simulated as Twilio would stream it: Media Streams over a websocket (PROTOCOLS.md §1).

It sends ``connected`` and ``start``, then one 20 ms ``media`` frame per 20 ms (or ``speed`` times
faster) carrying silence or whatever it is saying, ``dtmf`` for keys, and ``stop`` at the end. What
the server sends back is recorded; each ``mark`` is echoed once the audio queued before it has
"played" at the same pace, as Twilio does (§1.4).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import deque
from dataclasses import dataclass

import aiohttp
import numpy as np

from phonepatch.shared.audio import FRAME_BYTES, PHONE_RATE_HZ, frames_of, mulaw_to_pcm, pcm_to_mulaw, silence
from phonepatch.shared.errors import ProtocolError
from phonepatch.shared.protocol import twilio_media as media

__all__ = ["Heard", "PhoneSimulator"]

_FRAME_S = media.FRAME_MS / 1000
_SILENT_FRAME = silence(media.FRAME_MS)


@dataclass(frozen=True, slots=True)
class Heard:
    """One stretch of audio the server played, ended by its mark."""

    mark: str
    mulaw: bytes

    @property
    def duration_s(self) -> float:
        return len(self.mulaw) / PHONE_RATE_HZ


class PhoneSimulator:
    """One simulated call. Use as an async context manager; it owns its tasks and socket."""

    def __init__(self, http: aiohttp.ClientSession, url: str, *, speed: float = 1.0, headers: dict[str, str] | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self._http = http
        self._url = url
        self._headers = headers or {}
        self._frame_interval_s = _FRAME_S / speed
        self._speed = speed
        self.call_sid = "CA" + secrets.token_hex(16)
        self.stream_sid = "MZ" + secrets.token_hex(16)
        self.account_sid = "AC" + "0" * 32
        self._outgoing: deque[bytes | str] = deque()  # audio frames, or a dtmf digit as str
        self._sent_all = asyncio.Event()
        self._heard: asyncio.Queue[Heard] = asyncio.Queue()
        self._current: bytearray = bytearray()
        self.recording: bytearray = bytearray()
        self._play_until_s = 0.0
        self._sequence = 0
        self._chunk = 0
        self._tasks: list[asyncio.Task] = []
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.closed = asyncio.Event()

    async def __aenter__(self) -> PhoneSimulator:
        self.ws = await self._http.ws_connect(self._url, headers=self._headers)
        await self.ws.send_str(media.encode_connected())
        await self.ws.send_str(
            media.encode_start(
                stream_sid=self.stream_sid, call_sid=self.call_sid, account_sid=self.account_sid, sequence_number=self._next()
            )
        )
        self._tasks = [asyncio.create_task(self._send_loop()), asyncio.create_task(self._receive_loop())]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.ws is not None and not self.ws.closed:
            await self.ws.close()

    def _next(self) -> int:
        self._sequence += 1
        return self._sequence

    # -- what the caller does ------------------------------------------------------------------

    async def say_audio(self, mulaw: bytes, *, pause_ms: int = 600) -> None:
        """Queue speech followed by a pause, and wait until it has all been sent."""
        self._sent_all.clear()
        self._outgoing.extend(frames_of(mulaw + silence(pause_ms)))
        await self._sent_all.wait()

    async def press(self, keys: str) -> None:
        """Press keypad keys, one ``dtmf`` event each, 100 ms apart."""
        self._sent_all.clear()
        for digit in keys:
            self._outgoing.append(digit)
            self._outgoing.extend([_SILENT_FRAME] * 5)
        await self._sent_all.wait()

    async def hang_up(self) -> None:
        """Send ``stop`` and close; a server that is hanging up at the same moment is no error."""
        if self.ws is None or self.ws.closed:
            return
        with contextlib.suppress(aiohttp.ClientConnectionError, ConnectionError):
            await self.ws.send_str(
                media.encode_stop(
                    stream_sid=self.stream_sid, sequence_number=self._next(), call_sid=self.call_sid, account_sid=self.account_sid
                )
            )
        await self.ws.close()

    async def next_heard(self, timeout_s: float) -> Heard:
        """The next stretch of audio the server played (ended by its mark)."""
        async with asyncio.timeout(timeout_s):
            return await self._heard.get()

    # -- the stream ----------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        """One frame per interval on an absolute schedule, so pacing does not drift."""
        loop = asyncio.get_running_loop()
        next_s = loop.time()
        while not self.ws.closed:
            item = self._outgoing.popleft() if self._outgoing else _SILENT_FRAME
            if isinstance(item, str):
                await self.ws.send_str(
                    media.encode_dtmf(stream_sid=self.stream_sid, sequence_number=self._next(), digit=item)
                )
                continue
            self._chunk += 1
            await self.ws.send_str(
                media.encode_inbound_media(
                    stream_sid=self.stream_sid,
                    sequence_number=self._next(),
                    chunk=self._chunk,
                    timestamp_ms=self._chunk * media.FRAME_MS,
                    payload=item,
                )
            )
            if not self._outgoing:
                self._sent_all.set()
            next_s += self._frame_interval_s
            await asyncio.sleep(max(0.0, next_s - loop.time()))

    async def _receive_loop(self) -> None:
        try:
            async for message in self.ws:
                if message.type is aiohttp.WSMsgType.TEXT:
                    await self._on_outbound(message.data)
        finally:
            self.closed.set()

    async def _on_outbound(self, text: str) -> None:
        try:
            command = media.parse_outbound(text)
        except ProtocolError as error:
            raise ProtocolError(f"the server sent an invalid message: {error}") from None
        loop = asyncio.get_running_loop()
        match command:
            case media.OutboundMedia(payload=payload):
                self._current += payload
                self.recording += payload
                start_s = max(self._play_until_s, loop.time())
                self._play_until_s = start_s + len(payload) / PHONE_RATE_HZ / self._speed
            case media.OutboundMark(name=name):
                heard, self._current = Heard(name, bytes(self._current)), bytearray()
                await asyncio.sleep(max(0.0, self._play_until_s - loop.time()))  # it "plays"
                await self.ws.send_str(media.encode_mark_echo(stream_sid=self.stream_sid, sequence_number=self._next(), name=name))
                self._heard.put_nowait(heard)
            case media.OutboundClear():
                self._current = bytearray()
                self._play_until_s = loop.time()

    def recording_pcm(self) -> np.ndarray:
        return mulaw_to_pcm(bytes(self.recording))


def mulaw_from_pcm(pcm: np.ndarray) -> bytes:
    """8 kHz 16-bit samples as mu-law, padded to whole frames."""
    mulaw = pcm_to_mulaw(pcm)
    return mulaw + b"\xff" * (-len(mulaw) % FRAME_BYTES)
