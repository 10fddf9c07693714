"""The bus contract: every backend passes this suite unchanged."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from phonepatch.shared.bus import Bus, MemoryBus, SessionQueue
from phonepatch.shared.bus.redis import RedisBus, Timing, connect_redis
from phonepatch.shared.config import RedisSettings
from phonepatch.shared.bus.events import BusGap, CallConnected, CallEnded, GameLeft, GameText, TranscriptReady
from phonepatch.shared.errors import PoolExhaustedError, UnknownCodeError
from phonepatch.shared.protocol import deepgram as dg
from phonepatch.shared.speech import Transcript
from redis_server import RedisCluster3, RedisSentinel, RedisServer

CODES = ("1", "2", "3")
FAST = Timing(restore_wait_s=0.2, retry_cap_s=0.1)  # a new pool settles at once in tests


def _running(server: RedisServer | RedisCluster3 | RedisSentinel) -> Iterator[str]:
    server.start()
    try:
        yield server.url
    finally:
        server.close()


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    yield from _running(RedisServer())


@pytest.fixture(scope="module")
def cluster_url() -> Iterator[str]:
    yield from _running(RedisCluster3())


@pytest.fixture(scope="module")
def sentinel_url() -> Iterator[str]:
    yield from _running(RedisSentinel())


_URL_FIXTURES = {"redis": "redis_url", "redis-cluster": "cluster_url", "redis-sentinel": "sentinel_url"}


@pytest.fixture(params=["memory", "redis", "redis-cluster", "redis-sentinel"])
async def make_bus(request) -> AsyncIterator[Callable[[tuple[str, ...]], Awaitable[Bus]]]:
    """Factory of buses over a given pool; each bus is closed after the test. Redis buses of one
    test share a prefix of their own, as replicas of one deployment do."""
    made: list[Bus] = []
    prefix = f"test{next(_PREFIXES)}"

    async def make(codes: tuple[str, ...] = CODES) -> Bus:
        if request.param == "memory":
            made.append(MemoryBus(codes))
        else:
            url = request.getfixturevalue(_URL_FIXTURES[request.param])
            made.append(await RedisBus.start(connect_redis(url), codes, RedisSettings(prefix=prefix, lease_ttl_s=1.0, heartbeat_s=0.1, sweep_s=0.2, claim_ttl_s=1.0), timing=FAST))
        return made[-1]

    yield make
    for bus in made:
        await bus.close()


_PREFIXES = itertools.count()


async def until(condition: Callable[[], bool], timeout_s: float = 2.0) -> None:
    """Wait for what a backend delivers in the background (another process's publish)."""
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.005)


@pytest.fixture
async def bus(make_bus) -> Bus:
    return await make_bus()


def transcript(text: str, *, is_final: bool = True) -> Transcript:
    return Transcript(text=text, is_final=is_final)


async def next_event(queue: SessionQueue, timeout_s: float = 2.0):
    async with asyncio.timeout(timeout_s):
        return await queue.get()


class TestPool:
    async def test_takes_every_code_once_then_reports_exhaustion(self, bus):
        taken = {await bus.take_code() for _ in CODES}
        assert taken == set(CODES)
        assert await bus.live_codes() == frozenset(CODES)
        with pytest.raises(PoolExhaustedError):
            await bus.take_code()

    async def test_returned_code_can_be_taken_again(self, bus):
        codes = [await bus.take_code() for _ in CODES]
        await bus.return_code(codes[0])
        assert codes[0] not in await bus.live_codes()
        assert await bus.take_code() == codes[0]

    async def test_returning_twice_does_not_duplicate_a_code(self, bus):
        code = await bus.take_code()
        await bus.return_code(code)
        await bus.return_code(code)
        taken = [await bus.take_code() for _ in CODES]
        assert sorted(taken) == sorted(CODES)
        with pytest.raises(PoolExhaustedError):
            await bus.take_code()

    async def test_returning_a_code_never_taken_changes_nothing(self, bus):
        await bus.return_code("not-a-code")
        taken = {await bus.take_code() for _ in CODES}
        assert taken == set(CODES)
        with pytest.raises(PoolExhaustedError):
            await bus.take_code()


class TestClaims:
    async def test_unknown_code_cannot_be_claimed(self, bus):
        with pytest.raises(UnknownCodeError):
            await bus.claim_game("1", "CA-one")

    async def test_one_caller_per_game(self, bus):
        code = await bus.take_code()
        assert await bus.claim_game(code, "CA-one")
        assert not await bus.claim_game(code, "CA-two")
        assert await bus.claim_game(code, "CA-one")  # idempotent for the holder

    async def test_release_only_by_the_holder(self, bus):
        code = await bus.take_code()
        await bus.claim_game(code, "CA-one")
        assert await bus.release_claim(code, "CA-two") is None
        assert await bus.release_claim(code, "CA-one") == "CA-one"
        assert await bus.release_claim(code, "CA-one") is None
        assert await bus.claim_game(code, "CA-two")

    async def test_the_holder_of_a_claim_can_be_read(self, bus):
        code = await bus.take_code()
        assert await bus.claim_holder(code) is None
        await bus.claim_game(code, "CA-1")
        assert await bus.claim_holder(code) == "CA-1"
        await bus.release_claim(code, "CA-1")
        assert await bus.claim_holder(code) is None

    async def test_game_side_release_reports_the_holder(self, bus):
        code = await bus.take_code()
        assert await bus.release_claim(code) is None
        await bus.claim_game(code, "CA-one")
        assert await bus.release_claim(code) == "CA-one"

    async def test_returning_the_code_drops_its_claim(self, bus):
        code = await bus.take_code()
        await bus.claim_game(code, "CA-one")
        await bus.return_code(code)
        with pytest.raises(UnknownCodeError):
            await bus.claim_game(code, "CA-two")
        while (again := await bus.take_code()) != code:
            pass
        assert await bus.claim_game(again, "CA-two")

    async def test_a_leaving_game_names_its_caller_and_frees_code_and_claim(self, bus):
        unclaimed, claimed = await bus.take_code(), await bus.take_code()
        await bus.claim_game(claimed, "CA-one")
        assert await bus.leave_game(unclaimed) is None
        assert await bus.leave_game(claimed) == "CA-one"
        assert claimed not in await bus.live_codes() and unclaimed not in await bus.live_codes()
        with pytest.raises(UnknownCodeError):
            await bus.claim_game(claimed, "CA-two")
        assert await bus.leave_game(claimed) is None  # a second leave changes nothing
        while (again := await bus.take_code()) != claimed:
            pass
        assert await bus.claim_game(again, "CA-two")


class TestChannels:
    async def test_game_channel_reaches_only_its_game(self, bus):
        async with bus.subscribe_game("1", depth=8) as one, bus.subscribe_game("2", depth=8) as two:
            await bus.publish_to_game("1", CallConnected("CA-one"))
            await bus.publish_to_game("2", CallEnded("CA-two", "hung up"))
            assert await next_event(one) == CallConnected("CA-one")
            assert await next_event(two) == CallEnded("CA-two", "hung up")
            assert len(one) == len(two) == 0

    async def test_subscriptions_asked_together_each_deliver(self, make_bus):
        """Several sessions subscribing in one turn (one command on one server; one per channel
        where channels are sharded, a command naming one slot)."""
        codes = tuple(str(n) for n in range(12))  # on 3 masters, some share a node
        bus = await make_bus(codes)
        async with contextlib.AsyncExitStack() as stack:
            inboxes = await asyncio.gather(*(stack.enter_async_context(bus.subscribe_game(code, depth=4)) for code in codes))
            for code in codes:
                await bus.publish_to_game(code, CallConnected(f"CA-{code}"))
            for code, inbox in zip(codes, inboxes, strict=True):
                assert await next_event(inbox) == CallConnected(f"CA-{code}")

    async def test_call_channel_reaches_only_its_call(self, bus):
        async with bus.subscribe_call("CA-one", depth=8) as one, bus.subscribe_call("CA-two", depth=8) as two:
            await bus.publish_to_call("CA-two", GameText(code="2", text="hello"))
            await bus.publish_to_call("CA-one", GameLeft(code="1", reason="game disconnected"))
            assert await next_event(one) == GameLeft(code="1", reason="game disconnected")
            assert await next_event(two) == GameText(code="2", text="hello")

    async def test_order_is_kept(self, bus):
        async with bus.subscribe_game("1", depth=64) as queue:
            for n in range(50):
                await bus.publish_to_game("1", TranscriptReady("CA-one", transcript(str(n))))
            received = [(await next_event(queue)).transcript.text for _ in range(50)]
        assert received == [str(n) for n in range(50)]

    async def test_a_deepgram_result_arrives_whole_with_its_own_json(self, bus):
        said = dg.parse_message(dg.encode_results(transcript="Four two, please.", is_final=True, duration_s=1.0))
        heard = dg.parse_message(dg.encode_results(transcript="four", is_final=False, duration_s=0.5))
        async with bus.subscribe_game("1", depth=8) as queue:
            await bus.publish_to_game("1", TranscriptReady("CA-one", said))
            await bus.publish_to_game("1", TranscriptReady("CA-one", heard))
            final, interim = await next_event(queue), await next_event(queue)
        assert (final.is_final, final.raw_json) == (True, said.raw_json)
        assert (interim.is_final, interim.raw_json) == (False, heard.raw_json)
        assert final.transcript == said and len(final.transcript.words) == 3
        assert final == TranscriptReady("CA-one", said)

    async def test_nothing_arrives_after_unsubscribing(self, bus):
        async with bus.subscribe_game("1", depth=8) as queue:
            pass
        await bus.publish_to_game("1", CallConnected("CA-one"))  # nobody listens: not an error
        assert len(queue) == 0

    async def test_full_queue_drops_interim_results_first(self, bus):
        async with bus.subscribe_game("1", depth=3) as queue:
            await bus.publish_to_game("1", TranscriptReady("CA", transcript("interim", is_final=False)))
            for text in ("a", "b", "c"):
                await bus.publish_to_game("1", TranscriptReady("CA", transcript(text)))
            await until(lambda: queue.dropped == 1)
            texts = [(await next_event(queue)).transcript.text for _ in range(3)]
        assert texts == ["a", "b", "c"]

    async def test_overflow_of_finals_is_reported_as_a_gap(self, bus):
        async with bus.subscribe_game("1", depth=2) as queue:
            for text in ("a", "b", "c", "d"):
                await bus.publish_to_game("1", TranscriptReady("CA", transcript(text)))
            await until(lambda: queue.dropped == 2)
            first = await next_event(queue)
            second = await next_event(queue)
        assert first.transcript.text == "a"
        assert isinstance(second, BusGap)


class TestSessionQueue:
    async def test_get_waits_for_delivery(self):
        queue: SessionQueue[str] = SessionQueue(4)
        waiter = asyncio.create_task(queue.get())
        await asyncio.sleep(0)
        assert not waiter.done()
        queue.deliver("hello")
        assert await asyncio.wait_for(waiter, 1.0) == "hello"

    def test_depth_must_be_positive(self):
        with pytest.raises(ValueError):
            SessionQueue(0)
