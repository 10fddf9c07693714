"""``phonepatch serve`` as a user runs it: a separate process, a plain websocket client."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import aiohttp
import orjson
import pytest
import websockets

from peers import TIMEOUT_S

SECRET_KEY = "dg-secret-never-logged-42"
OUR_NUMBER = "+15557654321"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def serve(tmp_path) -> Iterator:
    """Start ``phonepatch serve`` with the given extra arguments; stop it with SIGTERM afterwards."""
    processes: list[subprocess.Popen] = []

    def start(*args: str) -> tuple[subprocess.Popen, str]:
        port = free_port()
        env = {**os.environ, "DEEPGRAM_API_KEY": SECRET_KEY, "TWILIO_PHONE_NUMBER": OUR_NUMBER}
        process = subprocess.Popen(
            [sys.executable, "-m", "phonepatch.services", "serve", "--port", str(port), *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        processes.append(process)
        return process, f"127.0.0.1:{port}"

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=TIMEOUT_S)


async def wait_healthy(address: str) -> None:
    async with aiohttp.ClientSession() as http, asyncio.timeout(3 * TIMEOUT_S):
        while True:
            try:
                async with http.get(f"http://{address}/healthz") as response:
                    assert response.status == 200
                    assert await response.json() == {"status": "ok"}
                    return
            except aiohttp.ClientConnectorError:
                await asyncio.sleep(0.05)  # the process is still starting; nothing to await on


async def test_game_receives_exactly_number_then_code_first(serve):
    process, address = serve()
    await wait_healthy(address)
    async with websockets.connect(f"ws://{address}/game") as game:
        number = await asyncio.wait_for(game.recv(), TIMEOUT_S)
        code = await asyncio.wait_for(game.recv(), TIMEOUT_S)
        assert (number, code) == (OUR_NUMBER, code)
        assert code in {str(n) for n in range(100)}
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(game.recv(), 0.5)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=TIMEOUT_S)
    assert process.returncode == 0
    lines = [orjson.loads(line) for line in stderr.splitlines() if line.startswith(b"{")]
    events = [line["event"] for line in lines]
    assert "game_connected" in events and "game_session_ended" in events
    assert SECRET_KEY.encode() not in stderr
    assert OUR_NUMBER.encode() not in stderr


async def test_config_file_sets_the_codes(serve, tmp_path):
    config = tmp_path / "codes.json"
    config.write_text(json.dumps({"game_codes": ["apple"]}))
    _, address = serve("--config", str(config))
    await wait_healthy(address)
    async with websockets.connect(f"ws://{address}/game") as game:
        await asyncio.wait_for(game.recv(), TIMEOUT_S)
        assert await asyncio.wait_for(game.recv(), TIMEOUT_S) == "apple"
        async with websockets.connect(f"ws://{address}/game") as second:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(second.recv(), TIMEOUT_S)
            assert closed.value.rcvd.code == 1013


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
async def test_serves_on_the_event_loop_asked_for(serve, monkeypatch, loop):
    monkeypatch.setenv("PHONEPATCH_EVENT_LOOP", loop)
    process, address = serve()
    await wait_healthy(address)
    async with websockets.connect(f"ws://{address}/game") as game:
        assert await asyncio.wait_for(game.recv(), TIMEOUT_S) == OUR_NUMBER
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=TIMEOUT_S)
    serving = [line for line in map(orjson.loads, filter(lambda line: line.startswith(b"{"), stderr.splitlines())) if line["event"] == "serving"]
    assert serving and serving[0]["event_loop"] == loop


def test_uvloop_asked_for_but_missing_is_a_configuration_error():
    # As on a machine without uvloop: importing it fails.
    program = "import sys; sys.modules['uvloop'] = None; from phonepatch.services.cli import main; sys.exit(main())"
    env = {**os.environ, "PHONEPATCH_EVENT_LOOP": "uvloop", "DEEPGRAM_API_KEY": SECRET_KEY}
    result = subprocess.run(
        [sys.executable, "-c", program, "serve", "--port", str(free_port())],
        env=env, capture_output=True, timeout=3 * TIMEOUT_S,
    )
    assert result.returncode == 2
    assert b"configuration error: event_loop: uvloop is not installed" in result.stderr
