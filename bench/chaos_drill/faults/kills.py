"""Faults 1 and 2: ``kill -9`` a game-gateway, then a twilio-gateway, each replaced at once.

A killed game-gateway's codes must be patchable again within lease TTL + sweep interval, and its
games' callers told (``game_left``). A killed twilio-gateway's claims must lapse within the claim
TTL, its games staying up for a new caller. Either way, no other session ends and the survivors
keep working.
"""

from __future__ import annotations

import asyncio
import time

from ..clients import Game
from ..drill import Drill, Sessions
from ..judging import ended, process_figures, settle
from ..liveness import new_sessions, pairs_work
from ..polling import wait_until
from ..population import replenish
from ..processes import Gateway
from ..report import FaultReport
from ..settings import TOLERANCE_S, WORKS_WITHIN_S
from .orphans import (
    no_call_told,
    patchable_figure,
    prove_patchable,
    told_figure,
    watch_orphans,
)

__all__ = ["kill_game_gateway", "kill_twilio_gateway"]


async def kill_game_gateway(drill: Drill) -> None:
    """Fault 1: ``kill -9`` a game-gateway chosen by the seed; a replacement starts at once."""
    ttl = drill.mode.redis
    victim, report, before = _choose_victim(drill, "game-gateway")
    orphaned_games = [game for game in before.games if game.gateway is victim]
    orphaned_codes = {game.code for game in orphaned_games}
    orphaned_calls = [game.call for game in orphaned_games if game.call is not None and game.call.open and game.call.game is game]
    survivors = [(call, game) for call, game in drill.live_pairs() if game.gateway is not victim]
    print(f"  {len(orphaned_games)} games on it, {len(orphaned_calls)} of them patched; {len(survivors)} pairs elsewhere", flush=True)
    killed_at, replacement = _kill(drill, victim)
    limit_s = ttl.lease_ttl_s + ttl.sweep_s + TOLERANCE_S
    _, (patchable, told) = await asyncio.gather(
        pairs_work(drill, report, killed_at, survivors),
        watch_orphans(drill, orphaned_codes, orphaned_calls, since=killed_at, window_s=limit_s + 2),
    )
    told_figure(report, orphaned_calls, told, limit_s)
    patchable_figure(report, orphaned_codes, patchable, limit_s=limit_s, what="back in the pool, unclaimed")
    ended(drill, report, before, lambda session: session.gateway is victim)
    await _await_replacement(report, replacement)
    await settle(drill, report, within_s=2.0)
    await prove_patchable(drill, report, orphaned_codes, [call for call in orphaned_calls if call in told])
    await _heal(drill, report)


async def kill_twilio_gateway(drill: Drill) -> None:
    """Fault 2: ``kill -9`` a twilio-gateway chosen by the seed; a replacement starts at once."""
    ttl = drill.mode.redis
    victim, report, before = _choose_victim(drill, "twilio-gateway")
    lost_calls = [call for call in before.calls if call.gateway is victim]
    widowed = [call.game for call in lost_calls if call.game_alive and call.game.call is call]
    sids = {call.sid for call in lost_calls}
    survivors = [(call, game) for call, game in drill.live_pairs() if call.gateway is not victim]
    print(f"  {len(lost_calls)} calls on it, {len(widowed)} of them patched; {len(survivors)} pairs elsewhere", flush=True)
    killed_at, replacement = _kill(drill, victim)
    limit_s = ttl.claim_ttl_s + TOLERANCE_S
    lapsed: dict[str, float] = {}

    async def claims_gone() -> bool:
        snapshot = await drill.snapshot()
        if snapshot is not None:
            for game in widowed:
                if game.code not in lapsed and snapshot.claims.get(game.code) not in sids:
                    lapsed[game.code] = time.monotonic() - killed_at
        return len(lapsed) == len(widowed)

    await asyncio.gather(
        pairs_work(drill, report, killed_at, survivors),
        wait_until(claims_gone, killed_at + limit_s + 3),
    )
    no_call_told(report, "no call lost its game")
    patchable_figure(report, {game.code for game in widowed}, lapsed, limit_s=limit_s, what="its claim lapsed, the game still holds it")
    ended(drill, report, before, lambda session: session.gateway is victim)
    await _await_replacement(report, replacement)
    await _new_callers(drill, report, widowed)
    await settle(drill, report, within_s=2.0)
    await _heal(drill, report)


def _choose_victim(drill: Drill, role: str) -> tuple[Gateway, FaultReport, Sessions]:
    """A live gateway of ``role`` chosen by the seed, its fault's report, and the sessions open."""
    victim = drill.rng.choice(drill.live(role))
    report = drill.begin(f"kill -9 {victim.name} (pid {victim.process.pid})")
    return victim, report, drill.sessions()


def _kill(drill: Drill, victim: Gateway) -> tuple[float, asyncio.Task[Gateway]]:
    """SIGKILL ``victim`` and start its replacement at once; (when it died, the replacement's task)."""
    killed_at = time.monotonic()
    victim.kill()
    return killed_at, drill.spawn(drill.start_gateway(victim.role), "replacement")


async def _new_callers(drill: Drill, report: FaultReport, games: list[Game]) -> None:
    """Each game whose caller's gateway died takes a new caller (who stays on)."""
    patched = 0
    for n, game in enumerate(games):
        gateways = drill.live("twilio-gateway")
        call = await drill.dial(gateways[n % len(gateways)]) if gateways and game.open else None
        if call is not None and await drill.patch(call, game):
            patched += 1
        elif call is not None:
            await call.hang_up()
    report.figure("widowed_games_repatched", "games whose caller died take a new caller", patched, f"{patched} of {len(games)}",
                  None if patched == len(games) else f"only {patched} of {len(games)} games took a new caller")  # fmt: skip


async def _await_replacement(report: FaultReport, replacement: asyncio.Task[Gateway]) -> None:
    """A replacement that fails to start is a violation, not the end of the drill."""
    try:
        await replacement
    except RuntimeError as error:
        report.violate(f"the replacement gateway did not start: {error}")


async def _heal(drill: Drill, report: FaultReport) -> None:
    """Back to the full population; then a new game and call on every pairing of gateways."""
    await replenish(drill, report)
    await new_sessions(drill, report, time.monotonic(), limit_s=WORKS_WITHIN_S, window_s=WORKS_WITHIN_S + 2)
    process_figures(drill, report)
