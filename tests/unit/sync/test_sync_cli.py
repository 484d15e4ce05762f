"""``nonstop sync`` with csync2's flags, against a real receiver process on loopback."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sync_harness import KEY, TALK_CFG, free_port, stop

from nonstop.sync.cli import sync_command

SERVE = "from nonstop.sync.cli import sync_command; sync_command(prog_name='nonstop sync')"


def _setup(tmp: Path) -> tuple[Path, list[str], list[str]]:
    key = tmp / "csync2.key_vpbx1"
    key.write_text(KEY + "\n")
    cfg = tmp / "csync2.cfg"
    cfg.write_text(TALK_CFG.replace("/etc/csync2.key_vpbx1", str(key)))
    port = str(free_port())
    common = ["--config", str(cfg), "-p", port, "--peer-address", "vpbx1-1=127.0.0.1",
              "--peer-address", "vpbx1-2=127.0.0.2"]
    n1 = [*common, "-N", "vpbx1-1", "--root", str(tmp / "n1"), "--state-dir", str(tmp / "s1")]
    n2 = [*common, "-N", "vpbx1-2", "--root", str(tmp / "n2"), "--state-dir", str(tmp / "s2"),
          "--listen", "127.0.0.2"]
    for n in ("n1", "n2"):
        (tmp / n / "etc/asterisk").mkdir(parents=True)
        (tmp / n / "var/log/asterisk").mkdir(parents=True)
    return cfg, n1, n2


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Path, list[str]]]:
    _cfg, n1, n2 = _setup(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", SERVE, "-i", "-v", *n2],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if (tmp_path / "s2" / "sync-cert.pem").exists():
                r = subprocess.run(["ss", "-ltn", f"sport = :{n1[n1.index('-p') + 1]}"],
                                   capture_output=True, text=True)
                if "127.0.0.2" in r.stdout:
                    break
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.05)
        yield tmp_path, n1
    finally:
        stop(proc)


def run(args: list[str]) -> tuple[int, str]:
    r = CliRunner().invoke(sync_command, args)
    return r.exit_code, r.output


def test_key_generation_like_csync2(tmp_path: Path) -> None:
    key = tmp_path / "k"
    code, _ = run(["-k", str(key)])
    text = key.read_text().strip()
    assert code == 0 and len(text) == 64 and all(c.isalnum() or c in "._" for c in text)
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    code, out = run(["-k", str(key)])
    assert code == 1 and "Can't create key file: File exists" in out
    assert key.read_text().strip() == text


def test_no_mode_prints_help_and_fails() -> None:
    code, out = run([])
    assert code == 1 and "-x" in out


def test_config_error_names_file_and_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.cfg"
    cfg.write_text("group g {\n host a;\n key k;\n auto maybe;\n}\n")
    code, out = run(["--config", str(cfg), "-N", "a", "-M"])
    assert code == 1 and f"{cfg}:4: unknown auto mode" in out


def test_cron_line_and_master_script_with_the_program_name_changed(
        cluster: tuple[Path, list[str]]) -> None:
    tmp, n1 = cluster
    (tmp / "n1/etc/asterisk/sip.conf").write_text("[general]\n")
    (tmp / "n1/var/log/asterisk/full").write_text("line\n")
    code, out = run([*n1, "-M"])
    assert code == 2  # csync2: empty dirty list
    # the cron line: csync2 -xv  ->  nonstop sync -xv
    code, out = run([*n1, "-xv"])
    assert code == 0, out
    assert (tmp / "n2/etc/asterisk/sip.conf").read_text() == "[general]\n"
    code, out = run([*n1, "-T"])
    assert code == 2, out  # in sync
    # an edit on n2 only: -T compares disks and shows it
    (tmp / "n2/etc/asterisk/sip.conf").write_text("edited on n2\n")
    code, out = run([*n1, "-T"])
    assert code == 0 and "X\tvpbx1-1\tvpbx1-2\t/etc/asterisk/sip.conf" in out
    # the master script's start: -fr /var/log/asterisk/; -fr /etc/asterisk/; -xv
    assert run([*n1, "-fr", "/var/log/asterisk/"])[0] == 0
    assert run([*n1, "-fr", "/etc/asterisk/"])[0] == 0
    code, out = run([*n1, "-M"])
    assert code == 0 and "pending forced sync" in out
    code, out = run([*n1, "-xv"])
    assert code == 0, out
    assert (tmp / "n2/etc/asterisk/sip.conf").read_text() == "[general]\n"
    assert (tmp / "n2/var/backups/csync2/etc/asterisk/sip.conf").read_text() == "edited on n2\n"
    assert "overwrote vpbx1-2's unsynced change" in out
    assert run([*n1, "-M"])[0] == 2
    # -R forgets entries the config no longer covers
    (tmp / "n1/etc/asterisk/x~").write_text("excluded")
    code, out = run([*n1, "-R", "-v"])
    assert code == 0 and out == ""  # nothing stale: every entry is still included


def test_conflict_exit_code_and_reason_at_default_verbosity(
        cluster: tuple[Path, list[str]]) -> None:
    tmp, n1 = cluster
    (tmp / "n1/etc/asterisk/e.conf").write_text("v0")
    assert run([*n1, "-x"])[0] == 0
    (tmp / "n1/etc/asterisk/e.conf").write_text("n1")
    (tmp / "n2/etc/asterisk/e.conf").write_text("n2")
    code, out = run([*n1, "-x"])
    assert code == 1
    assert "changed on both vpbx1-1 and vpbx1-2 since the last sync" in out
    assert "Finished with 1 errors." in out
    code, out = run([*n1, "-M"])
    assert out.strip() == "chary\tvpbx1-1\tvpbx1-2\t/etc/asterisk/e.conf"
    # check only, then update only
    (tmp / "n1/etc/asterisk/f.conf").write_text("f")
    assert run([*n1, "-c"])[0] == 0
    assert not (tmp / "n2/etc/asterisk/f.conf").exists()
    assert run([*n1, "-u", "/etc/asterisk/f.conf"])[0] == 0
    assert (tmp / "n2/etc/asterisk/f.conf").read_text() == "f"


def test_unreachable_peer_is_an_error(tmp_path: Path) -> None:
    _cfg, n1, _n2 = _setup(tmp_path)
    (tmp_path / "n1/etc/asterisk/a").write_text("a")
    code, out = run([*n1, "-xv"])
    assert code == 1 and "connection to vpbx1-2 (127.0.0.2:" in out
    code, out = run([*n1, "-M"])
    assert code == 0 and "/etc/asterisk/a" in out


def test_finished_line_as_csync2_prints_it(cluster: tuple[Path, list[str]]) -> None:
    """csync2 ends a run that had errors, and any run with -v, with ``Finished with N
    errors.``; scripts grep ``csync2 -xv 2>&1`` for it. nonstop printed it only after a
    failed push: not after a good -xv, a -cv, nor a -T whose peer was down (nagios)."""
    tmp, n1 = cluster
    (tmp / "n1/etc/asterisk/a").write_text("a")
    for args in (["-cv"], ["-xv"], ["-xv"], ["-Tv"]):  # the second -xv has nothing to send
        code, out = run([*n1, *args])
        assert code == (2 if args == ["-Tv"] else 0), out
        assert out.splitlines()[-1] == "Finished with 0 errors.", (args, out)
    for args in (["-x"], ["-c"], ["-T"]):
        code, out = run([*n1, *args])
        assert "Finished" not in out, (args, out)
    down = [*n1, "--peer-address", "vpbx1-2=127.0.0.3"]  # nothing listens there
    code, out = run([*down, "-T"])
    assert code == 1 and out.splitlines()[-1] == "Finished with 1 errors.", out


def test_forcing_what_no_group_replicates_leaves_nothing_pending(tmp_path: Path) -> None:
    """``-f`` on a path csync2.cfg does not replicate (outside every include, or excluded)
    changes nothing, as with csync2: ``-M`` stays empty (exit 2) and ``-u`` contacts no
    peer. It used to record a forced scope, listed by ``-M`` (exit 0, a nagios check of
    ``csync2 -M`` saw a dirty entry) and making every ``-u`` and ``-x`` connect (exit 1
    while the peer was down) until a push got through."""
    _cfg, n1, _n2 = _setup(tmp_path)  # no receiver: a contacted peer is an error
    (tmp_path / "n1/etc/asterisk/a").write_text("a")
    (tmp_path / "n1/etc/asterisk/a~").write_text("editor's backup, excluded")
    (tmp_path / "n1/srv/other").mkdir(parents=True)
    assert run([*n1, "-cI"])[0] == 0
    for args in (["-fr", str(tmp_path / "n1/srv/other")], ["-fr", "/srv"],
                 ["-f", "/etc/asterisk/a~"], ["-fr", "/etc/asterisk/a~"]):
        assert run([*n1, *args])[0] == 0
        assert run([*n1, "-M"]) == (2, ""), args
        assert run([*n1, "-u"]) == (0, ""), args
    # what a group replicates, or a directory holding some of it, is still forced
    for path in ("/etc/asterisk/", "/etc", "/"):  # "/" was listed as "//"
        assert run([*n1, "-fr", path])[0] == 0
        code, out = run([*n1, "-M"])
        assert code == 0 and f"\t{path.rstrip('/')}/ (pending forced sync)" in out, out
        assert run([*n1, "-u"])[0] == 1  # the peer is down: the force stays pending
        assert run([*n1, "-M"])[0] == 0


def test_verbose_output_shows_odd_names_escaped(cluster: tuple[Path, list[str]]) -> None:
    """A name with a newline or a terminal escape is one escaped line of -v output, never a
    forged line or a colour change on the operator's terminal."""
    tmp, n1 = cluster
    odd = "evil\n[vpbx1-2]: ok\x1b[31m.conf"
    (tmp / "n1/etc/asterisk" / odd).write_text("x")
    code, out = run([*n1, "-xv"])
    assert code == 0, out
    assert (tmp / "n2/etc/asterisk" / odd).read_text() == "x"
    assert "\x1b" not in out
    assert "/etc/asterisk/evil\\n[vpbx1-2]: ok\\x1b[31m.conf" in out
    assert not any(line.startswith("[vpbx1-2]") for line in out.splitlines())


def test_sync_log_messages_are_one_line_each(caplog: pytest.LogCaptureFixture) -> None:
    from nonstop.sync.context import log_out

    with caplog.at_level("DEBUG", logger="nonstop.sync"):
        log_out(1, "vpbx1-2: /etc/asterisk/a\nb\x1b[0m: sent")
    assert [r.getMessage() for r in caplog.records] == [
        "vpbx1-2: /etc/asterisk/a\\nb\\x1b[0m: sent"]


def test_a_sync_warning_in_the_log_carries_one_level(caplog: pytest.LogCaptureFixture) -> None:
    """A push that could not connect was logged "WARN: ERROR: connection to vpbx1-1 ...":
    two levels in one line, and an "ERROR:" for watchers of Heartbeat's lines (a user trial)."""
    from nonstop.sync.context import log_out

    with caplog.at_level("DEBUG", logger="nonstop.sync"):
        log_out(0, "ERROR: connection to vpbx1-1 (vpbx1-1:30865) failed: timeout")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "connection to vpbx1-1 (vpbx1-1:30865) failed: timeout")]
