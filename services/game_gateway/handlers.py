"""Game sockets on aiohttp: ``/game`` in ``phonepatch serve``, beside ``/twilio``.

A writer task per game takes what the bus queues for it; the session itself is ``GameSession``.
"""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web
from structlog.contextvars import bound_contextvars

from phonepatch.services.context import GATEWAY
from phonepatch.services.game_gateway.session import (
    BINARY,
    BUS_DOWN,
    BUS_LOST,
    FAILED,
    POOL_EXHAUSTED,
    Ending,
    GameSession,
)
from phonepatch.shared.bus import SessionQueue
from phonepatch.shared.bus.events import BusGap, GameEvent
from phonepatch.shared.errors import BusError, PoolExhaustedError
from phonepatch.shared.logs import get_logger

__all__ = ["game_v0_handler"]

log = get_logger(__name__)


async def game_v0_handler(request: web.Request) -> web.WebSocketResponse:
    """Accept a game, give it a code, serve it until it leaves, then give the code back."""
    gateway = request.app[GATEWAY]
    limits = gateway.settings.limits
    ws = web.WebSocketResponse(
        timeout=limits.close_timeout_s, heartbeat=limits.game_heartbeat_s, max_msg_size=limits.max_message_bytes
    )
    await ws.prepare(request)
    try:
        code = await gateway.bus.take_code()
    except PoolExhaustedError:
        log.warning("pool_exhausted")
        await _close(ws, POOL_EXHAUSTED)
        return ws
    except BusError as error:
        log.error("bus_unavailable", error=str(error))
        await _close(ws, BUS_DOWN)
        return ws
    with bound_contextvars(code=code):
        session = GameSession(code, gateway)
        gateway.sockets.add(ws)
        try:
            await _serve(ws, session)
        except* BusError as group:
            log.error("bus_unavailable", error=str(group.exceptions[0]))
            await _close(ws, BUS_LOST, session)
        except* Exception:
            log.exception("game_session_failed")
            await _close(ws, FAILED, session)
        finally:
            gateway.sockets.discard(ws)
            await asyncio.shield(session.leave(ws.close_code))
    return ws


async def _serve(ws: web.WebSocketResponse, session: GameSession) -> None:
    """Subscribe, then tell the game its number and code, then serve until it leaves."""
    bus, limits = session.gateway.bus, session.gateway.settings.limits
    async with bus.subscribe_game(session.code, depth=limits.queue_depth) as inbox:
        for text in session.hello():
            await ws.send_str(text)
        log.info("game_connected")
        async with asyncio.TaskGroup() as tasks:
            writer = tasks.create_task(_write_loop(ws, session, inbox), name=f"game-writer-{session.code}")
            await _read_loop(ws, session)
            writer.cancel()


async def _read_loop(ws: web.WebSocketResponse, session: GameSession) -> None:
    async for message in ws:
        if message.type is aiohttp.WSMsgType.TEXT:
            await session.on_text(message.data)
        elif message.type is aiohttp.WSMsgType.BINARY:
            log.warning("game_sent_binary", bytes=len(message.data))
            await _close(ws, BINARY, session)
        elif message.type is aiohttp.WSMsgType.ERROR:
            log.warning("game_socket_error", error=str(message.data))
            session.close_reason = f"socket error: {message.data}"


async def _write_loop(ws: web.WebSocketResponse, session: GameSession, inbox: SessionQueue[GameEvent]) -> None:
    while not ws.closed:
        event = await inbox.get()
        text = session.render(event)
        if isinstance(event, BusGap) and session.ending(event) is None:
            text = await session.resync()
        if text is not None:
            try:
                await ws.send_str(text)
            except ConnectionError:
                return  # the game is gone; the read loop sees the close and ends the session
        if (ending := session.ending(event)) is not None:
            await _close(ws, ending, session)


async def _close(ws: web.WebSocketResponse, ending: Ending, session: GameSession | None = None) -> None:
    """Close the game's socket with ``ending``; the session, if there is one, logs its reason."""
    if session is not None:
        session.close_reason = ending.reason
    await ws.close(code=ending.code, message=ending.message.encode())
