"""A reload reads the csync2.cfg that nonstop_sync names, and restarts replication safely
(daemon_reload.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from nonstop.config.model import ClusterConfig, Parsed
from nonstop.config.reload import SyncFiles
from nonstop.daemon_reload import ReloadWiring
from nonstop.daemon_sync import ReplicationWiring
from nonstop.lab.hbconfig import set_directives
from nonstop.talk import copy_talk

KEY = "k" * 40


def _config_dir(tmp_path: Path, csync2: str) -> Path:
    d = copy_talk(tmp_path) / "ha.d"
    cfg = tmp_path / "csync2.cfg"
    key = tmp_path / "csync2.key"
    key.write_text(KEY + "\n")
    cfg.write_text(csync2.replace("KEYFILE", str(key)))
    ha_cf = d / "ha.cf"
    # What this machine has (a reload refuses what `run` would: an interface or a script
    # not here): the loopback, and the talk's own master script.
    ha_cf.write_text(set_directives(ha_cf.read_text(), {"nonstop_sync": str(cfg),
                                                        "bcast": "lo"}))
    (d / "haresources").write_text("vpbx1-1 127.0.0.77/8/lo master\n")
    return d


GOOD = "group g\n{\n    host vpbx1-1 vpbx1-2;\n    key KEYFILE;\n    include /etc/asterisk;\n}\n"


def _read(d: Path, replicator: object = None, probed: bool = True,
          ) -> tuple[Parsed[ClusterConfig], SyncFiles | None, SyncFiles | None]:
    fake = SimpleNamespace(cfg=SimpleNamespace(directory=str(d)), node="vpbx1-1",
                           replicator=replicator, _probed=probed)
    return ReloadWiring._read_files(fake)  # type: ignore[arg-type]


def test_a_reload_reads_csync2_cfg_and_its_keys(tmp_path: Path) -> None:
    parsed, new, running = _read(_config_dir(tmp_path, GOOD))
    assert parsed.value is not None and running is None
    assert new is not None and new.keys == {"g": KEY.encode()}
    assert [g.name for g in new.config.groups] == ["g"]


def test_a_broken_csync2_cfg_refuses_the_reload_with_file_and_line(tmp_path: Path) -> None:
    d = _config_dir(tmp_path, GOOD.replace("include /etc/asterisk;", "bogus-directive x;"))
    parsed, new, _ = _read(d)
    assert parsed.value is None and new is None
    assert [str(e) for e in parsed.errors] == [
        f"{tmp_path / 'csync2.cfg'}:5: unknown directive 'bogus-directive' in group 'g'"]


def test_what_the_next_start_would_refuse_refuses_the_reload(tmp_path: Path) -> None:
    """A reload said 'applied at the next start' of a heartbeat interface or a resource
    script that is not here; that start then refused the files, and the node stayed down."""
    d = _config_dir(tmp_path, GOOD)
    ha_cf = d / "ha.cf"
    ha_cf.write_text(set_directives(ha_cf.read_text(), {"bcast": "eth9"}))
    (d / "haresources").write_text("vpbx1-1 127.0.0.77/8/lo master nosuchscript\n")
    parsed, new, _ = _read(d)
    assert parsed.value is None and new is None
    said = [str(e) for e in parsed.errors]
    assert f"{ha_cf}:6: bcast eth9: no interface 'eth9' on this machine" in said
    assert any(e.startswith(f"{d / 'haresources'}:1: nosuchscript: locate failed: Cannot "
                            "locate resource script nosuchscript") for e in said), said


def test_a_bad_key_or_a_node_in_no_group_refuses_it_too(tmp_path: Path) -> None:
    d = _config_dir(tmp_path, GOOD)
    (tmp_path / "csync2.key").write_text("short\n")
    parsed, _, _ = _read(d)
    assert parsed.value is None
    assert [str(e) for e in parsed.errors] == [
        f"{tmp_path / 'csync2.cfg'}:4: key in {tmp_path / 'csync2.key'} is too short "
        "(< 32 characters)"]
    d = _config_dir(tmp_path, GOOD.replace("vpbx1-1 ", ""))
    parsed, _, _ = _read(d)
    assert [str(e) for e in parsed.errors] == [
        f"{tmp_path / 'csync2.cfg'}: host 'vpbx1-1' is not a member of any group"]


def test_before_the_first_start_it_is_checked_but_not_compared(tmp_path: Path) -> None:
    parsed, new, running = _read(_config_dir(tmp_path, GOOD), probed=False)
    assert parsed.value is not None and new is None and running is None


def test_the_running_node_is_what_a_reload_compares_with(tmp_path: Path) -> None:
    from nonstop.sync.node import open_node

    d = _config_dir(tmp_path, GOOD)
    node = open_node(str(tmp_path / "csync2.cfg"), "vpbx1-1", str(tmp_path / "state"))
    try:
        _, new, running = _read(d, replicator=SimpleNamespace(node=node))
        assert running == new
    finally:
        node.close()


class _Replicator:
    def __init__(self, events: list[str]) -> None:
        self.events = events

    async def force_sync(self) -> Any:
        self.events.append("push begins")
        await asyncio.sleep(0.05)
        self.events.append("push ends")
        return SimpleNamespace(problems=[], counts={})

    async def push_pending(self, force: bool = True) -> Any:
        return await self.force_sync()

    async def stop(self) -> None:
        self.events.append("stopped")

    def live(self) -> list[str]:
        return ["vpbx1-2"]

    def addresses(self, among: Any) -> dict[str, str]:
        return {}  # where the peers are cannot be told: the last push goes ahead


class _Wiring(ReplicationWiring, ReloadWiring):
    def __init__(self, replicator: _Replicator) -> None:
        self.replicator = replicator  # type: ignore[assignment]
        self.node = "vpbx1-1"
        self.cfg = SimpleNamespace(ha=SimpleNamespace(  # type: ignore[assignment]
            nodes=("vpbx1-1", "vpbx1-2")))
        self._sync_tasks = set()
        self._was_active = True
        self._stop = asyncio.Event()
        self.engine = None


def test_a_restart_lets_a_force_sync_under_way_finish_first() -> None:
    """A restart while the last push before a release runs: the push is not cut (nor the
    release), and the old replicator stops only after it."""
    events: list[str] = []

    async def scenario() -> None:
        w = _Wiring(_Replicator(events))
        release = asyncio.create_task(w._before_release(True, False))
        await asyncio.sleep(0.01)
        await w._stop_replication()
        await release
        assert w.replicator is None and not w._was_active and not w._sync_tasks

    asyncio.run(scenario())
    assert events == ["push begins", "push ends", "stopped"]


def test_a_force_sync_begun_during_the_wait_is_waited_for_too() -> None:
    events: list[str] = []

    async def scenario() -> None:
        w = _Wiring(_Replicator(events))
        w._spawn_sync(w._force_sync("takeover"))
        await asyncio.sleep(0.01)
        stopping = asyncio.create_task(w._stop_replication())
        await asyncio.sleep(0.01)
        w._spawn_sync(w._force_sync("takeover"))  # spawned while the restart waits
        await stopping

    asyncio.run(scenario())
    assert events == ["push begins", "push begins", "push ends", "push ends", "stopped"]


def test_a_force_sync_still_running_after_the_bound_is_cancelled(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import nonstop.daemon_reload as daemon_reload

    monkeypatch.setattr(daemon_reload, "FORCE_SYNC_WAIT_S", 0.02)
    events: list[str] = []

    async def scenario() -> None:
        w = _Wiring(_Replicator(events))
        task = w._spawn_sync(w._force_sync("takeover"))
        await asyncio.sleep(0.001)
        await w._stop_replication()
        assert task.cancelled()

    asyncio.run(scenario())
    assert events == ["push begins", "stopped"]
