"""Script lookup, agent choice, and running heartbeat/LSB/OCF scripts as real processes."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest

from nonstop.config.model import ResourceSpec
from nonstop.resources.base import (
    ActionTimeouts,
    AgentContext,
    ResourceError,
    ResourceState,
    heartbeat_environment,
    make_agent,
)
from nonstop.resources.ipaddr import IPAddrAgent, default_broadcast, free_alias_label
from nonstop.resources.mailto import MailToAgent
from nonstop.resources.runner import run_script
from nonstop.resources.scripts import OcfAgent, ScriptAgent, ScriptKind, locate_script

LOG = logging.getLogger("test.resources")


def spec(text: str) -> ResourceSpec:
    """What the haresources parser produces (IP shorthand included)."""
    if text[0].isdigit():
        return ResourceSpec("IPaddr", (text,), text)
    name, *args = text.split("::")
    return ResourceSpec(name, tuple(args), text)


def write_script(path: Path, body: str, mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(mode)
    return path


@pytest.fixture
def ctx(tmp_path: Path) -> AgentContext:
    ha = tmp_path / "ha.d"
    (ha / "resource.d").mkdir(parents=True)
    (tmp_path / "init.d").mkdir()
    return AgentContext(
        node="vpbx1-1",
        config_dir=ha,
        init_dir=tmp_path / "init.d",
        state_dir=tmp_path / "rsctmp",
        environment=heartbeat_environment("vpbx1-1", ha),
        timeouts=ActionTimeouts(start=5, stop=5, status=5),
        ocf_root=tmp_path / "ocf",
    )


# --- lookup and choice -------------------------------------------------------------------


def test_resource_d_wins_over_init_d(ctx: AgentContext) -> None:
    write_script(ctx.resource_dir / "asterisk", "exit 0\n")
    write_script(ctx.init_dir / "asterisk", "exit 0\n")
    assert locate_script("asterisk", ctx) == (ctx.resource_dir / "asterisk", ScriptKind.HEARTBEAT)


def test_non_executable_and_directories_are_skipped(ctx: AgentContext) -> None:
    write_script(ctx.resource_dir / "asterisk", "exit 0\n", mode=0o644)
    (ctx.resource_dir / "kamailio").mkdir()
    write_script(ctx.init_dir / "asterisk", "exit 0\n")
    write_script(ctx.init_dir / "kamailio", "exit 0\n")
    assert locate_script("asterisk", ctx) == (ctx.init_dir / "asterisk", ScriptKind.LSB)
    assert locate_script("kamailio", ctx) == (ctx.init_dir / "kamailio", ScriptKind.LSB)


@pytest.mark.parametrize("name", ["nosuch", "../init.d/x", "", ".."])
def test_cannot_locate(ctx: AgentContext, name: str) -> None:
    with pytest.raises(ResourceError, match=f"Cannot locate resource script {name}"):
        locate_script(name, ctx)


def test_make_agent_chooses_driver(ctx: AgentContext) -> None:
    write_script(ctx.resource_dir / "master", "exit 0\n")
    write_script(ctx.init_dir / "asterisk", "exit 0\n")
    write_script(ctx.ocf_root / "resource.d" / "heartbeat" / "IPaddr2", "exit 0\n")
    ip = make_agent(spec("198.18.0.10/24/eth0"), ctx)
    assert isinstance(ip, IPAddrAgent)
    assert ip.describe() == "IPaddr::198.18.0.10/24/eth0"
    assert isinstance(make_agent(spec("IPaddr2::198.18.0.10/24"), ctx), IPAddrAgent)
    assert isinstance(make_agent(spec("MailTo::tech@webinmotion.ca::Asterisk"), ctx), MailToAgent)
    master = make_agent(spec("master"), ctx)
    assert isinstance(master, ScriptAgent) and master.kind is ScriptKind.HEARTBEAT
    asterisk = make_agent(spec("asterisk"), ctx)
    assert isinstance(asterisk, ScriptAgent) and asterisk.kind is ScriptKind.LSB
    ocf = make_agent(spec("ocf:heartbeat:IPaddr2::ip=198.18.0.10::cidr_netmask=24"), ctx)
    assert isinstance(ocf, OcfAgent)
    assert ocf.params == {"ip": "198.18.0.10", "cidr_netmask": "24"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("IPaddr::10.0.0.300/24", "not an IPv4 address"),
        ("IPaddr::198.18.0.10/40", "CIDR bits"),
        ("IPaddr", "exactly one IP spec"),
        ("ocf:heartbeat:IPaddr2::ip", "name=value"),
        ("ocf:heartbeat:Nosuch::ip=1", "Cannot locate"),
        ("ocf:IPaddr2", "ocf:<provider>:<type>"),
        ("nosuch::arg", "Cannot locate resource script nosuch"),
    ],
)
def test_make_agent_rejects(ctx: AgentContext, text: str, message: str) -> None:
    write_script(ctx.ocf_root / "resource.d" / "heartbeat" / "IPaddr2", "exit 0\n")
    with pytest.raises(ResourceError, match=message):
        make_agent(spec(text), ctx)


def test_free_alias_label() -> None:
    assert free_alias_label("eth0", set()) == "eth0:0"
    assert free_alias_label("eth0", {"eth0", "eth0:0", "eth0:2"}) == "eth0:1"
    with pytest.raises(ValueError):
        free_alias_label("abcdefghijklmn", set())


# --- running scripts ---------------------------------------------------------------------


async def test_arguments_before_action_and_ha_environment(
    ctx: AgentContext, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    record = tmp_path / "record"
    write_script(
        ctx.resource_dir / "Filesystem",
        f'echo "$* host=$HA_CURHOST dir=$HA_DIR" >> {record}\necho "hello from $1"\n',
    )
    agent = make_agent(spec("Filesystem::/dev/sda1::/data1::ext2"), ctx)
    with caplog.at_level(logging.INFO, logger="nonstop.resources"):
        await agent.start()
        await agent.stop()
    assert record.read_text().splitlines() == [
        f"/dev/sda1 /data1 ext2 start host=vpbx1-1 dir={ctx.config_dir}",
        f"/dev/sda1 /data1 ext2 stop host=vpbx1-1 dir={ctx.config_dir}",
    ]
    assert "hello from /dev/sda1" in caplog.text
    assert f"Running {ctx.resource_dir / 'Filesystem'} /dev/sda1 /data1 ext2 start" in caplog.text


async def test_a_live_environment_is_read_as_each_script_starts(
        ctx: AgentContext, tmp_path: Path) -> None:
    """The daemon's news (the peers it found dead) is what it knows when a script starts, not
    when the context was made: a takeover's master script runs after the death."""
    record = tmp_path / "record"
    dead: list[str] = []
    live = replace(ctx, news=lambda: {"NONSTOP_SYNC_DEAD_PEERS": " ".join(dead)})
    write_script(live.resource_dir / "master",
                 f'echo "$1 host=$HA_CURHOST dead=$NONSTOP_SYNC_DEAD_PEERS" >> {record}\n')
    agent = make_agent(spec("master"), live)
    await agent.start()
    dead.append("vpbx1-2")
    await agent.stop()
    assert record.read_text().splitlines() == ["start host=vpbx1-1 dead=",
                                               "stop host=vpbx1-1 dead=vpbx1-2"]


async def test_failure_names_exit_code_and_last_output(ctx: AgentContext) -> None:
    lines = "".join(f"echo line{i}\n" for i in range(1, 9))
    write_script(ctx.init_dir / "asterisk", lines + "echo 'cannot bind' >&2\nexit 6\n")
    agent = make_agent(spec("asterisk"), ctx)
    with pytest.raises(ResourceError) as info:
        await agent.start()
    err = info.value
    assert err.returncode == 6
    assert err.output_tail == ("line5", "line6", "line7", "line8", "cannot bind")
    assert "Return code 6" in str(err) and "cannot bind" in str(err)


async def test_heartbeat_status_ignores_exit_code(ctx: AgentContext, tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    write_script(
        ctx.resource_dir / "svc",
        f'case "$1" in\n start) touch {flag};;\n stop) rm -f {flag};;\n'
        f' status) if [ -f {flag} ]; then echo "svc is running"; exit 3; '
        'else echo "svc is not running"; exit 0; fi;;\nesac\n',
    )
    agent = make_agent(spec("svc"), ctx)
    assert await agent.status() is ResourceState.STOPPED
    await agent.start()
    assert await agent.status() is ResourceState.RUNNING
    await agent.stop()
    assert await agent.status() is ResourceState.STOPPED


async def test_lsb_status_uses_exit_code(ctx: AgentContext, tmp_path: Path) -> None:
    rc = tmp_path / "rc"
    rc.write_text("3")
    # Prints "OK" whatever the state: only the exit code can be trusted here.
    write_script(ctx.init_dir / "asterisk", f'echo OK\nexit $(cat {rc})\n')
    agent = make_agent(spec("asterisk"), ctx)
    assert await agent.status() is ResourceState.STOPPED
    rc.write_text("0")
    assert await agent.status() is ResourceState.RUNNING
    rc.write_text("4")
    assert await agent.status() is ResourceState.UNKNOWN
    legacy = AgentContext(
        node=ctx.node,
        config_dir=ctx.config_dir,
        init_dir=ctx.init_dir,
        lsb_status_by_exit_code=False,
    )
    assert await make_agent(spec("asterisk"), legacy).status() is ResourceState.RUNNING


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    # An orphan killed but not yet reaped by init is a zombie: it no longer runs.
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _wait_gone(pid: int, deadline_s: float = 5.0) -> bool:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return _gone(pid)


async def test_timeout_kills_script_and_its_children(ctx: AgentContext, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    write_script(
        ctx.resource_dir / "hang",
        f"sleep 100 &\necho $! > {pids}\necho $$ >> {pids}\necho starting\nsleep 100\n",
    )
    fast = AgentContext(
        node=ctx.node,
        config_dir=ctx.config_dir,
        timeouts=ActionTimeouts(start=0.5, stop=0.5, status=0.5),
    )
    agent = make_agent(spec("hang"), fast)
    t0 = time.monotonic()
    with pytest.raises(ResourceError, match="timed out") as info:
        await agent.start()
    assert time.monotonic() - t0 < 4.0
    assert info.value.output_tail == ("starting",)
    grandchild, script = (int(p) for p in pids.read_text().split())
    assert _wait_gone(script)
    assert _wait_gone(grandchild)
    # A status that hangs answers UNKNOWN rather than guessing.
    assert await agent.status() is ResourceState.UNKNOWN


async def test_term_ignoring_script_gets_sigkill(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = write_script(tmp_path / "stubborn", f"trap '' TERM\necho $$ > {pid_file}\nsleep 100\n")
    t0 = time.monotonic()
    result = await run_script(
        [str(script)],
        env=dict(os.environ),
        timeout_s=0.3,
        logger=LOG,
        log_prefix="stubborn",
        kill_grace_s=0.3,
    )
    assert result.timed_out and result.returncode is None
    assert time.monotonic() - t0 < 3.0
    assert _wait_gone(int(pid_file.read_text()))


async def test_daemon_keeping_stdout_open_does_not_block(ctx: AgentContext, tmp_path: Path) -> None:
    pid_file = tmp_path / "daemon.pid"
    # Like a careless init script: the daemon inherits stdout and outlives the script.
    write_script(ctx.init_dir / "careless", f"sleep 30 &\necho $! > {pid_file}\necho started\n")
    agent = make_agent(spec("careless"), ctx)
    t0 = time.monotonic()
    try:
        await agent.start()
        assert time.monotonic() - t0 < 3.0
        # A successful start leaves its daemon running.
        assert not _gone(int(pid_file.read_text()))
    finally:
        os.kill(int(pid_file.read_text()), 9)


async def test_a_cancelled_run_leaves_no_pipe_open(tmp_path: Path) -> None:
    """A run cancelled while a daemon the script started (in a session of its own, out of
    the killed process group) still holds stdout: the pipe is closed all the same (a review
    found one leaked per cancelled run, and the daemon then blocked writing to it)."""
    pid_file = tmp_path / "daemon.pid"
    script = write_script(tmp_path / "slow", f"setsid sleep 30 &\necho $! > {pid_file}\n"
                                             "echo started\nsleep 30\n")
    fds = len(os.listdir("/proc/self/fd"))
    daemons: list[int] = []
    try:
        for _ in range(3):
            run = asyncio.ensure_future(run_script(
                [str(script)], env=dict(os.environ), timeout_s=60, logger=LOG, log_prefix="slow"))
            for _ in range(200):
                if pid_file.exists() and pid_file.read_text().strip():
                    break
                await asyncio.sleep(0.01)
            daemons.append(int(pid_file.read_text()))
            pid_file.unlink()
            run.cancel()
            with pytest.raises(asyncio.CancelledError):
                await run
        await asyncio.sleep(0.1)
        assert len(os.listdir("/proc/self/fd")) <= fds  # the daemons still hold their end
    finally:
        for pid in daemons:
            os.kill(pid, 9)


async def test_ocf_environment_and_monitor(ctx: AgentContext, tmp_path: Path) -> None:
    env_dump = tmp_path / "env"
    state = tmp_path / "ocf-state"
    write_script(
        ctx.ocf_root / "resource.d" / "acme" / "Thing",
        f'env | grep -E "^(OCF_|HA_CURHOST)" | sort > {env_dump}\n'
        f'case "$1" in\n start) touch {state}; exit 0;;\n stop) rm -f {state}; exit 0;;\n'
        f' monitor) [ -f {state} ] && exit 0; exit 7;;\n *) exit 3;;\nesac\n',
    )
    agent = make_agent(spec("ocf:acme:Thing::ip=198.18.0.10::nic=eth0"), ctx)
    assert await agent.status() is ResourceState.STOPPED
    await agent.start()
    assert await agent.status() is ResourceState.RUNNING
    env = dict(line.split("=", 1) for line in env_dump.read_text().splitlines())
    assert env["OCF_RESKEY_ip"] == "198.18.0.10"
    assert env["OCF_RESKEY_nic"] == "eth0"
    assert env["OCF_ROOT"] == str(ctx.ocf_root)
    assert env["OCF_RESOURCE_TYPE"] == "Thing"
    assert env["OCF_RESOURCE_PROVIDER"] == "acme"
    assert env["OCF_RESKEY_CRM_meta_timeout"] == "5000"
    assert env["HA_CURHOST"] == "vpbx1-1"
    await agent.stop()
    assert await agent.status() is ResourceState.STOPPED


async def test_ocf_monitor_error_is_failed(ctx: AgentContext) -> None:
    write_script(ctx.ocf_root / "resource.d" / "acme" / "Broken", "exit 1\n")
    agent = make_agent(spec("ocf:acme:Broken"), ctx)
    assert await agent.status() is ResourceState.FAILED
    with pytest.raises(ResourceError, match="Return code 1"):
        await agent.start()


def test_default_broadcast_is_top_of_subnet() -> None:
    ip = ipaddress.IPv4Address("198.18.0.10")
    assert default_broadcast(ip, 24) == ipaddress.IPv4Address("198.18.0.255")
    assert default_broadcast(ip, 16) == ipaddress.IPv4Address("198.18.255.255")
    assert default_broadcast(ip, 31) is None
    assert default_broadcast(ip, 32) is None
