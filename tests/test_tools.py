"""The phone simulator and the terminal client, against a real server."""

from __future__ import annotations

import asyncio
import io
import sys
import wave

import numpy as np
from structlog.testing import capture_logs

from peers import TIMEOUT_S
from phonepatch.services.simulator.terminal import describe, run_client


async def run_tool(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "phonepatch.services", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(6 * TIMEOUT_S):
            output, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return process.returncode, output.decode()


class TestPhoneSimulator:
    async def test_keyed_code_patches_and_the_prompt_is_recorded(self, server, tmp_path):
        game = await server.game()
        url = server.base_url.replace("http", "ws") + "/twilio"
        recording = tmp_path / "heard.wav"
        tool = asyncio.create_task(
            run_tool("call", url, "--pause", "0.5", "--keys", game.code + "#", "--speed", "4", "--linger", "1", "--record", str(recording))
        )
        assert await game.receive_text() == "connected"
        status, output = await tool
        assert status == 0, output
        assert "caller presses" in output and "caller hears: prompt" in output
        with wave.open(str(recording)) as wav:
            assert wav.getframerate() == 8000
            samples = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
        assert len(samples) > 8000 and np.abs(samples).max() > 3000  # the spoken prompt, not silence

    async def test_unreachable_server_is_a_clear_error(self):
        status, output = await run_tool("call", "ws://127.0.0.1:9/twilio", "--keys", "1#")
        assert status == 1 and "cannot connect" in output


class TestTerminalClient:
    def test_describe_v0_messages(self):
        assert describe("+15550001111", position=0) == "Call +15550001111"
        assert "Your code:  42" in describe("42", position=1)
        assert "caller is on the line" in describe("connected", position=2)
        results = '{"type":"Results","is_final":true,"channel":{"alternatives":[{"transcript":"hi there"}]}}'
        assert describe(results, position=3) == "caller: hi there"

    async def test_shows_code_prints_words_and_sends_lines(self, server):
        out = io.StringIO()
        lines: asyncio.Queue[str] = asyncio.Queue()
        url = server.base_url.replace("http", "ws") + "/game"
        client = asyncio.create_task(run_client(url, out=out, lines=lines))
        try:
            async with asyncio.timeout(TIMEOUT_S):
                while "Your code" not in out.getvalue():
                    await asyncio.sleep(0.01)
            code = out.getvalue().split("Your code:")[1].split()[0]
            call = await server.call()
            await call.say(code)
            await call.say("good evening")
            async with asyncio.timeout(TIMEOUT_S):
                while "caller: good evening" not in out.getvalue():
                    await asyncio.sleep(0.01)
            with capture_logs() as logs:
                lines.put_nowait("Welcome, caller.\n")
                async with asyncio.timeout(TIMEOUT_S):
                    while not any(entry["event"] == "game_text_received" for entry in logs):
                        await asyncio.sleep(0.01)
        finally:
            client.cancel()
            await asyncio.gather(client, return_exceptions=True)


class TestReadBackCandidates:
    def test_the_meant_code_comes_first_then_every_code_one_digit_away(self):
        from phonepatch.services.simulator.caller import readback_candidates, readback_ears

        candidates = readback_candidates("9")  # codes up to two edits away
        assert candidates[0].startswith("i heard nine")
        # a longer read-back must be hearable, or the caller would confirm the wrong game
        assert {
            "i heard ninety nine that is nine nine",
            "i heard nineteen that is one nine",
            "i heard ninety that is nine zero",
        } <= set(candidates)
        assert candidates[-1] == "say yes or press pound to join"
        ears = readback_ears("42")
        assert {"i heard forty two that is four two", "was it forty two that is four two"} <= ears.meant
        assert {"i heard four", "i heard four hundred twenty two that is four two two"} <= ears.others
        # heard as one question, its number words and its digits must agree: no loose pieces
        assert "that is four two" not in ears.phrases and "i heard forty two" not in ears.phrases

    def test_a_caller_who_knows_the_pool_listens_for_its_codes_only(self):
        from phonepatch.services.simulator.caller import readback_ears
        from phonepatch.shared.codes import generated_codes

        anywhere = readback_ears("4270")
        assert "i heard four two seven zero five" in anywhere.others
        assert "i heard four hundred twenty seven that is four two seven" in anywhere.others
        known = readback_ears("4270", generated_codes(4))
        heard_codes = {
            phrase.removeprefix("i heard ") for phrase in known.others if phrase.startswith("i heard ") and "say" not in phrase
        }
        assert heard_codes and all(len(code.split()) == 4 for code in heard_codes)
        assert "i heard four hundred twenty seven that is four two seven" not in known.others
        assert known.meant == anywhere.meant

    def test_two_edits_away_and_the_pool_s_word_codes_are_heard_too(self):
        from phonepatch.services.simulator.caller import readback_ears

        # 40 is two edits from 14: "forty, that is four zero" must not be heard as 14
        assert "i heard forty that is four zero" in readback_ears("14").others
        assert "i heard pizza" in readback_ears("42", ["42", "pizza", "banana"]).others

    def test_the_caller_confirms_only_what_names_the_meant_code_alone(self):
        from phonepatch.services.simulator.caller import readback_ears

        ears = readback_ears("42")
        assert ears.confirms(["i heard forty two that is four two", "say yes or press pound to join"])
        assert ears.confirms(["was it forty two that is four two say yes or press pound to join"])
        assert not ears.confirms(["i heard forty three that is four three"])
        assert not ears.confirms(["i heard forty two that is four two", "i heard forty three that is four three"])
        assert not ears.confirms(["say yes or press pound to join"])
