"""A deployment of phonepatch processes on a Redis of the test's own: game-gateways and
twilio-gateways as separate OS processes, a fake Deepgram in the test's process, and what the
tests read back (the pool as Redis holds it, each process's JSON log)."""


from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from gateway_process import spawn_phonepatch
from peers import API_KEY, TIMEOUT_S, FakeCall, FakeDeepgram, GameClient
from redis_server import RedisServer, free_port

CODES = [str(n) for n in range(10, 20)]
LEASE_TTL_S = 1.5
SWEEP_S = 0.3
SETTINGS = {
    "game_codes": CODES,
    "redis_lease_ttl_s": LEASE_TTL_S,
    "redis_heartbeat_s": 0.3,
    "redis_sweep_s": SWEEP_S,
    "redis_claim_ttl_s": LEASE_TTL_S,
    "keypad_pause_s": 0.3,
    "stt_provider": "deepgram",
    "tts_provider": "none",
    "close_timeout_s": 2.0,
}


class Gateway:
    """One ``phonepatch game-gateway`` or ``twilio-gateway`` process; its log goes to a file."""

    def __init__(
        self, role: str, redis_url: str, deepgram_url: str, workdir: Path, name: str, settings: dict | None = None
    ) -> None:
        self.role = role
        self.port = free_port()
        self.log_path = workdir / f"{name}.log"
        config = workdir / f"{name}.json"
        config.write_text(json.dumps(settings or SETTINGS))
        env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "PHONEPATCH_REDIS_PREFIX": "scale",
            "DEEPGRAM_API_KEY": API_KEY,
            "DEEPGRAM_URL": deepgram_url,
            "TWILIO_PHONE_NUMBER": "+15550001111",
        }
        self._log = self.log_path.open("wb")
        self.process = spawn_phonepatch(role, self.port, config, env, self._log)

    @property
    def base_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def wait_healthy(self, http: aiohttp.ClientSession) -> None:
        async with asyncio.timeout(6 * TIMEOUT_S):
            while True:
                assert self.process.poll() is None, self.log_path.read_text()
                try:
                    async with http.get(f"http://127.0.0.1:{self.port}/healthz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.05)

    def log_events(self) -> list[str]:
        return [entry.get("event", "") for entry in self.log_entries()]

    def log_entries(self) -> list[dict]:
        """Every line of the process's log; a line that is not a JSON object fails the test."""
        entries = []
        for line in self.log_path.read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                assert isinstance(entry, dict), line
                entries.append(entry)
        return entries

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=3 * TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


class Deployment:
    def __init__(self, redis: RedisServer, deepgram: FakeDeepgram, workdir: Path, http: aiohttp.ClientSession) -> None:
        self.redis = redis
        self.deepgram = deepgram
        self.workdir = workdir
        self.http = http
        self.gateways: list[Gateway] = []
        self.sockets: list[aiohttp.ClientWebSocketResponse] = []
        self.settings = SETTINGS

    async def start(self, role: str) -> Gateway:
        name = f"{role}-{len(self.gateways)}"
        gateway = Gateway(role, self.redis.url, self.deepgram.url, self.workdir, name, self.settings)
        self.gateways.append(gateway)
        await gateway.wait_healthy(self.http)
        return gateway

    async def game(self, gateway: Gateway) -> GameClient:
        game = await GameClient.connect(self.http, gateway.base_url + "/game")
        self.sockets.append(game.ws)
        return game

    async def call(self, gateway: Gateway) -> FakeCall:
        call = await FakeCall.dial(self.http, gateway.base_url + "/twilio")
        self.sockets.append(call.ws)
        return call

    async def close(self) -> None:
        await asyncio.gather(*(ws.close() for ws in self.sockets), return_exceptions=True)
        for gateway in self.gateways:
            gateway.stop()


@pytest.fixture
async def redis_server() -> AsyncIterator[RedisServer]:
    """This test's own Redis: a test may kill or restart it."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
async def deployment(redis_server, deepgram, tmp_path) -> AsyncIterator[Deployment]:
    async with aiohttp.ClientSession() as http:
        deployment = Deployment(redis_server, deepgram, tmp_path, http)
        try:
            yield deployment
        finally:
            await deployment.close()


@pytest.fixture
async def redis_client(redis_server) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()


async def patch_in(call: FakeCall, game: GameClient) -> None:
    await call.press(game.code + "#")
    assert await game.receive_text() == "connected"


async def pool_state(client: aioredis.Redis) -> tuple[set[str], set[str]]:
    """(free codes, leased codes) as Redis holds them."""
    free = {member.decode() for member in await client.smembers("scale:pool")}
    leases = await client.mget([f"{{scale:{code}}}:lease" for code in CODES])
    return free, {code for code, lease in zip(CODES, leases, strict=True) if lease is not None}


async def eventually(condition, timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while not await condition():
            await asyncio.sleep(0.05)
