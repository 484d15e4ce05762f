"""respawn: the classification of programs, Heartbeat's restart rule, and real processes."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from nonstop.resources.respawn import (
    MAX_FAST_DEATHS,
    Respawner,
    RespawnError,
    RespawnKind,
    RespawnSpec,
    RespawnState,
    RespawnThrottle,
    classify,
    client_environment,
    describe_exit,
    lookup_user,
    stop_all,
)

LOG = logging.getLogger("test.respawn")


# ---------------------------------------------------------------- parsing and classification


def test_parse_a_respawn_line() -> None:
    spec = RespawnSpec.parse("hacluster /usr/lib/heartbeat/ipfail")
    assert spec == RespawnSpec("hacluster", "/usr/lib/heartbeat/ipfail")
    assert spec.program == "ipfail"
    quoted = RespawnSpec.parse("root  /usr/bin/x -a 'b c'  ")
    assert quoted.command == "/usr/bin/x -a 'b c'"
    # Run through the shell, as Heartbeat does: quoting and $HA_* expansion work the same.
    assert quoted.argv == ("/bin/sh", "-c", "/usr/bin/x -a 'b c'")


@pytest.mark.parametrize("rest", ["hacluster", "", "   "])
def test_bad_respawn_lines(rest: str) -> None:
    with pytest.raises(RespawnError, match="needs a user and a program"):
        RespawnSpec.parse(rest)


def test_heartbeats_exit_lines() -> None:
    # Worded as Heartbeat 3.0.6 logged them in the lab.
    assert describe_exit('/bin/sh -c "kill -9 $$"', 20, -9) == (
        logging.WARNING,
        'Managed /bin/sh -c "kill -9 $$" process 20 killed by signal 9 '
        "[SIGKILL - Kill, unblockable].")
    assert describe_exit("/x", 5, -15)[1].endswith("[SIGTERM - Termination (ANSI)].")
    assert describe_exit("/x", 5, 3) == (
        logging.WARNING, "Managed /x process 5 exited with return code 3.")
    assert describe_exit("/x", 5, 0)[0] == logging.INFO


@pytest.mark.parametrize("line,kind,says", [
    ("hacluster /usr/lib/heartbeat/ipfail", RespawnKind.BUILTIN, "built into nonstop"),
    ("hacluster /usr/lib64/heartbeat/ipfail", RespawnKind.BUILTIN, "ping/ping_group"),
    ("hacluster /usr/lib/heartbeat/ccm", RespawnKind.REFUSED, "Pacemaker with Corosync"),
    ("hacluster /usr/lib/heartbeat/crmd", RespawnKind.REFUSED, "client API"),
    ("hacluster /usr/lib/heartbeat/dopd", RespawnKind.REFUSED, "fence-peer handler"),
    ("root /usr/lib/heartbeat/pingd -m 100 -d 5s", RespawnKind.REFUSED, "built-in ipfail"),
    ("root /usr/lib/heartbeat/hbagent", RespawnKind.REFUSED, "nonstop status --json"),
    ("root /usr/local/bin/my-monitor --loop", RespawnKind.RUN, "started as root"),
])
def test_classify(line: str, kind: RespawnKind, says: str) -> None:
    result = classify(RespawnSpec.parse(line))
    assert result.kind is kind
    assert says in result.message


def test_env_lines_become_ha_variables() -> None:
    assert client_environment(["FOO=bar", "EMPTY=", "X_Y=a=b"]) == {
        "HA_FOO": "bar", "HA_EMPTY": "", "HA_X_Y": "a=b"}
    for bad in ("FOO", "=x", "A B=1", "É=1"):
        with pytest.raises(RespawnError, match="NAME=value"):
            client_environment([bad])


async def test_client_sees_the_env_lines(shared_dir: Path) -> None:
    out = shared_dir / "env"
    r = Respawner(RespawnSpec(_user(), f'echo "$HA_FOO" > {out}; exit 100'), logger=LOG,
                  env=client_environment(["FOO=bar baz"]))
    assert await asyncio.wait_for(r.run(), 10) is RespawnState.DONE
    assert out.read_text() == "bar baz\n"


def test_unknown_user_is_a_clear_error() -> None:
    with pytest.raises(RespawnError, match="no such user 'no-such-user-xyz'"):
        lookup_user("no-such-user-xyz")


# ---------------------------------------------------------------- the rule


def test_eleven_fast_deaths_in_a_row_stop_the_respawning() -> None:
    t = RespawnThrottle()
    for i in range(MAX_FAST_DEATHS):
        assert t.exited(float(i), i + 1.0, 1).restart
    decision = t.exited(20.0, 21.0, 1)
    assert not decision.restart and "respawning too fast" in decision.reason


def test_a_long_run_resets_the_count() -> None:
    t = RespawnThrottle()
    for i in range(MAX_FAST_DEATHS):
        t.exited(float(i), i + 1.0, 0)
    assert t.exited(100.0, 130.0, 0).restart  # ran 30 s: not fast
    assert t.fast_deaths == 0
    for i in range(MAX_FAST_DEATHS):
        assert t.exited(200.0 + i, 200.5 + i, 0).restart


def test_exit_100_is_never_restarted() -> None:
    decision = RespawnThrottle().exited(0.0, 1000.0, 100)
    assert not decision.restart and "100" in decision.reason


# ---------------------------------------------------------------- real processes


def _user() -> str:
    return "nobody" if os.geteuid() == 0 else lookup_name(os.geteuid())


def lookup_name(uid: int) -> str:
    import pwd

    return pwd.getpwuid(uid).pw_name


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the client's user can write (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="nonstop-respawn-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path)


async def test_client_runs_as_the_named_user_and_is_restarted(
        shared_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = shared_dir / "runs"
    # Each run records its uid and exits at once; the third run exits 100 (do not respawn).
    script = (f'id -u >> {out}; n=$(wc -l < {out}); echo "run $n"; '
              '[ "$n" -ge 3 ] && exit 100; exit 3')
    spec = RespawnSpec(_user(), f"/bin/sh -c '{script}'")
    caplog.set_level(logging.INFO, logger="test.respawn")
    r = Respawner(spec, logger=LOG, restart_delay_s=0.01)
    assert await asyncio.wait_for(r.run(), 20) is RespawnState.DONE
    uid = str(lookup_user(_user()).uid)
    assert out.read_text().split() == [uid, uid, uid]
    assert r.starts == 3
    text = "\n".join(caplog.messages)
    assert f'Starting child client "{spec.command}" ({uid},' in text
    assert f'Starting "{spec.command}" as uid {uid}' in text
    assert f'Respawning client "{spec.command}":' in text
    assert "exited with return code 3." in text
    assert "exited with return code 100." in text
    assert "sh[" in text and "run 2" in text  # the client's own output reaches the log


async def test_fast_dying_client_is_given_up(caplog: pytest.LogCaptureFixture) -> None:
    spec = RespawnSpec(_user(), "/bin/false")
    r = Respawner(spec, logger=LOG, restart_delay_s=0.01)
    assert await asyncio.wait_for(r.run(), 30) is RespawnState.GAVE_UP
    assert r.starts == MAX_FAST_DEATHS + 1
    assert 'Client /bin/false "respawning too fast"' in caplog.messages


async def test_missing_program_dies_fast_and_is_given_up(
        caplog: pytest.LogCaptureFixture) -> None:
    r = Respawner(RespawnSpec(_user(), "/nonexistent/prog"), logger=LOG, restart_delay_s=0.01)
    assert await asyncio.wait_for(r.run(), 30) is RespawnState.GAVE_UP
    assert r.as_dict()["last_exit"].endswith("exited with return code 127.")  # sh: not found


async def test_stop_terminates_clients_in_reverse_order_and_their_children(
        shared_dir: Path) -> None:
    tmp_path = shared_dir
    order = tmp_path / "order"
    rs = []
    tasks = []
    for name in ("first", "second"):
        script = (f"trap 'echo {name} >> {order}; exit 0' TERM; sleep 300 & "
                  f"echo $! > {tmp_path}/{name}.child; while :; do sleep 0.05; done")
        r = Respawner(RespawnSpec(_user(), script), logger=LOG)
        rs.append(r)
        tasks.append(asyncio.create_task(r.run()))
    for name, r in zip(("first", "second"), rs, strict=True):
        for _ in range(200):
            if r.state is RespawnState.RUNNING and (tmp_path / f"{name}.child").exists():
                break
            await asyncio.sleep(0.02)
        assert r.state is RespawnState.RUNNING
    children = [int((tmp_path / f"{n}.child").read_text()) for n in ("first", "second")]
    await stop_all(rs, timeout=5)
    assert [await asyncio.wait_for(t, 5) for t in tasks] == [RespawnState.DONE] * 2
    assert order.read_text().split() == ["second", "first"]
    for pid in children:
        for _ in range(100):
            if not Path(f"/proc/{pid}").exists():
                break
            await asyncio.sleep(0.02)
        assert not Path(f"/proc/{pid}").exists(), "a client's child outlived it"


async def test_restart_waits_about_a_second_and_stop_cuts_the_wait() -> None:
    r = Respawner(RespawnSpec(_user(), "exit 3"), logger=LOG)
    task = asyncio.create_task(r.run())
    for _ in range(250):
        if r.starts >= 2:
            break
        await asyncio.sleep(0.02)
    assert r.starts == 2  # the first restart came after the default 1 s wait
    for _ in range(250):
        if r.state is RespawnState.EXITED:
            break
        await asyncio.sleep(0.005)
    # In the wait before the third start: stop ends it at once, not after the second.
    await r.stop()
    assert await asyncio.wait_for(task, 0.5) is RespawnState.DONE
    assert r.starts == 2


async def test_restarts_are_spaced_by_the_delay() -> None:
    loop = asyncio.get_running_loop()
    r = Respawner(RespawnSpec(_user(), "exit 3"), logger=LOG, restart_delay_s=0.3)
    task = asyncio.create_task(r.run())
    t0 = loop.time()
    for _ in range(500):
        if r.starts >= 3:
            break
        await asyncio.sleep(0.01)
    assert r.starts == 3
    assert loop.time() - t0 >= 0.6  # two waits of 0.3 s; never sooner
    await r.stop()
    await asyncio.wait_for(task, 5)
