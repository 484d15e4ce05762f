"""The lab's STONITH plugin and power switch, without namespaces."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from nonstop.lab import LabError
from nonstop.lab.fence import PowerSwitch, install_plugin


@pytest.fixture
def switch(tmp_path: Path) -> Iterator[PowerSwitch]:
    def power_off(node: str) -> str:
        if node == "broken":
            raise LabError("the box of broken would not die")
        return f"powered {node} off"

    sw = PowerSwitch(tmp_path / "switch.sock", power_off).start()
    yield sw
    sw.close()


def plugin(tmp_path: Path, switch: Path, *args: str,
           hostlist: str = "n1,n2,broken") -> subprocess.CompletedProcess[str]:
    path = install_plugin(tmp_path / "plugins")
    env = {**os.environ, "hostlist": hostlist, "switch": str(switch)}
    return subprocess.run([str(path), *args], env=env, capture_output=True, text=True,
                          timeout=60)


def test_plugin_is_installed_as_cluster_glue_requires(tmp_path: Path) -> None:
    path = install_plugin(tmp_path)
    assert path.stat().st_mode & 0o777 == 0o755  # never group/other writable


def test_off_and_reset_ask_the_switch(tmp_path: Path, switch: PowerSwitch) -> None:
    done = plugin(tmp_path, switch.path, "off", "n2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "nonstop-lab: ok powered n2 off"
    assert plugin(tmp_path, switch.path, "reset", "N1").returncode == 0  # names are case-blind
    assert switch.requests == ["off n2", "off n1"]


def test_a_switch_that_fails_fails_the_plugin(tmp_path: Path, switch: PowerSwitch) -> None:
    done = plugin(tmp_path, switch.path, "reset", "broken")
    assert done.returncode == 1
    assert "error the box of broken would not die" in done.stderr


def test_a_node_outside_hostlist_is_refused_without_asking(tmp_path: Path,
                                                          switch: PowerSwitch) -> None:
    done = plugin(tmp_path, switch.path, "reset", "n3")
    assert done.returncode == 1 and "not in hostlist" in done.stderr
    assert switch.requests == []


def test_no_switch_is_a_failure_not_a_success(tmp_path: Path) -> None:
    done = plugin(tmp_path, tmp_path / "nothing.sock", "reset", "n2")
    assert done.returncode == 1 and "power switch" in done.stderr


def test_framework_queries(tmp_path: Path, switch: PowerSwitch) -> None:
    assert plugin(tmp_path, switch.path, "gethosts").stdout.split() == ["n1", "n2", "broken"]
    assert plugin(tmp_path, switch.path, "getconfignames").stdout.split() == ["hostlist",
                                                                             "switch"]
    assert plugin(tmp_path, switch.path, "status").returncode == 0
    assert plugin(tmp_path, switch.path, "on", "n2").returncode == 1
    assert '<parameter name="switch"' in plugin(tmp_path, switch.path, "getinfo-xml").stdout


def test_switch_refuses_bad_requests(tmp_path: Path, switch: PowerSwitch) -> None:
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(switch.path))
        s.sendall(b"explode everything\n")
        assert s.recv(200).startswith(b"error bad request")
