"""Faults 3 and 4: Redis stopped, then started empty on the same port after a short outage and
after a longer one (both under the lease TTL).

No session may end, every open session must be told of the gap (``game_missed_events``,
``call_missed_events``), and within ``REDIS_RECOVERY_S`` of Redis answering, transcripts, game
texts, new games and new calls must work; then pool, leases and claims must be rebuilt.
"""

from __future__ import annotations

import asyncio
import time

from ..clients import Call, Game
from ..drill import Drill, Sessions
from ..judging import ended, process_figures, settle
from ..liveness import flow, new_sessions
from ..polling import wait_until
from ..population import replenish
from ..settings import GAP_TOLD, REDIS_RECOVERY_S, TOLERANCE_S
from .orphans import no_call_told, no_code_orphaned

__all__ = ["restart_redis"]


async def restart_redis(drill: Drill, down_s: float) -> None:
    """Faults 3 and 4: Redis down ``down_s``, then back empty on the same port."""
    ttl = drill.mode.redis
    report = drill.begin(f"Redis down {down_s:g} s, back empty on the same port")
    before = drill.sessions()
    marks = {gateway.name: gateway.log.mark for gateway in drill.gateways if gateway.alive}
    pairs = drill.live_pairs()
    drill.redis_down = True
    await asyncio.to_thread(drill.redis.stop)
    await asyncio.sleep(down_s)
    await asyncio.to_thread(drill.redis.start)
    drill.redis_down = False
    up_at = time.monotonic()
    window_s = ttl.lease_ttl_s + 2 * ttl.heartbeat_s + ttl.sweep_s + 3
    told = drill.spawn(_told_of_gap(drill, before, marks, up_at + window_s), "gap-watch")
    try:
        live_pairs = [pair for pair in pairs if pair[0].open and pair[1].open]
        await asyncio.gather(
            flow(drill, report, up_at, pairs=live_pairs, limit_s=REDIS_RECOVERY_S, window_s=window_s),
            new_sessions(drill, report, up_at, limit_s=REDIS_RECOVERY_S, window_s=window_s),
        )
    finally:
        told_count, open_count = await told
    report.figure("told_of_gap", "sessions told of the gap", told_count, f"{told_count} of {open_count} open sessions",
                  None if told_count == open_count else f"only {told_count} of {open_count} open sessions were told of the gap")  # fmt: skip
    no_call_told(report, "no game was killed")
    no_code_orphaned(report)
    ended(drill, report, before, lambda session: False)
    settled_by = up_at + 3 * ttl.heartbeat_s + ttl.sweep_s + TOLERANCE_S
    await asyncio.sleep(max(0.0, settled_by - time.monotonic()))
    await settle(drill, report, within_s=2.0)
    await replenish(drill, report)
    process_figures(drill, report)


async def _told_of_gap(drill: Drill, before: Sessions, marks: dict[str, int], deadline: float) -> tuple[int, int]:
    """(sessions told of the gap, sessions of ``before`` still open) once all are, or at ``deadline``."""

    def told(session: Game | Call) -> bool:
        since = marks.get(session.gateway.name, 0)
        if isinstance(session, Game):
            return bool(session.gateway.log.find(GAP_TOLD["game"], since, code=session.code))
        return bool(session.gateway.log.find(GAP_TOLD["call"], since, call_sid=session.sid))

    def sessions() -> list[Game | Call]:
        return [session for session in [*before.games, *before.calls] if session.open]

    await wait_until(lambda: all(told(session) for session in sessions()), deadline)
    still = sessions()
    return sum(told(session) for session in still), len(still)
