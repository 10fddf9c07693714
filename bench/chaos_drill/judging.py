"""Judging the deployment after a fault: pool, leases and claims in Redis, the sessions that
ended, and trouble in the processes (crashes, odd log lines, misrouted transcripts)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

from .clients import Call, Game
from .drill import Drill, Sessions, Snapshot
from .polling import wait_until
from .report import FaultReport
from .settings import CALL_ENDED, GAME_ENDED

__all__ = ["ended", "judge", "process_figures", "settle"]


def judge(drill: Drill, snapshot: Snapshot) -> dict[str, list[str]]:
    """What is wrong with ``snapshot`` given the games and calls alive now."""
    live = [game for game in drill.games if game.open]
    shown = Counter(game.code for game in live)
    leased = set(snapshot.leases)
    lost = [
        code + (" (leased)" if code in leased else "") + (" (claimed)" if code in snapshot.claims else "")
        for code in drill.mode.codes if code not in snapshot.free and not (code in leased and shown[code])
    ]  # fmt: skip
    twice = {code for code, count in shown.items() if count > 1} | (snapshot.free & leased) | (snapshot.free & set(shown))
    calls = {call.sid: call for call in drill.calls}
    stale = [
        f"{code}:{sid[:8]}" for code, sid in snapshot.claims.items()
        if not _claim_holds(code, calls.get(sid), leased)
    ]  # fmt: skip
    missing = [game.code for call, game in drill.live_pairs(probes=True) if snapshot.claims.get(game.code) != call.sid]
    return {"codes_lost": lost, "codes_held_twice": sorted(twice), "stale_claims": sorted(stale), "claims_missing": sorted(missing)}


def _claim_holds(code: str, call: Call | None, leased: set[str]) -> bool:
    """A claim is right when its call is open and patched into the live game holding its code."""
    return call is not None and call.open and call.game_alive and call.game.code == code and code in leased


async def settle(drill: Drill, report: FaultReport, within_s: float) -> None:
    """Wait (bounded) for pool, leases and claims to be right, then report what is still wrong."""
    judged: dict[str, list[str]] = {"redis_unreachable": ["no answer"]}

    async def right() -> bool:
        nonlocal judged
        snapshot = await drill.snapshot()
        judged = judge(drill, snapshot) if snapshot is not None else {"redis_unreachable": ["no answer"]}
        return not any(judged.values())

    await wait_until(right, time.monotonic() + within_s)
    if "redis_unreachable" in judged:
        report.violate("Redis did not answer the drill's reads")
        return
    labels = {
        "codes_lost": "codes lost", "codes_held_twice": "codes held twice", "stale_claims": "stale claims",
        "claims_missing": "patched calls without their claim",
    }  # fmt: skip
    for key, label in labels.items():
        wrong = judged[key]
        shown = f"{len(wrong)}" + (f" {wrong[:8]}" if wrong else "")
        report.figure(key, label, len(wrong), shown, f"{label}: {wrong[:8]}" if wrong else None)


def ended(drill: Drill, report: FaultReport, before: Sessions, expected: Callable[[Game | Call], bool]) -> None:
    """Sessions of ``before`` that ended: the expected ones, and the rest (violations)."""
    gone: list[Game | Call] = [game for game in before.games if not game.open] + [call for call in before.calls if not call.open]
    allowed = [session for session in gone if expected(session)]
    wrong = [session for session in gone if not expected(session)]
    games = sum(isinstance(session, Game) for session in wrong)
    shown = f"{len(gone)} ({len(allowed)} expected; {games} games and {len(wrong) - games} calls not)"
    report.figures["sessions_ended_unexpectedly"] = len(wrong)
    violation = None
    if wrong:
        violation = f"{len(wrong)} sessions ended that should not have, e.g. " + "; ".join(_why_ended(s) for s in wrong[:3])
    report.figure("sessions_ended", "sessions ended", len(gone), shown, violation)


def _why_ended(session: Game | Call) -> str:
    """What the session's own process logged as it ended."""
    if isinstance(session, Call):
        lines = session.gateway.log.find(CALL_ENDED, call_sid=session.sid)
        reason = lines[-1].get("reason") if lines else "no call_ended line"
        return f"call {session.sid[:10]} on {session.gateway.name}: {reason!r} (close {session.close_code})"
    lines = session.gateway.log.find(GAME_ENDED, session.log_mark, code=session.code)
    reason = lines[0].get("reason") if lines else "no game_session_ended line"
    return f"game {session.code} on {session.gateway.name}: {reason!r} (close {session.close_code})"


def process_figures(drill: Drill, report: FaultReport) -> None:
    """Crashes, non-JSON and error-level log lines, and transcripts misrouted or out of order:
    each counted only once, by the first fault after it happened."""
    _crashes(drill, report)
    _bad_lines(drill, report)
    _error_lines(drill, report)
    _transcripts(drill, report)


def _crashes(drill: Drill, report: FaultReport) -> None:
    crashed = []
    for gateway in drill.gateways:
        if not gateway.killed and not gateway.stopped and not gateway.alive and gateway.name not in drill.reported.crashes:
            drill.reported.crashes.add(gateway.name)
            crashed.append(f"{gateway.name} exited {gateway.process.returncode}: {gateway.tail()}")
    redis_gone = not drill.redis_down and (drill.redis.process is None or drill.redis.process.poll() is not None)
    if redis_gone and "redis" not in drill.reported.crashes:
        drill.reported.crashes.add("redis")
        crashed.append("redis-server is not running")
    report.figure("process_crashes", "process crashes besides the killed one", len(crashed),
                  violation=f"processes died: {crashed}" if crashed else None)  # fmt: skip


def _bad_lines(drill: Drill, report: FaultReport) -> None:
    bad = []
    for gateway in drill.gateways:
        gateway.log.poll(force=True)
        seen = drill.reported.bad_lines.get(gateway.name, 0)
        bad += [f"{gateway.name}: {line}" for line in gateway.log.bad_lines[seen:]]
        drill.reported.bad_lines[gateway.name] = len(gateway.log.bad_lines)
    report.figure("non_json_log_lines", "non-JSON log lines", len(bad),
                  violation=f"{len(bad)} log lines are not JSON, e.g. {bad[:3]}" if bad else None)  # fmt: skip


def _error_lines(drill: Drill, report: FaultReport) -> None:
    """Counted for information: a fault may rightly log errors (Redis gone, a peer killed)."""
    errors: Counter[str] = Counter()
    for gateway in drill.gateways:
        seen = drill.reported.errors.get(gateway.name, 0)
        for record in gateway.log.records[seen:]:
            if record.get("level") in ("error", "critical"):
                errors[str(record.get("event")).split("\n")[0][:60]] += 1
        drill.reported.errors[gateway.name] = len(gateway.log.records)
    report.figures["error_log_lines"] = dict(errors)
    shown = ", ".join(f"{event} x{count}" for event, count in errors.most_common(5))
    print(f"  error-level log lines (for information): {sum(errors.values())}" + (f" ({shown})" if errors else ""), flush=True)


def _transcripts(drill: Drill, report: FaultReport) -> None:
    strange = [text for game in drill.games for text in game.strange]
    misrouted = sum(game.misrouted for game in drill.games)
    order = sum(game.out_of_order for game in drill.games)
    reported_misrouted, reported_order = drill.reported.transcripts
    drill.reported.transcripts = misrouted, order
    misrouted, order = misrouted - reported_misrouted, order - reported_order
    report.figure("misrouted_transcripts", "transcripts at the wrong game", misrouted,
                  violation=f"{misrouted} transcripts reached a game they were not spoken to" if misrouted else None)  # fmt: skip
    report.figure("out_of_order_transcripts", "transcripts out of order or twice", order,
                  violation=f"{order} transcripts came out of order or twice" if order else None)  # fmt: skip
    if strange:
        report.violate(f"games read {len(strange)} texts that are no transcript of the drill, e.g. {strange[:2]}")
    for game in drill.games:
        game.strange.clear()
