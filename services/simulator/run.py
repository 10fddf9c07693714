"""``phonepatch call``: one simulated call from the command line."""

from __future__ import annotations

import argparse
import asyncio
from concurrent.futures import ThreadPoolExecutor

import aiohttp

from phonepatch.services.simulator.caller import Caller, Keys, Pause, PlayWav, SayText, Step, caller_ears
from phonepatch.services.simulator.phone import PhoneSimulator
from phonepatch.shared.audio import write_wav

__all__ = ["run_call", "steps_from"]

_STEP_TYPES = {"say": SayText, "wav": PlayWav, "keys": Keys, "pause": Pause}


def steps_from(pairs: list[tuple[str, object]] | None) -> list[Step]:
    return [_STEP_TYPES[kind](value) for kind, value in pairs or []]


async def run_call(args: argparse.Namespace) -> int:
    """Dial, run the steps, linger, hang up; exit 1 if the server ended the call or refused it."""
    steps = steps_from(getattr(args, "steps", None))
    with ThreadPoolExecutor(2, thread_name_prefix="caller") as executor:
        stt = None
        if args.confirm:
            stt = caller_ears(executor)
        async with aiohttp.ClientSession() as http:
            try:
                phone = PhoneSimulator(http, args.url, speed=args.speed)
                await phone.__aenter__()
            except (aiohttp.ClientError, OSError) as error:
                print(f"phonepatch call: cannot connect to {args.url}: {error}")
                return 1
            try:
                caller = Caller(phone, executor=executor, stt=stt, meant_code=args.confirm, voice=args.voice, rate_wpm=args.rate)
                listener = asyncio.create_task(caller.listen())
                try:
                    await caller.run_steps(steps)
                    await asyncio.wait([asyncio.ensure_future(phone.closed.wait())], timeout=args.linger)
                finally:
                    listener.cancel()
                    await asyncio.gather(listener, return_exceptions=True)
                ended_by_server = phone.closed.is_set()
                await phone.hang_up()
            finally:
                await phone.__aexit__(None, None, None)
        if args.record:
            write_wav(args.record, phone.recording_pcm())
            print(f"recorded what the caller heard: {args.record}")
    if ended_by_server:
        print("the server ended the call")
        return 1
    return 0
