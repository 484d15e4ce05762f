"""Fencing through cluster-glue's stonith command: configuration forms, results, timeouts."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from nonstop.lab.process import pid_running
from nonstop.resources.stonith import (
    FenceAction,
    RecordingFencer,
    StonithConfigError,
    StonithDevice,
    StonithFencer,
    device_for,
    parse_stonith_host_line,
    parse_stonith_line,
)

needs_stonith = pytest.mark.skipif(shutil.which("stonith") is None,
                                   reason="cluster-glue's stonith is not installed")


def test_stonith_file_form() -> None:
    device = parse_stonith_line("baytech /etc/ha.d/conf/stonith.baytech")
    assert device.argv() == ["stonith", "-t", "baytech", "-F", "/etc/ha.d/conf/stonith.baytech"]
    with pytest.raises(StonithConfigError, match="exactly"):
        parse_stonith_line("baytech")


def test_stonith_host_positional_and_named_params() -> None:
    host, device = parse_stonith_host_line("* baytech 10.0.0.3 mylogin 'my secret'")
    assert host == "*"
    assert device.argv() == ["stonith", "-t", "baytech", "-p", "10.0.0.3 mylogin my secret"]
    assert "secret" not in device.describe()
    _, named = parse_stonith_host_line("vpbx1-1 external/ssh hostlist=vpbx1-2")
    assert named.argv() == ["stonith", "-t", "external/ssh", "hostlist=vpbx1-2"]
    with pytest.raises(StonithConfigError):
        parse_stonith_host_line("*")
    with pytest.raises(StonithConfigError):
        StonithDevice("x", ("a",), Path("/f"))


def test_last_applicable_stonith_host_line_wins() -> None:
    lines = [parse_stonith_host_line(t) for t in (
        "* null a", "VPBX1-1 null b", "vpbx1-2 null c")]
    chosen = device_for("vpbx1-1", lines)
    assert chosen is not None and chosen.params == ("b",)
    assert device_for("vpbx1-2", lines[:1]) == lines[0][1]
    assert device_for("other", lines[1:]) is None


@needs_stonith
async def test_null_device_resets_a_listed_node() -> None:
    fencer = StonithFencer(StonithDevice("null", ("n1", "n2")), timeout_s=30)
    result = await fencer.fence("n2")
    assert result.ok, result
    assert result.reason == "STONITH reset of n2 with null succeeded"
    assert result.as_dict()["action"] == "reset"
    assert await fencer.hosts() == ["n1", "n2"]


@needs_stonith
async def test_a_refusing_device_gives_a_failed_result_with_its_exit_status() -> None:
    # external/ssh implements no "off": the command fails, and the result says how.
    fencer = StonithFencer(StonithDevice("external/ssh", ("hostlist=n2",)), timeout_s=30)
    result = await fencer.fence("n2", FenceAction.OFF)
    assert not result.ok
    assert result.returncode not in (0, None)
    assert result.reason.startswith("STONITH off of n2 with external/ssh failed (exit ")


@needs_stonith
async def test_unknown_device_type_cannot_list_hosts() -> None:
    with pytest.raises(StonithConfigError, match="cannot list its hosts"):
        await StonithFencer(StonithDevice("external/no-such-plugin", ("x=1",))).hosts()


async def test_missing_command_is_a_failed_result_not_an_exception() -> None:
    fencer = StonithFencer(StonithDevice("null", ("n2",)), command="no-such-stonith-command")
    result = await fencer.fence("n2")
    assert not result.ok and "not installed (Debian package cluster-glue)" in result.reason


async def test_a_hanging_device_is_killed_at_the_timeout(tmp_path: Path) -> None:
    hang = tmp_path / "hanging-stonith"
    hang.write_text(f"#!/bin/sh\nsleep 30 &\necho $! > {tmp_path}/child\nwait\n")
    hang.chmod(0o755)
    fencer = StonithFencer(StonithDevice("null", ("n2",)), command=str(hang), timeout_s=0.5)
    result = await fencer.fence("n2")
    assert not result.ok and "no answer within 0.5 s (killed)" in result.reason
    child = int((tmp_path / "child").read_text())
    # SIGKILL went to the whole process group; the kernel finishes the job asynchronously.
    for _ in range(500):
        if not pid_running(child):
            break
        await asyncio.sleep(0.01)
    assert not pid_running(child), "the device's helper outlived the timeout"


async def test_recording_fencer_answers_from_its_script() -> None:
    fencer = RecordingFencer(results={"n2": [False, True]})
    assert not (await fencer.fence("n2")).ok
    assert (await fencer.fence("n2", FenceAction.OFF)).ok
    assert (await fencer.fence("n3")).ok
    assert fencer.calls == [("n2", FenceAction.RESET), ("n2", FenceAction.OFF),
                            ("n3", FenceAction.RESET)]


@needs_stonith
async def test_file_form_reads_the_parameters_from_the_file(tmp_path: Path) -> None:
    conf = tmp_path / "stonith.cfg"
    conf.write_text("# the null device's host list\nn1 n2\n")
    fencer = StonithFencer(parse_stonith_line(f"null {conf}"), timeout_s=30)
    assert await fencer.hosts() == ["n1", "n2"]
    assert (await fencer.fence("n1", FenceAction.OFF)).ok
