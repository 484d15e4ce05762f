"""Log files survive logrotate, a reload switches sinks without losing a line, and under
systemd each line reaches the journal once, with its priority (issue 10, point 4)."""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
import socket
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


def _records() -> list[logging.LogRecord]:
    out = []
    for level, msg in ((logging.DEBUG, "d"), (logging.INFO, "i é"), (logging.WARNING, "w"),
                       (logging.ERROR, "e"), (logging.CRITICAL, "c\nx"), (5, "custom")):
        out.append(logging.LogRecord("nonstop", level, "f.py", 1, msg, None, None))
    return out


@pytest.mark.parametrize("kind", [socket.SOCK_DGRAM, socket.SOCK_STREAM])
def test_syslog_sink_sends_what_the_standard_library_sends(tmp_path: Path, kind: int) -> None:
    """nonstop.logsinks replaces logging.handlers (pickle, ~0.45 MB per daemon): the same
    bytes reach syslog, datagram or stream."""
    from nonstop.logsinks import FACILITIES, SyslogHandler

    address = str(tmp_path / "log")
    srv = socket.socket(socket.AF_UNIX, kind)
    srv.bind(address)
    if kind == socket.SOCK_STREAM:
        srv.listen(2)
    srv.settimeout(10)
    assert logging.handlers.SysLogHandler.facility_names == FACILITIES
    try:
        for facility in ("daemon", "local0", "auth"):
            ours = SyslogHandler(address, FACILITIES[facility])
            theirs = logging.handlers.SysLogHandler(address, facility)
            conns = [srv.accept()[0] for _ in range(2)] if kind == socket.SOCK_STREAM else []
            got: list[bytes] = []
            for record in _records():
                for handler in (ours, theirs):
                    handler.emit(record)
                    if conns:
                        got.append(conns[handler is theirs].recv(4096))
                    else:
                        got.append(srv.recv(4096))
            ours.close()
            theirs.close()
            for c in conns:
                c.close()
            assert got[0::2] == got[1::2]
            assert got[0] == f"<{FACILITIES[facility] * 8 + 7}>d\0".encode()
    finally:
        srv.close()


def test_syslog_sink_reconnects_after_syslogd_restarts(tmp_path: Path) -> None:
    from nonstop.logsinks import SyslogHandler

    address = str(tmp_path / "log")
    handler = SyslogHandler(address, 3)  # nobody listens yet: no error, as openlog(3)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(address)
    srv.settimeout(10)
    try:
        handler.emit(_records()[1])
        assert srv.recv(4096) == "<30>i é\0".encode()
        srv.close()
        os.unlink(address)
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        srv.bind(address)
        srv.settimeout(10)
        handler.emit(_records()[2])
        assert srv.recv(4096) == b"<28>w\0"
    finally:
        handler.close()
        srv.close()


def test_an_exception_reaches_the_file_once_as_text(tmp_path: Path) -> None:
    logfile = tmp_path / "ha-log"
    setup_logging(_ha(use_logd=False, logfile=str(logfile)), stderr=False)
    log = logging.getLogger("nonstop")
    try:
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("it %s", "failed")
        log.debug("not in the info file")
    finally:
        stop_logging()
    text = logfile.read_text()
    assert "ERROR: it failed\nTraceback (most recent call last):" in text
    assert text.count("ValueError: boom") == 1 and "not in the info file" not in text


def test_the_daemon_does_not_load_logging_handlers() -> None:
    code = ("import sys, nonstop.runcommand, nonstop.daemon, nonstop.logs; "
            "print(sorted({'logging.handlers', 'pickle', 'click', 'decimal'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_queued_records_are_prepared_as_the_standard_library_prepares_them() -> None:
    import queue

    from nonstop.logsinks import QueueHandler

    ours: queue.Queue[logging.LogRecord] = queue.Queue()
    theirs: queue.Queue[logging.LogRecord] = queue.Queue()
    try:
        raise ValueError("boom")
    except ValueError:
        exc = sys.exc_info()
    record = logging.LogRecord("nonstop", logging.ERROR, "f.py", 1, "it %s", ("failed",), exc,
                               sinfo="Stack (most recent call last):\n  here")
    QueueHandler(ours).emit(record)
    logging.handlers.QueueHandler(theirs).emit(record)
    a, b = ours.get_nowait(), theirs.get_nowait()
    keys = ("msg", "message", "args", "exc_info", "exc_text", "stack_info", "levelno", "name")
    assert {k: getattr(a, k) for k in keys} == {k: getattr(b, k) for k in keys}
    assert "ValueError: boom" in a.msg and "here" in a.msg and record.args == ("failed",)


# Runs in a child: the log file stops taking writes (the file size limit, as a full disk: the
# kernel refuses each write), 200 lines are logged, then it takes writes again.
FULL_DISK = textwrap.dedent("""
    import logging, os, resource, signal, sys, time
    from nonstop.config.model import Bcast, HaConfig
    from nonstop.logs import setup_logging, stop_logging
    path = sys.argv[1]
    setup_logging(HaConfig(path="ha.cf", nodes=("a",), media=(Bcast("eth0"),), use_logd=False,
                           logfile=path), stderr=True)
    log = logging.getLogger("nonstop")
    def settle(text):
        deadline = time.monotonic() + 10
        while text not in open(path).read() and time.monotonic() < deadline:
            time.sleep(0.01)
    log.info("before the disk filled")
    settle("before the disk filled")
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(path), hard))
    for i in range(200):
        log.warning("Late heartbeat: Node b: interval %d ms", 300 + i)
    time.sleep(0.5)  # the writer thread meets the limit with these lines queued
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    log.info("after the disk was freed")
    stop_logging()
""")


def test_a_full_disk_costs_one_stderr_line_and_is_reported_in_the_file(tmp_path: Path) -> None:
    logfile = tmp_path / "ha-log"
    done = subprocess.run([sys.executable, "-c", FULL_DISK, str(logfile)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    # The lines themselves still reach stderr (the journal under systemd); what went wrong
    # with the file is said once, not as a traceback per line.
    assert "Logging error" not in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.count(f"cannot write log file {logfile}: File too large") == 1
    assert "Late heartbeat: Node b: interval 499 ms" in done.stderr
    text = logfile.read_text()
    assert "before the disk filled" in text and "after the disk was freed" in text
    assert re.search(r"WARN: \d+ line\(s\) before the previous one could not be written to "
                     r"this file \(File too large\)", text), text[-500:]
