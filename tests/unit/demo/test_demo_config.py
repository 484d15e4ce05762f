"""The talk's files as the demo runs them: each change made and said."""

from __future__ import annotations

from pathlib import Path

import pytest

from nonstop.config.loader import load_config_dir
from nonstop.demo.cluster import demo_files
from nonstop.demo.config import (
    DEMO_VIP,
    demo_hacf,
    demo_haresources,
    describe_changes,
    hosts_file,
    migrate_csync2_calls,
)
from nonstop.talk import talk_file


def test_hacf_keeps_every_line_but_initdead() -> None:
    talk = talk_file("ha.d/ha.cf").read_text()
    text, changes = demo_hacf(talk, 4)
    assert [c.before for c in changes] == ["initdead 120"]
    assert [c.after for c in changes] == ["initdead 4"]
    old, new = talk.splitlines(), text.splitlines()
    assert [i for i, (a, b) in enumerate(zip(old, new, strict=True)) if a != b] == [
        old.index("initdead 120")]
    with pytest.raises(ValueError):
        demo_hacf(talk, 0)


def test_haresources_moves_the_vip_to_the_benchmark_range() -> None:
    text, changes = demo_haresources(talk_file("ha.d/haresources").read_text())
    assert text == ("vpbx1-1 MailTo::tech@webinmotion.ca::Asterisk 198.18.0.10/24/eth0 "
                    "asterisk master\n")
    assert len(changes) == 1 and DEMO_VIP in changes[0].after
    with pytest.raises(ValueError):
        demo_haresources(text)  # no 10.0.10.10 left to move


def test_master_migration_changes_only_the_program_name() -> None:
    talk = talk_file("ha.d/resource.d/master").read_text()
    text, changes = migrate_csync2_calls(talk, "resource.d/master")
    assert text == talk.replace("csync2 -", "nonstop sync -")
    assert len(changes) == 6  # three calls in start, three in stop
    assert all(c.after == c.before.replace("csync2", "nonstop sync") for c in changes)


def test_crontab_migration_replaces_the_program_path_too() -> None:
    text, changes = migrate_csync2_calls(talk_file("crontab").read_text(), "crontab")
    assert text == ("*/5 * * * * [ -f /tmp/.HB-master ] && nonstop sync -xv "
                    ">/dev/null 2>/dev/null\n")
    assert len(changes) == 1


def test_file_names_are_not_program_calls() -> None:
    text = "cp /etc/csync2.cfg /backup/csync2.cfg\nmycsync2 -x\n"
    with pytest.raises(ValueError, match="no csync2 command"):
        migrate_csync2_calls(text, "script")


def test_demo_files_load_and_name_every_change(tmp_path: Path) -> None:
    files = demo_files(4, daemon_sync=True)
    (tmp_path / "ha.cf").write_text(files.hacf)
    (tmp_path / "haresources").write_text(files.haresources)
    (tmp_path / "authkeys").write_text(files.authkeys)
    (tmp_path / "authkeys").chmod(0o600)
    cfg = load_config_dir(str(tmp_path), "vpbx1-2")
    assert cfg.ha.initdead_ms == 4000
    assert list(cfg.ha.nodes) == ["vpbx1-1", "vpbx1-2"]
    assert DEMO_VIP in files.haresources
    assert files.cron_command == "[ -f /tmp/.HB-master ] && nonstop sync -xv >/dev/null 2>/dev/null"
    assert {c.file for c in files.changes} == {"ha.cf", "haresources", "resource.d/master",
                                                "crontab"}
    assert cfg.ha.sync_config == "/etc/csync2.cfg"
    # MailTo goes to the demo's mail server on each node, whatever MTA the machine has.
    assert cfg.ha.mail_relay == ("127.0.0.1", 25)
    assert "nonstop_sync" not in demo_files(4, daemon_sync=False).hacf
    assert files.csync2_cfg == talk_file("csync2.cfg").read_text()


def test_describe_changes_shows_a_repeated_line_once() -> None:
    lines = describe_changes(demo_files(4, daemon_sync=True).changes)
    master = lines.index("resource.d/master: the migration: only the program name changed")
    assert lines[master + 1] == "  - csync2 -fr /var/log/asterisk/   (2 places)"
    assert lines[master + 2] == "  + nonstop sync -fr /var/log/asterisk/"
    assert sum(1 for line in lines if line.startswith("  - ")) == 6
    assert "  + nonstop_sync /etc/csync2.cfg" in lines  # an added line has no "-" line


def test_hosts_file_names_both_nodes() -> None:
    assert hosts_file({"vpbx1-1": "198.18.0.1", "vpbx1-2": "198.18.0.2"}) == (
        "127.0.0.1\tlocalhost\n198.18.0.1\tvpbx1-1\n198.18.0.2\tvpbx1-2\n")
