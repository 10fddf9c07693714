"""Fault 5: one game stops reading its socket while its call talks fast.

It must delay no other session: other games' transcripts stay within ``STALL_DELAY_LIMIT_S``.
On loopback the kernel holds a few MB for it, so it usually catches up once it reads again; if
its gateway drops it instead, that must be with close code 1008, its caller told and its code
patchable again.
"""

from __future__ import annotations

import asyncio
import time

from ..clients import Game
from ..drill import Drill
from ..judging import ended, process_figures, settle
from ..polling import wait_until
from ..population import replenish, top_up_calls
from ..report import FaultReport, percentile, seconds
from ..settings import STALL_DELAY_LIMIT_S, TOLERANCE_S
from .orphans import (
    no_call_told,
    no_code_orphaned,
    patchable_figure,
    told_figure,
    watch_orphans,
)

__all__ = ["stall_a_game"]

_BASELINE_S = 2.0  # other games' transcripts just before the stall, to compare with


async def stall_a_game(drill: Drill) -> None:
    """Fault 5: a patched game chosen by the seed reads nothing for ``mode.stall_s``."""
    report = drill.begin("one game stops reading while its call talks fast")
    if not drill.live_pairs():  # the last recovery fell short (reported there): one more try
        await top_up_calls(drill, time.monotonic() + drill.mode.recovery_s)
    pairs = drill.live_pairs()
    if not pairs:
        report.violate("no patched pair to stall")
        return
    call, stalled = drill.rng.choice(pairs)
    before = drill.sessions()
    others = [game for game in before.games if game is not stalled]
    print(f"  game {stalled.code} on {stalled.gateway.name}, its call on {call.gateway.name}; {drill.mode.stall_s:g} s", flush=True)
    await asyncio.sleep(_BASELINE_S)  # transcripts to compare with, whatever came just before
    stalled_at = time.monotonic()
    stalled.reading.clear()
    phrases, read = call.phrases, stalled.bytes_read
    call.burst_s = drill.mode.burst_interval_s
    await asyncio.sleep(drill.mode.stall_s)
    call.burst_s = None
    phrases = call.phrases - phrases
    resumed_at = time.monotonic()
    stalled.reading.set()
    caught_up = await wait_until(lambda: stalled.closed.is_set() or stalled.latest_spoken.get(call.cid, 0.0) >= resumed_at,
                                 resumed_at + 10)  # fmt: skip
    print(f"  its call spoke {phrases} long phrases meanwhile; the game then read {(stalled.bytes_read - read) / 1e6:.2f} MB",
          flush=True)  # fmt: skip
    report.figures["stall_phrases"] = phrases
    report.figures["stall_bytes_read_after"] = stalled.bytes_read - read
    _stall_delays(report, others, stalled_at, resumed_at)
    dropped = stalled.closed.is_set()
    outcome = f"dropped by its gateway (close {stalled.close_code})" if dropped else (
        "kept, and caught up" if caught_up is not None else "kept, but nothing new arrived within 10 s")
    report.figure("stalled_game", "the stalled game", outcome, violation=None if dropped or caught_up is not None else
                  "the stalled game neither caught up nor was dropped")  # fmt: skip
    if dropped and stalled.close_code != 1008:
        report.violate(f"the stalled game was closed with {stalled.close_code}, not 1008 (reads too slowly)")
    limit_s = TOLERANCE_S + 1
    if dropped:
        patchable, told = await watch_orphans(drill, {stalled.code}, [call], since=resumed_at, window_s=limit_s + 2)
        told_figure(report, [call], told, limit_s)
        patchable_figure(report, {stalled.code}, patchable, limit_s=limit_s, what="back in the pool, unclaimed")
    else:
        no_call_told(report, "the game stayed")
        no_code_orphaned(report)
    ended(drill, report, before, lambda session: session is stalled and stalled.close_code == 1008)
    await settle(drill, report, within_s=2.0)
    await replenish(drill, report)
    process_figures(drill, report)


def _stall_delays(report: FaultReport, others: list[Game], began: float, ended: float) -> None:
    """How long other games' transcripts took before and during the stall."""

    def delays(start: float, end: float) -> list[float]:
        return [delay for game in others for at, delay in game.latencies if start <= at <= end]

    baseline, during = delays(began - _BASELINE_S, began), delays(began, ended)
    worst = max(during, default=None)
    for label, values in (("before", baseline), ("during", during)):
        p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
        print(f"  other games' transcripts {label}: {len(values)}, p50 {seconds(p50)}, p99 {seconds(p99)}, "
              f"max {seconds(max(values, default=None))}", flush=True)  # fmt: skip
    report.figures["others_during_stall"] = {"count": len(during), "p99_s": percentile(during, 0.99), "max_s": worst}
    if not during:
        report.violate("no other game received a transcript during the stall")
    elif worst > STALL_DELAY_LIMIT_S:
        report.violate(f"other games' transcripts took up to {worst:.2f} s during the stall (limit {STALL_DELAY_LIMIT_S:.1f} s)")
