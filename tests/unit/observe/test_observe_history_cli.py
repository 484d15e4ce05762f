"""``nonstop history`` reads the state directory without a daemon: text like the demo's
timeline, JSON lines, --since, --after, and a clear message when there is no history."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from nonstop.cli import cli
from nonstop.observe.cli import parse_since
from nonstop.observe.events import Record
from nonstop.observe.store import HistoryFile, history_dir


def write_history(state: Path, now: float) -> None:
    f = HistoryFile(history_dir(state))
    f.open()
    f.append([
        Record(1, now - 7200, 50.0, "vpbx1-2", "daemon_start", "vpbx1-2", "", "started"),
        Record(2, now - 60, 7000.0, "vpbx1-2", "node_dead", "vpbx1-1", "",
               "vpbx1-1 is dead: no heartbeat for 2003 ms (deadtime 2000 ms)"),
        Record(3, now - 59, 7001.5, "vpbx1-2", "group_acquired", "vpbx1-2", "g",
               "group g acquired (epoch 2)", {"duration_ms": 1500}),
    ])
    f.close()


def test_text_json_since_after(tmp_path: Path) -> None:
    now = time.time()
    write_history(tmp_path, now)
    runner = CliRunner()
    out = runner.invoke(cli, ["history", "--state-dir", str(tmp_path)])
    assert out.exit_code == 0, out.output
    lines = [x for x in out.output.splitlines() if not x.startswith("-- ")]
    assert len(lines) == 3
    assert "node dead" in lines[1] and "vpbx1-1 is dead" in lines[1]
    assert "+6950.000 s" in lines[1]
    assert "group acquired" in lines[2] and "(1500 ms)" in lines[2] and "+6951.500 s" in lines[2]
    out = runner.invoke(cli, ["history", "--state-dir", str(tmp_path), "--json",
                              "--since", "10m"])
    docs = [json.loads(x) for x in out.output.splitlines()]
    assert [d["seq"] for d in docs] == [2, 3]
    assert docs[1]["data"] == {"duration_ms": 1500} and docs[1]["kind"] == "group_acquired"
    out = runner.invoke(cli, ["history", "--state-dir", str(tmp_path), "--json", "--after", "2"])
    assert [json.loads(x)["seq"] for x in out.output.splitlines()] == [3]


def test_bad_input_is_one_clear_line(tmp_path: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(cli, ["history", "--state-dir", str(tmp_path / "none")])
    assert out.exit_code == 1 and "no history in" in out.output
    write_history(tmp_path, time.time())
    out = runner.invoke(cli, ["history", "--state-dir", str(tmp_path), "--since", "yesterday"])
    assert out.exit_code == 2 and "neither an age" in out.output
    assert "Traceback" not in out.output


def test_since_forms() -> None:
    assert parse_since("90s", 1000.0) == 910.0
    assert parse_since("2h", 10000.0) == 2800.0
    assert parse_since("2026-12-04T22:00:00+00:00", 0) == 1796421600.0
    with pytest.raises(ValueError):
        parse_since("soon", 0)


def test_follow_prints_new_events_until_interrupted(tmp_path: Path) -> None:
    """``--follow`` as a person runs it: the events so far, then each new one as the daemon
    writes it, until Ctrl-C, which ends it quietly."""
    import signal
    import subprocess
    import sys
    import threading

    now = time.time()
    write_history(tmp_path, now)
    proc = subprocess.Popen([sys.executable, "-m", "nonstop", "history", "--state-dir",
                             str(tmp_path), "--json", "--follow", "--since", "10m"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    got: list[int] = []
    seen_four = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            got.append(json.loads(line)["seq"])
            if len(got) == 3:
                seen_four.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 30
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert got == [2, 3]  # --since 10m left the first one out
        f = HistoryFile(history_dir(tmp_path))
        f.open()
        f.append([Record(4, time.time(), 7100.0, "vpbx1-2", "node_back", "vpbx1-1", "",
                         "vpbx1-1 is back")])
        f.close()
        assert seen_four.wait(15), got
        assert got == [2, 3, 4]
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0 and "Traceback" not in err, err


def test_an_unreadable_history_and_a_closed_pipe_are_no_tracebacks(tmp_path: Path) -> None:
    import subprocess
    import sys

    now = time.time()
    f = HistoryFile(history_dir(tmp_path))
    f.open()
    f.append([Record(n, now, 1.0, "vpbx1-2", "daemon_start", "vpbx1-2", "", "started " * 20)
              for n in range(1, 3001)])
    f.close()
    # `nonstop history | head -1`: the reader leaves early.
    done = subprocess.run(f"{sys.executable} -m nonstop history --state-dir {tmp_path} "
                          "| head -1", shell=True, capture_output=True, text=True, timeout=60)
    assert len(done.stdout.splitlines()) == 1 and done.stderr == ""
    current = history_dir(tmp_path) / "events.log"
    current.unlink()
    current.mkdir()  # read fails as for a file this user may not read
    out = CliRunner().invoke(cli, ["history", "--state-dir", str(tmp_path)])
    assert out.exit_code == 1 and "Traceback" not in out.output
    assert f"nonstop: cannot read the history in {history_dir(tmp_path)}: Is a directory: " \
           f"{current}" in out.output
