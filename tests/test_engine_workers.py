"""Engines in worker processes: calls in order, errors carried back, a dead engine contained.

The engines here are real child processes started with ``spawn``; the PocketSphinx ones run the
real recogniser on eSpeak speech.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import pytest

from phonepatch.services.providers import build_stt
from phonepatch.shared.audio import frames_of, silence
from phonepatch.shared.config import Settings
from phonepatch.shared.errors import ProviderError
from phonepatch.shared.providers.espeak import synthesize_mulaw
from phonepatch.shared.providers.pocketsphinx import PocketSphinxProvider
from phonepatch.shared.providers.workers import ProcessWorker, WorkerGone
from phonepatch.shared.speech import Transcript

TIMEOUT_S = 20.0 * float(os.environ.get("PHONEPATCH_TEST_TIME_SCALE", "1"))


class Tally:
    """A toy engine with state, to see that calls run in order in one process of its own."""

    def __init__(self, start: int) -> None:
        self.total = start

    def add(self, amount: int) -> int:
        self.total += amount
        return self.total

    def pid(self) -> int:
        return os.getpid()

    def fail(self, message: str) -> None:
        raise KeyError(message)

    def unpicklable(self) -> object:
        return lambda: None

    def hang(self, seconds: float) -> None:
        time.sleep(seconds)


class Broken:
    def __init__(self) -> None:
        raise ValueError("no model here")


def process_is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie until its parent reaps it: it no longer runs.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(")")[-1].split()[0] == "Z"


async def wait_until(predicate, timeout_s: float = TIMEOUT_S) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.05)


@pytest.fixture
async def tally():
    worker = ProcessWorker(Tally, 10, name="tally")
    yield worker
    await worker.close()


class TestProcessWorker:
    async def test_calls_run_in_a_child_in_the_order_they_were_made(self, tally):
        assert await tally.call("pid") not in (None, os.getpid())
        totals = await asyncio.gather(*(tally.call("add", n) for n in range(1, 51)))
        assert totals == [10 + n * (n + 1) // 2 for n in range(1, 51)]

    async def test_an_engine_error_comes_back_as_itself_and_the_engine_goes_on(self, tally):
        with pytest.raises(KeyError, match="bad key"):
            await tally.call("fail", "bad key")
        with pytest.raises(RuntimeError, match="unpicklable"):
            await tally.call("unpicklable")
        assert await tally.call("add", 1) == 11

    async def test_a_factory_that_fails_fails_every_call(self):
        worker = ProcessWorker(Broken, name="broken")
        try:
            for _ in range(2):
                with pytest.raises(ValueError, match="no model here"):
                    await worker.call("anything")
            assert worker.alive
        finally:
            await worker.close()

    async def test_a_killed_child_makes_calls_raise_worker_gone(self, tally):
        pid = await tally.call("pid")
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(WorkerGone, match="exit code -9"):
            await tally.call("add", 1)
        assert not tally.alive
        with pytest.raises(WorkerGone):
            await tally.call("add", 1)

    async def test_a_hung_child_is_killed_and_its_calls_fail(self):
        worker = ProcessWorker(Tally, 0, name="hangs", call_timeout_s=0.5)
        try:
            pid = await worker.call("pid")
            with pytest.raises(WorkerGone, match="did not answer hang within 0.5 s"):
                await worker.call("hang", 60)
            assert process_is_gone(pid)
            with pytest.raises(WorkerGone):
                await worker.call("add", 1)
        finally:
            await worker.close()

    async def test_close_stops_the_child(self, tally):
        pid = await tally.call("pid")
        await tally.close()
        assert process_is_gone(pid)
        with pytest.raises(WorkerGone):
            await tally.call("add", 1)

    def test_a_child_exits_when_its_parent_is_killed(self, tmp_path):
        script = textwrap.dedent(
            """
            import asyncio, sys
            sys.path.insert(0, sys.argv[1])
            from test_engine_workers import Tally
            from phonepatch.shared.providers.workers import ProcessWorker

            async def main():
                worker = ProcessWorker(Tally, 0, name="orphan")
                print(await worker.call("pid"), flush=True)
                await asyncio.sleep(60)

            if __name__ == "__main__":
                asyncio.run(main())
            """
        )
        path = tmp_path / "parent.py"
        path.write_text(script)
        parent = subprocess.Popen([sys.executable, str(path), os.path.dirname(__file__)], stdout=subprocess.PIPE, text=True)
        try:
            child = int(parent.stdout.readline())
            parent.kill()
            parent.wait(timeout=TIMEOUT_S)
            deadline = time.monotonic() + TIMEOUT_S
            while not process_is_gone(child) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert process_is_gone(child)
        finally:
            parent.kill()
            parent.stdout.close()

    async def test_sigint_to_the_group_leaves_the_child_to_its_parent(self, tally):
        pid = await tally.call("pid")
        os.kill(pid, signal.SIGINT)  # what Ctrl-C in a terminal sends to every process of the group
        assert await tally.call("add", 5) == 15


async def say(session, text: str) -> None:
    for frame in frames_of(silence(500) + synthesize_mulaw(text) + silence(1000)):
        await session.send_audio(frame)


class TestEngineProcess:
    async def test_a_killed_engine_ends_its_session_and_the_next_call_gets_a_new_engine(self):
        provider = PocketSphinxProvider(processes=1)
        try:
            await provider.warm_up()
            (first,) = provider.workers
            async with provider.session(call_sid="CA1") as session:
                await session.expect(["forty two", "seventeen"])
                os.kill(first.pid, signal.SIGKILL)
                with pytest.raises(ProviderError, match="engine process stopped"):
                    async with asyncio.timeout(TIMEOUT_S):
                        await say(session, "forty two")
                        async for _ in session.events():
                            pass
            async with provider.session(call_sid="CA2") as session:
                (second,) = provider.workers
                assert second is not first and second.alive
                await session.expect(["forty two", "seventeen"])
                async with asyncio.timeout(TIMEOUT_S):
                    await say(session, "seventeen")
                    await session.finish()
                    finals = [event.text async for event in session.events() if isinstance(event, Transcript) and event.is_final]
            assert finals == ["seventeen"]
        finally:
            await provider.close()
        assert process_is_gone(second.pid)

    async def test_a_call_gone_while_its_session_opens_leaves_nothing_in_the_engine(self):
        provider = PocketSphinxProvider(processes=1)  # not warmed: the open builds a decoder first
        try:
            (worker,) = provider.workers

            async def open_session() -> None:
                async with provider.session(call_sid="CA1"):
                    await asyncio.sleep(60)

            opening = asyncio.create_task(open_session())
            await asyncio.sleep(0.1)  # the open is under way in the engine
            opening.cancel()
            await asyncio.gather(opening, return_exceptions=True)
            async with asyncio.timeout(TIMEOUT_S):
                while await worker.call("open_sessions"):
                    await asyncio.sleep(0.05)
        finally:
            await provider.close()

    async def test_calls_spread_over_the_engine_processes(self):
        provider = PocketSphinxProvider(processes=2)
        try:
            async with provider.session(call_sid="CA1"), provider.session(call_sid="CA2"):
                pids = {worker.pid for worker in provider.workers}
                assert len(pids) == 2
                # Each open session holds a recogniser in a different process.
                assert [await worker.call("open_sessions") for worker in provider.workers] == [1, 1]
        finally:
            await provider.close()


class TestChoice:
    @pytest.mark.parametrize(("processes", "kind"), [(0, "ThreadWorker"), (2, "ProcessWorker")])
    async def test_the_setting_picks_threads_or_processes(self, processes, kind):
        base = Settings()
        settings = dataclasses.replace(base, speech=dataclasses.replace(base.speech, stt="pocketsphinx", stt_processes=processes))
        with ThreadPoolExecutor(1) as executor:
            async with aiohttp.ClientSession() as http:
                stt = build_stt(settings, executor=executor, http=http)
                try:
                    assert [type(worker).__name__ for worker in stt.workers] == [kind] * max(1, processes)
                finally:
                    await stt.close()
