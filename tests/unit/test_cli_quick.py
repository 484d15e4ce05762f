"""The fast paths of the ``nonstop`` program (nonstop.quick): ``status`` and ``sync -M`` give
exactly what the click CLI gives, without loading click, asyncio or TLS; any other command
line is the click CLI's."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest

from nonstop.quick import _as_path, plain_options

# The program as installed, in a child: its output, exit code and the heavy modules it loaded;
# CLICK is the click CLI alone, as the program was before it had fast paths.
PROGRAM = """
import sys
from nonstop.quick import main
sys.argv[0] = "nonstop"
try:
    main()
finally:
    heavy = sorted(m for m in ("click", "asyncio", "ssl", "nonstop.sync.node") if m in sys.modules)
    print("LOADED", *heavy, file=sys.stderr)
"""

CLICK = """
import sys
from nonstop.cli import cli
sys.argv[0] = "nonstop"
cli()
"""

STATUS = {
    "node": "n1", "status": "active", "cluster": "c", "generation": 3, "uptime_s": 12.0,
    "timing": {"keepalive_ms": 200, "deadtime_ms": 2000, "warntime_ms": 1000,
               "initdead_ms": 10000},
    "nodes": [{"name": "n1", "local": True, "status": "active", "last_heard_ms_ago": None,
               "links": {}},
              {"name": "n2", "local": False, "status": "active", "last_heard_ms_ago": 150,
               "links": {"eth0": "up"}}],
    "groups": [], "packets": {"dropped": {}},
}


def program(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
            ) -> tuple[int, str, str, str]:
    """(exit code, stdout, stderr without the LOADED line, heavy modules loaded)."""
    done = subprocess.run([sys.executable, "-c", PROGRAM, *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})}, cwd=cwd)
    err, _, loaded = done.stderr.rpartition("LOADED")
    return done.returncode, done.stdout, err, loaded.strip()


def click_cli(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
              ) -> tuple[int, str, str]:
    done = subprocess.run([sys.executable, "-c", CLICK, *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})}, cwd=cwd)
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize(("args", "expected"), [
    ([], {}),
    (["--json"], {"--json": True}),
    (["--state-dir", "/x", "--json"], {"--state-dir": "/x", "--json": True}),
    (["--state-dir=/x", "--state-dir", "/y"], {"--state-dir": "/y"}),
    (["-N", "a", "-Nb", "-M"], {"-N": "b", "-M": True}),
    (["--state-dir"], None),
    (["--help"], None),
    (["--json", "extra"], None),
    (["-Mv"], None),
    (["--"], None),
    (["--json=yes"], None),
    (["-M", "--json", "-M", "-N", "-M"], {"-M": 2, "--json": 1, "-N": "-M"}),
])
def test_plain_options_or_none(args: list[str], expected: dict[str, object] | None) -> None:
    assert plain_options(args, ("--json", "-M"), ("--state-dir", "-N")) == expected


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Path]:
    """A control socket answering every request with STATUS, as the daemon would."""
    state = tmp_path / "state"
    state.mkdir()
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(state / "nonstop.sock"))
    srv.listen(8)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(json.dumps({"ok": True, "status": STATUS}).encode() + b"\n")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield state
    stop.set()
    srv.shutdown(socket.SHUT_RDWR)
    srv.close()
    t.join(5)


@pytest.mark.parametrize("extra", [[], ["--json"]])
def test_status_fast_path_answers_as_click_does(daemon: Path, extra: list[str]) -> None:
    args = ["status", "--state-dir", str(daemon), *extra]
    code, out, err, loaded = program(args)
    assert loaded == ""  # neither click nor asyncio nor ssl
    assert (code, out, err) == click_cli(args)
    assert code == 0
    if extra:
        assert json.loads(out) == STATUS
    else:
        assert "  n2               active   150 ms ago     eth0:up" in out.splitlines()


@pytest.mark.parametrize("value", ["a//b/./c/", "//x", "///x", "/", ".", "./", "../up", "x"])
def test_paths_are_shown_as_click_shows_them(value: str) -> None:
    assert _as_path(value) == str(PurePosixPath(value))


@pytest.mark.parametrize("extra", [[], ["--json"], ["--state-dir=./"]])
def test_status_without_a_daemon(tmp_path: Path, extra: list[str]) -> None:
    args = ["status", "--state-dir", f"{tmp_path}//./", *extra]
    code, out, err, loaded = program(args)
    assert loaded == ""
    assert (code, out, err) == click_cli(args)
    assert code == 3


def test_other_command_lines_go_to_click(tmp_path: Path) -> None:
    a_file = tmp_path / "f"
    a_file.write_text("")
    for args in (["status", "--help"], ["status", "--bogus"],
                 ["status", "--state-dir", str(a_file)], ["sync", "-M", "--help"], ["sync", "-Md"],
                 ["sync", "-x", "--", "x"], ["sync", "-xc"], ["sync", "-M", "x"],
                 ["sync", "-x", "-p", "port"], ["sync", "-x", "--peer-address", "b"]):
        code, out, err, loaded = program(args)
        assert "click" in loaded, args
        assert (code, out, err) == click_cli(args), args
    assert program(["status", "--state-dir", str(a_file)])[0] == 2  # click: "is a file"


def _talk_config(tmp_path: Path, bcast: str) -> Path:
    from nonstop.lab.hbconfig import set_directives
    from nonstop.talk import copy_talk

    d = copy_talk(tmp_path) / "ha.d"
    ha_cf = d / "ha.cf"
    ha_cf.write_text(set_directives(ha_cf.read_text(), {"bcast": bcast}))
    (d / "haresources").write_text("")
    return d


def test_run_starts_without_click_and_fails_as_click_did(tmp_path: Path) -> None:
    """The daemon keeps what its command line imported: `run` leaves click out, and its
    errors and exit codes stay the click CLI's."""
    d = _talk_config(tmp_path, "eth9")
    args = ["run", "--config-dir", str(d), "--state-dir", str(tmp_path / "s"), "-v",
            "--node=vpbx1-1", "--sync-root", "/"]
    code, out, err, loaded = program(args)
    assert "click" not in loaded
    assert (code, out, err) == click_cli(args)
    assert code == 6 and err.endswith("Configuration error, nonstop not started.\n")
    not_a_dir = tmp_path / "f"
    not_a_dir.write_text("")
    d = _talk_config(tmp_path / "lo", "lo")
    args = ["run", "--config-dir", str(d), "--state-dir", str(not_a_dir / "x"), "--node",
            "vpbx1-1"]
    code, out, err, loaded = program(args)
    assert "click" not in loaded
    click_code, click_out, click_err = click_cli(args)
    assert (code, out, err.splitlines()[-1]) == (click_code, click_out,
                                                  click_err.splitlines()[-1])
    assert code == 1 and err.splitlines()[-1].startswith("nonstop: cannot run: ")


def test_run_line_as_click_reads_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nonstop.runcommand as rc

    calls: list[tuple[object, ...]] = []

    def run_node(*a: object) -> int:
        calls.append(a)
        return 0

    monkeypatch.setattr(rc, "run_node", run_node)
    assert rc.run_command(["-v", "--node", "-v", "--verbose", "--state-dir=/s"]) == 0
    assert rc.run_command([]) == 0
    assert calls == [(Path("/etc/ha.d"), Path("/s"), "-v", 2, "/"),
                     (Path("/etc/ha.d"), Path("/var/lib/nonstop"), None, 0, "/")]
    a_file = tmp_path / "f"
    a_file.write_text("")
    for args in (["--help"], ["-vv"], ["x"], ["--config-dir", str(a_file)], ["--node"]):
        assert rc.run_command(args) is None, args
    assert len(calls) == 2


def test_run_lines_for_click_go_to_click(tmp_path: Path) -> None:
    a_file = tmp_path / "f"
    a_file.write_text("")
    for args in (["run", "--help"], ["run", "--bogus"], ["run", "--config-dir", str(a_file)],
                 ["run", "--state-dir", str(a_file)], ["run", "extra"]):
        code, out, err, loaded = program(args)
        assert "click" in loaded, args
        assert (code, out, err) == click_cli(args), args
        assert code in (0, 2), args


CFG = """group g
{
    host a;
    host b;
    key %s;
    include %s;
}
"""


@pytest.fixture
def sync_node(tmp_path: Path) -> list[str]:
    key = tmp_path / "key"
    key.write_text("K" * 64 + "\n")
    (tmp_path / "data").mkdir()
    cfg = tmp_path / "csync2.cfg"
    cfg.write_text(CFG % (key, tmp_path / "data"))
    return ["--config", str(cfg), "-N", "a", "--state-dir", str(tmp_path / "state")]


def test_sync_dirty_list_fast_path_answers_as_click_does(tmp_path: Path,
                                                         sync_node: list[str]) -> None:
    env = {"CSYNC2_SYSTEM_DIR": str(tmp_path)}
    empty = program(["sync", "-M", *sync_node], env)
    assert empty[0] == 2 and empty[3] == ""
    assert empty[:3] == click_cli(["sync", "-M", *sync_node], env)
    (tmp_path / "data" / "x").write_text("x")
    assert click_cli(["sync", "-c", *sync_node], env)[0] == 0
    assert click_cli(["sync", "-f", *sync_node, str(tmp_path / "data")], env)[0] == 0
    code, out, err, loaded = program(["sync", "-M", *sync_node], env)
    assert loaded == ""
    assert (code, out, err) == click_cli(["sync", "-M", *sync_node], env)
    lines = out.splitlines()
    assert code == 0 and f"chary\ta\tb\t{tmp_path}/data/x" in lines
    assert lines[-1] == f"force\ta\tb\t{tmp_path}/data (pending forced sync)"


@pytest.mark.parametrize("case", ["not-member", "bad-config", "cfgname", "lock", "env"])
def test_sync_dirty_list_errors_as_click_gives_them(tmp_path: Path, sync_node: list[str],
                                                    case: str) -> None:
    env = {"CSYNC2_SYSTEM_DIR": str(tmp_path)}
    args = ["sync", "-M", *sync_node]
    if case == "not-member":
        args = [*args, "-N", "c"]
    elif case == "bad-config":
        (tmp_path / "csync2.cfg").write_text("group g {\n host a;\n auto maybe;\n}\n")
    elif case == "cfgname":
        args = ["sync", "-M", "-C", "Bad-Name"]
    elif case == "lock":
        (tmp_path / "csync2.lock").write_text("")
    else:
        args = ["sync", "-M"]
        env.update(NONSTOP_SYNC_NODE="a", NONSTOP_SYNC_CONFIG=str(tmp_path / "csync2.cfg"),
                   NONSTOP_SYNC_STATE_DIR=str(tmp_path / "state"))
    code, out, err, loaded = program(args, env)
    assert loaded == ""
    assert (code, out, err) == click_cli(args, env)
    assert code == (2 if case == "env" else 1)


def test_sync_dirty_list_with_an_empty_state_dir_uses_the_working_directory(
        tmp_path: Path, sync_node: list[str]) -> None:
    args = ["sync", "-M", *sync_node, "--state-dir", ""]
    env = {"CSYNC2_SYSTEM_DIR": str(tmp_path)}
    for cwd, run in ((tmp_path / "fast", program), (tmp_path / "click", click_cli)):
        cwd.mkdir()
        assert run(args, env, cwd)[0] == 2
        assert (cwd / "a.db3").exists()


@pytest.mark.parametrize(("args", "expected"), [
    (["-xv"], {"check_update": True, "verbose": 1}),
    (["-crvv", "/a", "-N", "n", "/b"], {"do_check": True, "recursive": True, "verbose": 2,
                                       "node": "n", "paths": ["/a", "/b"]}),
    (["-cu", "-p30866", "--peer-address=b=1.2.3.4", "--peer-address", "c=5.6.7.8"],
     {"do_check": True, "do_update": True, "port": "30866",
      "peer_address": ["b=1.2.3.4", "c=5.6.7.8"]}),
    (["-xN", "n", "--root", "/r", "--db=/d"], {"check_update": True, "node": "n", "root": "/r",
                                               "db_path": "/d"}),
    (["-x", "-"], None), (["-x", "--"], None), (["-xd"], None), (["-x", "-N"], None),
    (["-x", "--listen", "a"], None), (["--help"], None),
])
def test_sync_line_parsed_as_click_parses_it(args: list[str],
                                             expected: dict[str, object] | None) -> None:
    from nonstop.sync.quickcli import parse_sync_line

    got = parse_sync_line(args)
    if expected is None:
        assert got is None
    else:
        assert got == {"paths": [], "peer_address": [], "verbose": 0, **expected}


def _two_nodes(tmp_path: Path, sync_node: list[str]) -> tuple[list[str], list[str]]:
    """The same node with two state directories: one for the fast path, one for click."""
    fast = [*sync_node, "--state-dir", str(tmp_path / "state-fast")]
    slow = [*sync_node, "--state-dir", str(tmp_path / "state-click")]
    return fast, slow


def test_sync_check_fast_path_answers_as_click_does(tmp_path: Path, sync_node: list[str]) -> None:
    """``-c``/``-cr`` and a ``-x`` that finds nothing to send load neither click nor asyncio
    nor TLS, and say and do what the click CLI does."""
    env = {"CSYNC2_SYSTEM_DIR": str(tmp_path)}
    (tmp_path / "data" / "x").write_text("x")
    (tmp_path / "data" / "d").mkdir()
    fast, slow = _two_nodes(tmp_path, sync_node)
    for args in (["-crvv", str(tmp_path / "data")], ["-c", "-v"], ["-M"]):
        code, out, err, loaded = program(["sync", *args, *fast], env)
        assert loaded in ("", "nonstop.sync.node"), args
        assert (code, out, err) == click_cli(["sync", *args, *slow], env), args
    assert "dirty for b: " + str(tmp_path / "data" / "x") in program(
        ["sync", "-M", *fast], env)[1].replace("chary\ta\tb\t", "dirty for b: ")
    # Node b has no peer but a: with a group of a alone, nothing is ever pending.
    alone = tmp_path / "alone.cfg"
    alone.write_text(CFG.replace("    host b;\n", "") % (tmp_path / "key", tmp_path / "data"))
    code, out, err, loaded = program(["sync", "-xv", *fast, "--config", str(alone)], env)
    assert loaded == "nonstop.sync.node"
    assert (code, out, err) == click_cli(["sync", "-xv", *slow, "--config", str(alone)], env)
    assert code == 0


def test_sync_push_fast_path_loads_the_network_code_when_it_has_something_to_send(
        tmp_path: Path, sync_node: list[str]) -> None:
    """A ``-x`` with dirty files talks to the peer (here: nobody listens) as click's does."""
    env = {"CSYNC2_SYSTEM_DIR": str(tmp_path)}
    (tmp_path / "data" / "x").write_text("x")
    with socket.socket() as s:  # a port nobody listens on: the connection is refused
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    fast, slow = _two_nodes(tmp_path, sync_node)
    peer = ["-p", port, "--peer-address", "b=127.0.0.1"]
    code, out, err, loaded = program(["sync", "-x", *fast, *peer], env)
    assert "asyncio" in loaded and "click" not in loaded
    assert (code, out, err) == click_cli(["sync", "-x", *slow, *peer], env)
    assert code == 1 and "b" in err


@pytest.mark.parametrize("args", [["-M"], ["-L"], ["-cvv"], ["-ud"]])
def test_a_reader_that_goes_away_ends_the_command_quietly(
        tmp_path: Path, sync_node: list[str], args: list[str]) -> None:
    """``nonstop sync -M | head -3`` with thousands of dirty entries: exit 1 and no word,
    whether the fast path (``-M``, ``-c``) or click (``-L``, ``-ud``) wrote the output, to
    stdout or (``-v``) to stderr. The fast path used to print a BrokenPipeError traceback."""
    env = {**os.environ, "CSYNC2_SYSTEM_DIR": str(tmp_path)}
    for i in range(3000):
        (tmp_path / "data" / f"voicemail-message-{i:05}.txt").write_text("x")
    assert click_cli(["sync", "-c", *sync_node], env)[0] == 0
    if args == ["-cvv"]:  # a new check has the same 3000 lines to say
        os.utime(tmp_path / "data")
        sync_node = [*sync_node, "--state-dir", str(tmp_path / "state2")]
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    verbose = args == ["-cvv"]
    try:
        done = subprocess.run(
            [sys.executable, "-m", "nonstop", "sync", *args, *sync_node],
            stdout=subprocess.PIPE if verbose else write,
            stderr=write if verbose else subprocess.PIPE, timeout=60, env=env)
    finally:
        os.close(write)
    said = done.stdout if verbose else done.stderr
    assert (done.returncode, said) == (1, b""), said.decode()


def installed_as(tmp_path: Path, name: str) -> Path:
    """The ``nonstop`` program as pip installs it (a console script), and ``name`` a symlink
    to it, the way a site drops nonstop in for csync2 (docs/SYNC.md)."""
    script = tmp_path / "bin" / "nonstop"
    script.parent.mkdir()
    script.write_text(f"#!{sys.executable}\nimport sys\nfrom nonstop.quick import main\n"
                      "sys.exit(main())\n")
    script.chmod(0o755)
    link = tmp_path / "bin" / name
    link.symlink_to("nonstop")
    return link


@pytest.mark.parametrize("args", [["-M"], ["-cr"], ["-L"], ["-H"], ["-Q"], []])
def test_a_csync2_symlink_runs_as_nonstop_sync(tmp_path: Path, sync_node: list[str],
                                              args: list[str]) -> None:
    """``ln -s nonstop csync2``: csync2's own command lines (cron's ``csync2 -xv``, a nagios
    ``csync2 -T``) answer as ``nonstop sync`` does, on the fast path and through click, with
    csync2's exit codes (1 for a usage error, never click's 2). The program read the first
    argument as its subcommand: ``csync2 -M`` was click's "No such option: -M", exit 2."""
    (tmp_path / "data" / "x").write_text("x")
    csync2 = installed_as(tmp_path, "csync2")
    env = {**os.environ, "CSYNC2_SYSTEM_DIR": str(tmp_path)}
    line = [*args, *sync_node] if args else []
    got = subprocess.run([str(csync2), *line], capture_output=True, text=True, timeout=60,
                         env=env)
    want = subprocess.run([str(csync2.parent / "nonstop"), "sync", *line], capture_output=True,
                          text=True, timeout=60, env=env)
    assert got.returncode == want.returncode, got.stderr
    assert got.stdout == want.stdout
    assert got.stderr.replace("Usage: csync2 ", "Usage: nonstop sync ").replace(
        "'csync2 --help'", "'nonstop sync --help'") == want.stderr
    assert got.returncode == {"-M": 2, "-cr": 0, "-L": 2, "-H": 2, "-Q": 1}.get(
        args[0] if args else "", 1)
    if not args:  # no mode: the help, exit 1, as csync2
        assert got.stderr.startswith("Usage: csync2 [OPTIONS] [PATHS]...")


def test_sync_list_dirty_loads_no_dataclasses() -> None:
    """What ``nonstop sync -M`` imports (the quick path: the config parser, the state database)
    stays without dataclasses and inspect (nonstop.records): the ordered check's one dataclass
    had pulled them into every start again."""
    import nonstop

    src = str(Path(nonstop.__file__).parent.parent)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import nonstop.sync.quickcli, "
            "nonstop.config.csync2, nonstop.sync.csync2db, nonstop.sync.statedb; "
            "print(sorted({'dataclasses', 'inspect'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-S", "-c", code, src], capture_output=True,
                         text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
