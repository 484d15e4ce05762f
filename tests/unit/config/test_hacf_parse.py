"""ha.cf: the talk's file, lexical rules, defaults, media, startup rules, errors with lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from nonstop.config.errors import ConfigErrors
from nonstop.config.hacf import check_hacf, parse_hacf
from nonstop.config.model import AutoFailback, Bcast, HaConfig, Mcast, Parsed, Ucast
from nonstop.talk import copy_talk

BASE = "bcast eth0\nnode a b\nauto_failback off\n"


def write(tmp_path: Path, text: str | bytes, name: str = "ha.cf") -> str:
    p = tmp_path / name
    if isinstance(text, str):
        p.write_text(text)
    else:
        p.write_bytes(text)
    return str(p)


def check(tmp_path: Path, text: str | bytes) -> Parsed[HaConfig]:
    return check_hacf(write(tmp_path, text))


def ok(tmp_path: Path, text: str) -> HaConfig:
    return parse_hacf(write(tmp_path, text))


def errors(tmp_path: Path, text: str | bytes) -> list[str]:
    """Every error as 'line: message' (the file name is the same for all)."""
    res = check(tmp_path, text)
    assert res.value is None
    return [f"{e.loc.line}: {e.message}" for e in res.errors]


def warnings(tmp_path: Path, text: str) -> list[str]:
    res = check(tmp_path, text)
    return [f"{w.loc.line}: {w.message}" for w in res.warnings]


def test_talk_file_unchanged(tmp_path: Path) -> None:
    path = str(copy_talk(tmp_path) / "ha.d" / "ha.cf")
    res = check_hacf(path)
    assert res.errors == () and res.warnings == ()
    cfg = res.unwrap()
    assert cfg.nodes == ("vpbx1-1", "vpbx1-2")
    assert cfg.media == (Bcast("eth0", 694),)
    assert (cfg.keepalive_ms, cfg.deadtime_ms, cfg.warntime_ms, cfg.initdead_ms) == (
        200,
        2000,
        1000,
        120000,
    )
    assert cfg.auto_failback is AutoFailback.OFF
    assert cfg.use_logd is True
    assert cfg.monitor_interval_ms is None
    # recorded strings as cl_status hbparameter shows them: as written, defaults filled
    p = cfg.parameters
    assert (p["keepalive"], p["deadtime"], p["warntime"], p["initdead"]) == (
        "200ms",
        "2",
        "1",
        "120",
    )
    assert (p["crm"], p["auto_failback"], p["node"], p["udpport"]) == (
        "off",
        "off",
        "vpbx1-1 vpbx1-2",
        "694",
    )
    assert cfg.locations["deadtime"].line == 3
    assert cfg.locations["node"].line == 7


def test_defaults(tmp_path: Path) -> None:
    cfg = ok(tmp_path, BASE)
    assert (cfg.keepalive_ms, cfg.deadtime_ms, cfg.warntime_ms, cfg.initdead_ms) == (
        1000,
        30000,
        15000,
        30000,
    )
    assert cfg.udpport == 694
    assert cfg.msgfmt == "netstring"
    assert cfg.max_rexmit_delay_ms == 250
    assert cfg.hopfudge == 1 and cfg.cluster == "linux-ha" and cfg.debug == 0
    assert cfg.log_badpack and cfg.realtime and cfg.coredumps and cfg.use_logd
    assert cfg.rtprio is None and cfg.watchdog is None and cfg.logfile is None
    assert cfg.uuidfrom == "file" and cfg.hbgenmethod == "file"
    assert cfg.parameters["keepalive"] == "1000ms"
    assert cfg.parameters["deadtime"] == "30000ms"
    assert cfg.parameters["warntime"] == "15000ms"
    assert cfg.parameters["initdead"] == "30000ms"
    assert cfg.parameters["use_logd"] == "yes"


@pytest.mark.parametrize(
    ("deadtime", "initdead"),
    [
        ("2", 12000),
        ("5", 12000),
        ("6", 12000),
        ("8", 16000),
        ("10", 20000),
        ("11", 11000),
        ("60", 60000),
    ],
)
def test_initdead_computed(tmp_path: Path, deadtime: str, initdead: int) -> None:
    cfg = ok(tmp_path, BASE + f"keepalive 200ms\ndeadtime {deadtime}\n")
    assert cfg.initdead_ms == initdead
    assert cfg.parameters["initdead"] == f"{initdead}ms"
    assert cfg.warntime_ms == cfg.deadtime_ms // 2


def test_comments_commas_and_whitespace(tmp_path: Path) -> None:
    cfg = ok(
        tmp_path,
        "# a comment line\n"
        "   \t\n"
        "  bcast eth0,eth1\teth2 # three media\n"
        "node A,B\n"
        "node c#not a node\n"
        "keepalive 2#comment right after the value\r\n"
        "auto_failback on\n",
    )
    assert [m.name for m in cfg.media] == ["eth0", "eth1", "eth2"]
    assert cfg.nodes == ("a", "b", "c")
    assert cfg.keepalive_ms == 2000
    assert cfg.auto_failback is AutoFailback.ON


def test_names_are_case_sensitive(tmp_path: Path) -> None:
    assert errors(tmp_path, BASE + "Keepalive 2\n") == [
        "4: directive 'Keepalive' is unknown "
        "(directive names are case-sensitive: did you mean 'keepalive'?)"
    ]


def test_unknown_directive_suggests_the_known_one(tmp_path: Path) -> None:
    res = check(tmp_path, BASE + "undport 694\n")
    assert [str(e) for e in res.errors] == [
        f"{tmp_path / 'ha.cf'}:4: directive 'undport' is unknown (did you mean 'udpport'?)"
    ]


def test_unknown_directive_far_from_any(tmp_path: Path) -> None:
    assert errors(tmp_path, BASE + "frobnicate yes\n") == ["4: directive 'frobnicate' is unknown"]


def test_equals_sign_hint(tmp_path: Path) -> None:
    (err,) = errors(tmp_path, BASE + "keepalive=2\n")
    assert "not 'directive=value'" in err


def test_udpport_applies_to_later_media_only(tmp_path: Path) -> None:
    res = check(
        tmp_path,
        "bcast eth0\nudpport 700\nbcast eth1\nucast eth2 10.0.0.2\nnode a\nauto_failback on\n",
    )
    cfg = res.unwrap()
    assert cfg.media == (Bcast("eth0", 694), Bcast("eth1", 700), Ucast("eth2", "10.0.0.2", 700))
    assert cfg.udpport == 700
    assert [(w.loc.line, "line 1 keeps port 694" in w.message) for w in res.warnings] == [(2, True)]


def test_udpport_first_no_warning(tmp_path: Path) -> None:
    res = check(tmp_path, "udpport 700\nbcast eth0\nnode a\nauto_failback on\n")
    assert res.unwrap().media == (Bcast("eth0", 700),) and res.warnings == ()


def test_udpport_of_another_service_warns(tmp_path: Path) -> None:
    # 53/udp is "domain" in every /etc/services (Debian's netbase)
    assert warnings(tmp_path, "udpport 53\n" + BASE) == [
        "1: udpport 53 is the port of service 'domain' in /etc/services; another program may "
        "be using it"
    ]
    assert warnings(tmp_path, "udpport 694\n" + BASE) == []


def test_ucast_and_mcast(tmp_path: Path) -> None:
    cfg = ok(
        tmp_path,
        BASE + "ucast eth1 198.18.0.2\nucast eth1 peer-2.example\nmcast eth2 239.192.0.1 694 1 0\n",
    )
    assert cfg.media[1:] == (
        Ucast("eth1", "198.18.0.2", 694),
        Ucast("eth1", "peer-2.example", 694),
        Mcast("eth2", "239.192.0.1", 694, 1, False),
    )


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("mcast eth2 239.192.0.1 694 1", "takes 5 values"),
        ("mcast eth2 10.0.0.1 694 1 0", "not a multicast address"),
        ("mcast eth2 239.192.0.1 694 256 0", "256 is out of range 0..255"),
        ("mcast eth2 239.192.0.1 694 1 2", "2 is out of range 0..1"),
        ("mcast eth2 239.192.0.1 0 1 0", "0 is out of range 1..65535"),
        ("mcast eth2 nonsense 694 1 0", "not an IPv4 address"),
        ("ucast eth1", "an interface and one peer"),
        ("ucast eth1 10.0.0.300", "not an IPv4 address"),
        ("ucast eth1 fe80::1", "IPv6"),
        ("ucast eth1 bad_host!", "neither an IPv4 address nor a host name"),
        ("bcast averyveryverylongifname", "not a network interface name"),
        ("udpport 70000", "out of range"),
        ("udpport 69x", "not a whole number"),
    ],
)
def test_bad_media(tmp_path: Path, line: str, fragment: str) -> None:
    (err,) = errors(tmp_path, BASE + line + "\n")
    assert err.startswith("4: ") and fragment in err


def test_mcast_ttl_warnings(tmp_path: Path) -> None:
    ws = warnings(
        tmp_path, BASE + "mcast eth2 239.192.0.1 694 10 0\nmcast eth3 239.192.0.1 694 0 0\n"
    )
    assert ws == [
        "4: mcast ttl 10: Heartbeat itself refuses ttl > 4 (bad ttl)",
        "5: mcast ttl 0 never leaves this host: peers will not hear it",
    ]


def test_udp_is_bcast_with_a_warning(tmp_path: Path) -> None:
    res = check(tmp_path, "udp eth0\nnode a\nauto_failback on\n")
    assert res.unwrap().media == (Bcast("eth0", 694),)
    assert [w.message for w in res.warnings] == [
        "directive 'udp' replaced by 'bcast' (write 'bcast')"
    ]


def test_repeated_medium_and_node_used_once(tmp_path: Path) -> None:
    res = check(tmp_path, BASE + "bcast eth0\nnode A\n")
    cfg = res.unwrap()
    assert cfg.media == (Bcast("eth0", 694),) and cfg.nodes == ("a", "b")
    assert [w.loc.line for w in res.warnings] == [4, 5]


def test_no_media_no_nodes(tmp_path: Path) -> None:
    assert errors(tmp_path, "keepalive 1\n") == [
        "0: No heartbeat media defined (add e.g. 'bcast eth0')",
        "0: no nodes defined (add a 'node' line for each cluster node)",
    ]


def test_deadtime_must_exceed_twice_keepalive(tmp_path: Path) -> None:
    assert errors(tmp_path, BASE + "keepalive 1\ndeadtime 2\ninitdead 20\n") == [
        "5: Dead time [2000] is too small compared to keepalive [1000]: "
        "deadtime must be more than 2 x keepalive"
    ]
    # deadtime not given: the keepalive line is blamed
    (err,) = errors(tmp_path, BASE + "keepalive 20\n")
    assert err.startswith("4: Dead time [30000]")


def test_warntime_must_be_below_deadtime(tmp_path: Path) -> None:
    (err,) = errors(tmp_path, BASE + "keepalive 200ms\ndeadtime 2\nwarntime 2\n")
    assert err.startswith("6: warntime [2000] must be less than deadtime [2000]")


def test_initdead_rules(tmp_path: Path) -> None:
    (err,) = errors(tmp_path, BASE + "keepalive 200ms\ndeadtime 2\ninitdead 1\n")
    assert err == "6: Initial dead time [1000] is smaller than deadtime [2000]"
    ws = warnings(tmp_path, BASE + "keepalive 200ms\ndeadtime 2\ninitdead 5\n")
    assert ws == ["6: Initial dead time [5000 ms] may be too small!"]


def test_zero_times_refused(tmp_path: Path) -> None:
    (err,) = errors(tmp_path, BASE + "keepalive 0\n")
    assert err == "4: 'keepalive': '0' must be more than 0 ms"


def test_value_with_space_is_two_values(tmp_path: Path) -> None:
    (err,) = errors(tmp_path, BASE + "keepalive 500 ms\n")
    assert "takes one value, got 2" in err and "write '500ms'" in err


def test_directive_without_value(tmp_path: Path) -> None:
    assert errors(tmp_path, BASE + "keepalive\n") == ["4: 'keepalive' needs a value"]


def test_bad_time_unit(tmp_path: Path) -> None:
    (err,) = errors(tmp_path, BASE + "deadtime 10s\n")
    assert err.startswith("4: 'deadtime': '10s' has an unknown time unit 's'")


def test_repeated_directive_later_wins(tmp_path: Path) -> None:
    res = check(tmp_path, BASE + "keepalive 1\nkeepalive 2\ndeadtime 10\n")
    assert res.unwrap().keepalive_ms == 2000
    assert [w.loc.line for w in res.warnings] == [5]
    assert "already given at line 4" in res.warnings[0].message


def test_logging_rules(tmp_path: Path) -> None:
    cfg = ok(tmp_path, BASE + "logfile /var/log/ha-log\nlogfacility local0\n")
    assert cfg.logfile == "/var/log/ha-log" and cfg.logfacility == "local0"
    assert cfg.use_logd is False and cfg.parameters["use_logd"] == "no"
    assert ok(tmp_path, BASE + "logfacility none\n").logfacility is None
    assert errors(tmp_path, BASE + "use_logd off\n") == [
        "4: use_logd is off and no logfile, debugfile or logfacility is given: "
        "nonstop would log nowhere"
    ]
    (err,) = errors(tmp_path, BASE + "logfacility local9\n")
    assert "'local9' is not a syslog facility" in err
    (err,) = errors(tmp_path, BASE + "logfile ha-log\n")
    assert "must be an absolute path" in err


def test_auto_failback_values_and_legacy_warnings(tmp_path: Path) -> None:
    assert ok(tmp_path, "bcast eth0\nnode a\nauto_failback yes\n").auto_failback is AutoFailback.ON
    res = check(tmp_path, "bcast eth0\nnode a\n")
    assert res.unwrap().auto_failback is AutoFailback.LEGACY
    assert res.warnings[0].message.startswith(
        "Deprecated 'legacy' auto_failback option selected (the default)."
    )
    res = check(tmp_path, "bcast eth0\nnode a\nauto_failback legacy\n")
    assert res.unwrap().auto_failback is AutoFailback.LEGACY
    assert [w.loc.line for w in res.warnings] == [3]
    assert errors(tmp_path, "bcast eth0\nnode a\nauto_failback sometimes\n") == [
        "3: 'auto_failback': 'sometimes' must be on, off or legacy"
    ]


def test_nice_failback_quirk(tmp_path: Path) -> None:
    # On its own, 'nice_failback on' becomes legacy, as in Heartbeat (the global is not set).
    res = check(tmp_path, "bcast eth0\nnode a\nnice_failback on\n")
    assert res.unwrap().auto_failback is AutoFailback.LEGACY
    msgs = [w.message for w in res.warnings]
    assert msgs[0] == "nice_failback flag is obsolete. Use auto_failback {on, off, legacy} instead."
    assert "means auto_failback legacy here" in msgs[1]
    # After auto_failback on/off it means off.
    res = check(tmp_path, "bcast eth0\nnode a\nauto_failback on\nnice_failback yes\n")
    assert res.unwrap().auto_failback is AutoFailback.OFF


def test_nonstop_sync(tmp_path: Path) -> None:
    assert ok(tmp_path, BASE + "nonstop_sync /etc/csync2.cfg\n").sync_config == "/etc/csync2.cfg"
    assert ok(tmp_path, BASE).sync_config is None


def test_nonstop_monitor(tmp_path: Path) -> None:
    assert ok(tmp_path, BASE + "nonstop_monitor 2\n").monitor_interval_ms == 2000
    assert ok(tmp_path, BASE + "nonstop_monitor 500ms\n").monitor_interval_ms == 500
    assert ok(tmp_path, BASE + "nonstop_monitor 0\n").monitor_interval_ms is None
    assert ok(tmp_path, BASE).monitor_interval_ms is None
    assert errors(tmp_path, BASE + "nonstop_monitr 2\n") == [
        "4: directive 'nonstop_monitr' is unknown (did you mean 'nonstop_monitor'?)"
    ]


def test_process_and_protocol_directives(tmp_path: Path) -> None:
    cfg = ok(
        tmp_path,
        BASE + "realtime no\nrtprio 10\ncoredumps off\ndebug 3\nlog_badpack false\nhopfudge 2\n"
        "cluster pbx\nuuidfrom nodename\nhbgenmethod time\nmsgfmt classic\nmax_rexmit_delay 100\n"
        "watchdog /dev/watchdog\ncrm no\nautojoin none\nuse_apphbd off\n",
    )
    assert (cfg.realtime, cfg.rtprio, cfg.coredumps, cfg.debug, cfg.log_badpack) == (
        False,
        10,
        False,
        3,
        False,
    )
    assert (cfg.hopfudge, cfg.cluster, cfg.uuidfrom, cfg.hbgenmethod) == (
        2,
        "pbx",
        "nodename",
        "time",
    )
    assert (cfg.msgfmt, cfg.max_rexmit_delay_ms, cfg.watchdog) == ("classic", 100, "/dev/watchdog")
    assert ok(tmp_path, BASE + "rtprio 0\n").rtprio is None


def test_crm_and_autojoin_true_values_rejected(tmp_path: Path) -> None:
    for line in ("crm on", "crm respawn", "pacemaker yes", "autojoin any", "autojoin other"):
        (err,) = errors(tmp_path, BASE + line + "\n")
        name, value = line.split()
        assert err.startswith(
            f"4: directive '{name}' with value '{value}' is not supported by nonstop: "
        )
    (err,) = errors(tmp_path, BASE + "crm maybe\n")
    assert "not a boolean" in err


def test_many_errors_at_once_with_lines(tmp_path: Path) -> None:
    text = (
        "keepalive 2x\n"  # 1
        "undport 694\n"  # 2
        "# fine\n"  # 3
        "bcast eth0\n"  # 4
        "stonith baytech\n"  # 5: no config file
        "node a\n"  # 6
        "mcast eth1 1.2.3.4 694 1 0\n"  # 7
        "logfacility loca0\n"  # 8
        "serial /dev/ttyS0\n"  # 9
    )
    path = write(tmp_path, text)
    with pytest.raises(ConfigErrors) as info:
        parse_hacf(path)
    lines = [e.loc.line for e in info.value.errors]
    assert lines == [1, 2, 5, 7, 8, 9]
    assert all(e.loc.file == path for e in info.value.errors)
    assert (
        str(info.value).splitlines()[1]
        == f"{path}:2: directive 'undport' is unknown (did you mean 'udpport'?)"
    )


def test_unreadable_and_odd_files(tmp_path: Path) -> None:
    res = check_hacf(str(tmp_path / "missing.cf"))
    assert res.value is None and "cannot read" in res.errors[0].message
    assert errors(tmp_path, BASE.encode() + b"node \xff\xfe\nbcast\n") == [
        "4: byte 0xff at column 6 is not UTF-8: only a comment may use another encoding",
        "5: 'bcast' needs at least one interface",
    ]
    (err,) = errors(tmp_path, BASE + "cluster " + "x" * 6000 + "\n")
    assert err == "4: line is longer than 5120 characters"
    (err,) = errors(tmp_path, BASE + "node " + "n" * 101 + "\n")
    assert "longer than 100 characters" in err
