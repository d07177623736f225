"""Soak of the nothing-lost accounting test: more events and several rounds, each with its own
broker, S3 storage and members (kill -9, rebalances, SIGTERM, broker restart in every round).

    .venv/bin/python -m loadtest.reliability_soak --events 200000 --rounds 3

Prints each round's figures (events, poison, faults, verdicts missing, duplicates) and exits non-zero
if any round lost an event. Loopback only; bounded by --rounds and a per-round timeout.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEST = "tests/reliability/test_nothing_lost.py"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--round-timeout-seconds", type=int, default=1200)
    args = parser.parse_args()
    env = {**os.environ, "RELIABILITY_EVENTS": str(args.events),
           "RELIABILITY_TIMEOUT_SECONDS": str(args.round_timeout_seconds)}
    failures = 0
    for round_number in range(1, args.rounds + 1):
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "pytest", TEST, "-q", "-s", "-p", "no:cacheprovider"], cwd=REPO, env=env,
            capture_output=True, text=True, timeout=args.round_timeout_seconds + 60,
        )
        figures = [line for line in result.stdout.splitlines()
                   if line.startswith(("nothing lost:", "verdicts:", "dead letters:"))]
        status = "ok" if result.returncode == 0 else f"FAILED (exit {result.returncode})"
        print(f"round {round_number}: {status} in {time.monotonic() - started:.0f}s")
        for line in figures:
            print(f"  {line}")
        if result.returncode != 0:
            failures += 1
            print(result.stdout[-4000:])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
