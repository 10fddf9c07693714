"""What the drill prints: one line per figure as each fault is judged, and the closing summary."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .drill import Drill

__all__ = ["FaultReport", "Reported", "percentile", "print_summary", "seconds"]


def seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f} s"


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass(slots=True)
class FaultReport:
    """The figures of one fault, printed as they are taken."""

    number: int
    title: str
    figures: dict[str, Any] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    def figure(self, key: str, label: str, value: Any, shown: str | None = None, violation: str | None = None) -> None:
        self.figures[key] = value
        print(f"  {label}: {shown if shown is not None else value}", flush=True)
        if violation:
            self.violate(violation)

    def violate(self, violation: str) -> None:
        self.violations.append(violation)
        print(f"  VIOLATION: {violation}", flush=True)


@dataclass(slots=True)
class Reported:
    """How much of each process's trouble earlier faults have counted, so each fault counts only
    what is new: crashes by process name, and per process the log lines and transcripts seen."""

    crashes: set[str] = field(default_factory=set)
    bad_lines: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    transcripts: tuple[int, int] = (0, 0)  # (misrouted, out of order) over all games


def print_summary(drill: Drill, problems: list[str], *, seed: int, elapsed_s: float) -> int:
    """Print the JSON summary and every violation; the exit status (0 clean, 1 violations)."""
    reports = drill.reports
    violations = [f"{report.number}. {report.title}: {v}" for report in reports for v in report.violations] + problems
    summary = {
        "mode": drill.mode.name, "seed": seed, "seconds": elapsed_s, "ok": not violations,
        "violations": violations,
        "faults": [{"fault": report.title, **report.figures, "violations": report.violations} for report in reports],
    }  # fmt: skip
    print("\n== summary ==", flush=True)
    print(json.dumps(summary, indent=1, default=str), flush=True)
    if violations:
        print(f"\nFAILED: {len(violations)} violations", flush=True)
        for violation in violations:
            print(f"- {violation}", flush=True)
        return 1
    print("\nOK: no violation", flush=True)
    return 0
