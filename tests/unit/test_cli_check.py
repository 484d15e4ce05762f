"""`nonstop check` tells the truth (issue 10, point 5): the rules `run` applies, with the same
default node, and this machine's facts unless --offline; every error of every file in one
pass; `run` shows one line per problem and a documented exit code, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from nonstop.cli import cli
from nonstop.lab.hbconfig import set_directives
from nonstop.runcommand import EXIT_MACHINE, EXIT_NOT_CONFIGURED
from nonstop.talk import copy_talk


def _config(tmp_path: Path, *, bcast: str = "lo",
            haresources: str = "vpbx1-1 127.0.0.77/8/lo master\n") -> Path:
    d = copy_talk(tmp_path) / "ha.d"
    ha_cf = d / "ha.cf"
    ha_cf.write_text(set_directives(ha_cf.read_text(), {"bcast": bcast}))
    (d / "haresources").write_text(haresources)
    return d


def _check(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["check", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.stdout, result.stderr


def test_without_node_check_uses_the_node_run_would_use(tmp_path: Path) -> None:
    d = _config(tmp_path)
    here = os.uname().nodename.lower()
    code, _out, err = _check("--config-dir", str(d))
    assert code == 1
    assert f"Current node [{here}] not in configuration!" in err
    (d / "nodeinfo").write_text("VPBX1-1\n")  # Heartbeat's rule: nodeinfo before uname -n
    code, out, err = _check("--config-dir", str(d))
    assert code == 0, err
    assert f"{d}: configuration OK for node vpbx1-1 (files and this machine)" in out


def test_the_talks_published_key_is_a_warning(tmp_path: Path) -> None:
    d = _config(tmp_path)
    code, out, _err = _check("--config-dir", str(d), "--node", "vpbx1-1", "--offline")
    assert code == 0
    assert f"{d / 'authkeys'}: warning: key 1 is the example key published with the talk" in out
    (d / "authkeys").write_text("auth 1\n1 sha1 a-secret-of-our-own\n")
    code, out, _err = _check("--config-dir", str(d), "--node", "vpbx1-1", "--offline")
    assert code == 0 and "warning" not in out


def test_every_machine_problem_in_one_pass_with_its_line(tmp_path: Path) -> None:
    d = _config(tmp_path, bcast="eth9", haresources=(
        "vpbx1-1 10.0.0.5/24/eth9 198.18.250.5 nosuchscript master\n"))
    (d / "resource.d" / "master").chmod(0o644)
    ha_cf = d / "ha.cf"
    ha_cf.write_text(ha_cf.read_text() + f"nonstop_sync {tmp_path}/missing-csync2.cfg\n")
    code, _out, err = _check("--config-dir", str(d), "--node", "vpbx1-1")
    assert code == 1
    lines = err.splitlines()
    bcast_line = next(n for n, t in enumerate(ha_cf.read_text().splitlines(), 1)
                      if t.startswith("bcast"))
    assert f"{ha_cf}:{bcast_line}: bcast eth9: no interface 'eth9' on this machine" in lines
    sync_line = len(ha_cf.read_text().splitlines())
    assert any(t.startswith(f"{ha_cf}:{sync_line}: nonstop_sync {tmp_path}/missing-csync2.cfg:"
                            " does not load") for t in lines), lines
    res = f"{d / 'haresources'}:1: "
    assert f"{res}10.0.0.5/24/eth9: no interface 'eth9' on this machine" in lines
    assert any(t.startswith(f"{res}198.18.250.5: no route covers 198.18.250.5") for t in lines)
    assert any(t.startswith(f"{res}") and "Cannot locate resource script nosuchscript" in t
               for t in lines), lines
    assert any(t.startswith(f"{res}") and "master is not executable (chmod +x" in t
               for t in lines), lines
    assert lines[-1] == f"6 error(s) in {d} (node vpbx1-1)"
    # The files themselves are fine: --offline (a configuration for another machine) passes.
    code, out, _err = _check("--config-dir", str(d), "--node", "vpbx1-1", "--offline")
    assert code == 0 and "(files only (--offline))" in out


def test_run_with_a_missing_heartbeat_interface_says_so_in_one_line(tmp_path: Path) -> None:
    d = _config(tmp_path, bcast="eth9", haresources="")
    done = subprocess.run([sys.executable, "-m", "nonstop", "run", "--config-dir", str(d),
                           "--state-dir", str(tmp_path / "state"), "--node", "vpbx1-1"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == EXIT_NOT_CONFIGURED == 6
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-2:] == [
        f"{d / 'ha.cf'}:6: bcast eth9: no interface 'eth9' on this machine",
        "Configuration error, nonstop not started."]


def test_run_with_an_unusable_state_dir_says_so_in_one_line(tmp_path: Path) -> None:
    d = _config(tmp_path, haresources="")
    not_a_dir = tmp_path / "state"
    not_a_dir.write_text("a file where the state directory's parent should be\n")
    done = subprocess.run([sys.executable, "-m", "nonstop", "run", "--config-dir", str(d),
                           "--state-dir", str(not_a_dir / "node"), "--node", "vpbx1-1"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == EXIT_MACHINE == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1].startswith("nonstop: cannot run: "), done.stderr
    assert str(not_a_dir) in done.stderr.splitlines()[-1]


def _run(d: Path, state: Path, *more: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nonstop", "run", "--config-dir", str(d),
                           "--state-dir", str(state), "--node", "vpbx1-1", *more],
                          capture_output=True, text=True, timeout=60)


def test_one_address_in_two_resources_is_refused_by_check_and_run(tmp_path: Path) -> None:
    """Spelled apart (shorthand, IPaddr2, resource-agents' IPaddr2), one address in two groups
    was accepted, and each node added it: both held it."""
    d = _config(tmp_path, haresources="vpbx1-1 127.0.0.77/8/lo\n"
                                       "vpbx1-2 IPaddr2::127.0.0.77/16/lo\n"
                                       "vpbx1-2 ocf:heartbeat:IPaddr2::ip=127.0.0.77 master\n")
    code, _out, err = _check("--config-dir", str(d), "--node", "vpbx1-1", "--offline")
    hr = d / "haresources"
    first = "address 127.0.0.77 is already the resource '127.0.0.77/8/lo' at line 1"
    assert code == 1
    assert f"{hr}:2: resource 'IPaddr2::127.0.0.77/16/lo': {first}" in err
    assert f"{hr}:3: resource 'ocf:heartbeat:IPaddr2::ip=127.0.0.77': {first}" in err
    done = _run(d, tmp_path / "state")
    assert done.returncode == EXIT_NOT_CONFIGURED and "Traceback" not in done.stderr
    assert f"{hr}:2: resource 'IPaddr2::127.0.0.77/16/lo': {first}" in done.stderr


def test_what_run_cannot_open_check_refuses_at_its_line(tmp_path: Path) -> None:
    """An alias label as a heartbeat interface, a ucast peer that does not resolve: check
    passed them and run stopped with a bare errno; now both name the line."""
    for n, (directive, said) in enumerate([
            ("bcast lo:1", "bcast lo:1: 'lo:1' is an address label, not an interface; name "
                           "the interface (lo)"),
            ("ucast lo bad..name", "ucast lo bad..name: cannot resolve 'bad..name': ")]):
        d = _config(tmp_path / str(n), haresources="")
        ha_cf = d / "ha.cf"
        ha_cf.write_text(ha_cf.read_text().replace("bcast lo", directive))
        code, _out, err = _check("--config-dir", str(d), "--node", "vpbx1-1")
        assert code == 1 and f"{ha_cf}:6: {said}" in err, err
        done = _run(d, tmp_path / str(n) / "state")
        assert done.returncode == EXIT_NOT_CONFIGURED, done.stderr
        assert f"{ha_cf}:6: {said}" in done.stderr and "Traceback" not in done.stderr


def test_odd_names_are_errors_of_their_file_not_tracebacks(tmp_path: Path) -> None:
    long_name = "x" * 300  # longer than a file name can be: the lookup itself fails
    d = _config(tmp_path, haresources=f"vpbx1-1 127.0.0.77/8/lo {long_name}\n")
    code, _out, err = _check("--config-dir", str(d), "--node", "vpbx1-1")
    assert code == 1 and "Traceback" not in err
    assert f"{d / 'haresources'}:1: {long_name}: locate failed: Cannot locate resource " \
           f"script {long_name}" in err
    (d / "nodeinfo").write_bytes(b"vpbx1-\xe9\n")  # Latin-1, not UTF-8
    code, _out, err = _check("--config-dir", str(d), "--offline")
    assert code == 1 and "Current node [vpbx1-\\xe9] not in configuration!" in err
    done = subprocess.run([sys.executable, "-m", "nonstop", "run", "--config-dir", str(d),
                           "--state-dir", str(tmp_path / "state")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == EXIT_NOT_CONFIGURED and "Traceback" not in done.stderr
    assert "Current node [vpbx1-\\xe9] not in configuration!" in done.stderr


def test_an_unknown_fencing_type_is_refused_as_heartbeat_refuses_it(tmp_path: Path) -> None:
    """`stonith_host * nosuchtype ...` passed, and then every fence failed: a node that lost
    its peer never took over (Heartbeat: 'Invalid Stonith type' when it reads ha.cf)."""
    d = _config(tmp_path, haresources="")
    ha_cf = d / "ha.cf"
    good = ha_cf.read_text() + "stonith_host * external/ssh hostlist=vpbx1-2\n"
    ha_cf.write_text(good)
    code, _out, err = _check("--config-dir", str(d), "--node", "vpbx1-1")
    assert code == 0, err
    ha_cf.write_text(good.replace("external/ssh", "nosuchtype"))
    line = good.count("\n")
    said = f"{ha_cf}:{line}: Invalid Stonith type [nosuchtype]: not one of the "
    code, _out, err = _check("--config-dir", str(d), "--node", "vpbx1-1")
    assert code == 1 and said in err, err
    assert _check("--config-dir", str(d), "--node", "vpbx1-1", "--offline")[0] == 0
    done = _run(d, tmp_path / "state")
    assert done.returncode == EXIT_NOT_CONFIGURED and said in done.stderr, done.stderr


def test_a_respawn_client_that_cannot_run_is_refused_as_heartbeat_refuses_it(
        tmp_path: Path) -> None:
    """Heartbeat refuses, when it reads ha.cf, a client whose program is not executable or
    whose user does not exist; nonstop started and respawned it in vain for ever."""
    d = _config(tmp_path, haresources="")
    ha_cf = d / "ha.cf"
    base = ha_cf.read_text()
    # Runnable ones pass, and ipfail is built in: its path is not looked for.
    ha_cf.write_text(base + "respawn root /bin/true --flag\nrespawn nobody sleep 1\n"
                            "respawn root /nonexistent/ipfail\n")
    code, _out, err = _check("--config-dir", str(d), "--node", "vpbx1-1")
    assert code == 0, err
    ha_cf.write_text(base + "respawn nosuchuser /bin/true\nrespawn root /nonexistent/prog -x\n")
    code, _out, err = _check("--config-dir", str(d), "--node", "vpbx1-1")
    n = base.count("\n")  # each error at its own line
    assert code == 1
    assert f"{ha_cf}:{n + 1}: respawn nosuchuser /bin/true: Invalid uid [nosuchuser] " \
           "specified for client: no such user" in err, err
    assert f"{ha_cf}:{n + 2}: respawn root /nonexistent/prog -x: Client child command " \
           "[/nonexistent/prog] is not executable" in err, err
    done = _run(d, tmp_path / "state")
    assert done.returncode == EXIT_NOT_CONFIGURED and "Traceback" not in done.stderr
    assert "Client child command [/nonexistent/prog] is not executable" in done.stderr


def test_standby_and_takeover_name_only_what_moves(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`nonstop standby` on a node that held nothing said 'giving away <group>'."""
    import nonstop.cli as cli_module

    g = "198.18.0.10/24/eth0"
    replies: list[dict[str, object]] = []
    monkeypatch.setattr(cli_module, "request", lambda *a, **k: replies.pop(0))

    def say(cmd: str, reply: dict[str, object]) -> str:
        replies.append(reply)
        result = CliRunner().invoke(cli, [cmd, "--state-dir", str(tmp_path)])
        assert result.exit_code == 0, result.output
        return result.stdout

    assert say("standby", {"ok": True, "groups": [g], "held": [g]}) == (
        f"standby [all]: giving away {g} (`nonstop status` shows how it ends)\n")
    assert say("standby", {"ok": True, "groups": [g], "held": []}) == (
        f"standby [all]: giving away no groups\nnot held here: {g} (this node now takes them "
        "only if no other node can)\n")
    assert say("takeover", {"ok": True, "groups": [g], "held": [g]}) == (
        f"takeover [all]: asking for no groups\nalready held here: {g}\n")
    assert say("takeover", {"ok": True, "groups": [g], "held": []}) == (
        f"takeover [all]: asking for {g} (`nonstop status` shows how it ends)\n")
    # A daemon older than the "held" field: what it said before.
    assert say("standby", {"ok": True, "groups": [g]}) == (
        f"standby [all]: giving away {g} (`nonstop status` shows how it ends)\n")


def test_a_resolver_not_ready_is_a_machine_problem_not_a_file_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """At boot the resolver may not answer yet: 'run' must fail as a machine problem (exit 1,
    which systemd's unit restarts), not as a configuration error (exit 6, never restarted).
    A name that does not exist stays the file's error."""
    import socket

    from nonstop.config.loader import load_config_dir
    from nonstop.config.model import ConfigWarning
    from nonstop.preflight import check_fencing, check_media, start_refuses

    d = _config(tmp_path, haresources="")
    ha_cf = d / "ha.cf"
    ha_cf.write_text(ha_cf.read_text().replace("bcast lo", "ucast lo vpbx1-2"))
    cfg = load_config_dir(str(d), "vpbx1-1")

    def unresolved(code: int, text: str) -> None:
        def fail(name: str) -> str:
            raise socket.gaierror(code, text)
        monkeypatch.setattr(socket, "gethostbyname", fail)

    unresolved(socket.EAI_AGAIN, "Temporary failure in name resolution")
    (said,) = check_media(cfg)
    assert isinstance(said, ConfigWarning) and start_refuses(cfg) == []
    assert str(said) == (f"{ha_cf}:6: warning: ucast lo vpbx1-2: cannot resolve 'vpbx1-2': "
                         "Temporary failure in name resolution")
    unresolved(socket.EAI_NONAME, "Name or service not known")
    assert [str(e) for e in start_refuses(cfg)] == [
        f"{ha_cf}:6: ucast lo vpbx1-2: cannot resolve 'vpbx1-2': Name or service not known"]
    # Fencing configured on a machine without cluster-glue: the device is not the fault.
    ha_cf.write_text(ha_cf.read_text() + "stonith_host * external/ssh hostlist=vpbx1-2\n")
    cfg = load_config_dir(str(d), "vpbx1-1")
    monkeypatch.setattr("shutil.which", lambda name: None)
    line = ha_cf.read_text().count("\n")
    assert [str(e) for e in check_fencing(cfg)] == [
        f"{ha_cf}:{line}: STONITH device external/ssh: cluster-glue's 'stonith' command is "
        "not installed, so no fence can run (apt install cluster-glue)"]


def test_a_bad_medium_or_fencing_line_is_named_by_its_own_line(tmp_path: Path) -> None:
    """Each refusal named the directive's first line (a valid 'bcast lo'), not the bad one."""
    d = _config(tmp_path, haresources="")
    ha_cf = d / "ha.cf"
    text = ha_cf.read_text() + "bcast lo:1\nucast lo bad..name\n" \
        "stonith_host * external/ssh hostlist=vpbx1-2\nstonith_host * nosuchtype x\n"
    ha_cf.write_text(text)
    n = text.count("\n")
    code, _out, err = _check("--config-dir", str(d), "--node", "vpbx1-1")
    assert code == 1
    assert f"{ha_cf}:{n - 3}: bcast lo:1: 'lo:1' is an address label" in err, err
    assert f"{ha_cf}:{n - 2}: ucast lo bad..name: cannot resolve" in err, err
    assert f"{ha_cf}:{n}: Invalid Stonith type [nosuchtype]" in err, err
