"""``phonepatch game-gateway``: game sockets on picows, ``/game`` and ``/healthz`` only.

A game-gateway serves nothing but games, so it runs on picows, whose frames and handshakes are
parsed in C: a game's connect and disconnect cost about half of what they cost on aiohttp here,
and what the bus delivers is written to the game's socket as it comes, with no task between
(``GameListener.deliver``). What a session does is ``GameSession``, as on aiohttp in ``serve``.

Bad input gets the close codes of RFC 6455 §7.4.1: binary 1003, text that is not UTF-8 1007, a
message over ``max_message_bytes`` (in one frame or in fragments) 1009; a game that does not read
what it is sent (over ``max_message_bytes`` × ``queue_depth`` buffered) 1008. SIGTERM stops the
listener, closes each game with 1001, and waits up to ``close_timeout_s`` for their sessions to
give their codes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections import deque

import orjson
import picows
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest
from structlog.contextvars import bind_contextvars, bound_contextvars

from phonepatch.services.bus import open_bus
from phonepatch.services.context import Gateway, settle_garbage_collector
from phonepatch.services.game_gateway.session import (
    BINARY,
    BUS_DOWN,
    BUS_LOST,
    FAILED,
    NOT_UTF8,
    POOL_EXHAUSTED,
    SHUTTING_DOWN,
    TOO_BIG,
    TOO_SLOW,
    Ending,
    GameSession,
)
from phonepatch.shared.bus.events import BusGap, GameEvent, TranscriptReady
from phonepatch.shared.config import Settings
from phonepatch.shared.errors import BusError, PoolExhaustedError
from phonepatch.shared.logs import get_logger

__all__ = ["GameServer", "run_game_gateway"]

log = get_logger(__name__)

_HEALTHY = orjson.dumps({"status": "ok"})
_TEXTS_HIGH, _TEXTS_LOW = 32, 8  # game texts waiting to be published: stop reading, read again


class GameServer:
    """Games on picows, on ``gateway``'s bus. :meth:`start` listens; :meth:`close` ends every game."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.games: set[GameListener] = set()
        limits = gateway.settings.limits
        self.unsent_limit = limits.max_message_bytes * limits.queue_depth  # bytes a game may leave unread
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host``:``port`` (0: any free port); returns the port."""
        limits = self.gateway.settings.limits
        self._server = await picows.ws_create_server(
            self._route,
            host,
            port,
            websocket_handshake_timeout=limits.start_timeout_s,
            enable_auto_ping=True,
            auto_ping_idle_timeout=limits.game_heartbeat_s,
            auto_ping_reply_timeout=limits.game_heartbeat_s,
            max_frame_size=limits.max_message_bytes,
            read_buffer_init_size=1024,
            logger_name="game-gateway",
        )
        return self._server.sockets[0].getsockname()[1]

    def _route(self, request: WSUpgradeRequest) -> GameListener | picows.WSUpgradeResponseWithListener | None:
        path = request.path.split(b"?", 1)[0]
        if path == b"/game":
            return GameListener(self)
        if path == b"/healthz":
            response = picows.WSUpgradeResponse.create_ok_response(_HEALTHY, {"Content-Type": "application/json"})
            return picows.WSUpgradeResponseWithListener(response, None)
        return None  # 404

    async def close(self) -> None:
        """Stop accepting, close every game with 1001, and wait (bounded) for their sessions to
        give their codes back."""
        if self._server is not None:
            self._server.close()
        sessions = [game.task for game in self.games if game.task is not None]
        for game in list(self.games):
            game.end(SHUTTING_DOWN)
        if sessions:
            _, stuck = await asyncio.wait(sessions, timeout=self.gateway.settings.limits.close_timeout_s)
            if stuck:
                log.warning("game_sessions_left_running", count=len(stuck))


class GameListener(WSListener):
    """One game socket: picows calls it with each frame; its session runs in one task."""

    def __init__(self, server: GameServer) -> None:
        super().__init__()
        self.server = server
        self.transport: WSTransport | None = None
        self.session: GameSession | None = None
        self.task: asyncio.Task[None] | None = None
        self.ending: Ending | None = None
        self._gone = asyncio.get_running_loop().create_future()
        self._fragments: list[bytes] = []
        self._fragments_size = 0
        self._texts: deque[str] = deque()
        self._speaking: asyncio.Task[None] | None = None
        self._resyncing: asyncio.Task[None] | None = None  # after missed events: which call is patched in
        self._paused = False
        self.peer_close_code: int | None = None

    # -- picows callbacks ------------------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.server.games.add(self)
        self.task = asyncio.create_task(self._run(), name="game-session")

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.server.games.discard(self)
        if not self._gone.done():
            self._gone.set_result(None)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.TEXT or kind is WSMsgType.CONTINUATION:
            self._on_text_frame(frame)
        elif kind is WSMsgType.CLOSE:
            self.peer_close_code = int(frame.get_close_code())
            if not transport.is_close_frame_sent:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
        elif kind is WSMsgType.BINARY:
            log.warning("game_sent_binary", bytes=frame.payload_size, code=self._code)
            self.end(BINARY)

    def _on_text_frame(self, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.CONTINUATION and not self._fragments:
            return  # picows closes the socket for a continuation without a start
        if not frame.fin or self._fragments:
            self._fragments_size += frame.payload_size
            if self._fragments_size > self.server.gateway.settings.limits.max_message_bytes:
                self.end(TOO_BIG)
                return
            self._fragments.append(frame.get_payload_as_bytes())
            if not frame.fin:
                return
            payload = b"".join(self._fragments)
            self._fragments, self._fragments_size = [], 0
        else:
            payload = frame.get_payload_as_bytes()
        try:
            text = payload.decode()
        except UnicodeDecodeError:
            self.end(NOT_UTF8)
            return
        # In order, one at a time: a task only while there is something to speak. A game that
        # sends faster than that is not read from until it has caught up, as on aiohttp.
        self._texts.append(text)
        if len(self._texts) >= _TEXTS_HIGH and self.transport is not None:
            self.transport.underlying_transport.pause_reading()
            self._paused = True
        if self._speaking is None and self.session is not None:
            self._speaking = asyncio.create_task(self._speak(self.session), name="game-texts")

    # -- the session ---------------------------------------------------------------------------

    @property
    def _code(self) -> str | None:
        return self.session.code if self.session is not None else None

    def end(self, ending: Ending) -> None:
        """Close the socket with ``ending`` (once); the session then gives its code back."""
        if self.ending is not None or self.transport is None:
            return
        self.ending = ending
        if self.session is not None:
            self.session.close_reason = ending.reason
        self.transport.send_close(WSCloseCode(ending.code), ending.message.encode())
        self.transport.disconnect()

    def deliver(self, event: GameEvent | BusGap) -> None:
        """The bus hands each event here as it comes: rendered and written, never awaited."""
        session, transport = self.session, self.transport
        if session is None or transport is None or self.ending is not None or transport.is_disconnected:
            return
        if event.__class__ is TranscriptReady:  # the hot path: nothing to log
            self._send(session.render(event))
            return
        with bound_contextvars(code=session.code):  # it runs in the deliverer's context
            self._send(session.render(event))
            if (ending := session.ending(event)) is not None:
                self.end(ending)
            elif event.__class__ is BusGap:
                self._resyncing = asyncio.create_task(self._resync(session), name="game-resync")

    async def _resync(self, session: GameSession) -> None:
        text = await session.resync()
        if self.session is session and self.ending is None and self.transport is not None:
            if not self.transport.is_disconnected:
                self._send(text)

    def _send(self, text: str | None) -> None:
        if text is None or self.transport is None:
            return
        self.transport.send(WSMsgType.TEXT, text.encode())
        if self.transport.underlying_transport.get_write_buffer_size() > self.server.unsent_limit:
            self.end(TOO_SLOW)

    async def _run(self) -> None:
        gateway = self.server.gateway
        try:
            code = await gateway.bus.take_code()
        except PoolExhaustedError:
            log.warning("pool_exhausted")
            self.end(POOL_EXHAUSTED)
            return
        except BusError as error:
            log.error("bus_unavailable", error=str(error))
            self.end(BUS_DOWN)
            return
        except Exception:
            log.exception("game_session_failed")
            self.end(FAILED)
            return
        bind_contextvars(code=code)  # in this session's task only: each task has its own context
        self.session = session = GameSession(code, gateway)
        try:
            if not self._gone.done():
                await self._serve(session)
        except BusError as error:
            log.error("bus_unavailable", error=str(error))
            self.end(BUS_LOST)
        except Exception:
            log.exception("game_session_failed")
            self.end(FAILED)
        finally:
            if self.ending is None and self.transport is not None and not self.transport.is_disconnected:
                self.transport.disconnect()  # cancelled: the socket goes with its session
            # Not shielded: the bus shields its own give-back, and only a process ending while
            # a session still runs (after close_timeout_s) cancels this.
            await session.leave(int(self.ending.code) if self.ending is not None else self.peer_close_code)

    async def _serve(self, session: GameSession) -> None:
        """Subscribe, then tell the game its number and code, then serve until it leaves."""
        limits = self.server.gateway.settings.limits
        async with self.server.gateway.bus.subscribe_game(session.code, depth=limits.queue_depth, sink=self.deliver):
            if not self._gone.done() and self.ending is None and self.transport is not None:
                for text in session.hello():
                    self.transport.send(WSMsgType.TEXT, text.encode())
                log.info("game_connected")
                if self._texts:
                    self._speaking = asyncio.create_task(self._speak(session), name="game-texts")
            await self._gone
            if self._speaking is not None:
                await asyncio.shield(self._speaking)

    async def _speak(self, session: GameSession) -> None:
        try:
            while self._texts:
                await session.on_text(self._texts.popleft())
                if self._paused and len(self._texts) <= _TEXTS_LOW and self.transport is not None:
                    self._paused = False
                    self.transport.underlying_transport.resume_reading()
        except BusError as error:
            log.error("bus_unavailable", error=str(error))
            self.end(BUS_LOST)
        finally:
            self._speaking = None


async def run_game_gateway(settings: Settings) -> None:
    """Serve games on the configured bus until SIGTERM or SIGINT, then close them gracefully."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        # Windows has no signal handlers on the loop: Ctrl-C still ends the process (the
        # command returns 130), only without closing the games first.
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    async with open_bus(settings) as bus:
        games = GameServer(Gateway(settings=settings, bus=bus))
        await games.start(settings.host, settings.port)
        settle_garbage_collector()
        try:
            await stop.wait()
        finally:
            log.info("shutting_down", games=len(games.games))
            await games.close()
