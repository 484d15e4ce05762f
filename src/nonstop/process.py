"""Process settings of the daemon as Heartbeat applies them (realtime, memory lock, cores)
and the load average for heartbeats."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import os

from nonstop.config.model import HaConfig

log = logging.getLogger("nonstop")


class LoadAvg:
    """``/proc/loadavg`` for the ``ld`` field, read at most once a second.

    The file stays open and is read with one pread: opening it as a text file each second
    cost eight system calls (open, two fstat, a tty check, seek, two reads, close) and an
    io stack on an idle node's once-a-second wakeup (issue 15)."""

    path = "/proc/loadavg"

    def __init__(self) -> None:
        self._value = "n/a"
        self._read_at = -1.0
        self._fd: int | None = None

    def get(self, now: float) -> str:
        if now - self._read_at >= 1.0:
            self._read_at = now
            try:
                if self._fd is None:
                    self._fd = os.open(self.path, os.O_RDONLY)
                raw = os.pread(self._fd, 256, 0)
                self._value = raw.decode("ascii", "replace").strip() or "n/a"
            except OSError:
                self._value = "n/a"
        return self._value

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # also at interpreter exit
            self.close()


def _normal_priority() -> None:
    """Worker threads (netlink, files) run at normal priority even when the daemon is
    realtime: only the heartbeat path gets SCHED_RR."""
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


# mlockall(2) flags: MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT (Linux >= 4.4). Without ONFAULT the
# kernel backs and locks every mapping at once, as root beyond RLIMIT_MEMLOCK: the arenas and
# 8 MiB thread stacks Python reserves but never touches (VmLck = VmSize, 77 MB PSS measured, see
# docs/BENCHMARKS.md). With it a page is locked when first touched: what the heartbeat path uses
# can never be swapped out, what nobody uses costs nothing.
MLOCK_FLAGS = 1 | 2 | 4


# mallopt(3) parameters: the most malloc arenas glibc may create; the size from which a block
# gets a mapping of its own; how much free memory at the heap's top is handed back.
M_ARENA_MAX = -8
M_MMAP_THRESHOLD = -3
M_TRIM_THRESHOLD = -1
DAEMON_ARENAS = 1
DAEMON_MMAP_THRESHOLD = 1 << 20
DAEMON_TRIM_THRESHOLD = 256 << 10


def limit_malloc_arenas(n: int = DAEMON_ARENAS) -> bool:
    """Let glibc's malloc use at most ``n`` arenas, and fix its mapping and trimming
    thresholds; call before any thread starts.

    glibc gives each new thread an arena of its own (up to 8 per core), and what the worker
    threads (database, file writes, TLS) free in them is seldom handed back: in a 28-minute
    soak of a replicating pair both daemons grew steadily, RSS +8.0 MB and +6.1 MB. Two
    nodes replicating in one process grew about 0.26 KB per push while Python's own heap and
    SQLite's stayed flat; with one arena the same pushes left RSS flat. The daemon's threads
    mostly take turns under the GIL: the soak's slowest change on the standby was the same
    with one arena (0.23 s, 0.26 s before).

    The thresholds: by itself glibc raises its mapping threshold to the size of each mapped
    block freed (the 800 KB buffers of a push, here) and its trimming threshold to twice that,
    so up to 2 MB of freed heap stayed at the top, resident under mlockall, and the heap
    crept: in two 24-minute soaks of the PBX load side by side, the daemons' private memory
    grew 34 and 72 KB a minute (active, standby), 5 and 7 with fixed thresholds
    (docs/BENCHMARKS.md, sixth memory pass). Fixed, a block of 1 MiB or more is mapped and
    unmapped, and more than 256 KiB free at the top is given back.

    A ``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_`` in the
    environment (read by glibc at start) is the admin's choice and is left alone. False where
    no arena limit was set (not glibc, or the environment decides)."""
    try:
        libc = ctypes.CDLL(None)
        for var, param, value in (("MALLOC_MMAP_THRESHOLD_", M_MMAP_THRESHOLD,
                                   DAEMON_MMAP_THRESHOLD),
                                  ("MALLOC_TRIM_THRESHOLD_", M_TRIM_THRESHOLD,
                                   DAEMON_TRIM_THRESHOLD)):
            if var not in os.environ:
                libc.mallopt(param, value)
        if "MALLOC_ARENA_MAX" in os.environ:
            return False
        return bool(libc.mallopt(M_ARENA_MAX, n))
    except (AttributeError, OSError):
        return False


def _return_startup_garbage() -> None:
    """Hand back to the kernel the heap that imports and parsing freed (about 2 MB glibc
    would keep), before mlockall pins it."""
    gc.collect()
    with contextlib.suppress(AttributeError, OSError):  # not glibc: nothing to trim
        ctypes.CDLL(None).malloc_trim(0)


def apply_process_settings(ha: HaConfig, loop: asyncio.AbstractEventLoop) -> None:
    """ha.cf ``realtime``/``rtprio`` and ``coredumps``, as Heartbeat applies them."""
    import resource
    from concurrent.futures import ThreadPoolExecutor

    _soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (hard if ha.coredumps else 0, hard))
    loop.set_default_executor(ThreadPoolExecutor(max_workers=8, initializer=_normal_priority))
    _return_startup_garbage()
    if not ha.realtime:
        return
    lowest = os.sched_get_priority_min(os.SCHED_RR)
    prio = ha.rtprio if ha.rtprio is not None and ha.rtprio > 0 else lowest
    try:
        # RESET_ON_FORK: scripts, the service they start and worker threads run at normal
        # priority, as Heartbeat's children do; only the heartbeat path is realtime.
        os.sched_setscheduler(0, os.SCHED_RR | os.SCHED_RESET_ON_FORK, os.sched_param(prio))
        log.info("realtime: heartbeat thread runs SCHED_RR priority %d", prio)
    except OSError as e:
        log.warning("realtime: cannot set SCHED_RR priority %d: %s", prio, e.strerror)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mlockall(MLOCK_FLAGS) != 0:
        log.warning("Cannot lock ourselves into memory: %s", os.strerror(ctypes.get_errno()))
