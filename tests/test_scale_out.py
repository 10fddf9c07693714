"""Scale out: game-gateways and twilio-gateways as separate OS processes on one real Redis.

Calls key their game's code (the keypad needs no read-back) and then speak through the fake
Deepgram, which runs in this process; each gateway is a ``phonepatch`` process of its own.
"""

from __future__ import annotations

import asyncio
import signal

import redis.asyncio as aioredis

from deployment import CODES, LEASE_TTL_S, SWEEP_S, eventually, patch_in, pool_state
from peers import TIMEOUT_S

async def test_every_call_reaches_its_own_game_across_processes(deployment):
    games_gateways = [await deployment.start("game-gateway") for _ in range(2)]
    call_gateways = [await deployment.start("twilio-gateway") for _ in range(2)]
    games = [await deployment.game(games_gateways[n % 2]) for n in range(4)]
    assert len({game.code for game in games}) == 4 and {game.code for game in games} <= set(CODES)
    calls = [await deployment.call(call_gateways[n // 2]) for n in range(4)]  # every pairing of sides
    for call, game in zip(calls, games, strict=True):
        await patch_in(call, game)
    for n, call in enumerate(calls):
        await call.say(f"hello from caller {n}")
    for n, game in enumerate(games):
        assert await game.receive_transcript() == f"hello from caller {n}"
    await calls[0].hang_up()
    # the game keeps its code and takes the next call, on the other twilio-gateway this time
    again = await deployment.call(call_gateways[1])
    await patch_in(again, games[0])


async def test_a_killed_game_gateway_s_codes_return_and_the_other_s_games_go_on(deployment, redis_client):
    doomed, survivor = await deployment.start("game-gateway"), await deployment.start("game-gateway")
    calls = await deployment.start("twilio-gateway")
    lost = [await deployment.game(doomed) for _ in range(3)]
    kept = [await deployment.game(survivor) for _ in range(2)]
    free, leased = await pool_state(redis_client)
    assert leased == {game.code for game in lost + kept} and free == set(CODES) - leased

    doomed.process.kill()  # SIGKILL: no goodbye, no code given back
    doomed.process.wait()

    async def codes_back() -> bool:
        free, leased = await pool_state(redis_client)
        return leased == {game.code for game in kept} and free == set(CODES) - leased

    await eventually(codes_back, LEASE_TTL_S + SWEEP_S + TIMEOUT_S)
    call = await deployment.call(calls)
    await patch_in(call, kept[0])
    await call.say("still here")
    assert await kept[0].receive_transcript() == "still here"


async def test_a_redis_restart_loses_no_code_and_sessions_carry_on(deployment, redis_server, redis_client):
    games_gateway = await deployment.start("game-gateway")
    calls_gateway = await deployment.start("twilio-gateway")
    patched, waiting = await deployment.game(games_gateway), await deployment.game(games_gateway)
    call = await deployment.call(calls_gateway)
    await patch_in(call, patched)

    redis_server.stop()  # a restart without persistence: every key is gone
    await asyncio.sleep(1.0)
    redis_server.start()

    async def recovered() -> bool:
        try:
            free, leased = await pool_state(redis_client)
        except (OSError, aioredis.ConnectionError):
            return False
        return leased == {patched.code, waiting.code} and free == set(CODES) - leased

    await eventually(recovered, 4 * TIMEOUT_S)

    async def told_of_the_gap() -> bool:
        return all("bus_reconnected" in gateway.log_events() for gateway in (games_gateway, calls_gateway))

    await eventually(told_of_the_gap, 2 * TIMEOUT_S)
    await call.say("after the restart")
    assert await patched.receive_transcript() == "after the restart"
    second = await deployment.call(calls_gateway)
    await patch_in(second, waiting)
    newcomer = await deployment.game(games_gateway)
    assert newcomer.code not in {patched.code, waiting.code}
    free, leased = await pool_state(redis_client)
    assert not free & leased and free | leased == set(CODES)


async def test_sigterm_closes_games_with_1001_tells_their_calls_and_gives_codes_back(deployment, redis_client):
    leaving = await deployment.start("game-gateway")
    calls = await deployment.start("twilio-gateway")
    games = [await deployment.game(leaving) for _ in range(2)]
    call = await deployment.call(calls)
    await patch_in(call, games[0])

    leaving.process.send_signal(signal.SIGTERM)
    for game in games:
        assert await game.wait_closed() == 1001
    assert leaving.process.wait(timeout=3 * TIMEOUT_S) == 0
    free, leased = await pool_state(redis_client)
    assert free == set(CODES) and not leased  # at once, not after a lease TTL

    async def call_told() -> bool:
        return "game_left" in calls.log_events()

    await eventually(call_told, TIMEOUT_S)


async def test_serve_with_a_redis_url_runs_both_sides_on_redis(deployment, redis_client):
    both = await deployment.start("serve")
    game = await deployment.game(both)
    free, leased = await pool_state(redis_client)
    assert leased == {game.code} and free == set(CODES) - {game.code}
    call = await deployment.call(both)
    await patch_in(call, game)
    await call.say("one process")
    assert await game.receive_transcript() == "one process"


async def test_sigterm_on_a_twilio_gateway_ends_its_calls_and_frees_their_games(deployment):
    games_gateway = await deployment.start("game-gateway")
    leaving, staying = await deployment.start("twilio-gateway"), await deployment.start("twilio-gateway")
    game = await deployment.game(games_gateway)
    call = await deployment.call(leaving)
    await patch_in(call, game)

    leaving.process.send_signal(signal.SIGTERM)
    await call.wait_closed()
    assert leaving.process.wait(timeout=3 * TIMEOUT_S) == 0
    # the game was told and takes the next call at once (no claim left to expire)
    again = await deployment.call(staying)
    await patch_in(again, game)


async def test_a_game_whose_lease_is_lost_is_closed_and_its_call_told(deployment, redis_client):
    games_gateway = await deployment.start("game-gateway")
    calls_gateway = await deployment.start("twilio-gateway")
    game = await deployment.game(games_gateway)
    call = await deployment.call(calls_gateway)
    await patch_in(call, game)
    lease = f"{{scale:{game.code}}}:lease"
    await redis_client.set(lease, "another-process")  # as if it lapsed and was taken meanwhile

    assert await game.wait_closed() == 1011

    async def call_told() -> bool:
        return "game_left" in calls_gateway.log_events()

    await eventually(call_told, 2 * TIMEOUT_S)
    assert await redis_client.get(lease) == b"another-process"  # the new holder's, untouched
    free, _ = await pool_state(redis_client)
    assert game.code not in free
