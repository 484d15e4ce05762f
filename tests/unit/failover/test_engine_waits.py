"""Issue 13 item 3: a wait on a peer that outlasts deadtime is said once at warning level
(and shown in ``nonstop status``), never only at debug level."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from test_engine import Harness

from nonstop.failover.decide import Action, Decision, decide
from nonstop.quick import render_group


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_a_wait_on_a_silent_peer_is_warned_once_after_deadtime(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    h = Harness(tmp_path)  # n2 active, no failover fields: holdings unknown
    deadtime = h.engine.cfg.ha.deadtime_ms / 1000
    caplog.set_level(logging.DEBUG, "nonstop")
    for t in (0.0, 1.0, deadtime - 0.1):
        h.now = t
        (d,) = decide(h.view())
        assert d.action is Action.WAIT and d.waiting_on == {"n2"}
        h.engine.apply([d])
    assert warnings(caplog) == []
    assert h.engine.snapshot({})[0]["waiting"] == {"on": ["n2"], "since_s": deadtime - 0.1}
    for t in (deadtime + 0.1, deadtime + 1, deadtime + 60):
        h.now = t
        h.engine.apply(decide(h.view()))
    (line,) = warnings(caplog)
    assert line.startswith(f"group MailTo has waited {deadtime:.0f} s for n2: not deciding "
                           "group MailTo until n2 says what it holds")
    assert "a Heartbeat node only in answer to our 'starting'" in line
    # `nonstop status` says it too, not only --json: on whom and since when.
    text = render_group(h.engine.snapshot({})[0])
    assert text[-2].startswith("    why (wait): not deciding group MailTo until n2 says")
    assert text[-1] == f"    waiting {deadtime + 60:.1f} s for n2"


def test_a_wait_that_ends_is_forgotten_and_a_new_one_counts_from_its_start(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    h = Harness(tmp_path)
    deadtime = h.engine.cfg.ha.deadtime_ms / 1000
    h.engine.apply(decide(h.view()))
    assert h.engine.snapshot({})[0]["waiting"] is not None
    h.now = 1.0
    h.engine.apply([Decision(0, Action.WAIT, "holding group MailTo")])
    assert h.engine.snapshot({})[0]["waiting"] is None
    assert not any("waiting" in line for line in render_group(h.engine.snapshot({})[0]))
    h.now = deadtime + 0.5
    h.engine.apply(decide(h.view()))
    h.now = deadtime + 1.0
    h.engine.apply(decide(h.view()))
    assert warnings(caplog) == []
