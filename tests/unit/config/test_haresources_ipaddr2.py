"""IPaddr2 (and every agent argument) is checked when haresources is loaded, as IPaddr is:
a bad one is a ``haresources:LINE`` error of ``check --offline``, ``check`` and ``run`` (exit
6), never an agent that fails to configure when the daemon starts (a traceback that killed
both nodes). Arguments Heartbeat 3.0.6 accepts (IPaddr2's ``nic:label``, odd but valid
script and MailTo arguments) load and build their agent."""

from __future__ import annotations

import asyncio
import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from nonstop.cli import cli
from nonstop.config.haresources import check_haresources, parse_haresources, parse_resource
from nonstop.config.model import ResourceSpec
from nonstop.lab.hbconfig import set_directives
from nonstop.preflight import _ip_problem
from nonstop.resources import netlink
from nonstop.resources.base import AgentContext, ResourceError, make_agent
from nonstop.resources.ipaddr import IPAddrAgent
from nonstop.resources.mailto import MailToAgent
from nonstop.resources.scripts import OcfAgent, ScriptAgent
from nonstop.runcommand import EXIT_NOT_CONFIGURED
from nonstop.talk import copy_talk

NODES = ("vpbx1-1", "vpbx1-2")
GOOD_LINE = "vpbx1-1 127.0.0.77/8/lo master\n"


def _errors(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "haresources"
    path.write_text(text)
    res = check_haresources(str(path), NODES)
    assert res.value is None
    return [f"{e.loc.line}: {e.message}" for e in res.errors]


@pytest.mark.parametrize(
    ("resource", "fragment"),
    [
        ("IPaddr2::198.18.0.300/24", "address '198.18.0.300' is not an IPv4 address"),
        ("IPaddr2::198.18.0.40/24/eth0::extra", "IPaddr2 takes one argument, the IP spec"),
        ("IPaddr2", "IPaddr2 takes one argument, the IP spec"),
        ("IPaddr2::198.18.0.40/33", "must be CIDR bits 1..32"),
        ("IPaddr2::198.18.0.40/24/eth0/10.0.0.1/x", "is not an IP spec"),
        # str.isdigit() takes Arabic-Indic digits; no netmask is written so.
        ("IPaddr2::198.18.0.40/\u0662\u0664", "must be CIDR bits 1..32"),
        ("IPaddr::198.18.0.40/\u00b2", "must be CIDR bits 1..32"),
        # 8 characters, 16 bytes: no Linux interface name (IFNAMSIZ counts bytes).
        ("IPaddr2::198.18.0.40/24/\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9",
         "is not a network interface name"),
        ("IPaddr2::198.18.0.40/24/:web", "is not a network interface name"),
        ("IPaddr2::198.18.0.40/24/eth0:a-long-label", "is not a network interface name"),
        pytest.param("IPaddr2::" + "9" * 5000, "is not an IPv4 address", id="very-long"),
        ("ocf:heartbeat:IPaddr2::ip=198.18.0.300", "ip '198.18.0.300' is not an IP address"),
        ("ocf:heartbeat:IPaddr2::cidr_netmask=24", "IPaddr2 needs ip=<address>"),
        ("ocf:heartbeat:IPaddr2", "IPaddr2 needs ip=<address>"),
        ("ocf:heartbeat:IPaddr2::ip", "OCF parameter 'ip' is not name=value"),
        ("ocf:heartbeat:IPaddr2::ip=198.18.0.40::9x=1", "OCF parameter '9x=1' is not name=value"),
        ("ocf:heartbeat:IPaddr::ip=2001:db8:0:0:0:0:0:1", "is not an IPv4 address"),
        ("ocf:heartbeat:Dummy::nonsense", "OCF parameter 'nonsense' is not name=value"),
        ("MailTo::,", "At least 1 Email address has to be given!"),
        ("MailTo::,,::subject", "At least 1 Email address has to be given!"),
    ],
)
def test_bad_arguments_are_errors_of_their_line(tmp_path: Path, resource: str,
                                                fragment: str) -> None:
    (err,) = _errors(tmp_path, f"{GOOD_LINE}vpbx1-2 {resource}\n")
    assert err.startswith("2: ") and fragment in err, err


@pytest.mark.parametrize(
    "resource",
    [
        "IPaddr2::198.18.0.40",
        "IPaddr2::198.18.0.40/24/eth0/198.18.0.255",
        "IPaddr2::198.18.0.40/24/eth0:web",  # IPaddr2's nic:label
        "IPaddr::198.18.0.40/24/eth0:0",  # IPaddr drops the label (OCF IPaddr does)
        "ocf:heartbeat:IPaddr2::ip=198.18.0.40::cidr_netmask=24",
        "ocf:heartbeat:IPaddr2::ip=2001:db8:0:0:0:0:0:1",
        "MailTo::root@localhost,::S\u00fcbject",
        pytest.param("svc::\u00e4rg::a:b::" + "x" * 5000, id="script-long-non-ascii"),
    ],
)
def test_arguments_heartbeat_accepts_load(tmp_path: Path, resource: str) -> None:
    path = tmp_path / "haresources"
    path.write_text(f"vpbx1-2 {resource}\n")
    (g,) = parse_haresources(str(path), NODES)
    assert g.resources[0].raw == resource


def _talk_dir(tmp_path: Path, haresources: str) -> Path:
    d = copy_talk(tmp_path) / "ha.d"
    ha_cf = d / "ha.cf"
    ha_cf.write_text(set_directives(ha_cf.read_text(), {"bcast": "lo"}))
    (d / "haresources").write_text(haresources)
    return d


BAD_IPADDR2 = ["IPaddr2::198.18.0.300/24", "IPaddr2::198.18.0.40/24/eth0::extra", "IPaddr2"]


@pytest.mark.parametrize("resource", BAD_IPADDR2)
def test_check_offline_and_check_refuse_a_bad_ipaddr2(tmp_path: Path, resource: str) -> None:
    d = _talk_dir(tmp_path, f"{GOOD_LINE}vpbx1-2 {resource}\n")
    for extra in (["--offline"], []):
        result = CliRunner().invoke(cli, ["check", "--config-dir", str(d), "--node", "vpbx1-1",
                                          *extra])
        assert isinstance(result.exception, SystemExit), result.exception
        assert result.exit_code == 1, result.output
        assert any(t.startswith(f"{d / 'haresources'}:2: ")
                   for t in result.stderr.splitlines()), result.stderr


def test_run_refuses_a_bad_ipaddr2_with_its_line_and_exit_6(tmp_path: Path) -> None:
    d = _talk_dir(tmp_path, f"{GOOD_LINE}vpbx1-2 IPaddr2::198.18.0.300/24\n")
    done = subprocess.run([sys.executable, "-m", "nonstop", "run", "--config-dir", str(d),
                           "--state-dir", str(tmp_path / "state"), "--node", "vpbx1-1"],
                          capture_output=True, text=True, timeout=60)
    assert "Traceback" not in done.stderr
    assert done.returncode == EXIT_NOT_CONFIGURED == 6, done.stderr
    assert done.stderr.splitlines()[-2:] == [
        f"{d / 'haresources'}:2: '198.18.0.300/24': address '198.18.0.300' is not an IPv4 "
        "address",
        "Configuration error, nonstop not started."]


@pytest.mark.parametrize(
    "spec",
    [
        ResourceSpec("IPaddr2", ("198.18.0.300/24",), "IPaddr2::198.18.0.300/24"),
        ResourceSpec("IPaddr2", (), "IPaddr2"),
        ResourceSpec("IPaddr", ("198.18.0.4/24", "x"), "IPaddr::198.18.0.4/24::x"),
        ResourceSpec("IPaddr", ("",), "IPaddr::"),
    ],
)
def test_preflight_ip_problem_reports_what_it_cannot_parse(spec: ResourceSpec) -> None:
    problem = _ip_problem(spec)
    assert problem is not None and problem.startswith(f"{spec.raw}: ")


# Resource words made of the pieces that matter: agent names, separators, IP-like fields,
# OCF parameters, non-ASCII text.
_piece = st.sampled_from([
    "IPaddr", "IPaddr2", "MailTo", "svc", "ocf:heartbeat:IPaddr2", "ocf:heartbeat:Dummy",
    "ocf:x:", "::", ":", "/", ",", "=", "ip=", "198.18.0.4", "300", "24", "255.255.255.0",
    "eth0", "lo", "web", "\u00e9", "\u0662", "a@b", "x" * 20,
])
_word = st.lists(_piece, min_size=1, max_size=8).map("".join)


@settings(max_examples=400, deadline=None)
@given(_word)
def test_whatever_loads_configures(word: str) -> None:
    """No argument the loader accepts makes an agent fail to configure, or preflight raise."""
    try:
        spec = parse_resource(word)
    except ValueError:
        return
    ctx = AgentContext(node="vpbx1-1", config_dir=Path("/nonexistent/ha.d"),
                       init_dir=Path("/nonexistent/init.d"), ocf_root=Path("/nonexistent/ocf"))
    try:
        make_agent(spec, ctx)
    except ResourceError as e:
        assert e.action == "locate", e  # a missing script is a fact of the machine
    if spec.name in ("IPaddr", "IPaddr2"):
        _ip_problem(spec)


def test_the_agents_of_odd_accepted_arguments(tmp_path: Path) -> None:
    (tmp_path / "resource.d").mkdir()
    svc = tmp_path / "resource.d" / "svc"
    svc.write_text("#!/bin/sh\nexit 0\n")
    svc.chmod(0o755)
    ctx = AgentContext(node="vpbx1-1", config_dir=tmp_path)
    mail = make_agent(parse_resource("MailTo::root@localhost,::S\u00fcbject"), ctx)
    assert isinstance(mail, MailToAgent) and mail.recipients == ("root@localhost",)
    script = make_agent(parse_resource("svc::\u00e4rg::a:b"), ctx)
    assert isinstance(script, ScriptAgent) and script.args == ("\u00e4rg", "a:b")
    ip = make_agent(parse_resource("IPaddr2::198.18.0.40/24/eth0:web"), ctx)
    assert isinstance(ip, IPAddrAgent)
    ocf_ctx = AgentContext(node="vpbx1-1", config_dir=tmp_path, ocf_root=tmp_path / "ocf")
    agent = tmp_path / "ocf" / "resource.d" / "heartbeat" / "IPaddr2"
    agent.parent.mkdir(parents=True)
    agent.write_text("#!/bin/sh\nexit 0\n")
    agent.chmod(0o755)
    ocf = make_agent(parse_resource("ocf:heartbeat:IPaddr2::ip=198.18.0.40"), ocf_ctx)
    assert isinstance(ocf, OcfAgent) and ocf.params == {"ip": "198.18.0.40"}


class _Links:
    """netlink as the agent sees it, recorded: eth0 with no address yet."""

    def __init__(self) -> None:
        self.added: list[tuple[str, str, int, str | None]] = []

    def list_addresses(self) -> list[netlink.AddrInfo]:
        return []

    def add_address(self, ifname: str, ip: ipaddress.IPv4Address, prefixlen: int,
                    broadcast: ipaddress.IPv4Address | None, label: str | None) -> None:
        self.added.append((ifname, str(ip), prefixlen, label))

    def link_mac(self, ifname: str) -> str:
        raise netlink.NetlinkFailure("no gratuitous ARP in a unit test")


@pytest.mark.parametrize(
    ("resource", "added"),
    [
        ("IPaddr2::198.18.0.40/24/eth0:web", ("eth0", "198.18.0.40", 24, "eth0:web")),
        ("IPaddr2::198.18.0.40/24/eth0", ("eth0", "198.18.0.40", 24, None)),
        # IPaddr picks its own alias, as Heartbeat's IPaddr drops a given label.
        ("IPaddr::198.18.0.40/24/eth0:web", ("eth0", "198.18.0.40", 24, "eth0:0")),
    ],
)
def test_ipaddr2_nic_label_adds_the_address_on_the_nic_with_that_label(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, resource: str,
    added: tuple[str, str, int, str | None],
) -> None:
    links = _Links()
    monkeypatch.setattr(netlink, "list_addresses", links.list_addresses)
    monkeypatch.setattr(netlink, "add_address", links.add_address)
    monkeypatch.setattr(netlink, "link_mac", links.link_mac)
    agent = make_agent(parse_resource(resource), AgentContext(node="n", config_dir=tmp_path))
    assert isinstance(agent, IPAddrAgent)

    async def start() -> None:
        await agent.start()
        assert agent.announcement is not None
        await agent.announcement

    asyncio.run(start())
    assert links.added == [added]
    assert agent.held_on == "eth0"


def test_run_refuses_a_resource_script_that_is_not_there_with_its_line(tmp_path: Path) -> None:
    """A script named in haresources that neither resource.d nor /etc/init.d holds: `check`
    said so, but `run` died with a traceback and exit 1 when it built the group's agents."""
    d = _talk_dir(tmp_path, "vpbx1-1 127.0.0.77/8/lo master no-such-script-here\n")
    done = subprocess.run([sys.executable, "-m", "nonstop", "run", "--config-dir", str(d),
                           "--state-dir", str(tmp_path / "state"), "--node", "vpbx1-1"],
                          capture_output=True, text=True, timeout=60)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == EXIT_NOT_CONFIGURED, done.stderr
    assert done.stderr.splitlines()[-2:] == [
        f"{d / 'haresources'}:1: Cannot locate resource script no-such-script-here",
        "Configuration error, nonstop not started."]
