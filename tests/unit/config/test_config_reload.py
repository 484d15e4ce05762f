"""What a reload applies live and what it leaves for the next start (plan_reload is pure)."""

from __future__ import annotations

from pathlib import Path

from nonstop.config.loader import load_config_dir
from nonstop.config.model import ClusterConfig
from nonstop.config.reload import plan_reload
from nonstop.lab.hbconfig import set_directives
from nonstop.talk import copy_talk


def _talk(tmp_path: Path) -> tuple[Path, ClusterConfig]:
    d = copy_talk(tmp_path) / "ha.d"
    return d, load_config_dir(str(d), "vpbx1-1")


def test_an_unchanged_configuration_changes_nothing(tmp_path: Path) -> None:
    d, old = _talk(tmp_path)
    plan = plan_reload(old, load_config_dir(str(d), "vpbx1-1"))
    assert not plan.changed and plan.config == old


def test_timing_logging_and_keys_apply_live(tmp_path: Path) -> None:
    d, old = _talk(tmp_path)
    ha_cf = d / "ha.cf"
    ha_cf.write_text(set_directives(ha_cf.read_text(), {
        "keepalive": "500ms", "deadtime": "5", "warntime": "3", "logfile": "/var/log/ha-log",
        "nonstop_monitor": "5"}))
    (d / "authkeys").write_text("auth 2\n1 sha1 old-secret\n2 sha1 new-secret\n")
    plan = plan_reload(old, load_config_dir(str(d), "vpbx1-1"))
    assert plan.deferred == ()
    assert plan.applied == (
        "keepalive: 200 ms -> 500 ms", "deadtime: 2000 ms -> 5000 ms",
        "warntime: 1000 ms -> 3000 ms", "logfile: unset -> /var/log/ha-log",
        "nonstop_monitor: off -> 5000 ms",
        "deadping: 2000 ms -> 5000 ms",  # absent: it follows deadtime
        "authkeys: signing with key 2, accepting 1 sha1, 2 sha1")
    ha = plan.config.ha
    assert (ha.keepalive_ms, ha.deadtime_ms, ha.warntime_ms) == (500, 5000, 3000)
    assert ha.monitor_interval_ms == 5000 and ha.logfile == "/var/log/ha-log"
    assert plan.config.authkeys.active == 2
    assert "secret" not in " ".join(plan.applied)  # never a key in a log line


def test_what_needs_a_restart_is_named_with_its_reason_and_kept(tmp_path: Path) -> None:
    d, old = _talk(tmp_path)
    ha_cf = d / "ha.cf"
    ha_cf.write_text(set_directives(ha_cf.read_text(), {
        "node": "vpbx1-1 vpbx1-2 vpbx1-3", "bcast": "eth1", "initdead": "60",
        "keepalive": "100ms"}))
    res = d / "haresources"
    res.write_text(res.read_text().replace("vpbx1-1", "vpbx1-2", 1))
    plan = plan_reload(old, load_config_dir(str(d), "vpbx1-1"))
    assert plan.applied == ("keepalive: 200 ms -> 100 ms",)
    assert [line.split(":")[0] for line in plan.deferred] == [
        "node", "bcast/ucast/mcast", "initdead", "haresources changed"]
    assert "the node list is the membership" in plan.deferred[0]
    assert all("next start" in line for line in plan.deferred)
    assert plan.config.ha.nodes == old.ha.nodes and plan.config.ha.media == old.ha.media
    assert plan.config.ha.initdead_ms == old.ha.initdead_ms
    assert plan.config.groups == old.groups and plan.config.ha.keepalive_ms == 100


def test_a_comment_that_moves_haresources_lines_is_no_change(tmp_path: Path) -> None:
    d, old = _talk(tmp_path)
    res = d / "haresources"
    res.write_text("# a new comment\n\n" + res.read_text())
    assert plan_reload(old, load_config_dir(str(d), "vpbx1-1")).deferred == ()


def test_an_address_probe_turned_off_reads_off() -> None:
    from nonstop.config.reload import _show

    assert _show("address_probe_ms", None) == "off"
    assert _show("address_probe_ms", 100) == "100 ms"
    assert _show("deadping_ms", None) == "unset"
