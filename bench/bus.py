"""Bus benchmark: transcripts across processes through Redis, and code churn through a game-gateway.

Starts its own ``redis-server`` on a free loopback port and one ``phonepatch game-gateway``
process (pinned to CPU 0 when there are two or more; everything else runs on the others).

1. **Delivery**: ``--games`` v0 games connect to the game-gateway and are patched to a call; a
   publisher process, standing for the twilio-gateways, publishes transcripts toward them through
   Redis at ``--rate`` per second for ``--seconds``, in the bus's wire format, one pipeline per
   millisecond, each stamped with CLOCK_MONOTONIC (system-wide); the games record receive time -
   stamp. The games are ``bench/wsload.c`` (built with the machine's C compiler into a temporary
   directory), so that they cost the CPU they share with Redis and the publisher a fraction of
   what the gateway spends. Target: p99 <= 2 ms at 10,000 transcripts/s, and every transcript
   delivered.
2. **Churn**: ``--clients`` concurrent clients connect a game, read its number and code and
   disconnect, as fast as they can for ``--seconds``, also with ``bench/wsload.c``. Target: >= 5,000 connects + disconnects per second, and
   no code lost (the pool holds every code afterwards, no lease left). ``--ceiling`` also runs the
   same clients against ``bench/bare_ws.py`` (picows alone, then aiohttp alone, on the same CPU and
   event loop): what one core can do before phonepatch does anything.

    python bench/bus.py                     # both, with the targets
    python bench/bus.py --rate 2000 --only delivery
    python bench/bus.py --only churn --ceiling

Prints the figures and the machine's core count; exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from redis_server import RedisServer, free_port  # noqa: E402
from serving import wait_healthy  # noqa: E402

from phonepatch.shared.bus import wire  # noqa: E402
from phonepatch.shared.bus.events import CallConnected, TranscriptReady  # noqa: E402
from phonepatch.shared.bus.keys import Keys  # noqa: E402
from phonepatch.shared.codes import generated_codes  # noqa: E402
from phonepatch.shared.protocol import deepgram as dg  # noqa: E402
from phonepatch.shared.speech import Transcript  # noqa: E402

PREFIX = "bench"
DELIVERY_P99_MS = 2.0
DELIVERY_RATE = 10_000
CHURN_PER_S = 5_000


def pinned(command: list[str], cpus: str | None) -> list[str]:
    if cpus is None or shutil.which("taskset") is None:
        return command
    return ["taskset", "-c", cpus, *command]


def cpu_split() -> tuple[str | None, str | None]:
    """(gateway CPUs, everyone else's) or (None, None) on one core."""
    count = os.cpu_count() or 1
    if count < 2:
        return None, None
    return "0", f"1-{count - 1}"


def cpu_seconds_of(pid: int) -> float:
    """User + system CPU of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_busy(cpus: str | None) -> tuple[int, int, int]:
    """(busy, total, stolen) jiffies so far of the CPUs ``cpus`` names ("1-3"), or of all of them.
    Stolen: time the hypervisor ran something else while this VM wanted the CPU."""
    first, _, last = (cpus or "").partition("-")
    wanted = {f"cpu{n}" for n in range(int(first), int(last or first) + 1)} if cpus else {"cpu"}
    busy = total = stolen = 0
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name in wanted:
            numbers = [int(value) for value in values[:8]]
            total += sum(numbers)
            busy += sum(numbers) - numbers[3] - numbers[4]  # all but idle and iowait
            stolen += numbers[7]
    return busy, total, stolen


def busy_pct(before: tuple[int, int, int], after: tuple[int, int, int]) -> float:
    return round(100 * (after[0] - before[0]) / max(1, after[1] - before[1]), 1)


def stolen_pct(before: tuple[int, int, int], after: tuple[int, int, int]) -> float:
    return round(100 * (after[2] - before[2]) / max(1, after[1] - before[1]), 2)


class GameGateway:
    def __init__(self, redis_url: str, codes_digits: int, cpus: str | None) -> None:
        self.port = free_port()
        self.cpus = cpus
        self._config = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
        json.dump({"code_digits": codes_digits, "max_message_bytes": 65536, "queue_depth": 4096}, self._config)
        self._config.close()
        env = {**os.environ, "REDIS_URL": redis_url, "PHONEPATCH_REDIS_PREFIX": PREFIX, "PHONEPATCH_LOG_LEVEL": "warning"}
        command = [sys.executable, "-m", "phonepatch.services", "game-gateway", "--port", str(self.port), "--config", self._config.name]
        self.process = subprocess.Popen(pinned(command, cpus), env=env)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/game"

    async def wait_ready(self, http: aiohttp.ClientSession) -> None:
        await wait_healthy(http, self.port, self.process)

    def cpu_seconds(self) -> float:
        return cpu_seconds_of(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        os.unlink(self._config.name)


# -- delivery ----------------------------------------------------------------------------------


async def publish(redis_url: str, codes: list[str], rate: int, seconds: float, shape: str) -> None:
    """The publisher process: ``rate`` transcripts per second round-robin over ``codes``.

    It writes Redis's protocol by hand on one socket, one write per millisecond: through redis-py
    a publish cost this harness ~45 us of the CPU it shares with Redis and the games, which then
    set the latency measured. Each message is the bus's wire format of a final transcript whose
    text starts with the send stamp (CLOCK_MONOTONIC ns, 19 digits): a bare one, as the offline
    engine gives (``offline``), or one of Deepgram's with six words and its own JSON
    (``deepgram``)."""
    address = urlsplit(redis_url)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    # As every Redis client does: without it, a write waits for the last one's ACK (Nagle).
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    keys = Keys(PREFIX)
    placeholder = "9" * 19
    templates = []
    for code in codes:
        channel = keys.game_channel(code).encode()
        if shape == "deepgram":
            said = f"{placeholder} please put me through to the game"
            transcript = dg.parse_message(dg.encode_results(transcript=said, is_final=True, duration_s=1.5))
        else:
            transcript = Transcript(text=placeholder, is_final=True)
        body = wire.encode(TranscriptReady(f"CA-bench-{code}", transcript))
        head = b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n" % (len(channel), channel, len(body))
        first, *rest = body.split(placeholder.encode())  # the stamp goes wherever the text is
        templates.append((head + first, *rest[:-1], rest[-1] + b"\r\n"))
    replies = 0

    async def read_replies() -> None:
        nonlocal replies
        while await reader.readline():
            replies += 1

    counting = asyncio.create_task(read_replies())
    per_tick, carry, sent = rate / 1000, 0.0, 0
    start = time.monotonic()
    tick = 0
    while time.monotonic() - start < seconds:
        carry += per_tick
        count, carry = int(carry), carry - int(carry)
        chunks = []
        for _ in range(count):
            parts = templates[sent % len(templates)]
            stamp = b"%019d" % time.monotonic_ns()
            chunks.append(stamp.join(parts))
            sent += 1
        if chunks:
            writer.write(b"".join(chunks))
            await writer.drain()
        tick += 1
        await asyncio.sleep(max(0.0, start + tick / 1000 - time.monotonic()))
    async with asyncio.timeout(10):
        while replies < sent:
            await asyncio.sleep(0.01)
    counting.cancel()
    writer.close()
    print(json.dumps({"published": sent, "cpu_s": time.process_time()}), flush=True)


async def delivery(gateway: GameGateway, redis_url: str, args, program: str, others: str | None) -> dict:
    games = await asyncio.create_subprocess_exec(
        *pinned([program, "games", str(gateway.port), "/game", str(args.games)], others),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )
    codes = []
    while (line := (await games.stdout.readline()).decode().strip()) != "ready":
        if not line:
            raise SystemExit("bench/wsload.c games: ended before its games had their codes")
        codes.append(line)
    client = aioredis.Redis.from_url(redis_url)
    keys = Keys(PREFIX)
    for code in codes:
        await client.publish(keys.game_channel(code), wire.encode(CallConnected(f"CA-bench-{code}")))
    await client.aclose()
    if (await games.stdout.readline()).decode().strip() != "patched":
        raise SystemExit("bench/wsload.c games: not every game was patched")
    cpu_before = gateway.cpu_seconds()
    others_before, gateway_cpu_before = cpu_busy(others), cpu_busy(gateway.cpus)
    command = [sys.executable, __file__, "--role", "publisher", "--redis-url", redis_url,
               "--rate", str(args.rate), "--seconds", str(args.seconds), "--codes", ",".join(codes),
               "--transcripts", args.transcripts]  # fmt: skip
    publisher = await asyncio.create_subprocess_exec(*pinned(command, others), stdout=subprocess.PIPE)
    out, _ = await publisher.communicate()
    publisher_figures = json.loads(out.decode().strip().splitlines()[-1])
    published = publisher_figures["published"]
    others_pct = busy_pct(others_before, cpu_busy(others))
    stolen = stolen_pct(gateway_cpu_before, cpu_busy(gateway.cpus))
    await asyncio.sleep(0.5)
    cpu = gateway.cpu_seconds() - cpu_before
    games.stdin.close()
    figures = json.loads((await games.stdout.read()).decode().strip().splitlines()[-1])
    await games.wait()
    return {
        "rate_per_s": args.rate,
        "transcripts": args.transcripts,
        "games": len(codes),
        "published": published,
        "delivered": figures["delivered"],
        "p50_ms": figures["p50_ms"],
        "p90_ms": figures["p90_ms"],
        "p99_ms": figures["p99_ms"],
        "p999_ms": figures["p999_ms"],
        "max_ms": figures["max_ms"],
        "gateway_cpu_us_per_transcript": round(cpu / max(1, figures["delivered"]) * 1e6, 1),
        # The publisher, Redis and the games share the other CPUs: near 100 %, they and not the
        # gateway set the latency.
        "others_cpu_busy_pct": others_pct,
        # The hypervisor's share of the gateway's CPU meanwhile: each theft is a stall.
        "gateway_cpu_stolen_pct": stolen,
        "publisher_cpu_us_per_transcript": round(publisher_figures["cpu_s"] / max(1, published) * 1e6, 1),
        "games_cpu_us_per_transcript": round(figures["cpu_s"] / max(1, figures["delivered"]) * 1e6, 1),
    }


# -- churn -------------------------------------------------------------------------------------


def build_load_generator(directory: str) -> str:
    """Compile ``bench/wsload.c``; returns the program's path."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise SystemExit("bench/bus.py: needs a C compiler (cc or gcc) for bench/wsload.c")
    program = os.path.join(directory, "wsload")
    subprocess.run([compiler, "-O2", "-o", program, str(Path(__file__).with_name("wsload.c"))], check=True)
    return program


async def run_churn_clients(program: str, port: int, clients: int, seconds: float, cpus: str | None) -> dict:
    command = pinned([program, "churn", str(port), "/game", str(clients), str(seconds)], cpus)
    process = await asyncio.create_subprocess_exec(*command, stdout=subprocess.PIPE)
    out, _ = await process.communicate()
    if process.returncode:
        raise SystemExit(f"bench/wsload.c churn exited with {process.returncode}")
    return json.loads(out)


async def churn(gateway: GameGateway, redis_url: str, args, pool_size: int, program: str, others: str | None) -> dict:
    cpu_before = gateway.cpu_seconds()
    others_before = cpu_busy(others)
    figures = await run_churn_clients(program, gateway.port, args.clients, args.seconds, others)
    others_pct = busy_pct(others_before, cpu_busy(others))
    cpu = gateway.cpu_seconds() - cpu_before
    cycles = figures["cycles"]
    # The last sessions end and give their codes back; a take cut off between its SPOP and its
    # lease (a client gone mid-handshake) leaves a code for the sweeper (every 2 s) to give back.
    await asyncio.sleep(3.0)
    redis_client = aioredis.Redis.from_url(redis_url)
    keys = Keys(PREFIX)
    free = await redis_client.scard(keys.pool)
    leases = [key async for key in redis_client.scan_iter(match=f"{{{PREFIX}:*}}:lease", count=1000)]
    await redis_client.aclose()
    return {
        "clients": args.clients,
        "cycles": cycles,
        "refused": figures["refused"],
        "errors": figures["errors"],
        "per_s": round(cycles / figures["elapsed_s"]),
        "cycle_p50_ms": figures["cycle_p50_ms"],
        "cycle_p99_ms": figures["cycle_p99_ms"],
        "gateway_cpu_us_per_cycle": round(cpu / max(1, cycles) * 1e6, 1),
        "others_cpu_busy_pct": others_pct,
        "pool_size": pool_size,
        "free_after": free,
        "leases_after": len(leases),
    }


async def ceiling(http: aiohttp.ClientSession, args, program: str, stack: str, gateway_cpus: str | None, others: str | None) -> dict:
    """The same clients against a bare server (``bench/bare_ws.py``) on the gateway's CPU."""
    port = free_port()
    command = [sys.executable, str(Path(__file__).with_name("bare_ws.py")), "--port", str(port), "--stack", stack, "--loop", args.ceiling_loop]
    server = subprocess.Popen(pinned(command, gateway_cpus))
    try:
        await wait_healthy(http, port, server)
        started = cpu_seconds_of(server.pid)
        figures = await run_churn_clients(program, port, args.clients, args.seconds, others)
        cpu = cpu_seconds_of(server.pid) - started
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {
        "server": f"bare {stack}, {args.ceiling_loop}",
        "cycles": figures["cycles"],
        "errors": figures["errors"],
        "per_s": round(figures["cycles"] / figures["elapsed_s"]),
        "server_cpu_us_per_cycle": round(cpu / max(1, figures["cycles"]) * 1e6, 1),
    }


async def main_async(args) -> int:
    gateway_cpus, others = cpu_split()
    print(f"machine: {os.cpu_count()} cores; game-gateway on CPU {gateway_cpus or 'any'}", flush=True)
    if others is not None:
        # This process and Redis keep off the gateway's CPU too: sharing it, they would set the
        # latency measured (p99 3.5 ms at 2,000/s, when Redis was free to run there).
        first, _, last = others.partition("-")
        os.sched_setaffinity(0, range(int(first), int(last or first) + 1))
    server = RedisServer().start()
    gateway = GameGateway(server.url, 4, gateway_cpus)
    pool_size = len(generated_codes(4))
    missed = False
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            await gateway.wait_ready(http)
            with tempfile.TemporaryDirectory() as build:
                program = build_load_generator(build)
                if args.only in (None, "delivery"):
                    result = await delivery(gateway, server.url, args, program, others)
                    ok = result["p99_ms"] <= DELIVERY_P99_MS and result["delivered"] == result["published"]
                    ok = ok and args.rate >= DELIVERY_RATE
                    print(json.dumps({"delivery": result, "target": f"p99 <= {DELIVERY_P99_MS} ms at {DELIVERY_RATE}/s", "met": ok}), flush=True)
                    missed |= not ok
                if args.only in (None, "churn"):
                    result = await churn(gateway, server.url, args, pool_size, program, others)
                    ok = result["per_s"] >= CHURN_PER_S and result["free_after"] == pool_size and result["leases_after"] == 0
                    ok = ok and result["errors"] == 0
                    print(json.dumps({"churn": result, "target": f">= {CHURN_PER_S}/s, no code lost", "met": ok}), flush=True)
                    missed |= not ok
                    if args.ceiling:
                        for stack in ("picows", "aiohttp"):
                            figures = await ceiling(http, args, program, stack, gateway_cpus, others)
                            print(json.dumps({"ceiling": figures}), flush=True)
    finally:
        gateway.stop()
        server.close()
    print("TARGETS MISSED" if missed else "targets met", flush=True)
    return 1 if missed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=DELIVERY_RATE, help="transcripts per second")
    parser.add_argument("--games", type=int, default=100)
    parser.add_argument("--clients", type=int, default=64, help="concurrent connect/disconnect loops")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--only", choices=["delivery", "churn"])
    parser.add_argument("--ceiling", action="store_true", help="also churn against bare picows and aiohttp (bench/bare_ws.py)")
    parser.add_argument("--ceiling-loop", choices=["asyncio", "uvloop"], default="uvloop")
    parser.add_argument("--transcripts", choices=["offline", "deepgram"], default="offline",
                        help="the transcripts delivered: bare, or Deepgram's with words and its own JSON")
    parser.add_argument("--role", choices=["publisher"], help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", help=argparse.SUPPRESS)
    parser.add_argument("--codes", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "publisher":
        run(publish(args.redis_url, args.codes.split(","), args.rate, args.seconds, args.transcripts))
        return 0
    return run(main_async(args))


def run(work):
    """Run the harness on uvloop where installed: it shares a CPU with Redis, and the less it
    costs, the less of the latency measured is its own."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(work)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(work)


if __name__ == "__main__":
    sys.exit(main())
