"""``phonepatch client``: a game client for the terminal, speaking game protocol v0.

Shows the phone number and code, prints the caller's words as they arrive, and sends each line
typed to be spoken to the caller.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

import aiohttp

from phonepatch.shared.errors import ProtocolError
from phonepatch.shared.protocol import deepgram as dg
from phonepatch.shared.speech import Transcript

__all__ = ["describe", "run_client"]


def describe(text: str, *, position: int) -> str:
    """What to print for the ``position``-th (0-based) message a v0 server sent."""
    if position == 0:
        return f"Call {text or '(no number configured)'}"
    if position == 1:
        banner = f"  Your code:  {text}  "
        return f"{'=' * len(banner)}\n{banner}\n{'=' * len(banner)}"
    if text == "connected":
        return "* A caller is on the line. Type a line and press Enter to speak to them."
    try:
        event = dg.parse_message(text)
    except ProtocolError:
        return f"? {text}"
    if isinstance(event, Transcript):
        return f"caller: {event.text}" if event.text else ""
    return ""


async def run_client(url: str, *, out: TextIO = sys.stdout, lines: asyncio.Queue[str] | None = None) -> int:
    """Run until the server closes the socket or the input ends; returns a process exit code."""
    typed = lines or _stdin_lines()
    async with aiohttp.ClientSession() as http:
        try:
            ws = await http.ws_connect(url)
        except (aiohttp.ClientError, OSError) as error:
            print(f"phonepatch client: cannot connect to {url}: {error}", file=sys.stderr)
            return 1
        async with ws, asyncio.TaskGroup() as tasks:
            sender = tasks.create_task(_send_lines(ws, typed))
            await _print_messages(ws, out)
            sender.cancel()
        if ws.close_code not in (None, 1000, 1001):
            print(f"closed by the server: {ws.close_code} {ws.close_reason or ''}".strip(), file=out)
            return 1
    return 0


async def _print_messages(ws: aiohttp.ClientWebSocketResponse, out: TextIO) -> None:
    position = 0
    async for message in ws:
        if message.type is aiohttp.WSMsgType.TEXT:
            line = describe(message.data, position=position)
            position += 1
            if line:
                print(line, file=out, flush=True)


async def _send_lines(ws: aiohttp.ClientWebSocketResponse, lines: asyncio.Queue[str]) -> None:
    while True:
        line = (await lines.get()).strip()
        if line:
            await ws.send_str(line)


def _stdin_lines() -> asyncio.Queue[str]:
    """Lines typed on standard input, read without a thread (the loop watches the descriptor)."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    def on_readable() -> None:
        line = sys.stdin.readline()
        if line:
            queue.put_nowait(line)
        else:
            loop.remove_reader(sys.stdin.fileno())

    loop.add_reader(sys.stdin.fileno(), on_readable)
    return queue
