"""The chaos run (issue 12 item 6) in its quick mode, against nonstop only: the harness must
inject every fault kind, sample the VIP's holders every 10 ms and write its report. Whether
nonstop keeps every invariant is what the report says, not what this test asserts; a harness
that injects nothing, samples nothing or loses its client fails it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nonstop.lab.faults import CHAOS_KINDS, CHAOS_TITLES
from nonstop.lab.names import owner_pid

pytestmark = [
    pytest.mark.netns,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the chaos run builds network namespaces"),
    pytest.mark.skipif(not Path("/usr/sbin/kamailio").exists(), reason="needs kamailio"),
    pytest.mark.skipif(shutil.which("nft") is None, reason="needs nftables"),
]

REPO = Path(__file__).resolve().parents[2]
BUDGET_S = 90.0  # the run itself takes ~35 s


def _netns() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def test_quick_chaos_injects_every_fault_and_checks_the_invariants(tmp_path: Path) -> None:
    out, summary = tmp_path / "RELIABILITY.md", tmp_path / "chaos.json"
    with subprocess.Popen([sys.executable, "-m", "bench.chaos", "--quick", "--systems",
                           "nonstop", "--out", str(out), "--json", str(summary)],
                          cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as proc:
        try:
            _, stderr = proc.communicate(timeout=BUDGET_S)
        except subprocess.TimeoutExpired:
            proc.kill()  # its lab is removed by the next run's leftover cleanup
            _, stderr = proc.communicate()
            pytest.fail(f"quick chaos run still running after {BUDGET_S} s:\n{stderr[-4000:]}")
    assert proc.returncode == 0, stderr[-4000:]
    [run] = json.loads(summary.read_text())
    assert run["system"] == "nonstop" and run["failure"] == ""
    # Every kind was injected, on a node of the cluster, and did something.
    assert run["kinds"] == sorted(CHAOS_KINDS), run["injected"]
    for item in run["injected"]:
        assert item["node"] in ("vpbx1-1", "vpbx1-2"), item
        assert item["end"] > item["at"], item
        if item["kind"] in ("kill", "stop"):
            assert item["note"].split()[0].isdigit() and int(item["note"].split()[0]) >= 1, item
        if item["kind"] == "cpuhog":
            assert "busy loop" in item["note"], item
    # Crashing the active box must cost the client at least part of the deadtime: if it did
    # not, the harness hit nothing (or the client saw nothing).
    assert run["outages"]["crash"][0] > 0.5, run["outages"]
    # The invariants were checked every 10 ms or so (a loaded machine may stretch a few).
    assert run["sampler_errors"] == 0
    assert run["samples"] >= 0.5 * run["seconds"] / 0.01, run
    assert run["longest_sample_gap"] < 1.0, run
    assert run["held_share"] > 0.5, run  # the sampler sees the VIP
    assert run["answers"] > 0.5 * run["probes"] > 0, run  # the client was answered
    assert isinstance(run["availability"], float)
    for violation in run["violations"]:
        assert violation["end"] >= violation["start"], violation
    text = out.read_text()
    assert "python3 -m bench.chaos --quick" in text
    for heading in ("## Summary", "## Client-visible outage per fault kind", "### Faults injected",
                    "### Invariant violations"):
        assert heading in text
    for kind in CHAOS_KINDS:
        assert CHAOS_TITLES[kind] in text
    left = {n for n in _netns() if owner_pid(n) == proc.pid}
    assert not left, left
