"""What only the Redis bus has: leases, the sweeper, crashes, cancellation, shared Redis, URLs."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
from collections.abc import AsyncIterator, Iterator

import orjson
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from phonepatch.shared.bus import wire
from phonepatch.shared.bus.events import BusGap, CallConnected, CallEnded, CodeLost, GameLeft
from phonepatch.shared.bus.keys import Keys
from phonepatch.shared.bus.redis import RedisBus, Timing, connect_redis
from phonepatch.shared.config import RedisSettings
from phonepatch.shared.errors import BusError, ConfigError, PoolExhaustedError
from redis_server import RedisServer

CODES = tuple(str(n) for n in range(8))
FAST = Timing(restore_wait_s=0.2, retry_cap_s=0.1)  # a new pool settles at once in tests
_PREFIXES = itertools.count()


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.close()


def quick(prefix: str, **overrides: float) -> RedisSettings:
    timing = {"lease_ttl_s": 1.0, "heartbeat_s": 0.05, "sweep_s": 0.1, "claim_ttl_s": 1.0, **overrides}
    return RedisSettings(prefix=prefix, **timing)


@pytest.fixture
async def prefix() -> str:
    return f"rb{next(_PREFIXES)}"


@pytest.fixture
async def client(server) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(server.url)
    try:
        yield client
    finally:
        await client.aclose()


async def pool_state(client: aioredis.Redis, keys: Keys) -> tuple[set[str], dict[str, bytes]]:
    free = {member.decode() for member in await client.smembers(keys.pool)}
    values = await client.mget([keys.lease(code) for code in CODES])
    return free, {code: value for code, value in zip(CODES, values, strict=True) if value is not None}


def check_conserved(free: set[str], leases: dict[str, bytes]) -> None:
    assert not free & set(leases), "a leased code is in the free pool"
    assert free | set(leases) == set(CODES), "a code was lost"


class TestLeases:
    async def test_a_lost_lease_closes_the_game_and_the_code_is_not_given_back_twice(self, server, client, prefix):
        bus = await RedisBus.start(connect_redis(server.url), CODES, quick(prefix), timing=FAST)
        try:
            code = await bus.take_code()
            async with bus.subscribe_game(code, depth=8) as inbox:
                # Another holder took the code while this process was cut off (as after expiry).
                await client.set(Keys(prefix).lease(code), "someone-else")
                async with asyncio.timeout(2):
                    assert await inbox.get() == CodeLost(code)
            await client.set(Keys(prefix).claim(code), "CA-of-the-new-holder")
            assert await bus.leave_game(code) is None  # not this process's any more: nothing is given back
            assert code not in {m.decode() for m in await client.smembers(Keys(prefix).pool)}
            assert await client.get(Keys(prefix).claim(code)) == b"CA-of-the-new-holder"
        finally:
            await bus.close()

    async def test_a_lease_that_expired_is_not_set_again_and_its_game_is_told(self, server, client, prefix):
        bus = await RedisBus.start(connect_redis(server.url), CODES, quick(prefix), timing=FAST)
        try:
            code = await bus.take_code()
            async with bus.subscribe_game(code, depth=8) as inbox:
                await client.delete(Keys(prefix).lease(code))  # as when it expires, Redis keeping its data
                async with asyncio.timeout(2):
                    assert await inbox.get() == CodeLost(code)
            assert await client.get(Keys(prefix).lease(code)) is None
        finally:
            await bus.close()

    async def test_a_lease_redis_lost_with_its_data_is_set_again(self, server, client, prefix):
        bus = await RedisBus.start(connect_redis(server.url), CODES, quick(prefix), timing=FAST)
        try:
            code = await bus.take_code()
            async with bus.subscribe_game(code, depth=8) as inbox:
                await client.flushall()  # a restart without persistence, as far as keys go
                async with asyncio.timeout(2):
                    while await client.get(Keys(prefix).lease(code)) is None:
                        await asyncio.sleep(0.02)
                assert len(inbox) == 0  # the game was not told anything
        finally:
            await bus.close()

    async def test_renewals_racing_returns_leave_no_lease_behind(self, server, client, prefix):
        # Heartbeats every 5 ms while games come and go: a renewal that lands after its code was
        # given back must not set the lease again.
        bus = await RedisBus.start(connect_redis(server.url), CODES, quick(prefix, heartbeat_s=0.005), timing=FAST)
        try:
            for _ in range(60):
                codes = [await bus.take_code() for _ in range(5)]
                await asyncio.gather(*(bus.return_code(code) for code in codes))
            await asyncio.sleep(0.1)
            free, leases = await pool_state(client, Keys(prefix))
            assert not leases and free == set(CODES)
        finally:
            await bus.close()

    async def test_give_backs_right_after_a_restart_go_through_on_new_connections(self, prefix):
        """Redis restarted under a pool of connections: the first burst of give-backs is sent
        again on new connections instead of failing on the dead ones."""
        restarting = RedisServer().start()
        bus = await RedisBus.start(connect_redis(restarting.url), CODES, quick(prefix, heartbeat_s=60), timing=FAST)
        try:
            codes = await asyncio.gather(*(bus.take_code() for _ in range(5)))
            restarting.stop()
            restarting.start()
            outcomes = await asyncio.gather(*(bus.leave_game(code) for code in codes), return_exceptions=True)
            assert outcomes == [None] * len(codes)
            probe = aioredis.Redis.from_url(restarting.url)
            try:
                free = {member.decode() for member in await probe.smembers(Keys(prefix).pool)}
                assert set(codes) <= free
            finally:
                await probe.aclose()
        finally:
            await bus.close()
            restarting.close()

    async def test_close_gives_back_every_code_still_held(self, server, client, prefix):
        bus = await RedisBus.start(connect_redis(server.url), CODES, quick(prefix), timing=FAST)
        for _ in range(3):
            await bus.take_code()
        await bus.close()
        free, leases = await pool_state(client, Keys(prefix))
        assert free == set(CODES) and not leases

    async def test_replicas_starting_together_seed_each_code_once(self, server, client, prefix):
        buses = await asyncio.gather(*(RedisBus.start(connect_redis(server.url), CODES, quick(prefix), timing=FAST) for _ in range(4)))
        try:
            taken = [await buses[n % 4].take_code() for n in range(len(CODES))]
            assert sorted(taken) == sorted(CODES)
            with pytest.raises(PoolExhaustedError):
                await buses[0].take_code()
        finally:
            for bus in buses:
                await bus.close()

    async def test_deployments_with_their_own_prefix_share_one_redis_apart(self, server, prefix):
        one = await RedisBus.start(connect_redis(server.url), ("1",), quick(prefix + "a"), timing=FAST)
        two = await RedisBus.start(connect_redis(server.url), ("1",), quick(prefix + "b"), timing=FAST)
        try:
            assert await one.take_code() == await two.take_code() == "1"
            async with one.subscribe_game("1", depth=4) as inbox:
                await two.publish_to_game("1", CallConnected("CA-other-deployment"))
                await one.publish_to_game("1", CallConnected("CA-ours"))
                async with asyncio.timeout(2):
                    assert await inbox.get() == CallConnected("CA-ours")
        finally:
            await one.close()
            await two.close()

    async def test_a_code_of_another_configuration_in_the_pool_is_never_given_nor_kept(self, server, client, prefix):
        bus = await RedisBus.start(connect_redis(server.url), CODES, quick(prefix), timing=FAST)
        try:
            await client.sadd(Keys(prefix).pool, "not-ours")
            taken = [await bus.take_code() for _ in range(len(CODES))]
            assert sorted(taken) == sorted(CODES)
            with pytest.raises(PoolExhaustedError):
                await bus.take_code()
            await asyncio.gather(*bus._background)  # noqa: SLF001 - the dropped lease
            assert await client.get(Keys(prefix).lease("not-ours")) is None
        finally:
            await bus.close()

    async def test_live_codes_within_their_max_age_share_one_read_of_the_pool(self, server, client, prefix):
        bus, other = [await RedisBus.start(connect_redis(server.url), CODES, quick(prefix, sweep_s=60), timing=FAST) for _ in range(2)]
        try:
            await client.config_resetstat()
            answers = await asyncio.gather(*(bus.live_codes(max_age_s=60) for _ in range(10)))
            stats = await client.info("commandstats")
            assert stats["cmdstat_smembers"]["calls"] == 1
            assert all(answer == frozenset() for answer in answers)
            code = await other.take_code()
            assert await bus.live_codes(max_age_s=60) == frozenset()  # old enough to do
            assert await bus.live_codes() == {code}  # a fresh answer
            assert await bus.live_codes(max_age_s=60) == {code}  # and it is kept
        finally:
            await bus.close()
            await other.close()

    async def test_a_foreign_message_on_a_channel_is_dropped(self, server, client, prefix):
        bus = await RedisBus.start(connect_redis(server.url), CODES, quick(prefix), timing=FAST)
        try:
            async with bus.subscribe_game("1", depth=4) as inbox:
                await client.publish(Keys(prefix).game_channel("1"), b"\xff not json")
                await client.publish(Keys(prefix).game_channel("1"), b'{"t": "mystery"}')
                await bus.publish_to_game("1", CallConnected("CA-after"))
                async with asyncio.timeout(2):
                    assert await inbox.get() == CallConnected("CA-after")
        finally:
            await bus.close()


    async def test_a_result_with_its_own_json_is_read_no_further_until_asked(self, server, client, prefix):
        """A result carrying the provider's JSON reaches its session with that JSON and whether it
        is final; the rest is read when asked for, and then a corrupt rest is a BusError."""
        bus = await RedisBus.start(connect_redis(server.url), CODES, quick(prefix), timing=FAST)
        raw = '{"type": "Results", "is_final": true}'
        fields = {"text": "x", "final": True, "speech_final": True, "confidence": 0.9, "words": [["only two"]],
                  "start": 0.0, "duration": 1.0, "alternatives": [], "raw": raw}  # fmt: skip
        try:
            async with bus.subscribe_game("1", depth=4) as inbox:
                await client.publish(Keys(prefix).game_channel("1"), orjson.dumps({"t": "transcript", "call": "CA", "tr": fields}))
                async with asyncio.timeout(2):
                    event = await inbox.get()
            assert (event.call_sid, event.is_final, event.raw_json) == ("CA", True, raw)
            with pytest.raises(BusError, match="unreadable"):
                event.transcript
        finally:
            await bus.close()

    async def test_a_burst_read_at_once_reaches_every_session_whole_and_in_order(self, server, client, prefix):
        """Messages that arrive in one read are taken from the parser together (the reader's
        fast path): none is lost, reordered or sent to another channel's session, and a
        subscription confirmed behind them still completes."""
        bus = await RedisBus.start(connect_redis(server.url), CODES, quick(prefix), timing=FAST)
        keys = Keys(prefix)
        try:
            async with bus.subscribe_game("1", depth=1000) as one, bus.subscribe_game("2", depth=1000) as two:
                async with client.pipeline(transaction=False) as pipe:
                    for n in range(300):
                        pipe.publish(keys.game_channel(str(1 + n % 2)), wire.encode(CallConnected(f"CA-{n}")))
                    await pipe.execute()
                async with bus.subscribe_game("3", depth=4) as three:
                    await client.publish(keys.game_channel("3"), wire.encode(CallConnected("CA-three")))
                    async with asyncio.timeout(5):
                        assert await three.get() == CallConnected("CA-three")
                        got_one = [await one.get() for _ in range(150)]
                        got_two = [await two.get() for _ in range(150)]
                assert got_one == [CallConnected(f"CA-{n}") for n in range(0, 300, 2)]
                assert got_two == [CallConnected(f"CA-{n}") for n in range(1, 300, 2)]
                assert len(one) == len(two) == 0
        finally:
            await bus.close()


    async def test_a_refused_subscription_is_a_bus_error_and_the_reader_goes_on(self, server, client, prefix):
        """An error reply on the pub/sub connection (here Redis's ACL refuses one channel) fails
        that subscription only: the reader keeps routing the others."""
        keys = Keys(prefix)
        user = f"limited-{prefix}"
        await client.execute_command(
            "ACL", "SETUSER", user, "on", ">secret", "~*", "+@all", "resetchannels", f"&{keys.game_channel('1')}"
        )
        url = f"redis://{user}:secret@127.0.0.1:{server.port}/0"
        bus = await RedisBus.start(connect_redis(url), CODES, quick(prefix), timing=FAST)
        try:
            async with bus.subscribe_game("1", depth=4) as inbox:
                with pytest.raises(BusError, match="not confirmed"):
                    async with bus.subscribe_game("2", depth=4):
                        pass
                await client.publish(keys.game_channel("1"), wire.encode(CallConnected("CA-still")))
                async with asyncio.timeout(2):
                    assert await inbox.get() == CallConnected("CA-still")
        finally:
            await bus.close()
            await client.execute_command("ACL", "DELUSER", user)


    async def test_scripts_redis_forgot_are_loaded_again(self, server, client, prefix):
        """Takes and give-backs run batched by their scripts' digests; a Redis that lost its
        scripts (SCRIPT FLUSH, as after a restart) has them loaded again, and nothing is lost."""
        bus = await RedisBus.start(connect_redis(server.url), CODES, quick(prefix), timing=FAST)
        try:
            await client.script_flush()
            codes = await asyncio.gather(*(bus.take_code() for _ in range(3)))
            await client.script_flush()
            await asyncio.gather(*(bus.leave_game(code) for code in codes))
            free, leases = await pool_state(client, Keys(prefix))
            assert free == set(CODES) and not leases
        finally:
            await bus.close()


    async def test_subscriptions_asked_together_are_all_kept_and_none_leaks(self, server, client, prefix):
        """(Un)subscriptions of one turn of the loop are sent together: a channel left and
        joined again before they go stays subscribed and delivers; one given up on before they
        go is never sent; and when every session has left, Redis holds no subscription."""
        bus = await RedisBus.start(connect_redis(server.url), CODES, quick(prefix), timing=FAST)
        keys = Keys(prefix)

        async def subscribers() -> dict[str, int]:
            channels = [keys.game_channel(code) for code in CODES]
            counts = await client.execute_command("PUBSUB", "NUMSUB", *channels)
            return {channel.decode(): count for channel, count in zip(counts[::2], counts[1::2]) if count}

        try:
            async with asyncio.timeout(5):
                async with contextlib.AsyncExitStack() as stack:
                    inboxes = await asyncio.gather(
                        *(stack.enter_async_context(bus.subscribe_game(code, depth=4)) for code in CODES)
                    )
                    assert len(await subscribers()) == len(CODES)
                # Left and joined again in one turn: nothing is sent, the subscription stays.
                async with bus.subscribe_game("1", depth=4) as again:
                    await client.publish(keys.game_channel("1"), wire.encode(CallConnected("CA-again")))
                    assert await again.get() == CallConnected("CA-again")
                    while set(await subscribers()) != {keys.game_channel("1")}:
                        await asyncio.sleep(0.01)
                # Given up on before it was sent.
                joining = asyncio.create_task(bus.subscribe_game("2", depth=4).__aenter__())
                await asyncio.sleep(0)
                joining.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await joining
                while await subscribers():
                    await asyncio.sleep(0.01)
            assert all(len(inbox) == 0 for inbox in inboxes)
        finally:
            await bus.close()


class TestClaims:
    async def test_a_claim_whose_game_died_is_dropped_and_its_call_told(self, server, client, prefix):
        """The game's process died (its lease lapsed): the heartbeat of the call's process finds
        the game gone, drops the claim and tells the call, sweeper or not."""
        games = await RedisBus.start(connect_redis(server.url), CODES, quick(prefix, sweep_s=60), timing=FAST)
        calls = await RedisBus.start(connect_redis(server.url), CODES, quick(prefix, sweep_s=60), timing=FAST)
        try:
            code = await games.take_code()
            async with calls.subscribe_call("CA-1", depth=8) as inbox:
                assert await calls.claim_game(code, "CA-1")
                games._leases.held.clear()  # noqa: SLF001 - a dead process renews nothing
                await client.delete(Keys(prefix).lease(code))  # and its lease lapsed
                async with asyncio.timeout(2):
                    assert await inbox.get() == GameLeft(code, "game lost")
            assert await client.get(Keys(prefix).claim(code)) is None
        finally:
            await games.close()
            await calls.close()

    async def test_the_sweeper_gives_an_orphan_back_without_its_claim_and_tells_the_call(self, server, client, prefix):
        keys = Keys(prefix)
        bus = await RedisBus.start(connect_redis(server.url), CODES, quick(prefix, heartbeat_s=60), timing=FAST)
        try:
            code = await bus.take_code()
            async with bus.subscribe_call("CA-2", depth=8) as inbox:
                await client.set(keys.claim(code), "CA-2")  # a call of another process
                bus._leases.held.clear()  # noqa: SLF001 - the game's process died
                await client.delete(keys.lease(code))
                await bus.sweep()
                async with asyncio.timeout(2):
                    assert await inbox.get() == GameLeft(code, "game lost")
            assert await client.get(keys.claim(code)) is None
            assert await client.sismember(keys.pool, code)
        finally:
            await bus.close()

    async def test_a_claim_released_while_redis_is_away_is_never_renewed_nor_set_again(self, server, prefix):
        """The call ended during an outage: it forgets the claim at once; once Redis is back the
        release goes through and the game is told; the claim is not set again after a restart."""
        restarting = RedisServer().start()
        bus = await RedisBus.start(connect_redis(restarting.url), CODES, quick(prefix), timing=FAST)
        try:
            code = await bus.take_code()
            assert await bus.claim_game(code, "CA-3")
            async with bus.subscribe_game(code, depth=8) as inbox:
                restarting.stop()
                with pytest.raises(BusError):
                    await bus.release_claim(code, "CA-3")
                restarting.start()
                async with asyncio.timeout(3):
                    while not isinstance(event := await inbox.get(), CallEnded):
                        assert isinstance(event, BusGap), event
                probe = aioredis.Redis.from_url(restarting.url)
                try:
                    assert await probe.get(Keys(prefix).lease(code)) is not None  # the game's, set again
                    assert await probe.get(Keys(prefix).claim(code)) is None
                finally:
                    await probe.aclose()
        finally:
            await bus.close()
            restarting.close()


class TestReader:
    async def test_this_redis_py_lets_the_reader_take_parsed_replies_at_once(self, server, prefix):
        """The reader's fast path reads redis-py's private names: this fails when an upgrade of
        redis-py moves them (the public path then runs alone, slower), so that it is noticed."""
        bus = await RedisBus.start(connect_redis(server.url), CODES, quick(prefix), timing=FAST)
        try:
            async with bus.subscribe_game("1", depth=4):
                assert bus.topology.links["server"].fast is True
        finally:
            await bus.close()

    async def test_without_the_private_path_the_public_one_delivers_everything(self, server, client, prefix):
        """A connection whose parser has no hiredis reader (redis-py's own parser here, as after
        an upgrade that moved it) is read one reply at a time, and nothing is lost."""
        from redis.asyncio.connection import _AsyncRESP2Parser

        url = server.url
        bus = await RedisBus.start(connect_redis(url, parser_class=_AsyncRESP2Parser), CODES, quick(prefix), timing=FAST)
        try:
            async with bus.subscribe_game("1", depth=256) as inbox:
                assert bus.topology.links["server"].fast is False
                sids = [f"CA-{n}" for n in range(100)]
                async with client.pipeline(transaction=False) as pipe:
                    for sid in sids:
                        pipe.publish(Keys(prefix).game_channel("1"), wire.encode(CallConnected(sid)))
                    await pipe.execute()
                async with asyncio.timeout(2):
                    assert [(await inbox.get()).call_sid for _ in sids] == sids
        finally:
            await bus.close()

    async def test_a_redis_restart_is_found_and_left_by_one_reader(self, server, client, prefix):
        """Redis gone and back: the link connects again within the backoff, subscribes again,
        tells the session of the gap, and delivers; never two readers on one connection."""
        restarting = RedisServer().start()
        bus = await RedisBus.start(connect_redis(restarting.url), CODES, quick(prefix), timing=FAST)
        try:
            async with bus.subscribe_game("1", depth=8) as inbox, bus.subscribe_call("CA-1", depth=8) as calls:
                restarting.stop()
                await asyncio.sleep(0.3)
                restarting.start()
                async with asyncio.timeout(2):
                    assert isinstance(await inbox.get(), BusGap) and isinstance(await calls.get(), BusGap)
                    await bus.publish_to_game("1", CallConnected("CA-back"))
                    assert await inbox.get() == CallConnected("CA-back")
                assert bus.topology.links["server"].connects == 2
        finally:
            await bus.close()
            restarting.close()


class CuttingRedis(aioredis.Redis):
    """A client that cancels its caller at one chosen point: before its n-th command reaches
    Redis, or after Redis ran it but before the reply came back. The bus's own upkeep (heartbeat,
    sweeper) runs at any moment and is not counted."""

    cut: tuple[int, str] | None = None
    victim: asyncio.Task | None = None
    commands = 0

    async def execute_command(self, *args, **options):
        return await self._cutting(super().execute_command(*args, **options))

    def pipeline(self, transaction: bool = True, shard_hint=None):
        """A pipeline (the bus batches its scripts in them) is one command here."""
        return CuttingPipeline(self, self.connection_pool, self.response_callbacks, transaction, shard_hint)

    async def _cutting(self, command):
        task = asyncio.current_task()
        if self.cut is None or (task is not None and task.get_name() in ("bus-heartbeat", "bus-sweeper")):
            return await command
        self.commands += 1
        number, when = self.cut
        if (number, when) == (self.commands, "before"):
            try:
                self._cancel()
            except asyncio.CancelledError:
                command.close()
                raise
        result = await command
        if (number, when) == (self.commands, "after"):
            self._cancel()
        return result

    def _cancel(self) -> None:
        """Cancel the caller at this moment: here, if it awaits this command itself; else where it
        waits (as for a give-back that the caller awaits through a shield)."""
        if asyncio.current_task() is self.victim:
            raise asyncio.CancelledError
        assert self.victim is not None
        self.victim.cancel()


class CuttingPipeline(aioredis.client.Pipeline):
    def __init__(self, cutter: CuttingRedis, *args) -> None:
        super().__init__(*args)
        self._cutter = cutter

    async def execute(self, raise_on_error: bool = True):
        return await self._cutter._cutting(super().execute(raise_on_error))  # noqa: SLF001


class TestCancellation:
    """Cancel each operation at every point it awaits Redis, before and after each command:
    afterwards pool, leases and claims are whole, and nothing is left that nobody renews."""

    @pytest.mark.parametrize("operation", ["take", "return", "claim", "release"])
    async def test_cancelled_anywhere_loses_nothing(self, server, client, prefix, operation):
        cuts = [(number, when) for number in range(1, 10) for when in ("before", "after")]
        for index, cut in enumerate(cuts):
            keys = Keys(f"{prefix}-{index}")
            redis_client = CuttingRedis.from_url(server.url)
            bus = await RedisBus.start(redis_client, CODES, quick(keys.prefix), timing=FAST)
            try:
                code = await bus.take_code()
                await bus.claim_game(code, "CA-first")
                work = {
                    "take": lambda: bus.take_code(),
                    "return": lambda: bus.return_code(code),
                    "claim": lambda: bus.claim_game(code, "CA-second"),
                    "release": lambda: bus.release_claim(code, "CA-first"),
                }[operation]
                redis_client.cut = cut
                redis_client.victim = asyncio.create_task(work())
                outcome = await asyncio.gather(redis_client.victim, return_exceptions=True)
                redis_client.cut = None
                await asyncio.gather(*bus._background)  # noqa: SLF001 - give-backs of the cut
                await bus.sweep()  # a code popped but never seen by this process is an orphan
                free, leases = await pool_state(client, keys)
                check_conserved(free, leases)
                assert set(leases) == set(bus._leases.held), "a lease nobody will renew or return"  # noqa: SLF001
                for held in CODES:
                    claim = await client.get(keys.claim(held))
                    assert claim is None or bus._claims.holder(held) == claim.decode(), "an orphan claim"  # noqa: SLF001
            finally:
                await bus.close()
            if not isinstance(outcome[0], asyncio.CancelledError):
                assert index > 1, outcome  # it was cut at least before and after its first command
                return  # the operation needs fewer commands than this cut: every point was tried
        pytest.fail("the operation never completed within the cuts tried")


class PoolMachine(RuleBasedStateMachine):
    """Any sequence of takes, returns, claims, crashes and sweeps over three replicas conserves
    the pool and never hands one code to two games."""

    url = ""

    @initialize()
    def open(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.prefix = f"machine{next(_PREFIXES)}"
        self.keys = Keys(self.prefix)
        self.client = aioredis.Redis.from_url(self.url)
        self.buses = [self._run(self._start()) for _ in range(3)]
        self.held: dict[str, int] = {}  # code -> replica holding its game

    async def _start(self) -> RedisBus:
        # Long leases: a crash is made to expire by deleting its leases, as the TTL would.
        return await RedisBus.start(connect_redis(self.url), CODES, quick(self.prefix, lease_ttl_s=60, claim_ttl_s=60), timing=FAST)

    def _run(self, work):
        """Run one step, bounded: a step that hangs fails with every task's stack, instead of
        hanging Hypothesis's replays one after another."""

        async def bounded():
            step = asyncio.ensure_future(work)
            done, _ = await asyncio.wait({step}, timeout=10)
            if step in done:
                return step.result()
            stacks = io.StringIO()
            step.print_stack(file=stacks)
            step.cancel()
            raise AssertionError("a step hung:\n" + stacks.getvalue())

        return self.loop.run_until_complete(bounded())

    @rule(replica=st.integers(0, 2))
    def take(self, replica: int) -> None:
        try:
            code = self._run(self.buses[replica].take_code())
        except PoolExhaustedError:
            assert len(self.held) == len(CODES) or self._orphans()
            return
        assert code not in self.held, "one code given to two games"
        self.held[code] = replica

    # Which code SPOP hands out is random, and background sweeps may refill the pool at any
    # moment: rules pick among the held codes by position and do nothing when none is held, so
    # that Hypothesis draws the same values whenever it replays a sequence.
    @rule(pick=st.integers(0, len(CODES) - 1))
    def give_back(self, pick: int) -> None:
        if not self.held:
            return
        code = sorted(self.held)[pick % len(self.held)]
        self._run(self.buses[self.held.pop(code)].return_code(code))

    @rule(pick=st.integers(0, len(CODES) - 1), caller=st.sampled_from(["CA-1", "CA-2"]))
    def claim(self, pick: int, caller: str) -> None:
        if not self.held:
            return
        code = sorted(self.held)[pick % len(self.held)]
        self._run(self.buses[self.held[code]].claim_game(code, caller))

    @rule(replica=st.integers(0, 2))
    def crash(self, replica: int) -> None:
        """The replica dies without a word; its leases run out; a new replica takes its place."""
        bus = self.buses[replica]
        codes = [code for code, holder in self.held.items() if holder == replica]
        self._run(self._kill(bus, codes))
        for code in codes:
            del self.held[code]
        self.buses[replica] = self._run(self._start())

    async def _kill(self, bus: RedisBus, codes: list[str]) -> None:
        bus._leases.held.clear()  # noqa: SLF001 - a dead process gives nothing back on close
        await bus.close()
        if codes:
            await self.client.delete(*(self.keys.lease(code) for code in codes))

    @rule()
    def sweep(self) -> None:
        self._run(self.buses[0].sweep())
        free, leases = self._run(pool_state(self.client, self.keys))
        check_conserved(free, leases)

    def _orphans(self) -> bool:
        free, leases = self._run(pool_state(self.client, self.keys))
        return bool(set(CODES) - free - set(leases))

    @invariant()
    def no_code_held_twice_and_none_in_the_pool_while_held(self) -> None:
        if not hasattr(self, "client"):
            return
        free, leases = self._run(pool_state(self.client, self.keys))
        assert not free & set(self.held), "a live game's code is in the free pool"
        assert set(self.held) <= set(leases)
        assert len(set(leases)) == len(leases)

    def teardown(self) -> None:
        if hasattr(self, "buses"):
            for bus in self.buses:
                self._run(bus.close())
            self._run(self.client.aclose())
            self.loop.close()


def test_the_pool_is_conserved_over_any_sequence(server):
    PoolMachine.url = server.url
    runner = PoolMachine.TestCase
    runner.settings = settings(
        max_examples=25, stateful_step_count=25, deadline=None, suppress_health_check=list(HealthCheck)
    )
    runner("runTest").runTest()


class TestUrls:
    def test_an_unknown_scheme_is_a_clear_error(self):
        with pytest.raises(ConfigError, match="redis://"):
            connect_redis("http://127.0.0.1:6379")

    def test_a_sentinel_url_must_name_its_service(self):
        with pytest.raises(ConfigError, match="service"):
            connect_redis("redis+sentinel://127.0.0.1:26379")

    def test_a_sentinel_url_names_its_sentinels_and_service(self):
        client = connect_redis("redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2:26380/mymaster/2")
        pool = client.connection_pool
        assert pool.service_name == "mymaster"
        assert [(s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"]) for s in pool.sentinel_manager.sentinels] == [("10.0.0.1", 26379), ("10.0.0.2", 26380)]
        assert pool.connection_kwargs["db"] == 2

    async def test_an_unreachable_redis_fails_start_with_bus_error(self):
        from redis_server import free_port

        with pytest.raises(BusError, match="cannot reach"):
            await RedisBus.start(connect_redis(f"redis://127.0.0.1:{free_port()}/0"), CODES)
