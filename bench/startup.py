"""Start-up time of a command: wall time of ``runs`` runs after one warm-up run.

    flock /tmp/nonstop-bench.lock python3 -m bench.startup [--runs 30] -- python3 -m nonstop status

Run with bytecode compiled (PYTHONDONTWRITEBYTECODE unset, or PYTHONPYCACHEPREFIX set), so
the warm-up run writes it and the timed runs read it, as an installed package does.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def wall_times(argv: list[str], runs: int) -> list[float]:
    """Seconds per run of ``argv`` (output discarded), after one untimed run."""
    subprocess.run(argv, capture_output=True, check=False)
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=False)
        out.append(time.perf_counter() - t0)
    return out


def main(args: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.startup")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("command", nargs="+")
    ns = parser.parse_args(args)
    times = wall_times(ns.command, ns.runs)
    print(f"median {statistics.median(times) * 1000:.1f} ms  min {min(times) * 1000:.1f} ms  "
          f"({ns.runs} runs)  {' '.join(ns.command)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
