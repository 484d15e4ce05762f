"""Programs in lab hosts: private /tmp and /etc/logrotate.d, stop by pid, nothing left behind."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from nonstop.lab import Lab, LabError, cleanup_leftovers, wait_for
from nonstop.lab.lab import DEFAULT_WORK_ROOT
from nonstop.lab.nsprocs import netns_pids
from nonstop.lab.process import pid_running

pytestmark = pytest.mark.netns

# The talk's master script, as far as it writes global paths (csync2 calls left out).
MASTER_START = (
    "touch /tmp/.HB-master && "
    "ln -sf /etc/asterisk/asterisk.logrotate /etc/logrotate.d/asterisk"
)


def test_each_node_has_its_own_tmp_and_logrotate(lab: Lab) -> None:
    lab.run("n1", ["sh", "-c", MASTER_START], check=True)
    assert lab.run("n1", ["test", "-f", "/tmp/.HB-master"]).returncode == 0
    assert lab.run("n2", ["test", "-e", "/tmp/.HB-master"]).returncode == 1
    assert lab.run("n1", ["test", "-L", "/etc/logrotate.d/asterisk"]).returncode == 0
    assert lab.run("n2", ["test", "-L", "/etc/logrotate.d/asterisk"]).returncode == 1
    assert lab.host_path("n1", "/tmp/.HB-master").is_file()
    assert lab.host_path("n1", "/etc/logrotate.d/asterisk").is_symlink()
    assert not Path("/etc/logrotate.d/asterisk").is_symlink()
    # A program spawned later on n1 sees the same private /tmp (one node, one /tmp).
    proc = lab.spawn("n1", ["sh", "-c", "cat /tmp/marker-from-host"])
    assert proc.wait(10) == 1
    lab.host_path("n1", "/tmp/marker-from-host").write_text("hello\n")
    proc = lab.spawn("n1", ["sh", "-c", "cat /tmp/marker-from-host"])
    assert proc.wait(10) == 0
    assert proc.read_log() == "hello\n"


def test_stop_ends_the_process_and_its_group(lab: Lab) -> None:
    proc = lab.spawn("n1", ["sh", "-c", "sleep 300 & echo child $!; wait"])
    match = proc.wait_for_log(r"child (\d+)", 10)
    child = int(match.group(1))
    assert pid_running(child)
    assert proc.pid in netns_pids(lab.netns("n1"))
    rc = proc.stop(timeout=5)
    assert rc == -signal.SIGTERM
    assert wait_for(lambda: not pid_running(child), 5, what="the backgrounded sleep to die")
    assert netns_pids(lab.netns("n1")) == []


def test_stop_escalates_and_kill_crashes(lab: Lab) -> None:
    stubborn = lab.spawn("n1", ["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 1; done"])
    stubborn.wait_for_log("ready", 10)
    assert stubborn.stop(timeout=0.5) == -signal.SIGKILL
    crashed = lab.spawn("n2", ["sleep", "300"])
    assert crashed.kill() == -signal.SIGKILL
    assert not crashed.running
    with pytest.raises(LabError):
        lab.run("n1", ["sleep", "5"], timeout=0.3)


def test_teardown_kills_what_escaped_its_group(make_lab: Callable[[Sequence[str]], Lab]) -> None:
    lab = make_lab(("n1",))
    # setsid: a daemon in a new session, out of reach of the spawned process's group.
    proc = lab.spawn("n1", ["sh", "-c", "setsid sleep 300 & echo daemon $!"])
    daemon = int(proc.wait_for_log(r"daemon (\d+)", 10).group(1))
    assert proc.wait(10) == 0
    assert pid_running(daemon)
    lab.close()
    assert not pid_running(daemon)


def test_cleanup_removes_only_abandoned_labs(lab: Lab) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(dead.stdout)
    abandoned = f"nl{dead_pid}x1-n1"
    foreign = f"nx{dead_pid}x1-n1"  # not our pattern: never touched
    created: list[str] = []
    sleeper: subprocess.Popen[bytes] | None = None
    workdir = DEFAULT_WORK_ROOT / f"nl{dead_pid}x1"
    try:
        for name in (abandoned, foreign):
            subprocess.run(["ip", "netns", "add", name], check=True)
            created.append(name)
        workdir.mkdir(parents=True)
        sleeper = subprocess.Popen(["ip", "netns", "exec", abandoned, "sleep", "300"])
        wait_for(lambda: netns_pids(abandoned), 5, what="the sleeper to enter the namespace")
        removed = cleanup_leftovers()
        names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                               check=True).stdout
        assert abandoned in removed and str(workdir) in removed
        assert abandoned not in names
        assert not workdir.exists()
        assert foreign in names
        # The running lab of this process is alive, so it is not a leftover.
        assert all(name in names for name in (lab.netns("n1"), lab.switch_netns))
        assert sleeper.wait(5) == -signal.SIGKILL
    finally:
        if sleeper is not None and sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()
        for name in created:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        if workdir.exists():
            workdir.rmdir()


async def test_lab_is_usable_from_asyncio(make_lab: Callable[[Sequence[str]], Lab]) -> None:
    lab = make_lab(("n1",))
    proc = lab.spawn("n1", ["sh", "-c", "echo up; sleep 0.2; exit 3"], name="short")
    await proc.wait_for_log_async("^up$", 10)
    assert await proc.wait_async(10) == 3
    assert proc.log_path == lab.host_dir("n1") / "logs" / "00-short.log"
    async with Lab(("a",)) as other:
        assert other.run("a", ["ip", "-o", "addr", "show", "eth0"], check=True).stdout
    assert not [n for n in netns_names() if n.startswith(other.prefix + "-")]
    assert not other.workdir.exists()


def netns_names() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]
