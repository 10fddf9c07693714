"""Fault 6: every client leaves. Each session must end, and every code be back in the pool with
no lease and no claim as its game leaves, not only once the lease TTL has run out."""

from __future__ import annotations

import asyncio
import time

from ..drill import Drill, Sessions
from ..judging import process_figures, settle
from ..polling import wait_until
from ..report import seconds
from ..settings import TOLERANCE_S
from .orphans import no_call_told

__all__ = ["everyone_leaves"]


async def everyone_leaves(drill: Drill) -> None:
    """Fault 6: every game closes and every call hangs up, all at once."""
    report = drill.begin("every client leaves")
    before = Sessions([game for game in drill.games if game.open], [call for call in drill.calls if call.open])
    await asyncio.gather(*(call.hang_up() for call in before.calls), *(game.close() for game in before.games))
    left_at = time.monotonic()
    still = [session for session in [*before.games, *before.calls] if session.open]
    ended = len(before.games) + len(before.calls) - len(still)
    report.figures["sessions_ended_unexpectedly"] = 0
    report.figure("sessions_ended", "sessions ended", ended, f"{ended} of {len(before.games) + len(before.calls)}",
                  f"{len(still)} sessions still open after everyone left" if still else None)  # fmt: skip
    no_call_told(report, "the calls left too")
    every = set(drill.mode.codes)
    limit_s = TOLERANCE_S + 1

    async def all_back() -> bool:
        snapshot = await drill.snapshot()
        return snapshot is not None and snapshot.free == every and not snapshot.leases and not snapshot.claims

    backstop_s = drill.mode.redis.lease_ttl_s + drill.mode.redis.sweep_s + TOLERANCE_S
    back = await wait_until(all_back, left_at + backstop_s)
    back_s = None if back is None else back - left_at
    late = back_s is None or back_s > limit_s
    report.figure("patchable_s", "seconds until every code is back in the pool (no lease, no claim)", back_s,
                  f"{seconds(back_s)} (given back as each game leaves: limit {limit_s:.1f} s)",
                  f"codes back in the pool after {seconds(back_s)}, not at once as their games left (limit {limit_s:.1f} s)"
                  if late else None)  # fmt: skip
    # Lost means not back even after the lease TTL, the backstop for a give-back that failed.
    await settle(drill, report, within_s=0.5)
    process_figures(drill, report)
