"""Shared fixtures: a fake Deepgram, a real phonepatch server on a free loopback port, clients."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from peers import API_KEY, FakeCall, FakeDeepgram, GameClient
from phonepatch.services.allinone.app import build_app
from phonepatch.services.context import GATEWAY, Gateway
from phonepatch.services.game_gateway.server import GameServer
from phonepatch.shared.config import Settings, build_settings

pytest_plugins = ["deployment"]  # fixtures of the tests that run phonepatch processes on Redis


@dataclasses.dataclass
class RunningServer:
    base_url: str
    app: web.Application
    http: aiohttp.ClientSession
    clients: list[aiohttp.ClientWebSocketResponse] = dataclasses.field(default_factory=list)
    game_url: str = ""  # where games connect: the app's own /game, or the picows game server's

    def __post_init__(self) -> None:
        self.game_url = self.game_url or self.base_url + "/game"

    @property
    def gateway(self) -> Gateway:
        return self.app[GATEWAY]

    async def game(self) -> GameClient:
        game = await GameClient.connect(self.http, self.game_url)
        self.clients.append(game.ws)
        return game

    async def call(self) -> FakeCall:
        call = await FakeCall.dial(self.http, self.base_url + "/twilio")
        self.clients.append(call.ws)
        return call

    async def close_clients(self) -> None:
        """Close the clients first, so the server's sessions end by the protocol's own close."""
        await asyncio.gather(*(ws.close() for ws in self.clients), return_exceptions=True)


INTERNAL_FAILURES = {"call_session_failed", "game_session_failed"}


@pytest.fixture(autouse=True)
def no_escaped_exceptions(caplog):
    """Fail any test in which a handler let an exception escape or hit an internal error."""
    with capture_logs() as events:
        yield
    failures = [event for event in events if event["event"] in INTERNAL_FAILURES]
    escaped = [record for record in caplog.records if record.name.startswith("aiohttp") and record.levelno >= logging.ERROR]
    assert not failures, failures
    assert not escaped, [record.getMessage() for record in escaped]


@pytest.fixture
async def deepgram() -> AsyncIterator[FakeDeepgram]:
    fake = FakeDeepgram()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()


@pytest.fixture
def settings(deepgram: FakeDeepgram) -> Settings:
    return build_settings(
        file_values={"keypad_pause_s": 0.3, "close_timeout_s": 2.0, "stt_provider": "deepgram", "tts_provider": "espeak"},
        environ={
            "DEEPGRAM_API_KEY": API_KEY,
            "DEEPGRAM_URL": deepgram.url,
            "TWILIO_PHONE_NUMBER": "+15550001111",
        },
        flags={"port": 0},
    )


@pytest.fixture
def games_on() -> str:
    """The server that carries game sockets: aiohttp, as in ``serve``, or picows, as in
    ``game-gateway``. A test parametrizes ``games_on`` to run on both."""
    return "aiohttp"


@pytest.fixture
async def start_server(
    deepgram: FakeDeepgram, games_on: str
) -> AsyncIterator[Callable[[Settings], Awaitable[RunningServer]]]:
    """Factory: start a real server on a free port; everything it started is closed afterwards.
    With ``games_on`` picows, games connect to a picows game server on the same bus instead.

    It depends on the fake provider so that servers stop before the provider they talk to.
    """
    runners: list[web.AppRunner] = []
    servers: list[RunningServer] = []
    game_servers: list[GameServer] = []
    async with aiohttp.ClientSession() as http:

        async def start(settings: Settings) -> RunningServer:
            app = build_app(settings)
            runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=2.0)
            runners.append(runner)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            port = runner.addresses[0][1]
            running = RunningServer(f"http://127.0.0.1:{port}", app, http)
            if games_on == "picows":
                game_servers.append(GameServer(running.gateway))
                running.game_url = f"ws://127.0.0.1:{await game_servers[-1].start('127.0.0.1', 0)}/game"
            servers.append(running)
            return running

        try:
            yield start
        finally:
            for running in servers:
                await running.close_clients()
            for games in game_servers:
                await games.close()
            for runner in reversed(runners):
                await runner.cleanup()


@pytest.fixture
async def server(start_server, settings: Settings) -> RunningServer:
    return await start_server(settings)


@pytest.fixture
def small_settings(settings: Settings) -> Settings:
    """Limits small enough for bad input to reach them quickly."""
    limits = dataclasses.replace(settings.limits, max_message_bytes=4096, start_timeout_s=1.0, queue_depth=4)
    return dataclasses.replace(settings, limits=limits)


@pytest.fixture
async def small_server(start_server, small_settings: Settings) -> RunningServer:
    return await start_server(small_settings)
