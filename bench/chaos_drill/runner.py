"""The drill from start-up to shutdown: the faults in order, each judged, within the time budget."""

from __future__ import annotations

import asyncio

from . import faults
from .drill import Drill
from .judging import process_figures
from .population import populate

__all__ = ["run"]


async def run(drill: Drill) -> list[str]:
    """The drill from start-up to shutdown; the violations it found besides the faults' own."""
    problems: list[str] = []
    try:
        async with asyncio.timeout(drill.mode.budget_s):
            await _faults(drill)
    except TimeoutError:
        problems.append(f"the drill did not finish within {drill.mode.budget_s:.0f} s (during: {drill.phase})")
    except RuntimeError as error:
        problems.append(f"the drill could not go on ({drill.phase}): {error}")
    finally:
        statuses = await drill.close()
    return problems + _shutdown_problems(drill, statuses)


async def _faults(drill: Drill) -> None:
    await drill.start()
    report = drill.begin(f"start: {drill.mode.games} games, {drill.mode.calls} calls on 2 + 2 gateways")
    await populate(drill, report)
    process_figures(drill, report)
    await faults.kill_game_gateway(drill)
    await faults.kill_twilio_gateway(drill)
    for down_s in drill.mode.outages_s:
        await faults.restart_redis(drill, down_s)
    await faults.stall_a_game(drill)
    await faults.everyone_leaves(drill)


def _shutdown_problems(drill: Drill, statuses: dict[str, int | None]) -> list[str]:
    """Gateways that did not exit 0 on SIGTERM, and log lines written since the last fault that
    are not JSON."""
    problems = []
    print("\n== shutdown (SIGTERM) ==", flush=True)
    for name, status in statuses.items():
        print(f"  {name} exited {status}", flush=True)
        if status != 0:
            problems.append(f"{name} exited {status} on SIGTERM")
    for gateway in drill.gateways:
        gateway.log.poll(force=True)
    bad = [line for gateway in drill.gateways for line in gateway.log.bad_lines[drill.reported.bad_lines.get(gateway.name, 0):]]
    if bad:
        problems.append(f"{len(bad)} more log lines are not JSON, e.g. {bad[:3]}")
    return problems
