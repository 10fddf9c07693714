"""What became of the codes and calls a fault orphaned: whether each call was told its game left,
how soon each code was patchable again, and proof of it by taking and patching each code anew."""

from __future__ import annotations

import asyncio
import time

from ..clients import Call, Game
from ..drill import Drill
from ..polling import wait_until
from ..report import FaultReport, seconds

__all__ = ["no_call_told", "no_code_orphaned", "patchable_figure", "prove_patchable", "told_figure", "watch_orphans"]

_PATCHABLE = "seconds until every orphaned code is patchable"


def no_call_told(report: FaultReport, why: str) -> None:
    """The ``calls_told`` figure of a fault that orphans no call."""
    report.figure("calls_told", "calls told", None, f"n/a ({why})")


def no_code_orphaned(report: FaultReport) -> None:
    """The ``patchable_s`` figure of a fault that orphans no code."""
    report.figure("patchable_s", _PATCHABLE, None, "n/a (no code orphaned)")


async def watch_orphans(
    drill: Drill, codes: set[str], calls: list[Call], *, since: float, window_s: float
) -> tuple[dict[str, float], dict[Call, float]]:
    """When each code was first seen free and unclaimed, and each call told its game left."""
    patchable: dict[str, float] = {}
    told: dict[Call, float] = {}

    async def all_seen() -> bool:
        snapshot = await drill.snapshot()
        now = time.monotonic() - since
        if snapshot is not None:
            for code in codes - patchable.keys():
                if code in snapshot.free and code not in snapshot.claims:
                    patchable[code] = now
        for call in calls:
            if call not in told and call.told_game_left():
                told[call] = now
        return len(patchable) == len(codes) and len(told) == len(calls)

    await wait_until(all_seen, since + window_s)
    return patchable, told


def told_figure(report: FaultReport, calls: list[Call], told: dict[Call, float], limit_s: float) -> None:
    """How many of ``calls`` were told their game left (``told``: seconds after the fault)."""
    slowest = max(told.values(), default=None)
    shown = f"{len(told)} of {len(calls)} ('game_left' logged" + (f", the last after {seconds(slowest)})" if told else ")")
    late = slowest is not None and slowest > limit_s
    violation = None
    if len(told) < len(calls) or late:
        violation = f"calls told their game left: {len(told)} of {len(calls)}, the last after {seconds(slowest)} (limit {limit_s:.1f} s)"
    report.figure("calls_told", "calls told", len(told), shown, violation)
    report.figures["calls_orphaned"] = len(calls)


def patchable_figure(report: FaultReport, codes: set[str], patchable: dict[str, float], *, limit_s: float, what: str) -> None:
    """How soon all of ``codes`` were patchable (``patchable``: seconds after the fault); ``what``
    says what patchable meant for this fault."""
    slowest = max(patchable.values()) if codes and len(patchable) == len(codes) else None
    if not codes:
        no_code_orphaned(report)
        return
    shown = f"{seconds(slowest)} for {len(codes)} codes ({what}; limit {limit_s:.1f} s)"
    if slowest is None:
        shown += f"; {len(codes) - len(patchable)} never were"
    violation = None
    if slowest is None or slowest > limit_s:
        stuck = sorted(codes - patchable.keys())[:8]
        violation = f"orphaned codes patchable after {seconds(slowest)} (limit {limit_s:.1f} s); not yet: {stuck}"
    report.figure("patchable_s", _PATCHABLE, slowest, shown, violation)


async def prove_patchable(drill: Drill, report: FaultReport, codes: set[str], told_calls: list[Call]) -> None:
    """Take each orphaned code with a new game, then patch a call into it: a told caller keys
    it again, else a new call does (and hangs up)."""
    held = await _take_codes(drill, codes)
    waiting = [call for call in told_calls if call.open and not call.game_alive]
    semaphore = asyncio.Semaphore(8)

    async def patch_into(game: Game) -> bool:
        async with semaphore:
            if waiting:
                call = waiting.pop()
                return await drill.patch(call, game)
            gateways = drill.live("twilio-gateway")
            call = await drill.dial(drill.rng.choice(gateways), probe=True) if gateways else None
            if call is None:
                return False
            try:
                return await drill.patch(call, game)
            finally:
                await call.hang_up()

    patched = await asyncio.gather(*(patch_into(game) for game in held.values()))
    count = sum(patched)
    shown = f"{len(held)} of {len(codes)} taken by a new game, {count} of those patched by a call"
    violation = None
    if codes and (len(held) < len(codes) or count < len(held)):
        violation = f"orphaned codes: {len(held)} of {len(codes)} taken again, {count} patched"
    report.figure("orphaned_codes_patched", "orphaned codes taken and patched", count, shown, violation)


async def _take_codes(drill: Drill, codes: set[str]) -> dict[str, Game]:
    """New games until each of ``codes`` that is free is held; extras beyond the population's
    size leave again."""
    held: dict[str, Game] = {}
    extra: list[Game] = []
    for attempt in range(len(drill.mode.codes) + 4):
        snapshot = await drill.snapshot()
        wanted = codes - held.keys()
        if snapshot is None or not wanted & snapshot.free:
            break
        gateways = drill.live("game-gateway")
        game = await drill.open_game(gateways[attempt % len(gateways)]) if gateways else None
        if game is None:
            await asyncio.sleep(0.1)
        elif game.code in wanted:
            held[game.code] = game
        else:
            extra.append(game)
    surplus = len(drill.population_games()) - drill.mode.games
    await asyncio.gather(*(game.close() for game in extra[: max(0, surplus)]))
    return held
