"""The daemon keeps glibc's malloc to one arena: with an arena per thread its memory grew
without end under replication (a 28-minute soak: RSS +8 MB, Python's heap flat)."""

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
