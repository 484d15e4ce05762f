"""Parse ``haresources``: one resource group per logical line, preferred node first.

Grammar (Heartbeat's ResourceManager)::

    node resource [resource ...]        resource := IP-spec | Script | Script::arg[::arg...]

``#`` starts a comment, a line ending in ``\\`` continues on the next one, runs of blanks are
one separator, the node name is lowercased. A resource that looks like an IPv4 address is
IPaddr shorthand: ``10.0.10.10/24/eth0`` means ``IPaddr::10.0.10.10/24/eth0``. The first
resource of a line is the group's key and must be unique in the file.

One deliberate difference: Heartbeat strips comments before joining continued lines, so a
``#`` on a continuation line becomes resources there; here a comment ends at its own line.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from nonstop.config.errors import ConfigError, Location
from nonstop.config.model import IPSpec, Parsed, ResourceGroup, ResourceSpec
from nonstop.config.reading import read_config_lines
from nonstop.config.settings import IFNAMSIZ
from nonstop.errors import InvalidValue

# ResourceManager's test for IP shorthand is this shell glob: [0-9]*.[0-9]*.[0-9]*.[0-9]*
_LOOKS_LIKE_IP = re.compile(r"[0-9].*\.[0-9].*\.[0-9].*\.[0-9].*", re.DOTALL)
_SCRIPT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")
# An OCF agent from resource-agents: ocf:<provider>:<type>, e.g. ocf:heartbeat:IPaddr2.
_OCF_NAME = re.compile(r"ocf:[A-Za-z0-9_][A-Za-z0-9_.+-]*:[A-Za-z0-9_][A-Za-z0-9_.+-]*")
# An OCF agent's argument is name=value (OCF_RESKEY_name); the name is a shell variable name.
_OCF_PARAM = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", re.DOTALL)
_ASCII_DIGITS = "0123456789"
# The agents nonstop runs natively; each takes exactly one argument, the IP spec.
NATIVE_IP_AGENTS = ("IPaddr", "IPaddr2")


def parse_ip_spec(text: str) -> IPSpec:
    """Parse an IPaddr argument: ``ip[/cidr[/iface[/broadcast]]]`` or ``ip/cidr/broadcast``.

    As in Heartbeat's IPaddr, a third field starting with a digit is the broadcast address,
    otherwise it is the interface and a fourth field is the broadcast. Raises ValueError.
    """
    fields = text.split("/")
    if len(fields) > 4 or any(not f for f in fields):
        raise InvalidValue(
            f"'{text}' is not an IP spec: write ip[/cidr[/iface[/broadcast]]], "
            "e.g. 10.0.10.10/24/eth0"
        )
    ip = _ipv4(fields[0], "address", text)
    cidr: int | None = None
    iface: str | None = None
    broadcast: ipaddress.IPv4Address | None = None
    if len(fields) >= 2:
        cidr = _netmask_bits(fields[1], text)
    if len(fields) >= 3:
        if fields[2][0] in _ASCII_DIGITS:
            if len(fields) == 4:
                raise InvalidValue(
                    f"'{text}': the third field '{fields[2]}' starts with a digit, so it is the "
                    "broadcast address, and nothing may follow it"
                )
            broadcast = _ipv4(fields[2], "broadcast", text)
        else:
            iface = _interface(fields[2], text)
    if len(fields) == 4:
        broadcast = _ipv4(fields[3], "broadcast", text)
    return IPSpec(ip=ip, cidr=cidr, iface=iface, broadcast=broadcast, raw=text)


def _netmask_bits(field: str, text: str) -> int:
    """CIDR bits, or a dotted-quad netmask (``255.255.255.0``) as Heartbeat's findif also
    accepts one; the ones of a netmask must be contiguous."""
    # ASCII digits only: str.isdigit() also takes '٢٤' and '²', which no netmask is.
    if field.isascii() and field.isdigit() and 1 <= int(field) <= 32:
        return int(field)
    if "." in field:
        try:
            bits = ipaddress.IPv4Network(f"0.0.0.0/{field}").prefixlen
        except ValueError:
            pass
        else:
            if bits >= 1 and not field.startswith("0"):
                return bits
    raise InvalidValue(f"'{text}': netmask '{field}' must be CIDR bits 1..32 or a dotted-quad "
                       "netmask such as 255.255.255.0")


def _interface(field: str, text: str) -> str:
    """The interface field: a Linux interface name (at most IFNAMSIZ bytes, no '.'/'..'),
    optionally ``name:label`` as IPaddr2 takes it (IPaddr ignores the label); the whole
    field must fit in IFNAMSIZ, as the label the kernel keeps is that whole text."""
    base = field.split(":", 1)[0]
    if len(field.encode()) > IFNAMSIZ or base in ("", ".", ".."):
        raise InvalidValue(f"'{text}': '{field}' is not a network interface name (at most "
                           f"{IFNAMSIZ} bytes, optionally name:label)")
    return field


def _ipv4(field: str, what: str, text: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(field)
    except ValueError:
        raise InvalidValue(f"'{text}': {what} '{field}' is not an IPv4 address") from None


def parse_resource(raw: str) -> ResourceSpec:
    """One resource as written on a haresources line; raises ValueError if malformed."""
    if _LOOKS_LIKE_IP.fullmatch(raw):
        spec = ResourceSpec(name="IPaddr", args=(raw,), raw=raw)
    else:
        name, *args = raw.split("::")
        spec = ResourceSpec(name=name, args=tuple(args), raw=raw)
    if not (_SCRIPT_NAME.fullmatch(spec.name) or _OCF_NAME.fullmatch(spec.name)):
        raise InvalidValue(f"resource '{raw}': '{spec.name}' is not a resource script name "
                           "(nor ocf:<provider>:<type>)")
    if any(not a for a in spec.args):
        raise InvalidValue(f"resource '{raw}' has an empty argument (between '::' separators)")
    _check_known_agent(spec)
    return spec


def _check_known_agent(spec: ResourceSpec) -> None:
    """Argument checks for the agents nonstop implements itself, and for the name=value form
    of OCF agents, so that every argument the agents would refuse at start shows at load."""
    if spec.name in NATIVE_IP_AGENTS:
        if len(spec.args) != 1:
            raise InvalidValue(
                f"resource '{spec.raw}': {spec.name} takes one argument, the IP spec "
                f"({spec.name}::ip[/cidr[/iface[/broadcast]]]), not {len(spec.args)}"
            )
        parse_ip_spec(spec.args[0])
    elif spec.name == "MailTo":
        if not 1 <= len(spec.args) <= 2:
            raise InvalidValue(
                f"resource '{spec.raw}': MailTo takes an address list and an optional subject "
                "(MailTo::addr[,addr...][::subject])"
            )
        if not any(a.strip() for a in spec.args[0].split(",")):
            raise InvalidValue(f"resource '{spec.raw}': At least 1 Email address has to be given!")
    elif _OCF_NAME.fullmatch(spec.name):
        _check_ocf_params(spec)


def _check_ocf_params(spec: ResourceSpec) -> None:
    """``name=value`` arguments; for resource-agents' IPaddr/IPaddr2, an ``ip`` that is an
    address of the family the agent manages (IPaddr: IPv4; IPaddr2: IPv4 or IPv6)."""
    params: dict[str, str] = {}
    for arg in spec.args:
        m = _OCF_PARAM.fullmatch(arg)
        if m is None:
            raise InvalidValue(f"resource '{spec.raw}': OCF parameter '{arg}' is not name=value")
        params[m[1]] = m[2]
    rtype = spec.name.rsplit(":", 1)[1]
    if not spec.name.startswith("ocf:heartbeat:") or rtype not in NATIVE_IP_AGENTS:
        return
    ip = params.get("ip")
    if not ip:
        raise InvalidValue(f"resource '{spec.raw}': {rtype} needs ip=<address>")
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        address = None
    if address is None or (rtype == "IPaddr" and address.version != 4):
        family = "an IPv4" if rtype == "IPaddr" else "an IP"
        raise InvalidValue(f"resource '{spec.raw}': ip '{ip}' is not {family} address")


def managed_address(spec: ResourceSpec) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address an IPaddr/IPaddr2 resource (native or resource-agents') adds, if any."""
    if spec.name in NATIVE_IP_AGENTS:
        return parse_ip_spec(spec.args[0]).ip
    if spec.name in (f"ocf:heartbeat:{a}" for a in NATIVE_IP_AGENTS):
        for arg in spec.args:
            if arg.startswith("ip="):
                return ipaddress.ip_address(arg[3:])
    return None


def _repeated_addresses(groups: Sequence[ResourceGroup]) -> list[ConfigError]:
    """Each address once in the file: two resources of one address (10.0.0.1/24/eth0 and
    IPaddr2::10.0.0.1 in groups preferring two nodes) would each add it, both nodes hold it."""
    seen: dict[ipaddress.IPv4Address | ipaddress.IPv6Address, tuple[int, str]] = {}
    errors = []
    for group in groups:
        for spec in group.resources:
            if (ip := managed_address(spec)) is None:
                continue
            if ip in seen:
                line, first = seen[ip]
                errors.append(ConfigError(
                    group.loc, f"resource '{spec.raw}': address {ip} is already the resource "
                               f"'{first}' at line {line}; give each address one resource (two "
                               f"would each add it, and two nodes could hold it at once)"))
            else:
                seen[ip] = (group.loc.line, spec.raw)
    return errors


def _logical_lines(lines: list[str], path: str) -> tuple[list[tuple[int, str]], list[ConfigError]]:
    """Comment-free logical lines with the number of the line each starts on."""
    out: list[tuple[int, str]] = []
    errors: list[ConfigError] = []
    pending: tuple[int, str] | None = None
    for n, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0]
        if pending is not None:
            start, text = pending[0], pending[1] + text
        else:
            start = n
        if text.endswith("\\"):
            pending = (start, text[:-1])
            continue
        pending = None
        out.append((start, text))
    if pending is not None:
        errors.append(
            ConfigError(
                Location(path, pending[0]), "the last line ends with '\\' but the file ends"
            )
        )
        out.append(pending)
    return out, errors


def check_haresources(path: str, nodes: Sequence[str] | None) -> Parsed[tuple[ResourceGroup, ...]]:
    """Read haresources: its groups (None if any error) and every error.

    ``nodes`` are ha.cf's node names; None skips the node check (ha.cf itself was broken).
    """
    lines, errors = read_config_lines(path)
    if lines is None:
        return Parsed(None, tuple(errors))
    logical, join_errors = _logical_lines(lines, path)
    errors.extend(join_errors)
    groups: list[ResourceGroup] = []
    keys: dict[str, int] = {}
    for n, text in logical:
        loc = Location(path, n)
        words = text.split()
        if not words:
            continue
        node = words[0].lower()
        if nodes is not None and node not in nodes:
            known = ", ".join(nodes) or "none"
            errors.append(
                ConfigError(
                    loc,
                    f"Bad nodename in haresources [{words[0]}]: not a node of ha.cf "
                    f"(nodes: {known})",
                )
            )
        if len(words) == 1:
            errors.append(ConfigError(loc, f"node '{node}' has no resources on this line"))
            continue
        resources: list[ResourceSpec] = []
        for word in words[1:]:
            try:
                resources.append(parse_resource(word))
            except ValueError as e:
                errors.append(ConfigError(loc, str(e)))
        if len(resources) != len(words) - 1:
            continue
        group = ResourceGroup(node=node, resources=tuple(resources), loc=loc)
        if group.key in keys:
            errors.append(
                ConfigError(
                    loc,
                    f"group key '{group.key}' (the first resource) is already the key of the "
                    f"group at line {keys[group.key]}; the first resource of a line must be unique",
                )
            )
            continue
        keys[group.key] = n
        groups.append(group)
    errors.extend(_repeated_addresses(groups))
    if errors:
        return Parsed(None, tuple(errors))
    return Parsed(tuple(groups))


def parse_haresources(path: str, nodes: Sequence[str]) -> tuple[ResourceGroup, ...]:
    """Read haresources; raise ConfigErrors naming every problem as ``file:line``."""
    return check_haresources(path, nodes).unwrap()
