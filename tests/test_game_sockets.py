"""Game sockets at the frame level, on both servers that carry them (aiohttp in ``serve``, picows
in ``game-gateway``): fragments, text that is not UTF-8, games that read nothing, and the game
server's own HTTP answers. A raw client writes the frames, so nothing smooths them on the way."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import socket
import struct

import aiohttp
import pytest
from structlog.testing import capture_logs

from peers import TIMEOUT_S
from phonepatch.shared.bus.events import CallConnected, TranscriptReady
from phonepatch.shared.speech import Transcript

TEXT, BINARY, CONTINUATION, CLOSE = 0x1, 0x2, 0x0, 0x8


class RawGame:
    """A websocket client that writes exactly the frames it is told to (masked, as RFC 6455
    requires of clients) and reads only when asked."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, url: str, *, receive_buffer: int | None = None) -> RawGame:
        host, port = url.split("://", 1)[1].split("/", 1)[0].split(":")
        sock = socket.socket()
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        reader, writer = await asyncio.open_connection(sock=sock, limit=2**20)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /game HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        async with asyncio.timeout(TIMEOUT_S):
            head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    def send(self, opcode: int, payload: bytes, *, fin: bool = True) -> None:
        mask = os.urandom(4)
        size = len(payload)
        if size < 126:
            head = struct.pack("!BB", (0x80 if fin else 0) | opcode, 0x80 | size)
        else:
            head = struct.pack("!BBH", (0x80 if fin else 0) | opcode, 0x80 | 126, size)
        self.writer.write(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    async def receive(self) -> tuple[int, bytes]:
        async with asyncio.timeout(TIMEOUT_S):
            first, second = await self.reader.readexactly(2)
            size = second & 0x7F
            if size == 126:
                (size,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif size == 127:
                (size,) = struct.unpack("!Q", await self.reader.readexactly(8))
            return first & 0x0F, await self.reader.readexactly(size)

    async def texts(self, count: int) -> list[str]:
        return [(await self.receive())[1].decode() for _ in range(count)]

    async def close_code(self) -> int:
        """Read until the server's close frame; its code."""
        while True:
            opcode, payload = await self.receive()
            if opcode == CLOSE:
                return struct.unpack("!H", payload[:2])[0]

    def abort(self) -> None:
        self.writer.transport.abort()


@pytest.fixture
async def raw_game():
    """Factory: a raw game on a server, with the number and code it was sent read; every one is
    cut off at the end."""
    games: list[RawGame] = []

    async def connect(server, **options) -> tuple[RawGame, str]:
        games.append(await RawGame.connect(server.game_url, **options))
        _number, code = await games[-1].texts(2)
        return games[-1], code

    yield connect
    for game in games:
        game.abort()


async def patched(server, code: str):
    call = await server.call()
    await call.say(code)
    return call


@pytest.mark.parametrize("games_on", ["aiohttp", "picows"])
class TestFrames:
    async def test_a_fragmented_text_reaches_the_call_whole(self, small_server, raw_game):
        game, code = await raw_game(small_server)
        await patched(small_server, code)
        assert await game.texts(1) == ["connected"]
        with capture_logs() as logs:
            game.send(TEXT, b"What is ", fin=False)
            game.send(CONTINUATION, b"your ", fin=False)
            game.send(CONTINUATION, "quest? \u00e9".encode())
            async with asyncio.timeout(TIMEOUT_S):
                while not any(entry["event"] == "game_text_received" for entry in logs):
                    await asyncio.sleep(0.01)
        assert [entry["chars"] for entry in logs if entry["event"] == "game_text_received"] == [len("What is your quest? \u00e9")]

    async def test_fragments_over_the_limit_close_1009(self, small_server, raw_game):
        game, _ = await raw_game(small_server)
        for _ in range(3):
            game.send(TEXT if _ == 0 else CONTINUATION, b"x" * 2000, fin=False)
        assert await game.close_code() == 1009

    async def test_text_that_is_not_utf8_closes_1007_and_gives_the_code_back(self, small_server, raw_game):
        game, code = await raw_game(small_server)
        game.send(TEXT, b"caf\xe9")
        assert await game.close_code() == 1007
        bus = small_server.gateway.bus
        async with asyncio.timeout(TIMEOUT_S):
            while code in await bus.live_codes():
                await asyncio.sleep(0.01)

    async def test_a_game_that_reads_nothing_is_closed_1008_and_others_go_on(self, small_server, raw_game):
        deaf, deaf_code = await raw_game(small_server, receive_buffer=4096)
        other, other_code = await raw_game(small_server)
        bus = small_server.gateway.bus
        await bus.claim_game(deaf_code, "CA-deaf")
        await bus.claim_game(other_code, "CA-other")
        await bus.publish_to_game(deaf_code, CallConnected("CA-deaf"))
        await bus.publish_to_game(other_code, CallConnected("CA-other"))
        assert await other.texts(1) == ["connected"]
        final = Transcript(text="y" * 3000, is_final=True)
        with capture_logs() as logs:
            async with asyncio.timeout(TIMEOUT_S * 4):
                while not any(entry.get("reason") == "game reads too slowly" for entry in logs):
                    for _ in range(50):
                        await bus.publish_to_game(deaf_code, TranscriptReady("CA-deaf", final))
                    await asyncio.sleep(0)
        await bus.publish_to_game(other_code, TranscriptReady("CA-other", Transcript(text="still here", is_final=True)))
        assert "still here" in (await other.texts(1))[0]
        async with asyncio.timeout(TIMEOUT_S):
            while deaf_code in await bus.live_codes():
                await asyncio.sleep(0.01)


    async def test_a_game_that_answers_no_ping_is_dropped_and_its_code_given_back(
        self, start_server, small_settings, raw_game
    ):
        limits = dataclasses.replace(small_settings.limits, game_heartbeat_s=0.2)
        server = await start_server(dataclasses.replace(small_settings, limits=limits))
        silent, code = await raw_game(server)  # it reads nothing more, so it answers no ping
        alive, alive_code = await raw_game(server)
        bus = server.gateway.bus
        async with asyncio.timeout(TIMEOUT_S):
            while code in await bus.live_codes():
                opcode, payload = await alive.receive()  # this one answers its pings
                if opcode == 0x9:
                    alive.send(0xA, payload)
        assert alive_code in await bus.live_codes()


    async def test_a_burst_of_texts_reaches_the_call_whole_and_in_order(self, small_server, raw_game):
        """Texts are published one at a time; a game that sends faster is read no further until
        they have caught up, and nothing is lost or reordered."""
        game, code = await raw_game(small_server)
        bus = small_server.gateway.bus
        await bus.claim_game(code, "CA-listener")
        async with bus.subscribe_call("CA-listener", depth=1000) as inbox:
            await bus.publish_to_game(code, CallConnected("CA-listener"))
            assert await game.texts(1) == ["connected"]
            for n in range(300):
                game.send(TEXT, f"line {n}".encode())
            await game.writer.drain()
            async with asyncio.timeout(TIMEOUT_S):
                spoken = [(await inbox.get()).text for _ in range(300)]
        assert spoken == [f"line {n}" for n in range(300)]

    async def test_an_application_close_code_is_answered_and_the_code_given_back(self, small_server, raw_game):
        game, code = await raw_game(small_server)
        game.send(CLOSE, struct.pack("!H", 4000) + b"level over")
        assert await game.close_code() in (4000, 1000)  # echoed, or a plain normal close (RFC 6455 §5.5.1)
        bus = small_server.gateway.bus
        async with asyncio.timeout(TIMEOUT_S):
            while code in await bus.live_codes():
                await asyncio.sleep(0.01)


@pytest.mark.parametrize("games_on", ["picows"])
class TestGameServerHttp:
    async def test_healthz_answers_ok_and_other_paths_404(self, small_server, raw_game):
        base = small_server.game_url.removesuffix("/game").replace("ws://", "http://")
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/healthz") as response:
                assert response.status == 200
                assert await response.json() == {"status": "ok"}
            async with http.get(base + "/twilio") as response:
                assert response.status == 404

    async def test_a_game_gone_while_its_code_is_taken_gives_it_back(self, start_server, small_settings, raw_game):
        server = await start_server(dataclasses.replace(small_settings, game_codes=("1", "2")))
        for _ in range(20):  # connect and vanish at once, before the code is even sent
            game = await RawGame.connect(server.game_url)
            game.abort()
        bus = server.gateway.bus
        async with asyncio.timeout(TIMEOUT_S):
            while await bus.live_codes():
                await asyncio.sleep(0.01)
        first, second = await raw_game(server), await raw_game(server)
        assert {first[1], second[1]} == {"1", "2"}
