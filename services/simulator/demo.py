"""``phonepatch demo``: the whole loop on one machine, offline, with timings.

A server with the offline engines on a free loopback port; a game that connects and shows its
code; a simulated call that says the code, answers the read-back and speaks; the game prints the
transcript and replies; the caller's recording of the reply is transcribed back.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
from aiohttp import web

from phonepatch.services.allinone.app import build_app
from phonepatch.services.simulator.caller import Caller, caller_ears, transcribe
from phonepatch.services.simulator.phone import PhoneSimulator
from phonepatch.shared.audio import write_wav
from phonepatch.shared.codes import spoken_forms
from phonepatch.shared.config import Settings
from phonepatch.shared.matching import normalize_words
from phonepatch.shared.protocol import deepgram as dg
from phonepatch.shared.speech import Transcript

__all__ = ["DemoFailed", "run_demo"]

CALLER_SENTENCE = "hello game can you hear me"
GAME_REPLY = "Welcome to the game."
# The caller checks the reply it heard against these other lines a game might have said.
OTHER_LINES = ("Please wait for the next player.", "The door is locked.", "You found a golden key.", "Goodbye and thanks for calling.")


class DemoFailed(Exception):
    """A step of the demo did not succeed; the message names it."""


@contextlib.asynccontextmanager
async def _server(settings: Settings) -> AsyncIterator[str]:
    runner = web.AppRunner(build_app(settings), handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield f"127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


class _Steps:
    """Prints each step with the time it took; a failed step raises ``DemoFailed``."""

    def __init__(self, out: Callable[[str], None]) -> None:
        self._out = out
        self._started = time.perf_counter()

    @contextlib.asynccontextmanager
    async def step(self, name: str, timeout_s: float) -> AsyncIterator[None]:
        began = time.perf_counter()
        try:
            async with asyncio.timeout(timeout_s):
                yield
        except TimeoutError:
            raise DemoFailed(f"{name}: no result within {timeout_s:.0f} s") from None
        self._out(f"  ok  {name}  ({time.perf_counter() - began:.2f} s)")

    def total_s(self) -> float:
        return time.perf_counter() - self._started


async def _receive(ws: aiohttp.ClientWebSocketResponse) -> str:
    message = await ws.receive()
    if message.type is not aiohttp.WSMsgType.TEXT:
        raise DemoFailed(f"game: the server closed the socket ({ws.close_code})")
    return message.data


async def run_demo(
    settings: Settings, *, speed: float = 4.0, record: Path | None = None, out: Callable[[str], None] = print
) -> float:
    """Run the loop once; returns the total seconds. Raises ``DemoFailed`` naming the failed step."""
    steps = _Steps(out)
    out("phonepatch demo: offline speech (PocketSphinx + eSpeak NG), no network, no accounts")
    with ThreadPoolExecutor(2, thread_name_prefix="demo-caller") as executor:
        ears = caller_ears(executor)
        async with _server(settings) as address, aiohttp.ClientSession() as http:
            async with steps.step("server started and game connected", 30):
                game = await http.ws_connect(f"ws://{address}/game")
                await _receive(game)
                code = await _receive(game)
            out(f"      the game shows code {code}")
            phone = PhoneSimulator(http, f"ws://{address}/twilio", speed=speed)
            async with phone:
                caller = Caller(
                    phone,
                    executor=executor,
                    stt=ears,
                    meant_code=code,
                    say_on_hint=_retry_forms(code),
                    keys_after=2,
                    pool=settings.pool(),
                    report=lambda line: out(f"      {line}"),
                )
                listener = asyncio.create_task(caller.listen())
                try:
                    await _patch(steps, caller, game, code)
                    await _talk(steps, caller, game)
                    await _hear_reply(steps, caller, game, ears)
                finally:
                    listener.cancel()
                    await asyncio.gather(listener, return_exceptions=True)
                if record is not None:
                    write_wav(record, phone.recording_pcm())
                    out(f"      the caller's recording: {record}")
                await phone.hang_up()
            await game.close()
    return steps.total_s()


async def _patch(steps: _Steps, caller: Caller, game: aiohttp.ClientWebSocketResponse, code: str) -> None:
    async with steps.step("caller entered the code and was patched in", 90):
        await caller.say_code(spoken_forms(code)[0])
        connected = asyncio.create_task(_until_connected(game))
        ended = asyncio.create_task(caller.phone.closed.wait())
        try:
            await asyncio.wait([connected, ended], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (connected, ended):
                task.cancel()
            await asyncio.gather(connected, ended, return_exceptions=True)
        if not connected.done() or connected.cancelled():
            raise DemoFailed("entering the code: the server ended the call (too many tries)")


async def _until_connected(game: aiohttp.ClientWebSocketResponse) -> None:
    while await _receive(game) != "connected":
        pass


async def _talk(steps: _Steps, caller: Caller, game: aiohttp.ClientWebSocketResponse) -> None:
    async with steps.step("the game received the caller's words", 30):
        await caller.speak(CALLER_SENTENCE)
        while True:
            event = dg.parse_message(await _receive(game))
            if isinstance(event, Transcript) and event.is_final and event.text:
                caller.report(f"game hears: \"{event.text}\"")
                return


async def _hear_reply(steps: _Steps, caller: Caller, game: aiohttp.ClientWebSocketResponse, ears) -> None:
    async with steps.step("the caller heard the game's reply", 30):
        await game.send_str(GAME_REPLY)
        heard = await _next_heard_of(caller, "game")
    lines = [" ".join(normalize_words(line)) for line in (GAME_REPLY, *OTHER_LINES)]
    text = await transcribe(ears, heard.mulaw, lines)
    caller.report(f"caller's recording of the reply, transcribed: \"{text}\"")
    if text != lines[0]:
        raise DemoFailed(f"transcribing the reply: heard {text!r}, not the game's line")


async def _next_heard_of(caller: Caller, kind: str):
    seen = len(caller.heard)
    while True:
        for heard, heard_kind in caller.heard[seen:]:
            if heard_kind == kind:
                return heard
        seen = len(caller.heard)
        await asyncio.sleep(0.05)


def _retry_forms(code: str) -> tuple[str, ...]:
    """After the first try, digit by digit first: it is the form recognised best."""
    forms = spoken_forms(code)
    return (*forms[1:], forms[0])


def demo_settings(base: Settings) -> Settings:
    """The demo's own server: offline engines on a free loopback port."""
    speech = dataclasses.replace(base.speech, stt="pocketsphinx", tts="espeak", max_attempts=5)
    return dataclasses.replace(base, host="127.0.0.1", port=0, speech=speech)


def main_demo(base: Settings, *, speed: float, record: Path | None) -> int:
    try:
        total_s = asyncio.run(run_demo(demo_settings(base), speed=speed, record=record))
    except DemoFailed as failure:
        print(f"demo FAILED at step: {failure}", file=sys.stderr)
        return 1
    print(f"demo succeeded in {total_s:.1f} s")
    return 0
