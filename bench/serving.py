"""What the benchmark scripts share: a free loopback port, and waiting for a server to be up."""

from __future__ import annotations

import asyncio
import socket
import subprocess

import aiohttp

__all__ = ["free_port", "wait_healthy"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def wait_healthy(
    http: aiohttp.ClientSession, port: int, process: subprocess.Popen | None = None, timeout_s: float = 60
) -> None:
    """Wait until ``GET /healthz`` on ``port`` answers 200; stop early if ``process`` exits."""
    async with asyncio.timeout(timeout_s):
        while True:
            if process is not None and process.poll() is not None:
                raise SystemExit(f"the server exited at start (status {process.returncode})")
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
