"""Speech toward the caller: synthesized audio as outbound ``media``, then a ``mark`` (PROTOCOLS.md §1.3-1.4).

Twilio buffers outbound audio and plays it in order, so audio is sent as soon as it is synthesized;
the ``mark`` after it comes back when the audio has played (or was cleared), which resolves the
utterance's future.
"""

from __future__ import annotations

import asyncio
import itertools

from aiohttp import web

from phonepatch.shared.audio import frames_of
from phonepatch.shared.errors import ProviderError
from phonepatch.shared.logs import get_logger
from phonepatch.shared.protocol import twilio_media as media
from phonepatch.shared.providers.tts import TextToSpeech

__all__ = ["Speaker"]

log = get_logger(__name__)


class Speaker:
    """Plays text on one call's stream, one utterance after the other, from its own task (``run``)."""

    def __init__(self, ws: web.WebSocketResponse, stream_sid: str, tts: TextToSpeech | None, *, depth: int) -> None:
        self._ws = ws
        self._stream_sid = stream_sid
        self._tts = tts
        self._queue: asyncio.Queue[tuple[str, str, asyncio.Future[bool]]] = asyncio.Queue(depth)
        self._pending: dict[str, asyncio.Future[bool]] = {}
        self._names = itertools.count(1)
        self.frames_sent = 0

    def say(self, text: str, *, kind: str) -> asyncio.Future[bool]:
        """Queue ``text``; the future becomes True once it has played, False if it never will.

        Never waits, so no reader is held up by synthesis.
        """
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if self._tts is None:
            done.set_result(False)
            return done
        try:
            self._queue.put_nowait((text, kind, done))
        except asyncio.QueueFull:
            log.warning("speech_dropped", kind=kind, reason="too much queued")
            done.set_result(False)
        return done

    async def run(self) -> None:
        """Synthesize and send queued utterances until cancelled."""
        while True:
            text, kind, done = await self._queue.get()
            try:
                await self._play(text, kind, done)
            except ProviderError as error:
                log.error("tts_failed", provider=self._tts.name, kind=kind, error=str(error))
                done.set_result(False)
            except ConnectionError:
                done.set_result(False)
                return  # the stream is gone; the session is ending

    async def _play(self, text: str, kind: str, done: asyncio.Future[bool]) -> None:
        async for chunk in self._tts.synthesize(text):
            for frame in frames_of(chunk):
                await self._ws.send_str(media.encode_media(self._stream_sid, frame))
                self.frames_sent += 1
        name = f"{kind}-{next(self._names)}"
        self._pending[name] = done
        await self._ws.send_str(media.encode_mark(self._stream_sid, name))

    def on_mark(self, name: str) -> None:
        """A ``mark`` echo: the audio queued before it has played."""
        done = self._pending.pop(name, None)
        if done is not None and not done.done():
            done.set_result(True)

    def cancel_all(self) -> None:
        """The stream is ending: nothing queued or pending will play."""
        while not self._queue.empty():
            _, _, done = self._queue.get_nowait()
            done.set_result(False)
        for done in self._pending.values():
            if not done.done():
                done.set_result(False)
        self._pending.clear()
