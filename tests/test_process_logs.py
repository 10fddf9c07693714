"""Every line a ``phonepatch`` process writes is one JSON object, masked: its own events, what
aiohttp and picows log when a client sends garbage, and what the interpreter would print raw."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from peers import TIMEOUT_S
from redis_server import RedisServer, free_port

CALLER = "+15551230000"
MASKED_CALLER = "+*********00"
SECRET_KEY = "dg-secret-never-logged-42"
OUR_NUMBER = "+15557654321"


def json_lines(output: bytes) -> list[dict[str, Any]]:
    """Every non-empty line of ``output`` as JSON; fails on the first line that is not."""
    parsed = []
    for line in filter(None, output.splitlines()):
        try:
            parsed.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            pytest.fail(f"not a JSON line: {line!r}\nin:\n{output.decode(errors='replace')}")
        assert {"event", "level", "timestamp"} <= parsed[-1].keys(), parsed[-1]
    return parsed


class Phonepatch:
    """One ``python -m phonepatch.services <role>`` process; its stdout and stderr go to a file."""

    def __init__(self, workdir: Path, role: str, *args: str) -> None:
        self.port = free_port()
        self.output_path = workdir / f"{role}-{self.port}.log"
        env = {**os.environ, "DEEPGRAM_API_KEY": SECRET_KEY, "TWILIO_PHONE_NUMBER": OUR_NUMBER}
        with self.output_path.open("wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "phonepatch.services", role, "--port", str(self.port), *args],
                env=env, stdout=output, stderr=subprocess.STDOUT,
            )  # fmt: skip

    async def wait_healthy(self) -> None:
        async with aiohttp.ClientSession() as http, asyncio.timeout(6 * TIMEOUT_S):
            while True:
                assert self.process.poll() is None, self.output_path.read_text()
                try:
                    async with http.get(f"http://127.0.0.1:{self.port}/healthz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)  # still starting: nothing to await on

    def stop(self) -> bytes:
        """SIGTERM, as an orchestrator stops it; everything it wrote."""
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=3 * TIMEOUT_S) == 0
        return self.output_path.read_bytes()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
async def phonepatch(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Factory: a healthy ``phonepatch`` process; killed afterwards if a test left it running."""
    processes: list[Phonepatch] = []

    async def start(role: str, *args: str) -> Phonepatch:
        processes.append(Phonepatch(tmp_path, role, *args))
        await processes[-1].wait_healthy()
        return processes[-1]

    yield start
    for process in processes:
        process.kill()


async def exchange(port: int, request: bytes, *, until_closed: bool = False) -> bytes:
    """Write ``request`` on a fresh connection; read the reply's head, or all until the server
    closes. The server logs what it saw before it answers, so the reply is the sync point."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        async with asyncio.timeout(TIMEOUT_S):
            return await reader.read() if until_closed else await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()


def upgrade(*headers: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = ["GET /game HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13", *headers]  # fmt: skip
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# A masked frame with reserved opcode 0xF: a protocol error (RFC 6455 §5.2).
BAD_FRAME = bytes([0x8F, 0x80 | 5]) + b"\0\0\0\0" + b"hello"


async def send_garbage(port: int) -> None:
    """What a port scanner or a broken game sends: bytes that are not HTTP, an upgrade without
    its key, a header that is not one and a subprotocol that is a phone number, a bad frame."""
    await exchange(port, b"\x00\xff\xfe garbage\r\n\r\n", until_closed=True)
    await exchange(port, upgrade().replace(b"Sec-WebSocket-Key", b"X-Not-The-Key"))
    await exchange(port, f"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: {CALLER}\r\n\r\n".encode())
    await exchange(port, upgrade(f"Sec-WebSocket-Protocol: {CALLER}"))
    await exchange(port, upgrade() + BAD_FRAME, until_closed=True)


class TestServers:
    async def test_serve_writes_only_masked_json_lines(self, phonepatch: Any) -> None:
        server = await phonepatch("serve")
        await send_garbage(server.port)
        output = server.stop()
        by_logger = {line.get("logger"): line for line in json_lines(output)}
        assert by_logger["aiohttp.server"]["level"] == "error"
        assert "BadHttpMessage" in by_logger["aiohttp.server"]["exception"]
        assert MASKED_CALLER in by_logger["aiohttp.server"]["exception"]
        assert MASKED_CALLER in by_logger["aiohttp.websocket"]["event"]
        for leak in (CALLER, SECRET_KEY, OUR_NUMBER):
            assert leak.encode() not in output

    @pytest.mark.parametrize("level", ["info", "debug"])
    async def test_game_gateway_writes_only_json_lines(self, phonepatch: Any, redis_server: RedisServer, level: str) -> None:
        """At ``debug`` picows, redis and asyncio log more, each a JSON line too."""
        server = await phonepatch("game-gateway", "--redis-url", redis_server.url, "--log-level", level)
        await send_garbage(server.port)
        output = server.stop()
        picows = [line for line in json_lines(output) if line.get("logger", "").startswith("picows.")]
        assert [line["event"] for line in picows if line["level"] == "error"] == [
            "WS parser error: (<WSCloseCode.PROTOCOL_ERROR: 1002>, 'Received frame with invalid opcode=0xf'), "
            "initiate disconnect"
        ]
        assert (level == "debug") == any(line["level"] == "info" for line in picows)
        for leak in (CALLER, SECRET_KEY, OUR_NUMBER):
            assert leak.encode() not in output


def run_python(program: str) -> bytes:
    """Run ``program`` after ``configure_logging("info")``; its stderr (stdout must be empty)."""
    prelude = "from phonepatch.shared.logs import configure_logging\nconfigure_logging('info')\n"
    result = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(program)], capture_output=True, timeout=3 * TIMEOUT_S
    )
    assert result.stdout == b""
    return result.stderr


class TestInterpreterOutput:
    """What the interpreter itself would print as raw lines."""

    def test_uncaught_exception_is_one_json_line(self) -> None:
        output = run_python(f"raise ValueError('call from {CALLER} failed')")
        [line] = json_lines(output)
        assert (line["event"], line["level"]) == ("uncaught_exception", "error")
        assert line["exception"].startswith("Traceback (most recent call last):")
        assert f"ValueError: call from {MASKED_CALLER} failed" in line["exception"]

    def test_uncaught_exception_in_a_thread_is_one_json_line(self) -> None:
        output = run_python(f"""
            import threading
            def fail():
                raise ValueError('call from {CALLER} failed')
            thread = threading.Thread(target=fail, name="engine")
            thread.start()
            thread.join()
        """)
        [line] = json_lines(output)
        assert (line["event"], line["thread"]) == ("uncaught_exception", "engine")
        assert f"ValueError: call from {MASKED_CALLER} failed" in line["exception"]

    def test_exception_in_del_is_one_json_line(self) -> None:
        output = run_python(f"""
            class Session:
                def __del__(self):
                    raise ValueError('call from {CALLER} failed')
            Session()
        """)
        [line] = json_lines(output)
        assert line["event"] == "unraisable_exception"
        assert "Session.__del__" in line["object"]
        assert f"ValueError: call from {MASKED_CALLER} failed" in line["exception"]

    def test_warning_is_one_json_line(self) -> None:
        output = run_python(f"import warnings; warnings.warn('call from {CALLER} is slow', RuntimeWarning)")
        [line] = json_lines(output)
        assert (line["logger"], line["level"]) == ("py.warnings", "warning")
        assert f"RuntimeWarning: call from {MASKED_CALLER} is slow" in line["event"]

    def test_record_that_cannot_be_formatted_is_one_json_line(self) -> None:
        """logging itself would print "--- Logging error ---" and a raw traceback."""
        output = run_python("import logging; logging.getLogger('redis').error('%d commands', 'not a number')")
        [line] = json_lines(output)
        assert (line["event"], line["logger"]) == ("log_record_unwritable", "redis")
        assert "TypeError" in line["exception"]
