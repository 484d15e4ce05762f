"""The benchmark suite in its quick mode: it must run, report progress and write a document with
tables and plots, and leave no namespace behind. The sync suite is left out here: its quick run,
through the same bench.run, is test_bench_sync_quick's (it took a third of this test's time)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nonstop.lab.names import owner_pid

pytestmark = [
    pytest.mark.netns,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the benchmarks build network namespaces"),
    pytest.mark.skipif(
        not all(Path(p).exists() for p in ("/usr/libexec/heartbeat/heartbeat",
                                           "/usr/sbin/keepalived", "/usr/sbin/kamailio")),
        reason="needs the heartbeat, keepalived and kamailio packages"),
    pytest.mark.skipif(shutil.which("nft") is None, reason="needs nftables"),
]

REPO = Path(__file__).resolve().parents[2]
BUDGET_S = 230.0  # CI gives this test 4 minutes


def _netns() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def test_quick_benchmark_writes_tables_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    with subprocess.Popen([sys.executable, "-m", "bench.run", "--quick",
                           "--suites", "membership,failover", "--out", str(out)],
                          cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=BUDGET_S)
        except subprocess.TimeoutExpired:
            proc.kill()  # its labs are removed by the next run's leftover cleanup
            stdout, stderr = proc.communicate()
            pytest.fail(f"quick benchmark still running after {BUDGET_S} s:\n{stderr[-4000:]}")
    done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert done.returncode == 0, done.stderr[-4000:]
    # Progress: one line per measurement, prefixed by the suite.
    assert re.search(r"^\[failover\] nonstop crash 1/1: \d+\.\d+ s", done.stderr, re.M), \
        done.stderr[-4000:]
    assert re.search(r"^\[membership\] Heartbeat 3\.0\.6 detection 1/1: \d+\.\d+ s",
                     done.stderr, re.M), done.stderr[-4000:]
    text = out.read_text()
    assert "python3 -m bench.run --quick --suites membership,failover" in text
    for heading in ("## Machine", "Client-visible SIP downtime", "Idle CPU and memory"):
        assert heading in text
    for system in ("nonstop", "Heartbeat 3.0.6", "keepalived 2.2.7"):
        assert system in text
    assert "Failure:" not in text, text
    # Every measured cell is a number: no fault left a system without a value.
    downtime = text.split("#### Client-visible SIP downtime", 1)[1].split("\n\n", 2)[1]
    for row in downtime.splitlines()[2:]:
        assert "| - |" not in row, row
    plots = re.findall(r"!\[[^]]*\]\(([^)]+\.png)\)", text)
    assert len(plots) >= 2
    for rel in plots:
        png = (out.parent / rel).resolve()
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    # Lab names carry their creator's pid: the benchmark's own must all be gone (other runs
    # on the machine may have theirs).
    mine = {name for name in _netns() if owner_pid(name) == proc.pid}
    assert not mine, mine
