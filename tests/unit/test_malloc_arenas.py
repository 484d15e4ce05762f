"""The daemon keeps glibc's malloc to one arena: with an arena per thread its memory grew
without end under replication (a 28-minute soak: RSS +8 MB, Python's heap flat). And it fixes
malloc's mapping threshold, which glibc otherwise raises to each mapped block freed, so that
the heap's freed top stays (docs/BENCHMARKS.md, sixth memory pass)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Four threads alive at once, each calling malloc, then glibc's malloc_stats (on stderr: one
# "Arena N:" block per arena). With "run", nonstop's `run` entry is called first (on an empty
# configuration directory it stops at the configuration error, its process settings made).
SCRIPT = """
import ctypes, sys, threading
from pathlib import Path
if sys.argv[1] == "run":
    from nonstop.runcommand import run_node
    run_node(Path(sys.argv[2]), Path(sys.argv[3]), "vpbx1-1", 0, "/")
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
gate = threading.Barrier(5)
def work():
    libc.malloc(1000)
    gate.wait()
    gate.wait()
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads:
    t.start()
gate.wait()
libc.malloc_stats()
gate.wait()
for t in threads:
    t.join()
"""


def _arenas(tmp_path: Path, *args: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    out = subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True,
                         timeout=60, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    return sum(1 for line in out.stderr.splitlines() if line.startswith("Arena "))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_stats")
def test_the_daemon_runs_with_one_malloc_arena(tmp_path: Path) -> None:
    empty = tmp_path / "ha.d"
    empty.mkdir()
    assert _arenas(tmp_path, "plain") > 1  # what glibc does by itself: an arena per thread
    assert _arenas(tmp_path, "run", str(empty), str(tmp_path / "state")) == 1


# A mapped block of 4 MiB freed, then one of 2 MiB asked: glibc by itself has raised its
# mapping threshold to 4 MiB and takes the 2 MiB from the heap; with the daemon's fixed
# threshold it maps them. Prints how many mapped blocks the second malloc added.
MAPPED = """
import ctypes, sys
from pathlib import Path
if sys.argv[1] == "run":
    from nonstop.runcommand import run_node
    run_node(Path(sys.argv[2]), Path(sys.argv[3]), "vpbx1-1", 0, "/")
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = Info
libc.free(libc.malloc(4 << 20))
before = libc.mallinfo2().hblks
kept = libc.malloc(2 << 20)
print(libc.mallinfo2().hblks - before)
"""


def _mapped(tmp_path: Path, *args: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", MAPPED, *args], capture_output=True, text=True,
                         timeout=60, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallinfo2")
def test_the_daemon_maps_large_blocks_whatever_was_freed_before(tmp_path: Path) -> None:
    empty = tmp_path / "ha.d"
    empty.mkdir()
    assert _mapped(tmp_path, "plain") == 0  # glibc's moving threshold: from the heap
    assert _mapped(tmp_path, "run", str(empty), str(tmp_path / "state")) == 1
