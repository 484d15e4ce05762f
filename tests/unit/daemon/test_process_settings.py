"""ha.cf ``realtime``: the daemon locks its memory without backing what Python only reserves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def test_load_average_is_read_once_a_second_through_one_open_file(tmp_path: Path) -> None:
    from nonstop.process import LoadAvg

    fake = tmp_path / "loadavg"
    fake.write_text("0.10 0.20 0.30 1/100 42\n")
    la = LoadAvg()
    la.path = str(fake)
    assert la.get(10.0) == "0.10 0.20 0.30 1/100 42"
    fd = la._fd
    fake.write_text("1.00 2.00 3.00 2/200 43\n")  # the same file, rewritten in place
    assert la.get(10.5) == "0.10 0.20 0.30 1/100 42"  # within the second: no read
    assert la.get(11.0) == "1.00 2.00 3.00 2/200 43"
    assert la._fd == fd
    la.close()
    assert la._fd is None
    real = LoadAvg()
    assert real.get(0.0).count(" ") == 4 and real.get(0.0) != "n/a"
    real.close()
    missing = LoadAvg()
    missing.path = str(tmp_path / "absent")
    assert missing.get(0.0) == "n/a"
