"""The chaos drill's short variant (``bench/chaos.py --short``) finds no violation.

The drill kills a game-gateway and a twilio-gateway, restarts Redis twice, stalls a game and lets
every client leave, on its own loopback deployment; see the script for what it holds the bus to.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CHAOS = Path(__file__).resolve().parent.parent / "bench" / "chaos.py"
# The drill bounds itself (170 s in --short, start-up and shutdown included); this is the backstop.
DRILL_TIMEOUT_S = 240


@pytest.mark.timeout(DRILL_TIMEOUT_S + 60)
def test_the_short_chaos_drill_finds_no_violation(tmp_path):
    """Every fault heals as the bus promises, and no process but the killed ones goes down."""
    result = subprocess.run(
        [sys.executable, str(CHAOS), "--short", "--seed", "1", "--keep-logs", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=DRILL_TIMEOUT_S,
    )
    if result.returncode != 0:
        pytest.fail(f"{result.stdout}\n{result.stderr}\n(exit {result.returncode}; gateway logs in {tmp_path})", pytrace=False)
