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
                 ["status", "--state-dir", str(a_file)], ["sync", "-M", "--help"], ["sync", "-Mv"]):
        code, out, err, loaded = program(args)
        assert "click" in loaded, args
        assert (code, out, err) == click_cli(args), args
    assert program(["status", "--state-dir", str(a_file)])[0] == 2  # click: "is a file"


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
