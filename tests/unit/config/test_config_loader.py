"""A whole configuration directory: the talk's, errors of all files together, --node, check."""

from __future__ import annotations

from pathlib import Path

import pytest

from nonstop.config.errors import ConfigError, ConfigErrors
from nonstop.config.loader import check_config_dir, load_config_dir
from nonstop.config.model import AutoFailback, ConfigWarning
from nonstop.talk import FILES, copy_talk, talk_file


def talk_dir(tmp_path: Path) -> Path:
    return copy_talk(tmp_path) / "ha.d"


def test_talk_directory_loads_unchanged(tmp_path: Path) -> None:
    d = talk_dir(tmp_path)
    cfg = load_config_dir(str(d), "vpbx1-2")
    assert cfg.directory == str(d)
    assert cfg.local_node == "vpbx1-2"
    assert cfg.ha.nodes == ("vpbx1-1", "vpbx1-2")
    assert cfg.ha.auto_failback is AutoFailback.OFF
    assert cfg.authkeys.active == 1
    assert [g.key for g in cfg.groups] == ["MailTo::tech@webinmotion.ca::Asterisk"]
    assert cfg.warnings == ()
    assert check_config_dir(str(d), "vpbx1-1") == []


def test_node_is_lowercased_and_optional(tmp_path: Path) -> None:
    d = str(talk_dir(tmp_path))
    assert load_config_dir(d, "VPBX1-1").local_node == "vpbx1-1"
    assert load_config_dir(d, None).local_node is None


def test_node_not_in_configuration(tmp_path: Path) -> None:
    d = talk_dir(tmp_path)
    with pytest.raises(ConfigErrors) as info:
        load_config_dir(str(d), "vpbx1-3")
    (err,) = info.value.errors
    assert err.loc.file == str(d / "ha.cf") and err.loc.line == 7
    assert err.message.startswith("Current node [vpbx1-3] not in configuration!")


def test_missing_haresources_means_no_groups(tmp_path: Path) -> None:
    d = talk_dir(tmp_path)
    (d / "haresources").unlink()
    assert load_config_dir(str(d), "vpbx1-1").groups == ()


def test_missing_required_files(tmp_path: Path) -> None:
    items = check_config_dir(str(tmp_path), None)
    assert [(Path(i.loc.file).name, i.message.split(":")[0]) for i in items] == [
        ("ha.cf", "cannot read"),
        ("authkeys", "cannot read"),
    ]


def test_errors_of_all_files_together(tmp_path: Path) -> None:
    d = talk_dir(tmp_path)
    (d / "authkeys").chmod(0o644)
    with open(d / "ha.cf", "a") as f:
        f.write("undport 694\n")
    (d / "haresources").write_text("vpbx1-9 10.0.0.1\n")
    with pytest.raises(ConfigErrors) as info:
        load_config_dir(str(d), "vpbx1-1")
    assert [(Path(e.loc.file).name, e.loc.line) for e in info.value.errors] == [
        ("ha.cf", 11),
        ("authkeys", 0),
        # ha.cf failed, but its node lines still judge haresources: one pass names everything
        ("haresources", 1),
    ]
    assert "Bad nodename in haresources [vpbx1-9]" in str(info.value)


def test_a_broken_ha_cf_still_checks_the_local_node(tmp_path: Path) -> None:
    d = talk_dir(tmp_path)
    with open(d / "ha.cf", "a") as f:
        f.write("undport 694\n")
    with pytest.raises(ConfigErrors) as info:
        load_config_dir(str(d), "buildbox")
    assert "Current node [buildbox] not in configuration!" in str(info.value)


def test_haresources_checked_against_nodes(tmp_path: Path) -> None:
    d = talk_dir(tmp_path)
    (d / "haresources").write_text("# groups\nvpbx1-9 10.0.0.1\n")
    with pytest.raises(ConfigErrors) as info:
        load_config_dir(str(d), "vpbx1-1")
    assert [str(e) for e in info.value.errors] == [
        f"{d / 'haresources'}:2: Bad nodename in haresources [vpbx1-9]: not a node of ha.cf "
        "(nodes: vpbx1-1, vpbx1-2)"
    ]


def test_check_lists_errors_and_warnings_in_file_order(tmp_path: Path) -> None:
    d = talk_dir(tmp_path)
    (d / "ha.cf").write_text(
        "bcast eth0\nnode vpbx1-1 vpbx1-2\nkeepalive 1\nkeepalive 2\ninitdead 5\n"
        "deadtime 5\nstonith x\n"
    )
    (d / "haresources").write_text("vpbx1-1 a\nvpbx1-1 a\n")
    items = check_config_dir(str(d), "vpbx1-1")
    shown = [
        (type(i).__name__, Path(i.loc.file).name, i.loc.line)
        for i in items
        if isinstance(i, ConfigError | ConfigWarning)
    ]
    assert shown == [
        ("ConfigWarning", "ha.cf", 0),  # legacy auto_failback (the default)
        ("ConfigWarning", "ha.cf", 4),  # keepalive repeated
        ("ConfigWarning", "ha.cf", 5),  # initdead < 10 s
        ("ConfigError", "ha.cf", 7),  # stonith without its config file
        ("ConfigError", "haresources", 2),  # duplicate key
    ]
    assert str(items[1]).startswith(f"{d / 'ha.cf'}:4: warning: 'keepalive' was already given")


def test_load_returns_warnings(tmp_path: Path) -> None:
    d = talk_dir(tmp_path)
    with open(d / "ha.cf", "a") as f:
        f.write("nice_failback on\n")
    cfg = load_config_dir(str(d), "vpbx1-1")
    assert cfg.ha.auto_failback is AutoFailback.OFF  # after auto_failback off: quirk says off
    assert [w.loc.line for w in cfg.warnings] == [11]


def test_copy_talk_is_byte_identical_with_node_modes(tmp_path: Path) -> None:
    root = copy_talk(tmp_path / "node")
    for name in FILES:
        assert (root / name).read_bytes() == talk_file(name).read_bytes()
    assert (root / "ha.d" / "authkeys").stat().st_mode & 0o777 == 0o600
    assert (root / "ha.d" / "resource.d" / "master").stat().st_mode & 0o777 == 0o755
    assert talk_file("ha.d/ha.cf").read_text().splitlines()[1] == "keepalive 200ms"
    with pytest.raises(KeyError):
        talk_file("ha.d/../../cli.py")


def test_subsecond_example_loads_beside_the_talks_files(tmp_path: Path) -> None:
    """The shipped sub-second profile is a valid ha.cf for the talk's cluster, with the timing
    its comments and docs/CONFIG.md promise (the bench reads the same file)."""
    d = talk_dir(tmp_path)
    (d / "ha.cf").write_bytes(talk_file("subsecond/ha.cf").read_bytes())
    cfg = load_config_dir(str(d), "vpbx1-1")
    assert (cfg.ha.keepalive_ms, cfg.ha.deadtime_ms, cfg.ha.warntime_ms) == (20, 200, 100)
    assert cfg.ha.deadtime_ms // cfg.ha.keepalive_ms == 10  # heartbeats missed before a death
    assert cfg.ha.nodes == ("vpbx1-1", "vpbx1-2") and cfg.ha.realtime
    assert check_config_dir(str(d), "vpbx1-1") == []
