"""Deepgram live speech-to-text over its websocket API (PROTOCOLS.md §4)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

import aiohttp

from phonepatch.shared.config import DeepgramSettings
from phonepatch.shared.errors import ProtocolError, ProviderError
from phonepatch.shared.logs import get_logger
from phonepatch.shared.protocol import deepgram as wire
from phonepatch.shared.providers.stt import SpeechSession, SpeechToText
from phonepatch.shared.speech import SpeechEvent

__all__ = ["DeepgramLive", "DeepgramSession"]

log = get_logger(__name__)

# Deepgram's own reason strings for closes that end a session (§4.6); keyed on the text because
# the numeric codes have not been stable across its documentation versions.
_DROP_REASONS = {"NET-0000": "no results in time", "NET-0001": "no audio in time"}


class DeepgramSession(SpeechSession):
    """One live websocket to Deepgram. Audio goes up as binary frames, results come down as text."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, settings: DeepgramSettings) -> None:
        self._ws = ws
        self._settings = settings
        self._finishing = False
        self._last_send_s = asyncio.get_running_loop().time()

    async def send_audio(self, mulaw: bytes) -> None:
        if not mulaw:
            return  # an empty binary frame makes Deepgram close the stream (§4.1)
        if self._ws.closed:
            raise ProviderError("speech session is closed")
        await self._ws.send_bytes(mulaw)
        self._last_send_s = asyncio.get_running_loop().time()

    async def events(self) -> AsyncIterator[SpeechEvent]:
        while True:
            message = await self._ws.receive()
            if message.type is aiohttp.WSMsgType.TEXT:
                try:
                    event = wire.parse_message(message.data)
                except ProtocolError as error:
                    log.warning("provider_bad_message", provider="deepgram", error=str(error))
                    continue
                if isinstance(event, SpeechEvent):
                    yield event
            elif message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                  aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):
                self._check_close(message)
                return

    def _check_close(self, message: aiohttp.WSMessage) -> None:
        code = self._ws.close_code
        reason = message.extra if isinstance(message.extra, str) else ""
        if self._finishing and code == aiohttp.WSCloseCode.OK:
            return
        meaning = _DROP_REASONS.get(reason, "closed")
        raise ProviderError(f"deepgram ended the session: {code} {reason} ({meaning})".strip())

    async def finish(self) -> None:
        if self._finishing or self._ws.closed:
            return
        self._finishing = True
        await self._ws.send_str(wire.CLOSE_STREAM)

    async def keep_alive(self) -> None:
        """Send ``KeepAlive`` whenever no audio went up for the configured interval (§4.3)."""
        loop = asyncio.get_running_loop()
        interval_s = self._settings.keepalive_interval_s
        while not self._ws.closed and not self._finishing:
            idle_s = loop.time() - self._last_send_s
            if idle_s >= interval_s:
                await self._ws.send_str(wire.KEEP_ALIVE)
                self._last_send_s = loop.time()
                idle_s = 0.0
            await asyncio.sleep(interval_s - idle_s)


class DeepgramLive(SpeechToText):
    """Opens Deepgram live sessions through a shared ``aiohttp.ClientSession``."""

    name = "deepgram"

    def __init__(self, settings: DeepgramSettings, http: aiohttp.ClientSession) -> None:
        self._settings = settings
        self._http = http

    @contextlib.asynccontextmanager
    async def session(
        self, *, call_sid: str, keyterms: Sequence[str] = ()
    ) -> AsyncIterator[DeepgramSession]:
        ws = await self._connect(keyterms)
        session = DeepgramSession(ws, self._settings)
        keepalive = asyncio.create_task(session.keep_alive(), name=f"deepgram-keepalive-{call_sid}")
        try:
            yield session
        finally:
            keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError, ConnectionError):
                await keepalive
            await self._close(ws)

    async def _connect(self, keyterms: Sequence[str]) -> aiohttp.ClientWebSocketResponse:
        if self._settings.api_key is None:
            raise ProviderError("deepgram: no API key configured (DEEPGRAM_API_KEY)")
        url = wire.build_listen_url(self._settings.url, keyterms=keyterms)
        headers = {"Authorization": f"Token {self._settings.api_key.reveal()}"}
        try:
            async with asyncio.timeout(self._settings.connect_timeout_s):
                return await self._http.ws_connect(url, headers=headers, autoping=True)
        except aiohttp.WSServerHandshakeError as error:
            refusal = error.headers.get("dg-error", "") if error.headers else ""
            raise ProviderError(f"deepgram refused the session: HTTP {error.status} {refusal}".strip()) from None
        except TimeoutError:
            raise ProviderError("deepgram did not answer in time") from None
        except (aiohttp.ClientError, OSError) as error:
            raise ProviderError(f"deepgram is unreachable: {type(error).__name__}") from None

    async def _close(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async with asyncio.timeout(self._settings.close_timeout_s):
                await ws.close()
        except (TimeoutError, aiohttp.ClientError, ConnectionError):
            log.warning("provider_close_failed", provider=self.name)
