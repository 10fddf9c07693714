"""Faults across processes: Redis restarts, short and long, and gateways killed with SIGKILL.

Each test runs its own Redis and ``phonepatch`` processes (see ``deployment``). A short outage
is one shorter than the lease TTL: it must end no session, and within 2 s of Redis answering
again every path works as before. Claims must follow their calls and games.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from deployment import CODES, SETTINGS, Deployment, eventually, patch_in, pool_state
from peers import TIMEOUT_S, GameClient

# Leases long enough for an outage of a few seconds to be a short one.
HICCUP = {**SETTINGS, "redis_lease_ttl_s": 8.0, "redis_claim_ttl_s": 8.0, "redis_heartbeat_s": 0.5, "redis_sweep_s": 0.5}
RECOVERY_S = 2.0  # what users are promised once Redis answers again
SLACK_S = 0.5  # this machine's share: two cores shared with Redis and four processes

pytestmark = pytest.mark.timeout(120)


async def claims(client) -> dict[str, str]:
    values = await client.mget([f"{{scale:{code}}}:claim" for code in CODES])
    return {code: value.decode() for code, value in zip(CODES, values, strict=True) if value is not None}


async def pool_is_whole(client, live: set[str]) -> bool:
    try:
        free, leased = await pool_state(client)
    except OSError:
        return False
    return leased == live and free == set(CODES) - live


async def within(seconds: float, attempt) -> float:
    """Retry ``attempt`` (a coroutine function) until it succeeds; return how long it took."""
    began = time.monotonic()
    async with asyncio.timeout(seconds):
        while True:
            try:
                await attempt()
                return time.monotonic() - began
            except (AssertionError, TimeoutError, OSError):
                await asyncio.sleep(0.05)


def told(gateway, event: str) -> int:
    return gateway.log_events().count(event)


@pytest.mark.parametrize("down_s", [2.0, 5.0])
@pytest.mark.parametrize("topology", ["split", "serve"])
async def test_a_redis_outage_shorter_than_a_lease_ends_no_session(deployment: Deployment, redis_server, redis_client, topology, down_s):
    deployment.settings = HICCUP
    if topology == "split":
        games_gateway, calls_gateway = await deployment.start("game-gateway"), await deployment.start("twilio-gateway")
    else:
        games_gateway = calls_gateway = await deployment.start("serve")
    patched, waiting = await deployment.game(games_gateway), await deployment.game(games_gateway)
    call = await deployment.call(calls_gateway)
    await patch_in(call, patched)

    redis_server.stop()  # a restart without persistence: every key is gone
    await call.say("lost in the outage")  # published while Redis is down: lost, not fatal
    await patched.ws.send_str("also lost")
    began = time.monotonic()
    refused = await deployment.http.ws_connect(games_gateway.base_url + "/game")
    message = await refused.receive(timeout=TIMEOUT_S)
    assert (message.type.name, message.data) == ("CLOSE", 1013)  # refused, and fast
    assert time.monotonic() - began < 2.0
    await asyncio.sleep(max(0.0, down_s - (time.monotonic() - began)))
    redis_server.start()

    back = time.monotonic()
    deadline_s = lambda: back + RECOVERY_S + SLACK_S - time.monotonic()  # noqa: E731

    async def transcript() -> None:
        await call.say("after the restart")
        assert "after the restart" in await patched.receive_text(timeout_s=0.4)

    texts = told(calls_gateway, "game_text_received")

    async def game_text() -> None:
        await patched.ws.send_str("heard again")
        await asyncio.sleep(0.1)
        assert told(calls_gateway, "game_text_received") > texts

    newcomers: list[GameClient] = []

    async def new_game() -> None:
        newcomers.append(await deployment.game(games_gateway))

    second = await deployment.call(calls_gateway)

    async def new_call() -> None:
        await second.press(waiting.code + "#")
        assert await waiting.receive_text(timeout_s=0.6) == "connected"

    for attempt in (transcript, game_text, new_game, new_call):
        await within(deadline_s(), attempt)
    newcomer = newcomers[-1]
    assert newcomer.code not in {patched.code, waiting.code}
    await eventually(lambda: pool_is_whole(redis_client, {patched.code, waiting.code, newcomer.code}), TIMEOUT_S)
    assert await claims(redis_client) == {patched.code: call.call_sid, waiting.code: second.call_sid}
    for gateway in {games_gateway, calls_gateway}:
        events = gateway.log_events()
        assert "bus_reconnected" in events and "bus_lost" not in events
        assert gateway.process.poll() is None
    assert "game_missed_events" in games_gateway.log_events()  # the game was told of the gap
    assert "call_ended" not in calls_gateway.log_events()
    assert _only_refused(games_gateway)
    for gateway in {games_gateway, calls_gateway}:  # no traceback: no reader fought another
        assert not [entry for entry in gateway.log_entries() if "exception" in entry]


def _only_refused(gateway) -> bool:
    """The game refused during the outage ended its session with 1013; no other did."""
    ended = [entry for entry in gateway.log_entries() if entry.get("event") == "game_session_ended"]
    return all(entry.get("close_code") == 1013 for entry in ended)


async def test_a_call_that_ends_during_an_outage_leaves_no_claim_behind(deployment: Deployment, redis_server, redis_client):
    deployment.settings = HICCUP
    games_gateway, calls_gateway = await deployment.start("game-gateway"), await deployment.start("twilio-gateway")
    game = await deployment.game(games_gateway)
    call = await deployment.call(calls_gateway)
    await patch_in(call, game)

    redis_server.stop()
    await call.hang_up()  # its claim cannot be released now
    await asyncio.sleep(1.0)
    redis_server.start()

    async def patchable() -> None:
        again = await deployment.call(calls_gateway)
        try:
            await again.press(game.code + "#")
            assert await game.receive_text(timeout_s=0.6) == "connected"
        except BaseException:
            await again.ws.close()  # a caller who was not let in hangs up before trying again
            raise

    await within(2 * RECOVERY_S, patchable)  # each try dials, keys and waits: the bound is loose
    await asyncio.sleep(2 * HICCUP["redis_heartbeat_s"])
    assert list((await claims(redis_client)).values()) != [call.call_sid]


async def test_a_redis_outage_longer_than_a_lease_ends_sessions_once_and_cleanly(deployment: Deployment, redis_server, redis_client):
    games_gateway, calls_gateway = await deployment.start("game-gateway"), await deployment.start("twilio-gateway")
    game = await deployment.game(games_gateway)
    call = await deployment.call(calls_gateway)
    await patch_in(call, game)

    redis_server.stop()
    # Both read at once, as real peers do: a close frame left unread is lost to the server's reset.
    assert await asyncio.gather(game.wait_closed(), call.wait_closed()) == [1011, 1000]
    redis_server.start()

    for gateway, event in ((games_gateway, "game_session_ended"), (calls_gateway, "call_ended")):
        await eventually(lambda: _now(event in gateway.log_events()), TIMEOUT_S)  # noqa: B023
        ended = [entry for entry in gateway.log_entries() if entry.get("event") == event]
        assert [entry["reason"] for entry in ended] == ["message bus unavailable"]
    fresh: list[GameClient] = []

    async def new_game() -> None:
        fresh.append(await deployment.game(games_gateway))

    await within(RECOVERY_S + SLACK_S, new_game)
    second = await deployment.call(calls_gateway)
    await patch_in(second, fresh[-1])
    await eventually(lambda: pool_is_whole(redis_client, {fresh[-1].code}), 2 * TIMEOUT_S)


async def test_calls_in_the_games_of_a_killed_game_gateway_hear_they_left(deployment: Deployment, redis_client):
    doomed, survivor = await deployment.start("game-gateway"), await deployment.start("game-gateway")
    calls_gateway = await deployment.start("twilio-gateway")
    orphaned = await deployment.game(doomed)
    call = await deployment.call(calls_gateway)
    await patch_in(call, orphaned)

    doomed.process.kill()  # SIGKILL: no goodbye, no code given back
    began = time.monotonic()
    await eventually(lambda: _now(told(calls_gateway, "game_left") == 1), 2 * TIMEOUT_S)
    heard_s = time.monotonic() - began
    assert heard_s <= SETTINGS["redis_lease_ttl_s"] + SETTINGS["redis_sweep_s"] + SLACK_S
    assert orphaned.code not in await claims(redis_client)
    # The recycled code is patchable at once: a new game takes it, and the same caller enters it.
    games = [await deployment.game(survivor) for _ in CODES]
    taker = next(game for game in games if game.code == orphaned.code)
    await patch_in(call, taker)
    await call.say("back in")
    assert await taker.receive_transcript() == "back in"


async def test_the_claims_of_a_killed_twilio_gateway_lapse_and_its_games_stay(deployment: Deployment, redis_client):
    games_gateway = await deployment.start("game-gateway")
    doomed, survivor = await deployment.start("twilio-gateway"), await deployment.start("twilio-gateway")
    game = await deployment.game(games_gateway)
    await patch_in(await deployment.call(doomed), game)

    doomed.process.kill()
    await eventually(lambda: _has_no_claims(redis_client), SETTINGS["redis_claim_ttl_s"] + TIMEOUT_S)
    again = await deployment.call(survivor)
    await patch_in(again, game)


async def _now(value: bool) -> bool:
    return value


async def _has_no_claims(client) -> bool:
    return not await claims(client)



@pytest.mark.parametrize("role", ["game-gateway", "serve"])
async def test_a_game_that_missed_its_call_connecting_learns_of_it_after_the_gap(deployment: Deployment, redis_client, role):
    """Events lost while a game-gateway's pub/sub connection was away (a call patched in just
    then): on the gap the game reads who claims its code, and is told ``connected``."""
    gateway = await deployment.start(role)
    game = await deployment.game(gateway)
    await redis_client.set(f"{{scale:{game.code}}}:claim", "CA-missed")  # its CallConnected was lost
    await redis_client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    assert await game.receive_text() == "connected"
