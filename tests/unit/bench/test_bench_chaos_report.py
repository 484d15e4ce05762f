"""The chaos report from a made-up run: every section, a violation's timeline, a recovery."""

from __future__ import annotations

import datetime

from bench.chaos import SystemRun, check, render, summary
from bench.chaos_check import Injected, Sample

from nonstop.lab.faults import CHAOS_TITLES, ChaosFault
from nonstop.lab.outage import Probe

A, B = "vpbx1-1", "vpbx1-2"


def _run() -> SystemRun:
    run = SystemRun("nonstop", "nonstop (plain ha.cf)", t0=100.0, end=130.0, deadtime=2.0)
    held = {A: frozenset({A}), "both": frozenset({A, B}), B: frozenset({B})}
    t = 100.0
    while t < 130.0:
        # A holds; at 110 the cable of A is pulled, B takes over at 112.3; the cable comes
        # back at 115 and both keep the VIP until 117.5 (a violation of 2.5 s).
        state = A if t < 112.3 else "both" if t < 117.5 else B
        run.samples.append(Sample(round(t, 2), held[state]))
        t += 0.01
    run.conditions.change(110.0, add=[("cable", A)])
    run.conditions.change(115.0, remove=[("cable", A)])
    cable = ChaosFault(at=10.0, kind="cable", role="active", duration=5.0)
    run.injected.append(Injected(cable, A, 110.0, 115.0))
    run.events += [(110.0, "#1 inject cable -> vpbx1-1"), (115.0, "lifted cable on vpbx1-1"),
                   (125.0, "harness recovery (two holders for 30 s): both nodes rebooted")]
    run.logs = {B: [(112.0, "heartbeat: WARN: node vpbx1-1: is dead"),
                    (112.2, "info: Acquiring resource group"), (113.0, "chatter")]}
    answers = [100.0 + i * 0.02 for i in range(1500)]
    run.answers = [Probe(i, a - 0.001, a, A if a < 112.3 else B, 200)
                   for i, a in enumerate(answers) if not 110.0 < a < 112.4]
    run.probe_count = 1500
    check(run)
    return run


def test_report_has_every_section_and_the_violation_s_timeline() -> None:
    run = _run()
    assert [v.invariant for v in run.violations] == ["two holders that hear each other"]
    text = render([run], command="python3 -m bench.chaos --quick", seed=3, duration=30.0,
                  quick=True, variant="plain", started=datetime.datetime(2026, 12, 4, 23, 0),
                  machine=[("cpu", "2 cores")], load_before="1.0", load_after="2.0", busy=50.0)
    assert "flock /tmp/nonstop-bench.lock python3 -m bench.chaos --quick" in text
    assert "## What was done\n\nThe lab: " in text
    for title in CHAOS_TITLES.values():
        assert title in text
    assert "| two holders that hear each other > 1 s | 1 |" in text
    assert "**two holders that hear each other**, +15.00 s to +17.50 s: 2.50 s" in text
    assert "fault #1: cable on the active for 5.0 s, hit vpbx1-1" in text
    assert "VIP holders seen:" in text and "{vpbx1-1, vpbx1-2}" in text
    assert "node vpbx1-1: is dead" in text and "chatter" not in text
    assert "harness recovery (two holders for 30 s)" in text
    # The crash-free cable fault's outage: from the last answer before 110 to 112.4.
    assert "| 1 | +10.00 s | cable on the active for 5.0 s | vpbx1-1 |  | 2.4" in text
    assert "vpbx1-1 (2.3 s) -> both (5.2 s) -> vpbx1-2" in text
    assert ("+10.00 s to +12.40 s: 2.40 s, 0.40 s counted; answered before by vpbx1-1, after "
            "by vpbx1-2; VIP: vpbx1-1 (2.3 s) -> both\n") in text


def test_summary_counts_what_a_test_needs() -> None:
    data = summary(_run())
    assert data["kinds"] == ["cable"]
    assert data["samples"] == 3000
    assert data["held_share"] == 1.0
    assert data["violations"] and data["failure"] == ""
