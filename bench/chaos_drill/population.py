"""The drill's population: games on both game-gateways, and each call patched into a game of its
own; brought back to full strength after every fault."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from .clients import Call, Game
from .drill import Drill
from .liveness import pairs_work
from .report import FaultReport
from .settings import CODE_REJECTED

__all__ = ["populate", "replenish", "top_up_calls", "top_up_games"]


async def populate(drill: Drill, report: FaultReport) -> None:
    """Connect the games, then patch each call into a game of its own, on every pairing."""
    await top_up_games(drill, time.monotonic() + drill.mode.recovery_s)
    games = drill.population_games()
    codes = Counter(game.code for game in games)
    report.figure("games", "games connected", len(games), f"{len(games)} of {drill.mode.games}",
                  None if len(games) == drill.mode.games else f"only {len(games)} of {drill.mode.games} games connected")  # fmt: skip
    twice = [code for code, count in codes.items() if count > 1]
    if twice:
        report.violate(f"games given the same code: {twice}")
    failures = await top_up_calls(drill, time.monotonic() + drill.mode.recovery_s)
    pairs = len(drill.live_pairs())
    report.figure("calls", "calls patched", pairs, f"{pairs} of {drill.mode.calls} (game read 'connected')",
                  None if pairs == drill.mode.calls and not failures else f"{failures} calls failed to patch")  # fmt: skip
    await pairs_work(drill, report, time.monotonic(), drill.live_pairs())


async def top_up_games(drill: Drill, deadline: float) -> int:
    """Connect games until there are ``mode.games`` (or ``deadline``); returns how many
    failed to connect. Each goes to the gateway with the fewest games and failures."""
    failed: Counter[str] = Counter()
    while (missing := drill.mode.games - len(drill.population_games())) > 0 and time.monotonic() < deadline:
        count = Counter(game.gateway.name for game in drill.population_games())
        gateways = sorted(drill.live("game-gateway"), key=lambda gateway: (failed[gateway.name], count[gateway.name]))
        if not gateways:
            break
        batch = [gateways[n % len(gateways)] for n in range(min(missing, 8))]
        opened = await asyncio.gather(*(drill.open_game(gateway) for gateway in batch))
        failed.update(gateway.name for gateway, game in zip(batch, opened, strict=True) if game is None)
        if None in opened:
            await asyncio.sleep(0.2)
    return sum(failed.values())


async def top_up_calls(drill: Drill, deadline: float, refused: set[Game] | None = None) -> int:
    """Dial and patch calls until ``mode.calls`` are patched, while free games last and until
    ``deadline``; returns how many dials or patches failed. A game that refused a caller is
    added to ``refused`` and not tried again; a gateway that failed is tried last."""
    refused = set() if refused is None else refused
    failed: Counter[str] = Counter()
    while len(drill.live_pairs()) < drill.mode.calls and time.monotonic() < deadline:
        count = Counter(call.gateway.name for call in drill.population_calls())
        gateways = sorted(drill.live("twilio-gateway"), key=lambda gateway: (failed[gateway.name], count[gateway.name]))
        games = await drill.unclaimed_games(refused)
        if not gateways or not games:
            break
        call = await drill.dial(gateways[0])
        if call is None:
            failed[gateways[0].name] += 1
            await asyncio.sleep(0.2)
        elif not await drill.patch(call, games[0]):
            failed[gateways[0].name] += 1
            if _refused(call):
                refused.add(games[0])
            await call.hang_up()
    return sum(failed.values())


def _refused(call: Call) -> bool:
    """Whether the gateway turned the call's keys down because the game has a caller."""
    return bool(call.gateway.log.find(CODE_REJECTED, call.patch_mark, call_sid=call.sid, reason="game already has a caller"))


async def replenish(drill: Drill, report: FaultReport) -> None:
    """Back to the full population. A call whose game is gone keys another if it was told;
    one never told is hung up (its claim goes with it) and replaced."""
    lonely = [call for call in drill.population_calls() if not call.game_alive]
    told = [call for call in lonely if call.told_game_left()]
    await asyncio.gather(*(call.hang_up() for call in lonely if call not in told))
    deadline = time.monotonic() + drill.mode.recovery_s
    failures = await top_up_games(drill, deadline)
    refused: set[Game] = set()
    for call in told:
        games = await drill.unclaimed_games(refused)
        if not games or not await drill.patch(call, games[0]):
            failures += 1
            refused.update(games[:1])
            await call.hang_up()
    failures += await top_up_calls(drill, deadline, refused)
    if refused:
        print(f"  games that refused a caller: {sorted(game.code for game in refused)}", flush=True)
    games, pairs = len(drill.population_games()), len(drill.live_pairs())
    if games < drill.mode.games or pairs < drill.mode.calls:
        report.violate(f"recovery: {games} of {drill.mode.games} games and {pairs} of {drill.mode.calls} "
                       f"patched calls restored ({failures} connects or patches failed)")  # fmt: skip
