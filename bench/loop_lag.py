"""Does offline recognition stall other sockets? Measured from outside the server.

Starts ``phonepatch serve`` with the offline engines, keeps N simulated calls talking (each says
codes over and over, in real time, and dials again when the server hangs up), and meanwhile a
probe measures the round trip of a ``GET /healthz`` every 20 ms, which the server's event loop must
answer between audio frames. Prints the probe's p50/p99/max and how many utterances the server
heard in the meantime (from its debug log), and exits 1 when p99 exceeds the target or nothing was
heard (the figure would then measure an idle server).

    python bench/loop_lag.py --calls 4 --seconds 30
    python bench/loop_lag.py --stt-processes 0    # recognition in the server's own threads
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import IO
from concurrent.futures import ThreadPoolExecutor

import aiohttp

from phonepatch.shared.logs import configure_logging
from serving import free_port, wait_healthy

from phonepatch.services.simulator.phone import PhoneSimulator
from phonepatch.shared.providers.espeak import synthesize_mulaw

TARGET_P99_MS = 50.0


async def talk(http: aiohttp.ClientSession, url: str, phrases: list[bytes], stop: asyncio.Event) -> None:
    while not stop.is_set():
        async with PhoneSimulator(http, url, speed=1.0) as phone:
            while not stop.is_set() and not phone.closed.is_set():
                for audio in phrases:
                    await phone.say_audio(audio, pause_ms=800)


async def probe(http: aiohttp.ClientSession, base_url: str, seconds: float) -> list[float]:
    """Round trips of ``GET /healthz`` every 20 ms, in milliseconds: each waits for the loop."""
    rtts: list[float] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        began = time.perf_counter()
        async with http.get(base_url + "/healthz") as response:
            await response.read()
        rtts.append((time.perf_counter() - began) * 1000)
        await asyncio.sleep(0.02)
    return rtts


async def main_async(calls: int, seconds: float, stt_processes: int | None, log: IO[bytes]) -> dict[str, float]:
    port = free_port()
    env = {**os.environ, "PHONEPATCH_STT": "pocketsphinx", "PHONEPATCH_LOG_LEVEL": "debug"}
    if stt_processes is not None:
        env["PHONEPATCH_STT_PROCESSES"] = str(stt_processes)
    command = [sys.executable, "-m", "phonepatch.services", "serve", "--port", str(port)]
    server = subprocess.Popen(command, env=env, stderr=log)
    try:
        async with aiohttp.ClientSession() as http:
            await wait_healthy(http, port, server)
            with ThreadPoolExecutor(1) as executor:
                loop = asyncio.get_running_loop()
                phrases = [await loop.run_in_executor(executor, synthesize_mulaw, text) for text in ("forty two", "seven three", "banana split")]
            stop = asyncio.Event()
            talkers = [asyncio.create_task(talk(http, f"ws://127.0.0.1:{port}/twilio", phrases, stop)) for _ in range(calls)]
            await asyncio.sleep(2.0)  # let every call start talking
            log.flush()
            heard_before = _utterances_heard(log.name)
            rtts = await probe(http, f"http://127.0.0.1:{port}", seconds)
            heard = _utterances_heard(log.name) - heard_before
            stop.set()
            for talker in talkers:
                talker.cancel()
            await asyncio.gather(*talkers, return_exceptions=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    rtts.sort()
    return {
        "calls": calls,
        "utterances_heard": heard,
        "probes": len(rtts),
        "p50_ms": round(statistics.median(rtts), 2),
        "p99_ms": round(rtts[int(len(rtts) * 0.99) - 1], 2),
        "max_ms": round(rtts[-1], 2),
    }


def _utterances_heard(log_path: str) -> int:
    with open(log_path, "rb") as lines:
        return sum(1 for line in lines if b'"entry_heard"' in line)


def main() -> int:
    configure_logging("warning")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--stt-processes", type=int, help="the server's recognition processes (0: its threads)")
    args = parser.parse_args()
    with tempfile.NamedTemporaryFile(prefix="loop-lag-", suffix=".log") as log:
        figures = asyncio.run(main_async(args.calls, args.seconds, args.stt_processes, log))
    where = "the server's default" if args.stt_processes is None else args.stt_processes
    print(f"machine: {os.cpu_count()} cores; recognition processes: {where}")
    print(figures)
    met = figures["p99_ms"] <= TARGET_P99_MS
    print(f"target p99 <= {TARGET_P99_MS} ms: {'met' if met else 'MISSED'}")
    if not figures["utterances_heard"]:
        print("the server heard nothing while the probe ran: the figure measures an idle server")
        return 1
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
