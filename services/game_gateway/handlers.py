"""Game sessions on ``/game``, protocol v0 (ARCHITECTURE.md §1).

On connect the game gets the phone number, then its code; ``connected`` when a caller is patched
in; then each final speech result as Deepgram ``Results`` JSON. Text from the game is published
toward the patched call.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
from aiohttp import web
from structlog.contextvars import bound_contextvars

from phonepatch.services.context import GATEWAY, CloseCode, Gateway
from phonepatch.shared.bus import SessionQueue
from phonepatch.shared.bus.events import (
    BusGap,
    CallConnected,
    CallEnded,
    CodeLost,
    GameEvent,
    GameLeft,
    GameText,
    TranscriptReady,
)
from phonepatch.shared.errors import BusError, PoolExhaustedError, ProtocolError
from phonepatch.shared.logs import get_logger
from phonepatch.shared.protocol import game_v0

__all__ = ["GameSession", "game_v0_handler"]

log = get_logger(__name__)


async def game_v0_handler(request: web.Request) -> web.WebSocketResponse:
    """Accept a game, give it a code, serve it until it leaves, then give the code back."""
    gateway = request.app[GATEWAY]
    limits = gateway.settings.limits
    ws = web.WebSocketResponse(
        timeout=limits.close_timeout_s,
        heartbeat=limits.game_heartbeat_s, max_msg_size=limits.max_message_bytes
    )
    await ws.prepare(request)
    try:
        code = await gateway.bus.take_code()
    except PoolExhaustedError:
        log.warning("pool_exhausted")
        await ws.close(code=CloseCode.TRY_AGAIN_LATER, message=b"no free game code, try again later")
        return ws
    except BusError as error:
        log.error("bus_unavailable", error=str(error))
        await ws.close(code=CloseCode.TRY_AGAIN_LATER, message=b"phonepatch is not ready, try again later")
        return ws
    with bound_contextvars(code=code):
        session = GameSession(ws, code, gateway)
        gateway.sockets.add(ws)
        try:
            await session.run()
        except* BusError as group:
            log.error("bus_unavailable", error=str(group.exceptions[0]))
            session.close_reason = "message bus unavailable"
            await ws.close(code=CloseCode.INTERNAL_ERROR, message=b"message bus unavailable")
        except* Exception:
            log.exception("game_session_failed")
            session.close_reason = "internal error"
            await ws.close(code=CloseCode.INTERNAL_ERROR, message=b"internal error")
        finally:
            gateway.sockets.discard(ws)
            await asyncio.shield(session.leave())
    return ws


class GameSession:
    """One connected game: its socket, its code and the call patched into it, if any."""

    def __init__(self, ws: web.WebSocketResponse, code: str, gateway: Gateway) -> None:
        self.ws = ws
        self.code = code
        self.gateway = gateway
        self.call_sid: str | None = None
        self.close_reason = "game disconnected"
        self.started_s = time.monotonic()
        self.sent_transcripts = 0
        self.received_texts = 0

    async def run(self) -> None:
        """Subscribe, then tell the game its number and code, then serve until it leaves."""
        bus, limits = self.gateway.bus, self.gateway.settings.limits
        async with bus.subscribe_game(self.code, depth=limits.queue_depth) as inbox:
            await self.ws.send_str(game_v0.encode_phone_number(self.gateway.settings.twilio.phone_number))
            await self.ws.send_str(game_v0.encode_code(self.code))
            log.info("game_connected")
            async with asyncio.TaskGroup() as tasks:
                writer = tasks.create_task(self._write_loop(inbox), name=f"game-writer-{self.code}")
                await self._read_loop()
                writer.cancel()

    async def _read_loop(self) -> None:
        max_chars = self.gateway.settings.limits.max_game_text_chars
        async for message in self.ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                await self._on_text(message.data, max_chars)
            elif message.type is aiohttp.WSMsgType.BINARY:
                log.warning("game_sent_binary", bytes=len(message.data))
                self.close_reason = "binary frame on a text protocol"
                await self.ws.close(code=CloseCode.UNSUPPORTED_DATA, message=b"v0 takes text frames only")
            elif message.type is aiohttp.WSMsgType.ERROR:
                log.warning("game_socket_error", error=str(message.data))
                self.close_reason = f"socket error: {message.data}"

    async def _on_text(self, text: str, max_chars: int) -> None:
        try:
            spoken = game_v0.parse_game_text(text, max_chars=max_chars)
        except ProtocolError as error:
            log.warning("game_text_rejected", error=str(error))
            return
        self.received_texts += 1
        if self.call_sid is None:
            log.info("game_text_without_call", chars=len(spoken))
            return
        await self.gateway.bus.publish_to_call(self.call_sid, GameText(code=self.code, text=spoken))

    async def _write_loop(self, inbox: SessionQueue[GameEvent]) -> None:
        while not self.ws.closed:
            event = await inbox.get()
            text = self._render(event)
            if text is not None:
                try:
                    await self.ws.send_str(text)
                except ConnectionError:
                    return  # the game is gone; the read loop sees the close and ends the session
            if isinstance(event, BusGap) and event.reason == "queue overflow":
                self.close_reason = "game reads too slowly"
                await self.ws.close(code=CloseCode.POLICY_VIOLATION, message=b"game reads too slowly")
            elif isinstance(event, CodeLost):
                # The lease lapsed while Redis was out of reach: the code may be another game's now.
                log.error("game_code_lost")
                self.close_reason = "game code lost"
                await self.ws.close(code=CloseCode.INTERNAL_ERROR, message=b"game code lost, connect again for a new one")

    def _render(self, event: GameEvent | BusGap) -> str | None:
        """Update the session for ``event`` and return the v0 text to send, if any."""
        match event:
            case CallConnected(call_sid=call_sid):
                self.call_sid = call_sid
                log.info("game_patched", call_sid=call_sid)
                return game_v0.CONNECTED
            case TranscriptReady(call_sid=call_sid, transcript=transcript) if call_sid == self.call_sid:
                text = game_v0.encode_transcript(transcript)
                self.sent_transcripts += text is not None
                return text
            case CallEnded(call_sid=call_sid, reason=reason) if call_sid == self.call_sid:
                self.call_sid = None
                log.info("game_call_ended", call_sid=call_sid, reason=reason)
            case BusGap(reason=reason):
                log.warning("game_missed_events", reason=reason)
        return None

    async def leave(self) -> None:
        """Give the code back and tell the patched call: exactly once, whatever ended the session.

        The code may go to a new game before the call hears of it: whatever the call still sends
        toward the code then reaches a game that ignores it (it names another call)."""
        bus = self.gateway.bus
        try:
            call_sid = await bus.leave_game(self.code)
            if call_sid is None and self.call_sid is not None:
                # The code was lost: the call this game knew is told, if its claim is still there.
                call_sid = await bus.release_claim(self.code, self.call_sid)
            if call_sid is not None:
                await bus.publish_to_call(call_sid, GameLeft(code=self.code, reason=self.close_reason))
        except BusError as error:  # the claim lapses on its own; the call hears of it no sooner
            log.warning("game_leave_unannounced", error=str(error))
        finally:
            log.info(
                "game_session_ended",
                reason=self.close_reason,
                duration_s=round(time.monotonic() - self.started_s, 3),
                transcripts=self.sent_transcripts,
                texts=self.received_texts,
                close_code=self.ws.close_code,
            )
