"""Every ha.cf directive of the spec is honoured (changes the model) or refused with a reason."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nonstop.config.hacf import (
    DIRECTIVES,
    NONSTOP_DIRECTIVES,
    SPEC_DIRECTIVES,
    Directive,
    Kind,
    Support,
    check_hacf,
)

BASE = "bcast eth0\nnode a b\nauto_failback off\n"
BASE_LINES = BASE.count("\n")

# One valid use of each honoured directive and the recorded string it must produce. A new
# honoured directive without an example here fails test_examples_cover_honoured.
EXAMPLES: dict[str, tuple[str, str]] = {
    "keepalive": ("keepalive 500ms", "500ms"),
    "deadtime": ("deadtime 10", "10"),
    "warntime": ("warntime 3", "3"),
    "initdead": ("initdead 60", "60"),
    "deadping": ("deadping 40", "40"),
    "max_rexmit_delay": ("max_rexmit_delay 100", "100"),
    "udpport": ("udpport 694", "694"),
    "bcast": ("bcast eth1", "eth0 eth1"),
    "mcast": ("mcast eth1 239.192.0.1 694 1 0", "eth1 239.192.0.1 694 1 0"),
    "ucast": ("ucast eth1 198.18.0.2", "eth1 198.18.0.2"),
    "udp": ("udp eth1", "eth0 eth1"),
    "ping": ("ping 192.168.1.1", "192.168.1.1"),
    "ping_group": ("ping_group uplink 10.0.0.1 10.0.0.2", "uplink 10.0.0.1 10.0.0.2"),
    "node": ("node c", "a b c"),
    "autojoin": ("autojoin none", "none"),
    "hopfudge": ("hopfudge 3", "3"),
    "cluster": ("cluster pbx", "pbx"),
    "uuidfrom": ("uuidfrom nodename", "nodename"),
    "hbgenmethod": ("hbgenmethod time", "time"),
    "auto_failback": ("auto_failback on", "on"),
    "nice_failback": ("nice_failback on", "on"),
    "crm": ("crm off", "off"),
    "pacemaker": ("pacemaker no", "no"),
    "stonith": ("stonith external/ssh /etc/ha.d/stonith.cfg",
                "external/ssh /etc/ha.d/stonith.cfg"),
    "stonith_host": ("stonith_host * external/ssh hostlist=b", "* external/ssh hostlist=b"),
    "watchdog": ("watchdog /dev/watchdog", "/dev/watchdog"),
    "respawn": ("respawn hacluster /usr/lib/heartbeat/ipfail",
                "hacluster /usr/lib/heartbeat/ipfail"),
    "env": ("env LOGLEVEL=debug", "LOGLEVEL=debug"),
    "apiauth": ("apiauth ipfail gid=haclient uid=hacluster", "ipfail gid=haclient uid=hacluster"),
    "logfile": ("logfile /var/log/ha-log", "/var/log/ha-log"),
    "debugfile": ("debugfile /var/log/ha-debug", "/var/log/ha-debug"),
    "logfacility": ("logfacility daemon", "daemon"),
    "use_logd": ("use_logd yes", "yes"),
    "log_badpack": ("log_badpack off", "off"),
    "debug": ("debug 1", "1"),
    "realtime": ("realtime no", "no"),
    "rtprio": ("rtprio 5", "5"),
    "coredumps": ("coredumps no", "no"),
    "msgfmt": ("msgfmt classic", "classic"),
    "traditional_compression": ("traditional_compression no", "no"),
    "use_apphbd": ("use_apphbd no", "no"),
    "nonstop_monitor": ("nonstop_monitor 5", "5"),
    "nonstop_sync": ("nonstop_sync /etc/csync2.cfg", "/etc/csync2.cfg"),
    "nonstop_mailrelay": ("nonstop_mailrelay smtp.example.com:587", "smtp.example.com:587"),
    "nonstop_notify": ("nonstop_notify /usr/local/bin/page-oncall", "/usr/local/bin/page-oncall"),
    "nonstop_metrics": ("nonstop_metrics 9464", "9464"),
    "nonstop_etcd": ("nonstop_etcd http://198.18.0.1:2379 prefix=/nonstop/x",
                     "http://198.18.0.1:2379 prefix=/nonstop/x"),
    "nonstop_address_probe": ("nonstop_address_probe 0", "0"),
}


def test_every_spec_directive_is_in_the_table() -> None:
    assert len(set(SPEC_DIRECTIVES)) == len(SPEC_DIRECTIVES)
    assert set(SPEC_DIRECTIVES) | set(NONSTOP_DIRECTIVES) == set(DIRECTIVES)


def test_nonstop_directives_are_prefixed() -> None:
    assert all(n.startswith("nonstop_") for n in NONSTOP_DIRECTIVES)
    assert not any(n.startswith("nonstop_") for n in SPEC_DIRECTIVES)


def test_examples_cover_honoured() -> None:
    honoured = {d.name for d in DIRECTIVES.values() if d.support is Support.HONOURED}
    assert honoured == set(EXAMPLES)


@pytest.mark.parametrize("name", SPEC_DIRECTIVES)
def test_spec_directive_honoured_or_refused(tmp_path: Path, name: str) -> None:
    d = DIRECTIVES[name]
    assert d.text.strip(), f"{name} has no description or reason"
    if d.support is Support.HONOURED:
        line, recorded = EXAMPLES[name]
        path = tmp_path / "ha.cf"
        path.write_text(BASE + line + "\n")
        res = check_hacf(str(path))
        assert res.errors == ()
        cfg = res.unwrap()
        key = "auto_failback" if name == "nice_failback" else "bcast" if name == "udp" else name
        assert cfg.parameters[key] == recorded
        # list directives keep the line of their first use
        first = {"bcast": 1, "node": 2}.get(key, BASE_LINES + 1)
        assert cfg.locations[key].line == first
        assert cfg.locations[name].line == (first if name != "udp" else BASE_LINES + 1)
    else:
        path = tmp_path / "ha.cf"
        path.write_text(BASE + f"{name} something\n")
        res = check_hacf(str(path))
        assert res.value is None
        (err,) = res.errors
        assert err.loc.line == BASE_LINES + 1
        assert err.message == f"directive '{name}' is not supported by nonstop: {d.text}"


def test_honoured_directives_change_the_model(tmp_path: Path) -> None:
    """Not only recorded: each example moves at least one field away from the defaults."""
    path = tmp_path / "ha.cf"
    path.write_text(BASE)
    base = check_hacf(str(path)).unwrap()
    ignore = {"parameters", "locations", "warnings"}
    unchanged_by_design = {
        # the example repeats the default value; the table text says what it does
        "udpport", "autojoin", "crm", "pacemaker", "traditional_compression", "use_apphbd",
        "use_logd", "nice_failback",
    }  # fmt: skip
    for name, (line, _) in EXAMPLES.items():
        path.write_text(BASE + line + "\n")
        cfg = check_hacf(str(path)).unwrap()
        changed = {f for f in vars(cfg) if f not in ignore and getattr(cfg, f) != getattr(base, f)}
        assert bool(changed) != (name in unchanged_by_design), (name, changed)


def _doc_row(d: Directive) -> str:
    """The row docs/CONFIG.md shows for a directive (the table there is generated this way)."""
    default = (
        f"`{d.default}`"
        if d.default and d.default not in ("computed", "deadtime/2")
        else (d.default or "")
    )
    kind = "" if d.kind is Kind.OPTIONS else " (whole line)"
    return f"| `{d.name}` | {d.support.value} | {default} | {d.text}{kind} |"


def test_config_doc_lists_every_directive() -> None:
    doc = (Path(__file__).parents[3] / "docs" / "CONFIG.md").read_text()
    rows = re.findall(r"^\| `[a-z_0-9]+` \| (?:honoured|rejected) \|.*$", doc, re.M)
    assert rows == [_doc_row(d) for d in DIRECTIVES.values()]
