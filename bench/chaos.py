"""Chaos drill: faults on a two-by-two phonepatch deployment, one at a time, judged as they heal.

On loopback only, it starts its own ``redis-server`` (nothing on disk), the fake Deepgram of
``tests/peers.py`` (in this process), two ``phonepatch game-gateway`` and two ``phonepatch
twilio-gateway`` processes, each logging JSON lines to its own file. Games connect to both
game-gateways; keyed calls (``code#``) from both twilio-gateways patch into distinct games; every
patched call keeps talking, so transcripts flow all along. Then, one at a time, each fault is
judged against what README ("Scale out on Redis") promises:

0. Start: every game gets a code of its own, every call patches, transcripts and texts flow.
1. ``kill -9`` a game-gateway (a replacement starts at once): only its sessions end; its callers
   are told (``game_left``) and can key another game; its codes are patchable again within lease
   TTL + sweep interval, proven by taking each with a new game and patching a call into it.
2. ``kill -9`` a twilio-gateway (replaced too): only its calls end; their claims lapse within the
   claim TTL, and their games stay up and take a new caller.
3. and 4. Redis restarted empty after a short outage, then a longer one (both under the lease
   TTL): no session ends, each is told of the gap, and within 2 s of Redis answering transcripts,
   game texts, new games and new calls work.
5. One game stops reading while its call talks fast: other games' transcripts stay under 1 s;
   the game catches up, or its gateway drops it with 1008 and its code comes back.
6. Every client leaves: each code is back in the pool (no lease, no claim) as its game leaves.

After each fault it also counts codes lost or held twice, stale or missing claims, crashes of
other processes, log lines that are not JSON, and transcripts at the wrong game or out of order;
after a kill, a survivor on each pair must still work and a new game on each game-gateway must
take a new call from each twilio-gateway. The drill itself lives in ``bench/chaos_drill/``.

    python3 bench/chaos.py --short --seed 1   # CI (tests/test_chaos.py): 20 games, 6 calls, 3 s TTLs; ~30 s
    python3 bench/chaos.py --seed 5           # full: 100 games, 30 calls, default TTLs (10 s); ~1 min
    python3 bench/chaos.py --keep-logs DIR    # keep the gateways' logs; no --seed: a random one

Prints each figure as it is taken, then a JSON summary; exits 0 when clean, 1 naming every
violation, 2 when the drill itself cannot run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from pathlib import Path

# The drill's package sits beside this script; the fakes and Redis server it borrows are in tests/.
_BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(_BENCH), str(_BENCH.parent / "tests")]
from chaos_drill.drill import Drill  # noqa: E402
from chaos_drill.report import print_summary  # noqa: E402
from chaos_drill.runner import run  # noqa: E402
from chaos_drill.settings import FULL, SHORT  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    mode = SHORT if args.short else FULL
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    print(f"chaos drill ({mode.name}), seed {seed}, {os.cpu_count()} cores", flush=True)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="phonepatch-chaos-") as scratch:
        workdir = args.keep_logs or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        drill = Drill(mode, random.Random(seed), workdir)
        try:
            problems = asyncio.run(run(drill))
        except Exception as error:  # noqa: BLE001 - the drill itself broke: say so, exit 2
            print(f"chaos: the drill could not run: {error!r}", file=sys.stderr)
            return 2
    return print_summary(drill, problems, seed=seed, elapsed_s=round(time.monotonic() - began, 1))


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help="the CI variant: 20 games, 6 calls, 3 s TTLs")
    parser.add_argument("--seed", type=int, default=None, help="which gateways die and which game stalls")
    parser.add_argument("--keep-logs", metavar="DIR", type=Path, help="write the gateways' logs here and keep them")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
