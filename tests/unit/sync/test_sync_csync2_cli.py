"""csync2 2.0's command line as scripts and csync2's own test suite use it: ``prefix`` blocks,
``-D``, ``CSYNC2_SYSTEM_DIR``, ``-C``, ``-L``, ``-I``, ``-iii``, ``-N`` binding, ``-T`` forms, exit
codes and refusals, against a real receiver process on loopback."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sync_harness import KEY, free_port, stop

from nonstop.config.csync2 import Prefix
from nonstop.config.errors import Location
from nonstop.sync.cli import sync_command
from nonstop.sync.patterns import Matcher, PathMap
from nonstop.sync.scan import scan

SERVE = "from nonstop.sync.cli import sync_command; sync_command(prog_name='nonstop sync')"

PREFIX_CFG = """group demo
{{
    host n1;
    host n2;
    key csync2.key_demo;
    include %demodir%;
    exclude %demodir%/e;
}}

prefix demodir
{{
    on n1: {tmp}/d1;
    on n2: {tmp}/d2;
}}

nossl * *;
"""


def run(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    r = CliRunner().invoke(sync_command, args, env=env)
    return r.exit_code, r.output


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[Path, list[str], list[str], dict[str, str]]]:
    """csync2's test-suite layout: a system dir with csync2.cfg and a relative key, two nodes
    whose trees are a ``prefix``, databases in one -D directory."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "csync2.key_demo").write_text(KEY + "\n")
    (etc / "csync2.cfg").write_text(PREFIX_CFG.format(tmp=tmp_path))
    (tmp_path / "db").mkdir()
    (tmp_path / "d1").mkdir()
    (tmp_path / "d2").mkdir()
    port = str(free_port())
    common = ["-D", str(tmp_path / "db"), "-p", port, "--peer-address", "n1=127.0.0.1",
              "--peer-address", "n2=127.0.0.2", "--state-dir", str(tmp_path / "state")]
    env = {"CSYNC2_SYSTEM_DIR": str(etc)}
    yield tmp_path, [*common, "-N", "n1"], [*common, "-N", "n2"], env


def serve(args: list[str], env: dict[str, str], listen: str = "127.0.0.2",
          ) -> subprocess.Popen[bytes]:
    """``nonstop sync ARGS`` as a receiver process, once it listens on ``listen``."""
    import os

    proc = subprocess.Popen([sys.executable, "-c", SERVE, *args, "--listen", listen],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, **env})
    port = int(args[args.index("-p") + 1])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        with socket.socket() as s:
            if s.connect_ex((listen, port)) == 0:
                break
        time.sleep(0.05)
    return proc


# --------------------------------------------------------------------------------- prefix


def test_path_map_encodes_local_paths_under_a_prefix() -> None:
    pm = PathMap("/", {"d": Prefix("d", (("n1", "/srv/data"), ("*", "/x")), Location("c"))},
                 "n1")
    assert pm.encode("/srv/data") == "%d%"
    assert pm.encode("/srv/data/a/b") == "%d%/a/b"
    assert pm.encode("/srv/database") == "/srv/database"
    assert pm.encode("/etc/hosts") == "/etc/hosts"


def test_a_scan_of_everything_walks_prefix_includes(tmp_path: Path) -> None:
    from nonstop.config.csync2 import Pattern

    (tmp_path / "a").mkdir()
    (tmp_path / "a/f").write_text("x")
    (tmp_path / "e").write_text("excluded")
    m = Matcher([Pattern("%p%", True, Location("c")), Pattern("%p%/e", False, Location("c"))])
    pm = PathMap("/", {"p": Prefix("p", (("*", str(tmp_path)),), Location("c"))}, "me")
    found = scan(m, pm, [("/", True)], {}, time.time_ns())
    assert sorted(found) == ["%p%", "%p%/a", "%p%/a/f"]


def test_prefix_check_without_paths_and_with_local_paths(
        demo: tuple[Path, list[str], list[str], dict[str, str]]) -> None:
    tmp, n1, _n2, env = demo
    (tmp / "d1/a").mkdir()
    (tmp / "d1/a/f").write_text("f")
    (tmp / "d1/e").write_text("excluded")
    code, out = run([*n1, "-cr", str(tmp / "d1/a")], env)
    assert code == 0, out
    code, out = run([*n1, "-M"], env)
    assert code == 0 and out.splitlines() == ["chary\tn1\tn2\t%demodir%/a",
                                              "chary\tn1\tn2\t%demodir%/a/f"]
    (tmp / "d1/g").write_text("g")
    assert run([*n1, "-c"], env)[0] == 0
    code, out = run([*n1, "-L"], env)
    assert code == 0
    assert [line.split("\t")[1] for line in out.splitlines()] == [
        "%demodir%", "%demodir%/a", "%demodir%/a/f", "%demodir%/g"]
    assert "type=reg:size=1" in out


def test_prefix_sync_compare_and_force_with_the_program_name_changed(
        demo: tuple[Path, list[str], list[str], dict[str, str]]) -> None:
    tmp, n1, n2, env = demo
    (tmp / "d1/a").mkdir()
    (tmp / "d1/a/f").write_text("one")
    proc = serve([*n2, "-ii"], env)
    try:
        # -T without paths sees the difference (it said "in sync", exit 2, before)
        code, out = run([*n1, "-T"], env)
        assert code == 0, out
        assert out.splitlines() == ["L\tn1\tn2\t%demodir%/a", "L\tn1\tn2\t%demodir%/a/f"]
        # the cron line -xv without paths syncs the prefix (it did nothing before)
        code, out = run([*n1, "-xv"], env)
        assert code == 0, out
        assert (tmp / "d2/a/f").read_text() == "one"
        assert run([*n1, "-T"], env)[0] == 2
        # -T ME PEER FILE with a %prefix% name, and -T FILE with a local path
        (tmp / "d2/a/f").write_text("two")
        code, out = run([*n1, "-T", "n1", "n2", "%demodir%/a/f"], env)
        assert code == 0 and out == "X\tn1\tn2\t%demodir%/a/f\n"
        code, out = run([*n1, "-T", str(tmp / "d1/a/f")], env)
        assert code == 0 and out == "X\tn1\tn2\t%demodir%/a/f\n"
        # -f with a local path under the prefix
        assert run([*n1, "-fr", str(tmp / "d1")], env)[0] == 0
        code, out = run([*n1, "-x"], env)
        assert code == 0, out
        assert (tmp / "d2/a/f").read_text() == "one"
    finally:
        stop(proc)


# ------------------------------------------------------------------ environment and files


def test_system_dir_config_name_and_database_dir(
        demo: tuple[Path, list[str], list[str], dict[str, str]]) -> None:
    tmp, n1, _n2, env = demo
    # -D DIR: NAME.db3 in it; nothing recorded yet: -L exits 2 (csync2: "empty")
    assert run([*n1, "-L"], env)[0] == 2
    assert (tmp / "db/n1.db3").exists()
    # -C NAME reads $CSYNC2_SYSTEM_DIR/csync2_NAME.cfg and keeps NAME_CFGNAME.db3
    (tmp / "etc/csync2_other.cfg").write_text(
        PREFIX_CFG.format(tmp=tmp).replace("group demo", "group other"))
    assert run([*n1, "-C", "other", "-L"], env)[0] == 2
    assert (tmp / "db/n1_other.db3").exists()
    code, out = run([*n1, "-C", "Bad-Name", "-L"], env)
    assert code == 1 and "Config names are limited to [a-z0-9]+." in out
    # a host no group lists is an error (exit 1), as csync2's "host not mentioned"
    code, out = run([*n1[:-2], "-N", "does.not.exist", "-L"], env)
    assert code == 1 and "not a member of any group" in out
    # csync2.lock in the system dir stops everything
    (tmp / "etc/csync2.lock").write_text("")
    code, out = run([*n1, "-L"], env)
    assert code == 1 and f"Found {tmp}/etc/csync2.lock" in out


def test_init_run_records_without_dirtying(
        demo: tuple[Path, list[str], list[str], dict[str, str]]) -> None:
    tmp, n1, _n2, env = demo
    (tmp / "d1/b").mkdir()
    (tmp / "d1/b/f").write_text("f")
    assert run([*n1, "-cIrvv", str(tmp / "d1")], env)[0] == 0
    code, out = run([*n1, "-L"], env)
    assert code == 0 and len(out.splitlines()) == 3
    assert run([*n1, "-M"], env)[0] == 2
    (tmp / "d1/b/f").write_text("changed")
    assert run([*n1, "-crvv", str(tmp / "d1")], env)[0] == 0
    assert run([*n1, "-M"], env)[0] == 0


def test_mark_and_force_new(demo: tuple[Path, list[str], list[str], dict[str, str]]) -> None:
    tmp, n1, _n2, env = demo
    (tmp / "d1/f").write_text("f")
    assert run([*n1, "-cI"], env)[0] == 0
    assert run([*n1, "-m", str(tmp / "d1/f")], env)[0] == 0
    assert run([*n1, "-M"], env)[1] == "chary\tn1\tn2\t%demodir%/f\n"
    (tmp / "d1/g").write_text("g")
    assert run([*n1, "-cF", str(tmp / "d1/g")], env)[0] == 0
    assert "force\tn1\tn2\t%demodir%/g" in run([*n1, "-M"], env)[1]


# --------------------------------------------------------------------------------- exit codes


@pytest.mark.parametrize("args", [["-q"], ["--bogus"], ["-x", "-M"], ["-M", "file"],
                                  ["-T", "a", "b", "c", "d"], ["-S", "one"], ["-iiii"]])
def test_usage_errors_exit_1_never_2(args: list[str]) -> None:
    code, _out = run(args)
    assert code == 1


def test_refused_flags_name_the_reason(
        demo: tuple[Path, list[str], list[str], dict[str, str]]) -> None:
    _tmp, n1, _n2, env = demo
    code, out = run([*n1, "-TT"], env)
    assert code == 1 and "-TT (diffs of the peer's files) is not implemented" in out


def test_a_cron_line_with_A_still_syncs(
        demo: tuple[Path, list[str], list[str], dict[str, str]]) -> None:
    """`csync2 -A -x` (sqlite without fsync) in a cron line whose output goes to /dev/null, as
    the talk's does: refused, it never synced again without a word. -A is ignored, said once."""
    tmp, n1, n2, env = demo
    (tmp / "d1/extensions.conf").write_text("[from-cron]\n")
    proc = serve([*n2, "-ii"], env)
    try:
        code, out = run([*n1, "-A", "-x"], env)
        assert code == 0, out
        assert "-A ignored: nonstop never turns off its database's durability" in out
        assert (tmp / "d2/extensions.conf").read_text() == "[from-cron]\n"
    finally:
        stop(proc)


@pytest.mark.parametrize("flag", ["-f", "-m", "-h"])
def test_no_files_to_force_mark_or_hint_is_nothing_to_do_as_in_csync2(
        demo: tuple[Path, list[str], list[str], dict[str, str]], flag: str) -> None:
    _tmp, n1, _n2, env = demo
    code, out = run([*n1, flag], env)
    assert code == 0 and "nothing to do" in out


def test_hints_are_accepted_and_none_are_pending(
        demo: tuple[Path, list[str], list[str], dict[str, str]]) -> None:
    tmp, n1, _n2, env = demo
    assert run([*n1, "-hr", str(tmp / "d1")], env)[0] == 0
    assert run([*n1, "-H"], env)[0] == 2


# --------------------------------------------------------------------------------- receiver


def test_iii_serves_one_connection_then_exits(
        demo: tuple[Path, list[str], list[str], dict[str, str]]) -> None:
    tmp, n1, n2, env = demo
    (tmp / "d1/f").write_text("f")
    proc = serve([*n2, "-iii"], env)
    try:
        code, out = run([*n1, "-xv"], env)
        assert code == 0, out
        assert proc.wait(20) == 0
        assert (tmp / "d2/f").read_text() == "f"
    finally:
        stop(proc)


def test_n_binds_the_receiver_to_the_name_s_address(tmp_path: Path) -> None:
    import os

    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "csync2.key_demo").write_text(KEY + "\n")
    (etc / "csync2.cfg").write_text(
        PREFIX_CFG.format(tmp=tmp_path).replace("host n1;", "host 127.0.0.3;"))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, "-N", "127.0.0.3", "-iii", "-p", str(port),
         "-D", str(tmp_path), "--state-dir", str(tmp_path / "state")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "CSYNC2_SYSTEM_DIR": str(etc)})
    try:
        deadline = time.monotonic() + 20
        listening = ""
        while time.monotonic() < deadline and proc.poll() is None:
            listening = subprocess.run(["ss", "-Htln", f"sport = :{port}"],
                                       capture_output=True, text=True).stdout
            if listening:
                break
            time.sleep(0.05)
        assert [line.split()[3] for line in listening.splitlines()] == [f"127.0.0.3:{port}"]
    finally:
        stop(proc)


def test_a_busy_port_is_one_line_naming_the_holder(
        demo: tuple[Path, list[str], list[str], dict[str, str]]) -> None:
    _tmp, _n1, n2, env = demo
    port = n2[n2.index("-p") + 1]
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.2", int(port)))
        holder.listen()
        code, out = run([*n2, "-ii", "--listen", "127.0.0.2"], env)
    assert code == 1
    assert out.count("\n") == 1 and "Traceback" not in out
    assert f"cannot listen on 127.0.0.2:{port}: Address already in use" in out
    assert "held by python" in out  # this test process holds it


@contextlib.contextmanager
def inetd(n1: list[str], n2: list[str], env: dict[str, str], *, every_fd: bool,
          ) -> Iterator[tuple[Callable[[list[str], int], tuple[int, str]],
                              list[subprocess.Popen[bytes]]]]:
    """An inetd on n2's port that starts ``nonstop sync -i`` for each connection with it as
    stdin (xinetd, a systemd socket with ``Accept=yes``), or as stdin, stdout and stderr
    (``every_fd``: classic inetd). Yields ``push(args, sessions)``, which runs ``nonstop sync
    ARGS`` on n1 while it serves that many sessions, and the receivers it started."""
    import os
    import threading

    port = int(n2[n2.index("-p") + 1])
    procs: list[subprocess.Popen[bytes]] = []
    with socket.socket() as lsock:
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind(("127.0.0.2", port))
        lsock.listen()
        lsock.settimeout(30)

        def serve_sessions(sessions: int) -> None:
            for _ in range(sessions):
                conn, _addr = lsock.accept()
                with conn:
                    out = conn.fileno() if every_fd else subprocess.PIPE
                    procs.append(subprocess.Popen(
                        [sys.executable, "-c", SERVE, *n2, "-i"], stdin=conn.fileno(),
                        stdout=out, stderr=conn.fileno() if every_fd else subprocess.STDOUT,
                        env={**os.environ, **env}))

        def push(args: list[str], sessions: int) -> tuple[int, str]:
            t = threading.Thread(target=serve_sessions, args=(sessions,))
            t.start()
            try:
                return run([*n1, *args], env)
            finally:
                t.join(30)

        try:
            yield push, procs
        finally:
            for p in procs:
                stop(p)


def test_i_serves_the_connection_inetd_hands_it(
        demo: tuple[Path, list[str], list[str], dict[str, str]]) -> None:
    """``-i`` as xinetd or a systemd socket with ``Accept=yes`` runs it: the accepted connection
    is stdin."""
    tmp, n1, n2, env = demo
    (tmp / "d1/f").write_text("via inetd")
    with inetd(n1, n2, env, every_fd=False) as (push, procs):
        code, out = push(["-xv"], 1)
        assert code == 0, out
        assert procs and procs[0].wait(20) == 0
        assert (tmp / "d2/f").read_text() == "via inetd"


def test_i_under_a_classic_inetd_keeps_its_messages_out_of_the_session(
        demo: tuple[Path, list[str], list[str], dict[str, str]]) -> None:
    """inetd and xinetd hand the connection as stdin, stdout *and* stderr. csync2's ``-i``
    implies ``-l`` (messages to syslog), so a conflict on the receiver reaches the client as
    a conflict. nonstop wrote it to stderr, into the TLS stream: the client saw ``[SSL:
    WRONG_VERSION_NUMBER]`` instead, and the rest of that session was lost."""
    tmp, n1, n2, env = demo
    (tmp / "d1/f").write_text("v0")
    with inetd(n1, n2, env, every_fd=True) as (push, procs):
        assert push(["-x"], 1) == (0, "")
        (tmp / "d1/f").write_text("edited on n1")
        (tmp / "d2/f").write_text("edited on n2")
        (tmp / "d1/g").write_text("new on n1")
        code, out = push(["-x"], 1)
        assert code == 1
        assert "conflict: %demodir%/f changed on both n1 and n2" in out, out
        assert "SSL" not in out
        assert (tmp / "d2/g").read_text() == "new on n1"  # the session went on
        assert [p.wait(20) for p in procs] == [0, 0]


def test_a_path_through_a_symlinked_directory_names_what_it_points_to(
        demo: tuple[Path, list[str], list[str], dict[str, str]]) -> None:
    """csync2 resolves the directories of a command-line path (getrealfn), keeping its last
    component: ``csync2 -c /alias/a/f`` with ``/alias`` a symlink to the prefix's directory
    checks ``%demodir%/a/f``; ``/alias`` itself, a symlink, stays outside every include.
    nonstop took the path as written and silently ignored it (``-M`` then said nothing
    dirty, exit 2, and the file was not sent)."""
    tmp, n1, _n2, env = demo
    (tmp / "d1/a").mkdir()
    (tmp / "d1/a/f").write_text("v1")
    (tmp / "alias").symlink_to(tmp / "d1")
    assert run([*n1, "-cI"], env)[0] == 0
    (tmp / "d1/a/f").write_text("v2")
    assert run([*n1, "-cr", str(tmp / "alias")], env)[0] == 0  # a symlink: ignored
    assert run([*n1, "-M"], env)[0] == 2
    assert run([*n1, "-c", str(tmp / "alias/a/f")], env)[0] == 0
    assert run([*n1, "-M"], env) == (0, "chary\tn1\tn2\t%demodir%/a/f\n")


def test_a_path_nothing_replicates_is_named_as_csync2_names_it(
        demo: tuple[Path, list[str], list[str], dict[str, str]]) -> None:
    """csync2 warns ``WARNING: Parameter will be ignored: PATH`` for a path outside every
    include or excluded, and goes on (exit 0); nonstop ignored it without a word, so a cron
    job's mail or an admin's typo went unnoticed."""
    tmp, n1, _n2, env = demo
    (tmp / "d1/a").mkdir()
    (tmp / "d1/a/f").write_text("f")
    (tmp / "d1/e").write_text("excluded")
    warn = "WARNING: Parameter will be ignored: "
    for args, path in ((["-c", "/etc/hostname"], "/etc/hostname"),
                       (["-c", str(tmp / "d1/e")], str(tmp / "d1/e")),
                       (["-cr", str(tmp)], str(tmp)),  # above the prefix's directory
                       (["-x", "/etc/hostname"], "/etc/hostname"),
                       (["-m", "/etc/hostname"], "/etc/hostname"),
                       (["-f", str(tmp / "d1/e")], str(tmp / "d1/e"))):
        assert run([*n1, *args], env) == (0, f"{warn}{path}\n"), args
    for args in (["-c", str(tmp / "d1/a/f")], ["-cr", str(tmp / "d1")], ["-c", "%demodir%/a"],
                 ["-c", str(tmp / "d1/a/nope")]):
        code, out = run([*n1, *args], env)
        assert code == 0 and warn not in out, (args, out)


def test_dry_run_and_only_these_peers(
        demo: tuple[Path, list[str], list[str], dict[str, str]]) -> None:
    tmp, n1, n2, env = demo
    cfg = tmp / "etc/csync2.cfg"
    cfg.write_text(cfg.read_text().replace("host n2;", "host n2;\n    host n3;")
                   .replace("on n2:", f"on n3: {tmp}/d3;\n    on n2:"))
    (tmp / "d1/f").write_text("f")
    assert run([*n1, "-c"], env)[0] == 0
    code, out = run([*n1, "-ud"], env)
    assert code == 0
    assert "?M: n2              %demodir%/f" in out.splitlines()
    assert "?M: n3              %demodir%/f" in out.splitlines()
    assert not (tmp / "d2/f").exists()
    proc = serve([*n2, "-ii"], env)
    try:
        # n3 has no receiver: without -P the update fails for it, with -P n2 it is not tried
        code, out = run([*n1, "-uv", "-P", "n2"], env)
        assert code == 0, out
        assert (tmp / "d2/f").read_text() == "f"
        code, out = run([*n1, "-M"], env)
        assert out == "chary\tn1\tn3\t%demodir%\nchary\tn1\tn3\t%demodir%/f\n"
    finally:
        stop(proc)


def test_ti_turns_differences_into_pending_work(
        demo: tuple[Path, list[str], list[str], dict[str, str]]) -> None:
    tmp, n1, n2, env = demo
    (tmp / "d1/a").write_text("a")
    proc = serve([*n2, "-ii"], env)
    try:
        assert run([*n1, "-x"], env)[0] == 0
        (tmp / "d1/l").write_text("only here")  # never checked: -T finds it on the disk
        (tmp / "d2/r").write_text("only there")
        code, out = run([*n1, "-TI"], env)
        assert code == 0 and out.splitlines() == ["L\tn1\tn2\t%demodir%/l",
                                                  "R\tn1\tn2\t%demodir%/r"]
        assert run([*n1, "-M"], env)[1] == "chary\tn1\tn2\t%demodir%/l\n"
        # -X: what only the peer has is removed there at the next update
        assert run([*n1, "-TIXU", "n1", "n2"], env)[0] == 0
        code, out = run([*n1, "-uv"], env)
        assert code == 0, out
        assert (tmp / "d2/l").read_text() == "only here"
        assert not (tmp / "d2/r").exists()
        assert run([*n1, "-T"], env)[0] == 2
    finally:
        stop(proc)


def test_timestamps_as_csync2_prints_them(
        demo: tuple[Path, list[str], list[str], dict[str, str]]) -> None:
    import re

    tmp, n1, _n2, env = demo
    (tmp / "d1/f").write_text("f")
    stamps = tmp / "stamps"
    code, out = run([*n1, "-cvv", "-t", "-s", str(stamps)], env)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("TIMESTAMP: ") and lines[-1] == "TOTALTIME: 0:00:00"
    assert any(re.match(r"^\[\d\d:\d\d:\d\d\] dirty for n2: %demodir%/f$", x) for x in lines)
    logged = stamps.read_text().splitlines()
    assert len(logged) == 3 and re.match(r"^<\d+> TOTALTIME: 0:00:00$", logged[2])


def test_compare_mode_and_directory_dump(
        demo: tuple[Path, list[str], list[str], dict[str, str]]) -> None:
    import os

    tmp, n1, _n2, env = demo
    cfg = tmp / "etc/csync2.cfg"
    cfg.write_text(cfg.read_text().replace("exclude %demodir%/e;",
                                           "exclude %demodir%/e;\n    compare %demodir%/e;"))
    (tmp / "d1/a").mkdir()
    (tmp / "d1/a/f").write_text("f")
    (tmp / "d1/e").write_text("compared, not synced")
    # -o lists what a check would look at in compare mode (compare patterns included), records
    # nothing
    code, out = run([*n1, "-or", str(tmp / "d1")], env)
    assert code == 0
    assert out.splitlines() == ["%demodir%", "%demodir%/a", "%demodir%/a/f", "%demodir%/e"]
    assert run([*n1, "-L"], env)[0] == 2
    # -cW FD: the directories that hold included files, NUL-ended, deepest first
    r, w = os.pipe()
    try:
        code, out = run([*n1, "-cr", "-W", str(w), str(tmp / "d1")], env)
        os.close(w)
        assert code == 0, out
        with os.fdopen(r, "rb") as fh:
            assert fh.read() == f"{tmp}/d1/a\0{tmp}/d1\0".encode()
    finally:
        with contextlib.suppress(OSError):
            os.close(w)
    code, out = run([*n1, "-c", "-W", "99"], env)
    assert code == 1 and "Invalid dump_dir_fd 99" in out


def test_a_receiver_starting_with_its_client_is_waited_for(
        demo: tuple[Path, list[str], list[str], dict[str, str]]) -> None:
    """csync2's suite starts ``-iii`` and the client at the same moment: a refused connection
    is retried for a moment instead of failing at once."""
    import threading

    _tmp, n1, n2, env = demo
    port = int(n2[n2.index("-p") + 1])
    accepted = threading.Event()

    def late_listener() -> None:
        time.sleep(0.5)
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.2", port))
            s.listen()
            s.settimeout(20)
            conn, _ = s.accept()
            accepted.set()
            conn.close()

    t = threading.Thread(target=late_listener)
    t.start()
    try:
        code, out = run([*n1, "-T"], env)
    finally:
        t.join(30)
    assert accepted.is_set(), out
    assert code == 1 and "Connect call failed" not in out


TWO_GROUPS_CFG = """group conf
{{
    host n1;
    host n2;
    key csync2.key_demo;
    include {tmp}/d1/conf;
}}

group logs
{{
    host n1;
    host n2;
    key csync2.key_demo;
    include {tmp}/d1/logs;
}}

nossl * *;
"""


def test_a_check_of_one_group_keeps_the_other_groups_rows(tmp_path: Path) -> None:
    """-G conf: the node sees only group conf, so a check took the logs group's recorded names
    for names no group includes and forgot them (before that: for deletions to push)."""
    (tmp_path / "csync2.key_demo").write_text(KEY + "\n")
    cfg = tmp_path / "csync2.cfg"
    cfg.write_text(TWO_GROUPS_CFG.format(tmp=tmp_path))
    for sub in ("conf", "logs"):
        (tmp_path / "d1" / sub).mkdir(parents=True)
        (tmp_path / "d1" / sub / "f").write_text(sub)
    base = ["-C", str(cfg), "-N", "n1", "-D", str(tmp_path / "db")]
    (tmp_path / "db").mkdir()
    code, out = run([*base, "-cr", str(tmp_path / "d1")])
    assert code == 0, out
    code, listed = run([*base, "-M"])
    assert str(tmp_path / "d1/logs/f") in listed, listed
    code, out = run([*base, "-G", "conf", "-cr", str(tmp_path / "d1")])
    assert code == 0, out
    code, after = run([*base, "-M"])
    assert str(tmp_path / "d1/logs/f") in after, after  # still known, still dirty for n2


def test_t_escapes_a_name_as_the_push_output_does(
        demo: tuple[Path, list[str], list[str], dict[str, str]]) -> None:
    """A name with a newline is one ``-T`` line (``\\n``, as ``-v`` shows it), and ``-TI``
    still marks the file by its real name."""
    tmp, n1, n2, env = demo
    (tmp / "d1/two\nlines").write_text("x")
    (tmp / "d1/a\ttab").write_text("t")
    proc = serve([*n2, "-ii"], env)
    try:
        code, out = run([*n1, "-TI"], env)
        assert code == 0 and out.splitlines() == ["L\tn1\tn2\t%demodir%/a\\ttab",
                                                  "L\tn1\tn2\t%demodir%/two\\nlines"], out
        assert run([*n1, "-uv"], env)[0] == 0
        assert (tmp / "d2/two\nlines").read_text() == "x"
        assert (tmp / "d2/a\ttab").read_text() == "t"
    finally:
        stop(proc)


def test_csync2_s_own_database_in_d_is_set_aside_not_fatal(
        demo: tuple[Path, list[str], list[str], dict[str, str]]) -> None:
    """A script that kept ``-D`` on csync2's database directory: csync2 2.0 made n1.db3 there
    (its own tables). Before, every run failed on them ("table dirty has no column named
    filename", exit 1) and nothing replicated; now the file is renamed aside, said once, and
    the run goes on with nonstop's own database."""
    tmp, n1, _n2, env = demo
    made = subprocess.run(["csync2", "-N", "n1", "-D", str(tmp / "db"), "-M"],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=30)
    assert (tmp / "db/n1.db3").exists(), made.stderr  # csync2's, with its tables
    original = (tmp / "db/n1.db3").read_bytes()
    (tmp / "d1/f").write_text("f")
    code, out = run([*n1, "-cr", str(tmp / "d1")], env)
    assert code == 0, out
    assert out.count("was csync2's database") == 1
    assert f"moved to {tmp}/db/n1.db3.csync2 " in out
    assert (tmp / "db/n1.db3.csync2").read_bytes() == original  # untouched, for a way back
    code, out = run([*n1, "-M"], env)
    assert code == 0 and "%demodir%/f" in out and "csync2's database" not in out
    # csync2's database made again in its place (csync2 run again by the same scripts) goes
    # aside under the next name; -M alone (the quick path) sets it aside as well.
    (tmp / "db/n1.db3").unlink()
    subprocess.run(["csync2", "-N", "n1", "-D", str(tmp / "db"), "-M"],
                   env={**os.environ, **env}, capture_output=True, timeout=30)
    code, out = run([*n1, "-M"], env)
    assert code == 2 and f"moved to {tmp}/db/n1.db3.csync2.1 " in out


MIGRATING_CFG = """nossl * *;
group g {{
    host 127.0.0.1 127.0.0.2;
    key {key};
    include {tree};
}}
"""


def test_csync2_on_the_other_end_in_a_migration_is_named_both_ways(tmp_path: Path) -> None:
    """Node by node, one node still runs csync2 2.0 (its listener, or its cron line): OpenSSL's
    "[SSL: WRONG_VERSION_NUMBER] wrong version number" was all either side said. The real
    csync2 on the other end, node names that are addresses (no /etc/hosts needed)."""
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree/sip.conf").write_text("[general]\n")
    (tmp_path / "key").write_text(KEY + "\n")
    (tmp_path / "csync2.cfg").write_text(MIGRATING_CFG.format(key=tmp_path / "key",
                                                              tree=tmp_path / "tree"))
    for d in ("db1", "db2", "db3", "db4"):
        (tmp_path / d).mkdir()
    env = {"CSYNC2_SYSTEM_DIR": str(tmp_path)}
    full_env = {**os.environ, **env}
    # nonstop pushes to csync2's listener
    port = str(free_port())
    listener = subprocess.Popen(["csync2", "-ii", "-N", "127.0.0.2", "-D", str(tmp_path / "db2"),
                                 "-p", port], env=full_env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.2", int(port))) == 0:
                    break
            time.sleep(0.05)
        code, out = run(["-x", "-N", "127.0.0.1", "-D", str(tmp_path / "db1"), "-p", port], env)
    finally:
        stop(listener)
    assert code == 1
    assert ("connection to 127.0.0.2 (127.0.0.2:" + port + ") failed: it answered, but not in "
            "TLS (csync2 2.0 still listening there?") in out, out
    # csync2 pushes to nonstop's receiver
    port = str(free_port())
    receiver = serve(["-ii", "-N", "127.0.0.2", "-D", str(tmp_path / "db3"), "-p", port], env)
    try:
        pushed = subprocess.run(["csync2", "-x", "-N", "127.0.0.1", "-D", str(tmp_path / "db4"),
                                 "-p", port], env=full_env, capture_output=True, timeout=30)
        assert pushed.returncode == 1
    finally:
        stop(receiver)
    assert receiver.stdout is not None
    said = receiver.stdout.read().decode()
    assert ("sync: TLS handshake with 127.0.0.1 failed: it speaks no TLS (csync2 2.0 still "
            "pushing from there?") in said, said
