"""The lab's STONITH plugin script on real processes (no namespaces needed)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from nonstop.lab.fence import install_plugin, power_record


@pytest.fixture
def victim() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


def plugin(tmp_path: Path, *args: str, hostlist: str = "n1,n2") -> subprocess.CompletedProcess[str]:
    path = install_plugin(tmp_path / "plugins")
    env = {**os.environ, "hostlist": hostlist, "powerdir": str(tmp_path / "power")}
    return subprocess.run([str(path), *args], env=env, capture_output=True, text=True,
                          timeout=30)


def test_plugin_is_installed_as_cluster_glue_requires(tmp_path: Path) -> None:
    path = install_plugin(tmp_path)
    assert path.stat().st_mode & 0o777 == 0o755  # never group/other writable


def test_off_kills_the_recorded_process(tmp_path: Path,
                                        victim: subprocess.Popen[bytes]) -> None:
    power_record(tmp_path / "power", "n2", victim.pid)
    done = plugin(tmp_path, "off", "n2")
    assert done.returncode == 0, done.stderr
    assert f"powered n2 off (box init {victim.pid} killed)" in done.stdout
    assert victim.wait(5) == -9


def test_a_node_outside_hostlist_is_refused(tmp_path: Path,
                                            victim: subprocess.Popen[bytes]) -> None:
    power_record(tmp_path / "power", "n3", victim.pid)
    done = plugin(tmp_path, "reset", "n3")
    assert done.returncode == 1 and "not in hostlist" in done.stderr
    assert victim.poll() is None


def test_a_stale_record_never_hits_another_process(tmp_path: Path,
                                                   victim: subprocess.Popen[bytes]) -> None:
    power = tmp_path / "power"
    power.mkdir()
    # The recorded start time is not the running process's: the pid was reused.
    (power / "n2").write_text(f"{victim.pid} 1\n")
    done = plugin(tmp_path, "reset", "n2")
    assert done.returncode == 0 and "is not running: it is off" in done.stdout
    assert victim.poll() is None


def test_framework_queries(tmp_path: Path) -> None:
    (tmp_path / "power").mkdir()
    assert plugin(tmp_path, "gethosts").stdout.split() == ["n1", "n2"]
    assert plugin(tmp_path, "getconfignames").stdout.split() == ["hostlist", "powerdir"]
    assert plugin(tmp_path, "status").returncode == 0
    assert plugin(tmp_path, "status", hostlist="").returncode == 1
    assert plugin(tmp_path, "on", "n2").returncode == 1
    assert "<parameter name=\"powerdir\"" in plugin(tmp_path, "getinfo-xml").stdout
