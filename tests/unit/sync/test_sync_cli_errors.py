"""``nonstop sync`` on bad input or a broken state directory: one clear line and exit 1, never a
traceback, in every mode, on the fast path (nonstop.sync.quickcli) and the click CLI alike."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from sync_harness import KEY, TALK_CFG, free_port

# The program as installed: the fast path for -x/-c/-u/-M, the click CLI for the rest.
PROGRAM = "import sys; from nonstop.quick import main; sys.argv[0] = 'nonstop'; main()"

# The talk's group and a second one sharing the peer (and one of the first's files).
SECOND_GROUP = """
group logs
{
    host vpbx1-1 vpbx1-2;
    key KEYFILE;
    include /var/log/asterisk;
    include /etc/asterisk/sip.conf;
}
"""


def _setup(tmp: Path, extra: str = "") -> list[str]:
    """vpbx1-1's command line (config, port, addresses, root, state dir in tmp/s1)."""
    key = tmp / "csync2.key_vpbx1"
    key.write_text(KEY + "\n")
    cfg = tmp / "csync2.cfg"
    cfg.write_text((TALK_CFG + extra).replace("/etc/csync2.key_vpbx1", str(key))
                   .replace("KEYFILE", str(key)))
    for d in ("etc/asterisk", "var/log/asterisk"):
        (tmp / "n1" / d).mkdir(parents=True)
    return ["--config", str(cfg), "-p", str(free_port()), "-N", "vpbx1-1",  # -p: [2:4]
            "--peer-address", "vpbx1-1=127.0.0.1", "--peer-address", "vpbx1-2=127.0.0.2",
            "--root", str(tmp / "n1"), "--state-dir", str(tmp / "s1")]


def sync(args: list[str], env: dict[str, str] | None = None,
         file_size_limit: int | None = None) -> tuple[int, str, str]:
    """``nonstop sync ARGS`` in a child: exit code, stdout, stderr. ``file_size_limit``: no
    file may grow past it (RLIMIT_FSIZE), so a write to the state database fails as on a full
    disk, without a mount."""

    def limit() -> None:
        if file_size_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    done = subprocess.run([sys.executable, "-c", PROGRAM, "sync", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})},
                          preexec_fn=limit)
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize("mode", [["-xv"], ["-c"], ["-M"], ["-T"], ["-L"], ["-ud"],
                                  ["-iii", "--listen", "127.0.0.2"]], ids=lambda m: m[0])
def test_a_state_database_that_cannot_be_opened_is_one_line(tmp_path: Path,
                                                            mode: list[str]) -> None:
    """As with a read-only state directory: sqlite cannot open the database (here a directory
    stands where the file should be, which no permission bit of root's can get round)."""
    n1 = _setup(tmp_path)
    db = tmp_path / "s1" / "vpbx1-1.db3"
    db.mkdir(parents=True)
    code, out, err = sync([*n1, *mode])
    assert (code, out, err) == (1, "", f"Can't open database {db}: unable to open database file\n")


def test_a_failed_write_to_the_state_database_is_one_line(tmp_path: Path) -> None:
    """A write that fails half way (a full disk; here a file size limit) ends the run with
    one line naming the database, and the fast path and the click CLI say the same."""
    n1 = _setup(tmp_path)
    assert sync([*n1, "-M"])[0] == 2  # the database exists, empty
    for i in range(2000):
        (tmp_path / "n1/etc/asterisk" / f"f{i}.conf").write_text(f"{i}\n")
    db = tmp_path / "s1" / "vpbx1-1.db3"
    for mode in (["-c"], ["-cv", "-G", "vpbx1"]):  # -G: the click CLI's line
        code, out, err = sync([*n1, *mode], file_size_limit=os.path.getsize(db) + 8192)
        assert (code, out) == (1, "")
        assert err == f"ERROR: state database {db}: disk I/O error\n"


@pytest.mark.parametrize("mode", ["-M", "-x", "-L"])
def test_a_missing_database_directory_is_an_error(tmp_path: Path, mode: str) -> None:
    """csync2's -D names a directory that must exist: no database file is made in its place."""
    n1 = _setup(tmp_path)
    (tmp_path / "n1/etc/asterisk/sip.conf").write_text("[general]\n")
    missing = tmp_path / "no-such-dir"
    assert sync([*n1, "-D", str(missing), mode]) == (
        1, "", f"Can't open database directory {missing}: No such file or directory\n")
    assert not missing.exists()
    a_file = tmp_path / "csync2.key_vpbx1"
    assert sync([*n1, "-D", str(a_file), mode]) == (
        1, "", f"Can't open database directory {a_file}: Not a directory\n")
    (tmp_path / "db").mkdir()
    assert sync([*n1, "-D", str(tmp_path / "db"), "-cI"])[0] == 0
    assert (tmp_path / "db" / "vpbx1-1.db3").is_file()


@pytest.mark.parametrize("port", ["99999", "65536", "0", "-1", "abc"])
@pytest.mark.parametrize("mode", ["-x", "-M", "-T"])
def test_a_port_out_of_range_is_a_usage_error(tmp_path: Path, port: str, mode: str) -> None:
    n1 = _setup(tmp_path)
    (tmp_path / "n1/etc/asterisk/sip.conf").write_text("[general]\n")  # -x would connect
    code, out, err = sync([*n1, "-p", port, mode])
    assert (code, out) == (1, "")
    assert err.startswith("Usage: nonstop sync [OPTIONS] [PATHS]...\n")
    assert f"Error: Invalid value for '-p': {port!r}" in err or \
        f"Error: Invalid value for '-p': {port} is not in the range 1<=x<=65535." in err
    without_p = n1[:2] + n1[4:]
    code, out, err = sync([*without_p, mode], env={"NONSTOP_SYNC_PORT": port})
    assert code == 1 and "Error: Invalid value for '-p'" in err and "Traceback" not in err


def test_a_forced_scope_is_listed_once_with_two_groups_sharing_the_peer(
        tmp_path: Path) -> None:
    n1 = _setup(tmp_path, SECOND_GROUP)
    (tmp_path / "n1/etc/asterisk/sip.conf").write_text("[general]\n")
    assert sync([*n1, "-cI"])[0] == 0
    assert sync([*n1, "-f", "/etc/asterisk/sip.conf"])[0] == 0
    assert sync([*n1, "-M"]) == (0, "chary\tvpbx1-1\tvpbx1-2\t/etc/asterisk/sip.conf\n"
                                    "force\tvpbx1-1\tvpbx1-2\t/etc/asterisk/sip.conf "
                                    "(pending forced sync)\n", "")
    code, out, _err = sync([*n1, "-ud"])
    assert code == 0
    assert out.splitlines() == [
        "?M: vpbx1-2         /etc/asterisk/sip.conf",
        "!M: vpbx1-2         /etc/asterisk/sip.conf "
        "(pending forced sync: the peer is made equal here)"]


def test_the_engine_lists_a_peer_of_two_groups_once(tmp_path: Path) -> None:
    """The engine's own -M listing (what the daemon's tests read) agrees with the command's."""
    from nonstop.config.csync2 import load_csync2
    from nonstop.sync.node import Node, Options

    n1 = _setup(tmp_path, SECOND_GROUP)
    (tmp_path / "n1/etc/asterisk/sip.conf").write_text("[general]\n")
    node = Node(Options(load_csync2(str(tmp_path / "csync2.cfg")), "vpbx1-1",
                        str(tmp_path / "s1"), root=str(tmp_path / "n1")), lambda _l, _m: None)
    try:
        node.check_init(None)
        node.force([("/etc/asterisk/sip.conf", False)])
        lines = node.dirty_lines()
    finally:
        node.close()
    assert lines == ["chary\tvpbx1-1\tvpbx1-2\t/etc/asterisk/sip.conf",
                     "force\tvpbx1-1\tvpbx1-2\t/etc/asterisk/sip.conf (pending forced sync)"]
    assert sync([*n1, "-M"])[1].splitlines() == lines


def test_a_nul_byte_in_csync2_cfg_speaks_of_csync2(tmp_path: Path) -> None:
    n1 = _setup(tmp_path)
    cfg = tmp_path / "csync2.cfg"
    cfg.write_bytes(b"# one\n# two\ngroup g\0 {\n}\n")
    assert sync([*n1, "-M"]) == (1, "", f"Config error: {cfg}:3: NUL byte in the file: csync2's "
                                        "configuration and key files are text; remove it\n")
