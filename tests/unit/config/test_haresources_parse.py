"""haresources: the talk's line, preprocessing, IP shorthand, IP specs, keys, errors with lines."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest

from nonstop.config.errors import ConfigErrors
from nonstop.config.haresources import check_haresources, parse_haresources, parse_ip_spec
from nonstop.config.model import IPSpec, ResourceGroup, ResourceSpec
from nonstop.talk import copy_talk

NODES = ("vpbx1-1", "vpbx1-2")


def write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "haresources"
    p.write_text(text)
    return str(p)


def groups(tmp_path: Path, text: str) -> tuple[ResourceGroup, ...]:
    return parse_haresources(write(tmp_path, text), NODES)


def errors(tmp_path: Path, text: str) -> list[str]:
    res = check_haresources(write(tmp_path, text), NODES)
    assert res.value is None
    return [f"{e.loc.line}: {e.message}" for e in res.errors]


def test_talk_line(tmp_path: Path) -> None:
    path = str(copy_talk(tmp_path) / "ha.d" / "haresources")
    (g,) = parse_haresources(path, NODES)
    assert g.node == "vpbx1-1"
    assert g.loc.line == 1 and g.loc.file == path
    assert g.resources == (
        ResourceSpec(
            "MailTo", ("tech@webinmotion.ca", "Asterisk"), "MailTo::tech@webinmotion.ca::Asterisk"
        ),
        ResourceSpec("IPaddr", ("10.0.10.10/24/eth0",), "10.0.10.10/24/eth0"),
        ResourceSpec("asterisk", (), "asterisk"),
        ResourceSpec("master", (), "master"),
    )
    assert g.key == "MailTo::tech@webinmotion.ca::Asterisk"
    assert [str(r) for r in g.resources][1] == "10.0.10.10/24/eth0"


def test_preprocessing(tmp_path: Path) -> None:
    gs = groups(
        tmp_path,
        "# comment\n"  # 1
        "\n"  # 2
        "  VPBX1-1 \t 198.18.0.10   asterisk # trailing comment\n"  # 3
        "vpbx1-2 198.18.0.11/24/eth1 \\\n"  # 4
        "    Filesystem::/dev/sda1::/data1::ext2 \\\n"  # 5
        "    mysql\n"  # 6
        "vpbx1-2 app\\\n"  # 7: no blank before the backslash: the words join
        "2\n",  # 8
    )
    assert [(g.node, g.loc.line, [r.raw for r in g.resources]) for g in gs] == [
        ("vpbx1-1", 3, ["198.18.0.10", "asterisk"]),
        ("vpbx1-2", 4, ["198.18.0.11/24/eth1", "Filesystem::/dev/sda1::/data1::ext2", "mysql"]),
        ("vpbx1-2", 7, ["app2"]),
    ]
    assert gs[1].resources[1].args == ("/dev/sda1", "/data1", "ext2")


def test_ip_shorthand_and_explicit_ipaddr(tmp_path: Path) -> None:
    (g,) = groups(tmp_path, "vpbx1-1 10.0.0.1 IPaddr::10.0.0.2/24 IPaddr2::10.0.0.3/24\n")
    assert [(r.name, r.args) for r in g.resources] == [
        ("IPaddr", ("10.0.0.1",)),
        ("IPaddr", ("10.0.0.2/24",)),
        ("IPaddr2", ("10.0.0.3/24",)),
    ]


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("10.0.10.10", (IPv4Address("10.0.10.10"), None, None, None)),
        ("10.0.10.10/24", (IPv4Address("10.0.10.10"), 24, None, None)),
        ("10.0.10.10/24/eth0", (IPv4Address("10.0.10.10"), 24, "eth0", None)),
        (
            "10.0.10.10/24/eth0/10.0.10.255",
            (IPv4Address("10.0.10.10"), 24, "eth0", IPv4Address("10.0.10.255")),
        ),
        (
            "10.0.10.10/24/10.0.10.127",
            (IPv4Address("10.0.10.10"), 24, None, IPv4Address("10.0.10.127")),
        ),
        ("198.18.0.10/32/ns1-n1veth", (IPv4Address("198.18.0.10"), 32, "ns1-n1veth", None)),
    ],
)
def test_ip_specs(
    text: str, spec: tuple[IPv4Address, int | None, str | None, IPv4Address | None]
) -> None:
    parsed = parse_ip_spec(text)
    assert isinstance(parsed, IPSpec)
    assert (parsed.ip, parsed.cidr, parsed.iface, parsed.broadcast) == spec
    assert str(parsed) == text


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("10.0.10.300", "address '10.0.10.300' is not an IPv4 address"),
        ("10.0.10.10/33", "must be CIDR bits 1..32"),
        ("10.0.10.10/0", "must be CIDR bits 1..32"),
        ("10.0.10.10/255.0.255.0", "or a dotted-quad netmask"),
        ("10.0.10.10/0.0.0.255", "or a dotted-quad netmask"),
        ("10.0.10.10/0.0.0.0", "or a dotted-quad netmask"),
        ("10.0.10.10//eth0", "is not an IP spec"),
        ("10.0.10.10/24/eth0/10.0.10.255/x", "is not an IP spec"),
        ("10.0.10.10/24/10.0.10.255/eth0", "so it is the broadcast address"),
        ("10.0.10.10/24/eth0/bcast", "broadcast 'bcast' is not an IPv4 address"),
        ("10.0.10.10/24/averyveryverylongname", "not a network interface name"),
        ("10.0.10.10/", "is not an IP spec"),
    ],
)
def test_bad_ip_specs(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_ip_spec(text)


@pytest.mark.parametrize(
    ("text", "cidr", "iface"),
    [
        ("10.0.0.5/255.255.255.0/eth0", 24, "eth0"),
        ("10.0.0.5/255.255.0.0", 16, None),
        ("10.0.0.5/255.255.255.252/eth1/10.0.0.7", 30, "eth1"),
        ("10.0.0.5/255.255.255.255", 32, None),
    ],
)
def test_dotted_quad_netmasks_as_findif_accepts_them(text: str, cidr: int,
                                                     iface: str | None) -> None:
    parsed = parse_ip_spec(text)
    assert (parsed.cidr, parsed.iface, parsed.raw) == (cidr, iface, text)


def test_unknown_node_names_the_line(tmp_path: Path) -> None:
    assert errors(tmp_path, "vpbx1-1 a\n\nvpbx1-3 b\n") == [
        "3: Bad nodename in haresources [vpbx1-3]: not a node of ha.cf (nodes: vpbx1-1, vpbx1-2)"
    ]


def test_node_check_skipped_without_nodes(tmp_path: Path) -> None:
    res = check_haresources(write(tmp_path, "anyone a\n"), None)
    assert res.value is not None and res.value[0].node == "anyone"


def test_duplicate_group_key(tmp_path: Path) -> None:
    assert errors(tmp_path, "vpbx1-1 10.0.0.1 a\nvpbx1-2 10.0.0.1 b\n") == [
        "2: group key '10.0.0.1' (the first resource) is already the key of the group at "
        "line 1; the first resource of a line must be unique"
    ]


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("vpbx1-1", "node 'vpbx1-1' has no resources on this line"),
        ("vpbx1-1 ::x", "'' is not a resource script name"),
        ("vpbx1-1 ../bin/sh", "'../bin/sh' is not a resource script name"),
        ("vpbx1-1 foo::", "has an empty argument"),
        ("vpbx1-1 foo::a::::b", "has an empty argument"),
        ("vpbx1-1 MailTo", "MailTo takes an address list and an optional subject"),
        ("vpbx1-1 MailTo::a@b::s::x", "MailTo takes an address list and an optional subject"),
        ("vpbx1-1 IPaddr", "IPaddr takes one argument"),
        ("vpbx1-1 IPaddr::10.0.0.1::x", "IPaddr takes one argument"),
        ("vpbx1-1 10.0.0.1/24/eth0/1.2.3.4/5", "is not an IP spec"),
        ("vpbx1-1 1.2.3.4x", "address '1.2.3.4x' is not an IPv4 address"),
    ],
)
def test_bad_resources(tmp_path: Path, line: str, fragment: str) -> None:
    (err,) = errors(tmp_path, line + "\n")
    assert err.startswith("1: ") and fragment in err


def test_backslash_at_end_of_file(tmp_path: Path) -> None:
    assert errors(tmp_path, "vpbx1-1 a \\\n") == [
        "1: the last line ends with '\\' but the file ends"
    ]


def test_many_errors_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "bad a\nvpbx1-1 10.0.0.999\nvpbx1-2 ok\nvpbx1-2 ok\nvpbx1-1 x:: y::\n")
    with pytest.raises(ConfigErrors) as info:
        parse_haresources(path, NODES)
    assert [(e.loc.file, e.loc.line) for e in info.value.errors] == [
        (path, 1),
        (path, 2),
        (path, 4),
        (path, 5),
        (path, 5),
    ]


def test_ocf_agents_can_be_named(tmp_path: Path) -> None:
    from nonstop.resources.base import AgentContext, make_agent
    from nonstop.resources.scripts import OcfAgent

    path = tmp_path / "haresources"
    path.write_text("vpbx1-1 ocf:heartbeat:IPaddr2::ip=198.18.0.11::cidr_netmask=24 asterisk\n")
    (g,) = parse_haresources(str(path), NODES)
    spec = g.resources[0]
    assert spec.name == "ocf:heartbeat:IPaddr2"
    assert spec.args == ("ip=198.18.0.11", "cidr_netmask=24")
    agent = make_agent(spec, AgentContext(node="vpbx1-1", config_dir=tmp_path))
    assert isinstance(agent, OcfAgent)
    path.write_text("vpbx1-1 ocf:heartbeat:\n")
    with pytest.raises(ConfigErrors, match="not a resource script name"):
        parse_haresources(str(path), NODES)
