"""Starting a ``phonepatch`` gateway as an OS process of its own, for tests and drills."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import IO

__all__ = ["spawn_phonepatch"]


def spawn_phonepatch(role: str, port: int, config: Path, env: dict[str, str], out: IO[bytes]) -> subprocess.Popen:
    """``python -m phonepatch.services ROLE`` on ``port`` with ``config``; it logs to ``out``."""
    command = [sys.executable, "-m", "phonepatch.services", role, "--port", str(port), "--config", str(config)]
    return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
