"""How often the active node's safety-net full scan runs (pure).

inotify reports a change within a second; the periodic full scan catches what it cannot see (a
queue overflow, a directory it could not watch, a write through a name outside the tree). On the
talk's tree that scan costs nothing, but it checks every file: with 20,000 voicemail files it
took about 0.3 s of CPU, and once a minute that made an idle active node use 1.04 % of a core
against the standby's 0.43 % (docs/BENCHMARKS.md). While inotify watches the whole tree, the
scan is spaced so that it costs at most ``SHARE`` of a core, as csync2's cron every 5 minutes
would for such a tree; while it does not, it runs every ``base`` seconds whatever it costs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

SHARE = 0.001  # of one core
LONGEST_S = 600.0


def full_scan_pause(base: float, cpu_s: float, watched: bool) -> float:
    """Seconds from one full scan to the next: ``base``, or while every directory is
    watched, as long as the last scan's ``cpu_s`` needs to cost at most SHARE of a core
    (never more than LONGEST_S, nor less than ``base``)."""
    if not watched:
        return base
    return max(base, min(cpu_s / SHARE, LONGEST_S))


def thread_cpu(fn: Callable[..., Any], *args: Any) -> float:
    """Run ``fn(*args)``; the CPU seconds this thread spent in it."""
    start = time.thread_time()
    fn(*args)
    return time.thread_time() - start
