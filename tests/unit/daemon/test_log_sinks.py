"""Log files survive logrotate, a reload switches sinks without losing a line, and under
systemd each line reaches the journal once, with its priority (issue 10, point 4)."""

from __future__ import annotations

import logging
import logging.handlers
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import nonstop.logs as logs
from nonstop.config.model import Bcast, HaConfig
from nonstop.lab.wait import wait_for
from nonstop.logs import reconfigure, setup_logging, stop_logging


def _ha(**kw: object) -> HaConfig:
    return HaConfig(path="ha.cf", nodes=("a",), media=(Bcast("eth0"),), **kw)  # type: ignore[arg-type]


def test_a_log_file_moved_away_by_logrotate_is_reopened(tmp_path: Path) -> None:
    logfile = tmp_path / "ha-log"
    setup_logging(_ha(use_logd=False, logfile=str(logfile)), stderr=False)
    log = logging.getLogger("nonstop")
    try:
        log.info("before the rotation")
        wait_for(lambda: "before the rotation" in logfile.read_text(), 10, what="the line")
        logfile.rename(tmp_path / "ha-log.1")  # logrotate's default: move, no signal
        log.info("after the rotation")
    finally:
        stop_logging()
    assert "before the rotation" in (tmp_path / "ha-log.1").read_text()
    assert "after the rotation" not in (tmp_path / "ha-log.1").read_text()
    assert "after the rotation" in logfile.read_text()


def test_reconfigure_switches_files_and_loses_nothing(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    setup_logging(_ha(use_logd=False, logfile=str(first)), stderr=False)
    log = logging.getLogger("nonstop")
    try:
        for i in range(200):
            log.info("line %d", i)
        reconfigure(_ha(use_logd=False, logfile=str(second)))
        log.info("after the reload")
    finally:
        stop_logging()
    text = first.read_text()
    assert all(f"line {i}\n" in text for i in range(200))
    assert "after the reload" in second.read_text() and "after the reload" not in text


def test_under_the_journal_no_syslog_sink_is_added(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_syslog = logging.NullHandler()
    monkeypatch.setattr(logs, "_syslog_handler", lambda facility: fake_syslog)
    ha = _ha(use_logd=True, logfacility="local0")
    monkeypatch.setattr(logs, "stderr_is_journal", lambda: False)
    sinks, _ = logs._make_sinks(ha, True, 0)
    assert fake_syslog in sinks
    monkeypatch.setattr(logs, "stderr_is_journal", lambda: True)
    sinks, _ = logs._make_sinks(ha, True, 0)
    assert fake_syslog not in sinks
    assert [type(s.formatter) for s in sinks] == [logs.JournalFormatter]


PROGRAM = textwrap.dedent("""
    import logging
    from nonstop.config.model import Bcast, HaConfig
    from nonstop.logs import setup_logging, stop_logging
    setup_logging(HaConfig(path="ha.cf", nodes=("a",), media=(Bcast("eth0"),),
                           use_logd=True, logfacility="daemon"))
    log = logging.getLogger("nonstop")
    log.warning("node %s: is dead", "vpbx1-2")
    log.info("Local status now set to: 'up'")
    log.critical("two\\nlines")
    stop_logging()
""")


def _run_with_stderr(tmp_path: Path, journal_stream: str | None) -> str:
    err = tmp_path / "stderr"
    env = dict(os.environ)
    env.pop("JOURNAL_STREAM", None)
    with err.open("wb") as fh:
        st = os.fstat(fh.fileno())
        if journal_stream == "match":
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        elif journal_stream is not None:
            env["JOURNAL_STREAM"] = journal_stream
        subprocess.run([sys.executable, "-c", PROGRAM], stderr=fh, env=env, check=True,
                       timeout=60)
    return err.read_text()


def test_stderr_that_is_the_journal_gets_priorities(tmp_path: Path) -> None:
    text = _run_with_stderr(tmp_path, "match")
    assert text.splitlines() == ["<4>WARN: node vpbx1-2: is dead",
                                 "<6>info: Local status now set to: 'up'",
                                 "<2>CRIT: two", "<2>lines"]


def test_an_inherited_journal_stream_that_is_not_our_stderr_is_ignored(tmp_path: Path) -> None:
    # A program started by a service inherits JOURNAL_STREAM with its stderr redirected.
    text = _run_with_stderr(tmp_path, "1:2")
    assert "WARN: node vpbx1-2: is dead" in text and "<4>" not in text
    assert "nonstop[" in text  # Heartbeat's own shape, for a terminal or a file
