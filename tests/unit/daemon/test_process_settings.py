"""ha.cf ``realtime``: the daemon locks its memory without backing what Python only reserves."""

from __future__ import annotations

import subprocess
import sys

import pytest

# A child process applies the realtime settings, then reserves a 64 MiB mapping it never touches
# (as thread stacks and arenas are) and reports its locked and resident sizes in kB.
CHILD = """
import asyncio, mmap
from nonstop.config.model import Bcast, HaConfig
from nonstop.daemon import apply_process_settings

ha = HaConfig(path="ha.cf", nodes=("a",), media=(Bcast("eth0"),), realtime=True)
loop = asyncio.new_event_loop()
apply_process_settings(ha, loop)
reserved = mmap.mmap(-1, 64 << 20)
fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(int(fields["VmLck"].split()[0]), int(fields["VmRSS"].split()[0]))
"""


def test_realtime_locks_memory_on_fault_only() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                          timeout=60, check=True)
    locked_kb, rss_kb = (int(v) for v in done.stdout.split())
    if locked_kb == 0:
        pytest.skip("mlockall not permitted here (needs root or CAP_IPC_LOCK)")
    # Everything mapped is marked locked, the untouched 64 MiB included...
    assert locked_kb > 64 << 10
    # ...but only touched pages are resident: MCL_CURRENT|MCL_FUTURE alone faulted it all in.
    assert rss_kb < 48 << 10, (locked_kb, rss_kb)
