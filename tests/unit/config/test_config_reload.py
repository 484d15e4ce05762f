"""What a reload applies live and what it leaves for the next start (plan_reload is pure)."""

from __future__ import annotations

from pathlib import Path

from nonstop.config.csync2 import parse_csync2_text
from nonstop.config.loader import load_config_dir
from nonstop.config.model import ClusterConfig
from nonstop.config.reload import SyncFiles, plan_reload
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
    assert plan.deferred[1].startswith("bcast/ucast/mcast: bcast eth0 -> bcast eth1 is ")
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


# --- the csync2.cfg that nonstop_sync names (read again by every reload)

CSYNC2 = """group vpbx1
{
    backup-generations 5;
    host vpbx1-1 vpbx1-2;
    key /etc/csync2.key_vpbx1;
    exclude *~ .*;
    include /etc/asterisk;
}
"""
KEY = b"k" * 40


def _sync(text: str = CSYNC2, key: bytes = KEY, path: str = "/etc/csync2.cfg") -> SyncFiles:
    return SyncFiles(parse_csync2_text(text, path), {"vpbx1": key})


def _with_sync(tmp_path: Path, path: str = "/etc/csync2.cfg") -> tuple[Path, ClusterConfig]:
    d, _ = _talk(tmp_path)
    ha_cf = d / "ha.cf"
    ha_cf.write_text(set_directives(ha_cf.read_text(), {"nonstop_sync": path}))
    return d, load_config_dir(str(d), "vpbx1-1")


def test_an_unchanged_csync2_cfg_changes_nothing_even_with_lines_moved(tmp_path: Path) -> None:
    d, old = _with_sync(tmp_path)
    moved = "# a comment that moves every line\n\n" + CSYNC2
    plan = plan_reload(old, load_config_dir(str(d), "vpbx1-1"), _sync(), _sync(moved))
    assert not plan.changed and not plan.restart_sync


def test_a_changed_csync2_cfg_restarts_replication_and_says_what_changed(
        tmp_path: Path) -> None:
    d, old = _with_sync(tmp_path)
    new = (CSYNC2.replace("include /etc/asterisk;", "include /etc/asterisk;\n"
                          "    include /srv/recordings;\n    exclude *.tmp;")
           .replace("backup-generations 5", "backup-generations 1"))
    plan = plan_reload(old, load_config_dir(str(d), "vpbx1-1"), _sync(), _sync(new))
    assert plan.restart_sync and plan.deferred == ()
    assert plan.applied == (
        "replication: /etc/csync2.cfg changed (group vpbx1: include /srv/recordings added, "
        "exclude *.tmp added, backup-generations 5 -> 1): restarted",)
    assert plan.config == old  # nothing of ha.cf changed


def test_a_changed_key_restarts_replication_without_showing_it(tmp_path: Path) -> None:
    d, old = _with_sync(tmp_path)
    new_key = b"n" * 40
    plan = plan_reload(old, load_config_dir(str(d), "vpbx1-1"), _sync(), _sync(key=new_key))
    assert plan.restart_sync
    assert plan.applied == ("replication: /etc/csync2.cfg changed (group vpbx1: its key "
                            "changed): restarted",)
    assert "n" * 10 not in plan.applied[0] and "k" * 10 not in plan.applied[0]


def test_other_csync2_changes_are_named_in_its_words(tmp_path: Path) -> None:
    d, old = _with_sync(tmp_path)
    new = (CSYNC2.replace("host vpbx1-1 vpbx1-2;", "host vpbx1-1 vpbx1-2 vpbx1-3;")
           .replace("key /etc/csync2.key_vpbx1;", "key /etc/csync2.key_new;\n    auto younger;")
           .replace("exclude *~ .*;\n    include /etc/asterisk;",
                    "include /etc/asterisk;\n    exclude *~ .*;")
           + "nossl * *;\ngroup other { host vpbx1-1; key /k; include /x; }\n")
    plan = plan_reload(old, load_config_dir(str(d), "vpbx1-1"), _sync(), _sync(new))
    assert plan.applied == (
        "replication: /etc/csync2.cfg changed (group other added; group vpbx1: include/exclude "
        "order changed, host lines changed, key /etc/csync2.key_vpbx1 -> /etc/csync2.key_new, "
        "auto none -> younger; settings outside the groups changed): restarted",)


def test_replication_that_is_not_running_is_started(tmp_path: Path) -> None:
    """It failed at start (a broken csync2.cfg, which `run` does not refuse): a reload with
    the file fixed starts it, even if nothing else changed."""
    d, old = _with_sync(tmp_path)
    plan = plan_reload(old, load_config_dir(str(d), "vpbx1-1"), None, _sync())
    assert plan.restart_sync
    assert plan.applied == ("replication: was not running: started with /etc/csync2.cfg",)


def test_another_csync2_cfg_named_restarts_once_under_its_ha_cf_line(tmp_path: Path) -> None:
    d, old = _with_sync(tmp_path)
    ha_cf = d / "ha.cf"
    ha_cf.write_text(set_directives(ha_cf.read_text(), {"nonstop_sync": "/etc/other.cfg"}))
    new = load_config_dir(str(d), "vpbx1-1")
    plan = plan_reload(old, new, _sync(), _sync(path="/etc/other.cfg"))
    assert plan.restart_sync
    assert plan.applied == ("nonstop_sync: /etc/csync2.cfg -> /etc/other.cfg",)
    unset = set_directives(ha_cf.read_text(), {"nonstop_sync": None})
    ha_cf.write_text(unset)
    plan = plan_reload(old, load_config_dir(str(d), "vpbx1-1"), _sync(), None)
    assert plan.restart_sync and plan.config.ha.sync_config is None


def test_without_nonstop_sync_nothing_restarts(tmp_path: Path) -> None:
    d, old = _talk(tmp_path)
    assert not plan_reload(old, load_config_dir(str(d), "vpbx1-1")).restart_sync
