"""The gateway processes of the drill, and the JSON-lines log each one writes."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from gateway_process import spawn_phonepatch
from redis_server import free_port

from .settings import CLOSE_TIMEOUT_S, POLL_S, START_TIMEOUT_S

__all__ = ["Gateway", "ProcessLog"]


class ProcessLog:
    """The lines one process wrote to its log file, read as they come."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = []
        self.bad_lines: list[str] = []
        self._by_event: dict[str, list[int]] = {}
        self._offset = 0
        self._partial = b""
        self._polled_at = 0.0

    def poll(self, *, force: bool = False) -> None:
        """Read what was written since; unless ``force``, at most every ``POLL_S / 2``."""
        now = time.monotonic()
        if not force and now - self._polled_at < POLL_S / 2:
            return
        self._polled_at = now
        try:
            with self.path.open("rb") as file:
                file.seek(self._offset)
                chunk = file.read()
        except FileNotFoundError:
            return
        self._offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()  # a line still being written (or cut short by kill -9)
        for line in lines:
            self._take(line)

    def _take(self, line: bytes) -> None:
        if not line.strip():
            return
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            self.bad_lines.append(line.decode(errors="replace")[:300])
            return
        self._by_event.setdefault(str(record.get("event")), []).append(len(self.records))
        self.records.append(record)

    @property
    def mark(self) -> int:
        """Where the lines from now on begin."""
        self.poll(force=True)
        return len(self.records)

    def find(self, event: str, since: int = 0, **fields: Any) -> list[dict[str, Any]]:
        """Records of ``event`` at or after ``since`` whose fields have the given values."""
        self.poll()
        found = []
        for index in self._by_event.get(event, ()):
            record = self.records[index]
            if index >= since and all(record.get(key) == value for key, value in fields.items()):
                found.append(record)
        return found


class Gateway:
    """One ``phonepatch game-gateway`` or ``twilio-gateway`` process, logging to its own file."""

    def __init__(self, role: str, name: str, *, workdir: Path, config: Path, env: dict[str, str]) -> None:
        self.role = role
        self.name = name
        self.port = free_port()
        self.log = ProcessLog(workdir / f"{name}.log")
        self.killed = False
        self.stopped = False
        self._log_file = self.log.path.open("wb")
        self.process = spawn_phonepatch(role, self.port, config, env, self._log_file)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def wait_healthy(self, http: aiohttp.ClientSession) -> None:
        """Raises RuntimeError when the process exits or does not answer in time."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if not self.alive:
                raise RuntimeError(f"{self.name} exited at start (status {self.process.returncode})")
            try:
                async with asyncio.timeout(1.0):
                    async with http.get(f"http://127.0.0.1:{self.port}/healthz") as response:
                        if response.status == 200:
                            return
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer /healthz within {START_TIMEOUT_S:.0f} s")

    def kill(self) -> None:
        """SIGKILL: no goodbye, nothing given back."""
        self.killed = True
        self.process.kill()
        self.process.wait(timeout=10)

    async def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after ``CLOSE_TIMEOUT_S`` x 3; the exit status (None: killed)."""
        self.stopped = True
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 3 * CLOSE_TIMEOUT_S
            while self.alive and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        status = self.process.poll()
        if status is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._log_file.close()
        return status

    def tail(self, lines: int = 3) -> list[str]:
        return self.log.path.read_text(errors="replace").splitlines()[-lines:]
