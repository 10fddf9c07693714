"""The drill's clients: games that record each transcript, and callers that keep talking."""

from __future__ import annotations

import asyncio
import functools
import itertools
import re
import time
from collections.abc import Awaitable, Callable

import aiohttp
from peers import FakeCall, GameClient, speech_frame
from phonepatch.shared.protocol import deepgram as dg
from phonepatch.shared.protocol import twilio_media as media

from .processes import Gateway
from .settings import CLOSE_TIMEOUT_S, GAME_LEFT

__all__ = ["Call", "Game"]

SILENCE = bytes([media.MULAW_SILENCE]) * media.FRAME_BYTES
# A phrase names its game, call, sequence number and when it was spoken (ms since the drill began).
_PHRASE = re.compile(r"^g(\d+) c(\d+) s(\d+) t(\d+)")
_PHRASE_BYTES = media.FRAME_BYTES - 16  # what speech_frame() fits in one frame, with room to spare


class Game:
    """One game socket of the drill: a task reads it and records what came."""

    def __init__(self, gid: int, gateway: Gateway, client: GameClient, *, epoch: float, probe: bool) -> None:
        self.gid = gid
        self.gateway = gateway
        self.ws = client.ws
        self.code = client.code
        self.probe = probe
        self.call: Call | None = None
        self.log_mark = gateway.log.mark  # this game's session logs from here on
        self.latest_spoken: dict[int, float] = {}  # call id -> when its newest transcript here was spoken
        self.latencies: list[tuple[float, float]] = []  # (received at, seconds under way)
        self.bytes_read = 0
        self.misrouted = 0  # transcripts spoken toward another game
        self.out_of_order = 0
        self.strange: list[str] = []
        self.connected = asyncio.Event()
        self.reading = asyncio.Event()
        self.reading.set()
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self._epoch = epoch
        self._last_seq: dict[int, int] = {}

    @property
    def open(self) -> bool:
        return not self.closed.is_set() and self.gateway.alive

    async def read(self) -> None:
        try:
            while True:
                await self.reading.wait()
                message = await self.ws.receive()
                if message.type is aiohttp.WSMsgType.TEXT:
                    self.bytes_read += len(message.data)
                    self._on_text(message.data)
                elif message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    return
        finally:
            self.close_code = self.ws.close_code
            self.closed.set()

    def _on_text(self, text: str) -> None:
        if text == "connected":
            self.connected.set()
            return
        try:
            result = dg.parse_message(text)
        except Exception:  # noqa: BLE001 - anything unreadable is recorded, not fatal
            self.strange.append(text[:120])
            return
        found = _PHRASE.match(getattr(result, "text", "") or "")
        if found is None:
            self.strange.append(text[:120])
            return
        gid, cid, seq, spoken_ms = (int(part) for part in found.groups())
        now = time.monotonic()
        spoken = self._epoch + spoken_ms / 1000
        self.misrouted += gid != self.gid
        self.out_of_order += seq <= self._last_seq.get(cid, 0)
        self._last_seq[cid] = max(seq, self._last_seq.get(cid, 0))
        self.latest_spoken[cid] = max(spoken, self.latest_spoken.get(cid, 0.0))
        self.latencies.append((now, now - spoken))

    async def send_text(self, text: str) -> bool:
        try:
            await self.ws.send_str(text)
            return True
        except (ConnectionError, RuntimeError, aiohttp.ClientError):
            return False

    async def close(self) -> None:
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self.ws.close()
                await self.closed.wait()
        except (TimeoutError, ConnectionError, aiohttp.ClientError):
            pass


class Call:
    """One caller: a task reads its stream, another talks toward its game (silence when it has none)."""

    def __init__(self, cid: int, gateway: Gateway, fake: FakeCall, *, epoch: float, probe: bool) -> None:
        self.cid = cid
        self.gateway = gateway
        self.fake = fake
        self.sid = fake.call_sid
        self.probe = probe
        self.game: Game | None = None
        self.patch_mark = 0  # the gateway's log position when this call last keyed a game
        self.burst_s: float | None = None  # talking fast and long (the stall)
        self.phrases = 0
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self._epoch = epoch
        self._lock = asyncio.Lock()  # one writer on the socket: the talker, key presses, stop
        self._seq = itertools.count(1)

    @property
    def open(self) -> bool:
        return not self.closed.is_set() and self.gateway.alive

    @property
    def game_alive(self) -> bool:
        return self.game is not None and self.game.open

    def told_game_left(self) -> bool:
        """Whether the gateway told this call that the game it last keyed left."""
        return bool(self.gateway.log.find(GAME_LEFT, self.patch_mark, call_sid=self.sid))

    async def read(self) -> None:
        try:
            while True:
                message = await self.fake.ws.receive()
                if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    return
        finally:
            self.close_code = self.fake.ws.close_code
            self.closed.set()

    async def talk(self, interval_s: float, offset_s: float) -> None:
        """A speech frame toward a live game every ``interval_s``; silence otherwise, as a phone line
        carries (the gateway drops a stream that sends nothing). A caller told the game left stops
        talking, as a person would: speech at code entry would count as failed tries."""
        await asyncio.sleep(offset_s)
        while not self.closed.is_set():
            game = self.game
            talking = game is not None and game.open and not self.told_game_left()
            frame = speech_frame(self._phrase(game)) if talking else SILENCE
            if not await self._guarded(functools.partial(self.fake.send_frame, frame)):
                return
            await asyncio.sleep(self.burst_s or interval_s)

    def _phrase(self, game: Game) -> str:
        spoken_ms = round((time.monotonic() - self._epoch) * 1000)
        self.phrases += 1
        phrase = f"g{game.gid} c{self.cid} s{next(self._seq)} t{spoken_ms}"
        if self.burst_s:  # one-letter words up to a full frame: Deepgram's final lists each word
            phrase += " x" * ((_PHRASE_BYTES - len(phrase)) // 2)
        return phrase

    async def press(self, keys: str) -> bool:
        return await self._guarded(lambda: self.fake.press(keys))

    async def hang_up(self) -> None:
        if self.closed.is_set():
            return
        await self._guarded(self.fake.send_stop)
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self.closed.wait()
        except TimeoutError:
            await self.fake.ws.close()

    async def _guarded(self, send: Callable[[], Awaitable[None]]) -> bool:
        """Run ``send`` as the socket's only writer; False once the socket is gone."""
        async with self._lock:
            try:
                await send()
                return True
            except (ConnectionError, RuntimeError, aiohttp.ClientError):
                return False
