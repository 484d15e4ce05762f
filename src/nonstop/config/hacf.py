"""Parse and validate ``ha.cf`` (Heartbeat v1 syntax) into :class:`HaConfig`.

Every directive of Heartbeat's reference is in :data:`DIRECTIVES`: either honoured (it changes
the model) or rejected with the reason, so nothing in a file is silently ignored. The table is
data so that docs/CONFIG.md and the tests are checked against the same list. All errors of a
file are collected; each names ``file:line``.
"""

from __future__ import annotations

import contextlib
import difflib
import enum
import ipaddress
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from nonstop.config.errors import ConfigError, Location
from nonstop.config.model import (
    HEARTBEAT_PORT,
    AutoFailback,
    Bcast,
    ConfigWarning,
    HaConfig,
    Mcast,
    Medium,
    Parsed,
    Ucast,
)
from nonstop.config.reading import bad_byte_message, decode_line, read_config_bytes
from nonstop.config.units import format_msec, parse_bool, parse_msec

MAXLINE = 5120  # Heartbeat's line buffer; longer lines were split there, an error here
MAX_NODES = 100
MAX_NODE_NAME = 100
IFNAMSIZ = 15
# Heartbeat's option-list directives split their values on commas as well as whitespace.
_DELIMS = re.compile(r"[,\s]+")
_BLANKS = re.compile(r"\s+")

DEFAULT_KEEPALIVE_MS = 1000
DEFAULT_DEADTIME_MS = 30000
DEFAULT_MAX_REXMIT_DELAY_MS = 250

SYSLOG_FACILITIES = frozenset(
    {
        "auth", "authpriv", "cron", "daemon", "ftp", "kern", "lpr", "mail", "news",
        "syslog", "user", "uucp",
        "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
    }
)  # fmt: skip


class Kind(enum.Enum):
    """How the rest of a directive's line is split into values."""

    OPTIONS = "options"  # on commas and whitespace (Heartbeat's Directives[] table)
    LINE = "line"  # on whitespace only (whole-line directives and media plugins)


class Support(enum.Enum):
    HONOURED = "honoured"
    REJECTED = "rejected"


class _Bad(Exception):
    """A value a handler cannot accept; the message becomes a ConfigError at the line."""


# (builder, directive name, values, line) -> None; raises _Bad for a single-error line
Handler = Callable[["_Builder", str, list[str], Location], None]


@dataclass(frozen=True)
class Directive:
    """One ha.cf directive: how it is split, whether nonstop honours it, and what it means."""

    name: str
    kind: Kind
    support: Support
    # Honoured: what it does in nonstop. Rejected: why not.
    text: str
    default: str | None = None  # as recorded when absent ("computed" ones are filled later)
    handler: Handler | None = field(default=None, compare=False, repr=False)


# Every directive named in the spec's ha.cf reference (heartbeat-v1.md §1.1 and §1.3), in the
# order of its tables. The tests check each one is honoured or rejected with a reason.
SPEC_DIRECTIVES: tuple[str, ...] = (
    # timing
    "keepalive", "deadtime", "warntime", "initdead", "deadping", "max_rexmit_delay",
    # media
    "udpport", "bcast", "mcast", "ucast", "serial", "baud", "mcast6", "ucast6", "ping",
    "ping_group", "hbaping", "udp", "tipc",
    # membership
    "node", "autojoin", "hopfudge", "cluster", "quorum_server", "uuidfrom", "hbgenmethod",
    # resource management and failback
    "auto_failback", "nice_failback", "crm", "pacemaker", "stonith", "stonith_host",
    "watchdog", "respawn", "failfast", "env", "apiauth",
    # logging, debugging, process
    "logfile", "debugfile", "logfacility", "use_logd", "conn_logd_time", "syslogmsgfmt",
    "log_badpack", "debug", "realtime", "rtprio", "memreserve", "coredumps", "coreroot",
    "msgfmt", "compression", "compression_threshold", "traditional_compression",
    "use_apphbd", "normalpoll", "record_config_changes", "record_pengine_inputs",
    "enable_config_writes", "crm_daemon_dir", "crmd_spawns_pengine",
)  # fmt: skip

# nonstop's own directives; all start with "nonstop_" so a real Heartbeat refuses the file
# instead of running without them.
NONSTOP_DIRECTIVES: tuple[str, ...] = ("nonstop_monitor", "nonstop_sync", "nonstop_mailrelay",
                                       "nonstop_notify", "nonstop_metrics")


@dataclass
class _Builder:
    """Mutable state while reading one ha.cf; :func:`_finish` turns it into HaConfig."""

    path: str
    errors: list[ConfigError] = field(default_factory=list)
    warnings: list[ConfigWarning] = field(default_factory=list)
    values: dict[str, object] = field(default_factory=dict)
    parameters: dict[str, str] = field(default_factory=dict)
    locations: dict[str, Location] = field(default_factory=dict)
    nodes: list[str] = field(default_factory=list)
    media: list[Medium] = field(default_factory=list)
    # (medium, line) of each bcast/ucast medium, to warn about a udpport that comes too late
    port_media: list[tuple[Medium, Location]] = field(default_factory=list)
    udpport: int = HEARTBEAT_PORT
    # Heartbeat's global nice_failback flag: nice_failback looks at it, not at its own value.
    nice_failback: bool = False

    def error(self, loc: Location, message: str) -> None:
        self.errors.append(ConfigError(loc, message))

    def warn(self, loc: Location, message: str) -> None:
        self.warnings.append(ConfigWarning(loc, message))

    def set(self, name: str, value: object, raw: str, loc: Location, warn: bool = True) -> None:
        """Record a single-valued directive; a repeat wins, as in Heartbeat, with a warning."""
        if warn and name in self.locations:
            self.warn(
                loc,
                f"'{name}' was already given at line {self.locations[name].line}; "
                f"this later value '{raw}' wins",
            )
        self.values[name] = value
        self.parameters[name] = raw
        self.locations[name] = loc

    def add_medium(self, name: str, medium: Medium, raw: str, loc: Location) -> None:
        if medium in self.media:
            self.warn(loc, f"'{name} {raw}' repeats a medium given earlier; using it once")
            return
        self.media.append(medium)
        self.locations.setdefault(name, loc)
        # bcast lists devices like node lists names; whole-line media are kept line by line
        sep = " " if name == "bcast" else "; "
        prev = self.parameters.get(name)
        self.parameters[name] = raw if prev is None else f"{prev}{sep}{raw}"
        if isinstance(medium, Bcast | Ucast):
            self.port_media.append((medium, loc))


# ---------------------------------------------------------------------------------------------
# value converters (raise ValueError / _Bad with a message for humans)


def _one(name: str, args: list[str]) -> str:
    if not args:
        raise _Bad(f"'{name}' needs a value")
    if len(args) > 1:
        shown = " ".join(repr(a) for a in args)
        raise _Bad(
            f"'{name}' takes one value, got {len(args)}: {shown} (a value cannot contain "
            "spaces or commas: write '500ms', not '500 ms')"
        )
    return args[0]


def _positive_time(text: str) -> int:
    ms = parse_msec(text)
    if ms <= 0:
        raise ValueError(f"'{text}' must be more than 0 ms")
    return ms


def _int_range(lo: int, hi: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        if not re.fullmatch(r"-?[0-9]+", text):
            raise ValueError(f"'{text}' is not a whole number")
        n = int(text)
        if not lo <= n <= hi:
            raise ValueError(f"{n} is out of range {lo}..{hi}")
        return n

    return convert


def _choice(*words: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if text not in words:
            raise ValueError(f"'{text}' must be one of: {', '.join(words)}")
        return text

    return convert


def _abs_path(text: str) -> str:
    if not text.startswith("/"):
        raise ValueError(f"'{text}' must be an absolute path")
    return text


def _name(text: str) -> str:
    return text


def _iface(text: str) -> str:
    if len(text) > IFNAMSIZ or "/" in text or text in {".", ".."}:
        raise ValueError(f"'{text}' is not a network interface name")
    return text


def _facility(text: str) -> str | None:
    if text == "none":
        return None
    if text not in SYSLOG_FACILITIES:
        raise ValueError(
            f"'{text}' is not a syslog facility (use one of {', '.join(sorted(SYSLOG_FACILITIES))}"
            " or none)"
        )
    return text


def _monitor_interval(text: str) -> int | None:
    ms = parse_msec(text)
    return ms if ms > 0 else None


def _sync_config(text: str) -> str:
    if not text.startswith("/"):
        raise _Bad(f"nonstop_sync needs an absolute path to a csync2.cfg, not {text!r}")
    return text


def _mail_relay(text: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
    if not colon:
        host, port = text, "25"
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"write host[:port] (e.g. 'smtp.example.com:587'), not {text!r}")
    return host, int(port)


def _metrics_address(text: str) -> tuple[str, int]:
    """PORT (localhost), ADDRESS:PORT or [IPv6]:PORT: another address than localhost must be
    written out, so the page is never served to a network by accident."""
    host, _, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not port.isdigit() or not 1 <= int(port) <= 65535 or ("[" in host or "]" in host):
        raise ValueError(f"write PORT or ADDRESS:PORT (e.g. '127.0.0.1:9464'), not {text!r}")
    try:
        ipaddress.ip_address(host or "127.0.0.1")
    except ValueError:
        raise ValueError(f"{host!r} is not an IP address") from None
    return host or "127.0.0.1", int(port)


def _notify(b: _Builder, name: str, args: list[str], loc: Location) -> None:
    path = _one(name, args)
    if not path.startswith("/"):
        raise _Bad(f"nonstop_notify needs an absolute path to a program, not {path!r}")
    programs = b.values.get(name, ())
    assert isinstance(programs, tuple)
    if path in programs:
        b.warn(loc, f"nonstop_notify {path} is given twice; it runs once per event")
        return
    b.values[name] = programs = (*programs, path)
    b.parameters[name] = " ".join(programs)
    b.locations.setdefault(name, loc)


def _scalar(convert: Callable[[str], object]) -> Handler:
    """A handler for a directive with exactly one value, stored under its own name."""

    def handle(b: _Builder, name: str, args: list[str], loc: Location) -> None:
        raw = _one(name, args)
        try:
            value = convert(raw)
        except ValueError as e:
            raise _Bad(f"'{name}': {e}") from None
        b.set(name, value, raw, loc)

    return handle


# ---------------------------------------------------------------------------------------------
# handlers with more than one value or with effects beyond their own field


def _node(b: _Builder, name: str, args: list[str], loc: Location) -> None:
    if not args:
        raise _Bad("'node' needs at least one node name")
    for arg in args:
        node = arg.lower()  # Heartbeat lowercases node names (g_strdown)
        if len(node) > MAX_NODE_NAME:
            b.error(loc, f"node name '{arg}' is longer than {MAX_NODE_NAME} characters")
        elif node in b.nodes:
            b.warn(loc, f"node '{node}' is listed twice; using it once")
        elif len(b.nodes) >= MAX_NODES:
            b.error(loc, f"too many nodes: at most {MAX_NODES}")
        else:
            b.nodes.append(node)
    b.locations.setdefault("node", loc)
    b.parameters["node"] = " ".join(b.nodes)


def _bcast(b: _Builder, name: str, args: list[str], loc: Location) -> None:
    if not args:
        raise _Bad("'bcast' needs at least one interface")
    for arg in args:
        try:
            b.add_medium("bcast", Bcast(_iface(arg), b.udpport), arg, loc)
        except ValueError as e:
            b.error(loc, f"'bcast': {e}")


def _udp(b: _Builder, name: str, args: list[str], loc: Location) -> None:
    b.warn(loc, "directive 'udp' replaced by 'bcast' (write 'bcast')")
    b.locations.setdefault("udp", loc)
    _bcast(b, "bcast", args, loc)


def _udpport(b: _Builder, name: str, args: list[str], loc: Location) -> None:
    raw = _one("udpport", args)
    try:
        port = _int_range(1, 65535)(raw)
    except ValueError as e:
        raise _Bad(f"'udpport': {e}") from None
    for medium, mloc in b.port_media:
        if medium.port != port:
            b.warn(
                loc,
                f"udpport setting must precede media statements: the medium at line {mloc.line} "
                f"keeps port {medium.port}; move 'udpport' above it",
            )
    service = _udp_service(port)
    if service is not None and service != "ha-cluster":
        b.warn(
            loc,
            f"udpport {port} is the port of service '{service}' in /etc/services; another "
            "program may be using it",
        )
    b.udpport = port
    b.set("udpport", port, raw, loc)


def _udp_service(port: int) -> str | None:
    """The /etc/services name of a UDP port (Heartbeat warns when it is another service's)."""
    try:
        return socket.getservbyport(port, "udp")
    except OSError:
        return None


def _ipv4(text: str, what: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        raise _Bad(f"{what} '{text}' is not an IPv4 address") from None


_HOSTNAME_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")


def _ucast(b: _Builder, name: str, args: list[str], loc: Location) -> None:
    if len(args) != 2:
        raise _Bad(f"'ucast' takes an interface and one peer address, got {len(args)} values")
    dev, peer = args
    try:
        _iface(dev)
    except ValueError as e:
        raise _Bad(f"'ucast': {e}") from None
    if re.fullmatch(r"[0-9.]+", peer):
        _ipv4(peer, "ucast peer")
    elif ":" in peer:
        raise _Bad(f"ucast peer '{peer}' is IPv6; ucast6 is not supported, use an IPv4 address")
    elif not _HOSTNAME_RE.fullmatch(peer):
        raise _Bad(f"ucast peer '{peer}' is neither an IPv4 address nor a host name")
    b.add_medium("ucast", Ucast(dev, peer, b.udpport), " ".join(args), loc)


def _mcast(b: _Builder, name: str, args: list[str], loc: Location) -> None:
    if len(args) != 5:
        raise _Bad(f"'mcast' takes 5 values (dev group port ttl loop), got {len(args)}")
    dev, group_s, port_s, ttl_s, loop_s = args
    try:
        _iface(dev)
        port = _int_range(1, 65535)(port_s)
        ttl = _int_range(0, 255)(ttl_s)
        loop = _int_range(0, 1)(loop_s)
    except ValueError as e:
        raise _Bad(f"'mcast': {e}") from None
    group = _ipv4(group_s, "mcast group")
    if not group.is_multicast:
        raise _Bad(f"mcast group '{group_s}' is not a multicast address (224.0.0.0/4)")
    if ttl == 0:
        b.warn(loc, "mcast ttl 0 never leaves this host: peers will not hear it")
    elif ttl > 4:
        b.warn(loc, f"mcast ttl {ttl}: Heartbeat itself refuses ttl > 4 (bad ttl)")
    b.add_medium("mcast", Mcast(dev, str(group), port, ttl, bool(loop)), " ".join(args), loc)


def _auto_failback(b: _Builder, name: str, args: list[str], loc: Location) -> None:
    raw = _one("auto_failback", args)
    if raw.lower() == "legacy":
        value = AutoFailback.LEGACY
    else:
        try:
            value = AutoFailback.ON if parse_bool(raw) else AutoFailback.OFF
        except ValueError:
            raise _Bad(f"'auto_failback': '{raw}' must be on, off or legacy") from None
    b.nice_failback = value is not AutoFailback.LEGACY
    b.set("auto_failback", value, raw, loc)


def _nice_failback(b: _Builder, name: str, args: list[str], loc: Location) -> None:
    raw = _one("nice_failback", args)
    try:
        parse_bool(raw)
    except ValueError as e:
        raise _Bad(f"'nice_failback': {e}") from None
    # Heartbeat tests its global flag (set by an earlier auto_failback on/off), not the value
    # given here; nonstop keeps that so a file means the same thing under both programs.
    value = AutoFailback.OFF if b.nice_failback else AutoFailback.LEGACY
    b.warn(loc, "nice_failback flag is obsolete. Use auto_failback {on, off, legacy} instead.")
    if value is AutoFailback.LEGACY:
        b.warn(
            loc,
            f"'nice_failback {raw}' means auto_failback legacy here (as in Heartbeat, it only "
            "means 'off' after an auto_failback on/off line); write 'auto_failback off'",
        )
    # Overriding an earlier auto_failback is what nice_failback is for: no "given twice".
    b.set("auto_failback", value, raw, loc, warn=False)
    b.locations["nice_failback"] = loc


def _only_false(reason: str) -> Handler:
    """A boolean feature nonstop lacks: the false value is what nonstop does anyway."""

    def handle(b: _Builder, name: str, args: list[str], loc: Location) -> None:
        raw = _one(name, args)
        try:
            on = parse_bool(raw)
        except ValueError as e:
            if name in {"crm", "pacemaker"} and raw.lower() in {
                "respawn",
                "minimal",
                "manual",
                "valgrind",
            }:
                on = True
            else:
                raise _Bad(f"'{name}': {e}") from None
        if on:
            raise _Bad(
                f"directive '{name}' with value '{raw}' is not supported by nonstop: {reason}"
            )
        b.set(name, False, raw, loc)

    return handle


def _autojoin(b: _Builder, name: str, args: list[str], loc: Location) -> None:
    raw = _one("autojoin", args)
    if raw in {"other", "any"}:
        raise _Bad(
            f"directive 'autojoin' with value '{raw}' is not supported by nonstop: "
            "R1 style resource management conflicts with autojoin set (haresources needs "
            "a fixed node list)"
        )
    if raw != "none":
        raise _Bad(f"'autojoin': '{raw}' must be none, other or any")
    b.set("autojoin", raw, raw, loc)


def _rtprio(text: str) -> int | None:
    if not re.fullmatch(r"-?[0-9]+", text):
        raise ValueError(f"'{text}' is not a whole number")
    prio = int(text)
    if prio <= 0:
        return None  # Heartbeat: the lowest priority of the scheduling class
    if prio > 99:
        raise ValueError(f"{prio} is above the highest SCHED_RR priority 99")
    return prio


# ---------------------------------------------------------------------------------------------
# the table

_CRM_REASON = (
    "crm/pacemaker mode is out of scope; nonstop manages the haresources groups itself (crm off)"
)
_PING_REASON = (
    "ping nodes only feed ipfail, which nonstop does not implement; nonstop fails over on "
    "loss of the peer's heartbeats and, with nonstop_monitor, on a failed resource"
)
_SERIAL_REASON = "nonstop sends heartbeats over UDP only (bcast, ucast, mcast); no serial links"
_RESPAWN_REASON = (
    "nonstop does not start or supervise helper programs (ipfail, ccm, ...); run such a "
    "program as its own systemd service"
)


def _d(
    name: str,
    kind: Kind,
    text: str,
    handler: Handler | None = None,
    default: str | None = None,
) -> Directive:
    support = Support.HONOURED if handler is not None else Support.REJECTED
    return Directive(name, kind, support, text, default, handler)


OPT, LINE = Kind.OPTIONS, Kind.LINE

_TABLE: tuple[Directive, ...] = (
    _d("keepalive", OPT, "Interval between our heartbeats on every medium.",
       _scalar(_positive_time), "1000ms"),
    _d("deadtime", OPT, "Silence after which a peer is declared dead; advertised to peers in "
       "each heartbeat (dt), and peers time us out with it.", _scalar(_positive_time),
       "30000ms"),
    _d("warntime", OPT, "A gap between two heartbeats of a node longer than this logs "
       "'Late heartbeat'. Must be less than deadtime.", _scalar(_positive_time),
       "deadtime/2"),
    _d("initdead", OPT, "Deadtime used until every node has been heard from once after start.",
       _scalar(_positive_time), "computed"),
    _d("deadping", OPT, "ping nodes are not supported, so there is nothing for deadping to "
       "time out"),
    _d("max_rexmit_delay", OPT, "Upper bound (integer ms) of the random delay before asking a "
       "peer once to retransmit the messages missing from a gap in its sequence numbers.",
       _scalar(_int_range(1, 60000)), "250"),
    _d("udpport", OPT, "UDP port of the bcast and ucast media declared after it.", _udpport,
       str(HEARTBEAT_PORT)),
    _d("bcast", OPT, "UDP broadcast heartbeats on each named interface.", _bcast),
    _d("mcast", LINE, "IPv4 multicast heartbeats: dev group port ttl loop. nonstop accepts "
       "ttl 0..255 as documented by Heartbeat (its parser refuses ttl > 4: a warning says "
       "so); loop 0 or 1.", _mcast),
    _d("ucast", LINE, "UDP unicast heartbeats to one peer through one interface; a line naming "
       "this node's own address is harmless, so both nodes can share one ha.cf.", _ucast),
    _d("serial", OPT, _SERIAL_REASON),
    _d("baud", OPT, "it sets the speed of serial heartbeat links, which nonstop does not have"),
    _d("mcast6", LINE, "IPv6 heartbeat media are not implemented; use mcast or ucast over IPv4"),
    _d("ucast6", LINE, "IPv6 heartbeat media are not implemented; use mcast or ucast over IPv4"),
    _d("ping", OPT, _PING_REASON),
    _d("ping_group", LINE, _PING_REASON),
    _d("hbaping", OPT, _PING_REASON),
    _d("udp", OPT, "Old name of bcast; accepted with Heartbeat's warning.", _udp),
    _d("tipc", LINE, "TIPC media are not implemented; nonstop sends heartbeats over UDP only"),
    _d("node", OPT, "A cluster node (lowercased). --node must name one of them; haresources "
       "lines must start with one of them.", _node),
    _d("autojoin", OPT, "Only 'none' (the default): a fixed node list, which haresources "
       "needs. 'other' and 'any' are rejected, as Heartbeat rejects them with haresources.",
       _autojoin, "none"),
    _d("hopfudge", OPT, "Added to the node count to make the ttl field of our messages.",
       _scalar(_int_range(0, 255)), "1"),
    _d("cluster", OPT, "Cluster name (informational, as in Heartbeat).", _scalar(_name),
       "linux-ha"),
    _d("quorum_server", OPT, "it configures the crm/ccm quorum daemon; " + _CRM_REASON),
    _d("uuidfrom", OPT, "Where this node's UUID comes from: 'file' (kept in the state "
       "directory) or 'nodename' (derived from the node name).",
       _scalar(_choice("file", "nodename")), "file"),
    _d("hbgenmethod", OPT, "Source of the heartbeat generation number: 'file' (a counter in "
       "the state directory) or 'time' (the start time).", _scalar(_choice("file", "time")),
       "file"),
    _d("auto_failback", OPT, "on: groups return to their preferred node when it comes back; "
       "off: they stay where they are; legacy (the default, with a warning): Heartbeat's old "
       "behaviour.", _auto_failback, "legacy"),
    _d("nice_failback", OPT, "Obsolete; mapped as Heartbeat maps it (off only after an "
       "auto_failback on/off line, else legacy), with warnings.", _nice_failback),
    _d("crm", OPT, "Only a false value (off, no, ...): nonstop manages haresources groups. "
       "Any true value is rejected: " + _CRM_REASON + ".", _only_false(_CRM_REASON), "off"),
    _d("pacemaker", OPT, "Heartbeat 3 name of crm; same rule.", _only_false(_CRM_REASON)),
    _d("stonith", LINE, "STONITH is not implemented: nonstop cannot power off a peer; a healed "
       "partition is resolved by the failover rules instead"),
    _d("stonith_host", LINE, "STONITH is not implemented: nonstop cannot power off a peer; a "
       "healed partition is resolved by the failover rules instead"),
    _d("watchdog", OPT, "Kernel watchdog device, opened at start and fed each time our own "
       "heartbeat comes back; timeout ceil((deadtime+10ms)/1000) s.", _scalar(_abs_path)),
    _d("respawn", LINE, _RESPAWN_REASON),
    _d("failfast", LINE, _RESPAWN_REASON),
    _d("env", LINE, "it sets the environment of respawn clients, and nonstop has none"),
    _d("apiauth", LINE, "nonstop has no Heartbeat client API socket (cl_status, ipfail); its own "
       "control API serves the nonstop command"),
    _d("logfile", OPT, "File for log messages (absolute path).", _scalar(_abs_path)),
    _d("debugfile", OPT, "File for debug messages (absolute path).", _scalar(_abs_path)),
    _d("logfacility", OPT, "Syslog facility for log messages, or none.", _scalar(_facility)),
    _d("use_logd", OPT, "yes: log to the system log (nonstop has no ha_logd; journald/syslog "
       "takes its place). Default yes when no logfile, debugfile or logfacility is given, "
       "else no.", _scalar(parse_bool), "computed"),
    _d("conn_logd_time", OPT, "nonstop does not connect to ha_logd, so there is no connection "
       "to retry"),
    _d("syslogmsgfmt", OPT, "nonstop's log line format is fixed"),
    _d("log_badpack", OPT, "When false, bad or unauthenticated packets are only counted, not "
       "logged.", _scalar(parse_bool), "true"),
    _d("debug", OPT, "Debug level 0..255; above 0 nonstop logs debug messages.",
       _scalar(_int_range(0, 255)), "0"),
    _d("realtime", OPT, "true: run the daemon SCHED_RR and lock its memory, so heartbeats keep "
       "their timing under load.", _scalar(parse_bool), "true"),
    _d("rtprio", OPT, "SCHED_RR priority 1..99 when realtime; 0 or less means the lowest.",
       _scalar(_rtprio)),
    _d("memreserve", OPT, "a Python daemon cannot preallocate a fixed memory reserve; realtime "
       "locks the memory in use instead"),
    _d("coredumps", OPT, "true: allow core dumps of the daemon (RLIMIT_CORE).",
       _scalar(parse_bool), "true"),
    _d("coreroot", OPT, "nonstop does not change directory for core dumps; the kernel's "
       "core_pattern decides where they go"),
    _d("msgfmt", OPT, "Wire format of outgoing messages: classic or netstring. Default "
       "netstring, which Heartbeat 3.0.6 actually sends (its messages carry binary fields).",
       _scalar(_choice("classic", "netstring")), "netstring"),
    _d("compression", OPT, "nonstop's messages are small and never compressed"),
    _d("compression_threshold", OPT, "nonstop's messages are small and never compressed"),
    _d("traditional_compression", OPT, "Only a false value: nonstop never compresses.",
       _only_false("nonstop's messages are small and never compressed")),
    _d("use_apphbd", OPT, "Only a false value: nonstop does not register with apphbd.",
       _only_false("nonstop does not register with apphbd; systemd supervises it")),
    _d("normalpoll", OPT, "it selects Heartbeat's poll implementation; nonstop uses asyncio"),
    _d("record_config_changes", OPT, _CRM_REASON),
    _d("record_pengine_inputs", OPT, _CRM_REASON),
    _d("enable_config_writes", OPT, _CRM_REASON),
    _d("crm_daemon_dir", OPT, _CRM_REASON),
    _d("crmd_spawns_pengine", OPT, _CRM_REASON),
    _d("nonstop_monitor", OPT, "nonstop only: check each started resource with its status "
       "action every <time> (e.g. 'nonstop_monitor 5' = every 5 s) and recover a group whose "
       "resource stopped. Absent or 0: no monitoring, as in Heartbeat v1.",
       _scalar(_monitor_interval)),
    _d("nonstop_sync", OPT, "nonstop only: replicate continuously with the csync2.cfg at this "
       "absolute path (e.g. 'nonstop_sync /etc/csync2.cfg'): the node holding a group pushes "
       "each change within a second, force-syncs on takeover and pushes once more when it "
       "releases. Absent: no replication by the daemon (cron + 'nonstop sync -x' still work).",
       _scalar(_sync_config)),
    _d("nonstop_mailrelay", OPT, "nonstop only: MailTo sends through SMTP to this relay, "
       "host[:port] (port 25 if not given; plain SMTP, no authentication). Absent: MailTo "
       "hands its mail to the local MTA's sendmail (/usr/sbin/sendmail: nullmailer, msmtp, "
       "exim, postfix...) when there is one, as Heartbeat's MailTo used mail(1), else SMTP "
       "to localhost:25.", _scalar(_mail_relay)),
    _d("nonstop_notify", OPT, "nonstop only (repeatable): run this program (absolute path) "
       "for every history event, in order, one at a time, the event in NONSTOP_EVENT_* "
       "variables; retried with back-off until it exits 0 (docs/OBSERVE.md).", _notify),
    _d("nonstop_metrics", OPT, "nonstop only: serve Prometheus /metrics and the read-only "
       "status page on PORT of localhost, or on ADDRESS:PORT (another address must be written "
       "out; docs/OBSERVE.md). Absent: not served.", _scalar(_metrics_address)),
)  # fmt: skip

DIRECTIVES: dict[str, Directive] = {d.name: d for d in _TABLE}


# ---------------------------------------------------------------------------------------------
# reading


def read_config_lines(path: str) -> tuple[list[str] | None, list[ConfigError]]:
    """The lines of a configuration file (CR and LF stripped), or the errors that stopped
    reading it (see nonstop.config.reading: bytes, regular file, size cap, no NUL).

    Any byte may stand in a comment, as Heartbeat reads bytes; a line with a non-UTF-8 byte
    elsewhere is replaced by an empty line and reported, so the other line numbers stay right.
    """
    content, errors = read_config_bytes(path)
    if content is None:
        return None, errors
    lines: list[str] = []
    for n, raw in enumerate(content.data.split(b"\n"), start=1):
        text = decode_line(raw)
        if text is None:
            errors.append(ConfigError(Location(path, n), bad_byte_message(raw)))
            text = ""
        lines.append(text.replace("\r", ""))
    if lines and lines[-1] == "":
        lines.pop()  # the text after the final newline
    return lines, errors


def _unknown(name: str) -> str:
    msg = f"directive '{name}' is unknown"
    known = list(DIRECTIVES)
    if name.lower() in DIRECTIVES:
        return f"{msg} (directive names are case-sensitive: did you mean '{name.lower()}'?)"
    if "=" in name:
        return f"{msg}: write 'directive value' (e.g. 'keepalive 2'), not 'directive=value'"
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    if close:
        return f"{msg} (did you mean '{close[0]}'?)"
    return msg


def check_hacf(path: str) -> Parsed[HaConfig]:
    """Read and validate ha.cf: the HaConfig (None if any error), every error and warning."""
    lines, read_errors = read_config_lines(path)
    b = _Builder(path)
    b.errors.extend(read_errors)
    if lines is None:
        return Parsed(None, tuple(b.errors), ())
    for n, line in enumerate(lines, start=1):
        loc = Location(path, n)
        if len(line) > MAXLINE:
            b.error(loc, f"line is longer than {MAXLINE} characters")
            continue
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        parts = text.split(None, 1)
        name, rest = parts[0], (parts[1] if len(parts) > 1 else "")
        d = DIRECTIVES.get(name)
        if d is None:
            b.error(loc, _unknown(name))
            continue
        if d.handler is None:
            b.error(loc, f"directive '{name}' is not supported by nonstop: {d.text}")
            continue
        args = (_DELIMS if d.kind is Kind.OPTIONS else _BLANKS).split(rest)
        try:
            d.handler(b, name, [a for a in args if a], loc)
        except _Bad as e:
            b.error(loc, str(e))
    return _finish(b)


def declared_nodes(path: str) -> tuple[str, ...] | None:
    """The ``node`` names of an ha.cf that has errors elsewhere, so that haresources can still
    be checked against them in the same pass; None if there are none or it cannot be read."""
    lines, _errors = read_config_lines(path)
    if lines is None:
        return None
    b = _Builder(path)
    for n, line in enumerate(lines, start=1):
        parts = line.split("#", 1)[0].split()
        if len(parts) > 1 and parts[0] == "node":
            with contextlib.suppress(_Bad):
                _node(b, "node", parts[1:], Location(path, n))
    return tuple(b.nodes) or None


def parse_hacf(path: str) -> HaConfig:
    """Read and validate ha.cf; raise ConfigErrors naming every problem as ``file:line``.

    Warnings (deprecated or doubtful settings) are in the result's ``warnings``.
    """
    return check_hacf(path).unwrap()


def _where(b: _Builder, *names: str) -> Location:
    """The line of the first of ``names`` given in the file, else the file itself."""
    for name in names:
        if name in b.locations:
            return b.locations[name]
    return Location(b.path)


def _time(b: _Builder, name: str, default: int) -> int:
    value = b.values.get(name, default)
    assert isinstance(value, int)
    return value


def _finish(b: _Builder) -> Parsed[HaConfig]:
    """Fill computed defaults, apply Heartbeat's startup rules, build HaConfig."""
    whole = Location(b.path)
    keepalive = _time(b, "keepalive", DEFAULT_KEEPALIVE_MS)
    deadtime = _time(b, "deadtime", DEFAULT_DEADTIME_MS)
    warntime = _time(b, "warntime", deadtime // 2)
    if deadtime > 10000:
        computed_initdead = deadtime
    elif deadtime < 6000:
        computed_initdead = 12000
    else:
        computed_initdead = 2 * deadtime
    initdead = _time(b, "initdead", computed_initdead)
    computed = {
        "warntime": format_msec(warntime),
        "initdead": format_msec(initdead),
    }

    if not b.media:
        b.error(whole, "No heartbeat media defined (add e.g. 'bcast eth0')")
    if not b.nodes:
        b.error(whole, "no nodes defined (add a 'node' line for each cluster node)")
    if deadtime <= 2 * keepalive:
        b.error(
            _where(b, "deadtime", "keepalive"),
            f"Dead time [{deadtime}] is too small compared to keepalive [{keepalive}]: "
            "deadtime must be more than 2 x keepalive",
        )
    if warntime >= deadtime:
        b.error(
            _where(b, "warntime", "deadtime"),
            f"warntime [{warntime}] must be less than deadtime [{deadtime}] "
            "(a heartbeat that late would already have declared the node dead)",
        )
    if initdead < deadtime:
        b.error(
            _where(b, "initdead", "deadtime"),
            f"Initial dead time [{initdead}] is smaller than deadtime [{deadtime}]",
        )
    elif initdead < 10000 and "initdead" in b.locations:
        b.warn(b.locations["initdead"], f"Initial dead time [{initdead} ms] may be too small!")

    log_given = any(n in b.locations for n in ("logfile", "debugfile", "logfacility"))
    use_logd = b.values.get("use_logd", not log_given)
    assert isinstance(use_logd, bool)
    if not use_logd and not log_given:
        b.error(
            _where(b, "use_logd"),
            "use_logd is off and no logfile, debugfile or logfacility is given: nonstop "
            "would log nowhere",
        )
    computed["use_logd"] = "yes" if use_logd else "no"

    auto_failback = b.values.get("auto_failback", AutoFailback.LEGACY)
    assert isinstance(auto_failback, AutoFailback)
    if auto_failback is AutoFailback.LEGACY:
        b.warn(
            _where(b, "auto_failback"),
            "Deprecated 'legacy' auto_failback option selected"
            + ("" if "auto_failback" in b.locations else " (the default)")
            + ". Please convert to 'auto_failback on' or 'auto_failback off'.",
        )

    parameters = dict(b.parameters)
    for d in _TABLE:
        if d.support is Support.HONOURED and d.name not in parameters:
            if d.name in computed:
                parameters[d.name] = computed[d.name]
            elif d.default is not None:
                parameters[d.name] = d.default

    if b.errors:
        return Parsed(None, tuple(b.errors), tuple(b.warnings))

    def get(name: str, default: object) -> object:
        return b.values.get(name, default)

    cfg = HaConfig(
        path=b.path,
        nodes=tuple(b.nodes),
        media=tuple(b.media),
        keepalive_ms=keepalive,
        deadtime_ms=deadtime,
        warntime_ms=warntime,
        initdead_ms=initdead,
        udpport=b.udpport,
        auto_failback=auto_failback,
        use_logd=use_logd,
        logfile=_opt_str(get("logfile", None)),
        debugfile=_opt_str(get("debugfile", None)),
        logfacility=_opt_str(get("logfacility", None)),
        debug=_int(get("debug", 0)),
        watchdog=_opt_str(get("watchdog", None)),
        hopfudge=_int(get("hopfudge", 1)),
        cluster=str(get("cluster", "linux-ha")),
        msgfmt=str(get("msgfmt", "netstring")),
        log_badpack=bool(get("log_badpack", True)),
        max_rexmit_delay_ms=_int(get("max_rexmit_delay", DEFAULT_MAX_REXMIT_DELAY_MS)),
        monitor_interval_ms=_opt_int(get("nonstop_monitor", None)),
        sync_config=_opt_str(get("nonstop_sync", None)),
        mail_relay=_relay(get("nonstop_mailrelay", None)),
        notify_programs=_strs(get("nonstop_notify", ())),
        metrics_address=_relay(get("nonstop_metrics", None)),
        parameters=parameters,
        locations=dict(b.locations),
        uuidfrom=str(get("uuidfrom", "file")),
        hbgenmethod=str(get("hbgenmethod", "file")),
        realtime=bool(get("realtime", True)),
        rtprio=_opt_int(get("rtprio", None)),
        coredumps=bool(get("coredumps", True)),
        warnings=tuple(b.warnings),
    )
    return Parsed(cfg, (), tuple(b.warnings))


def _int(value: object) -> int:
    assert isinstance(value, int)
    return value


def _opt_int(value: object) -> int | None:
    assert value is None or isinstance(value, int)
    return value


def _relay(value: object) -> tuple[str, int] | None:
    assert value is None or (isinstance(value, tuple) and len(value) == 2)
    return value


def _strs(value: object) -> tuple[str, ...]:
    assert isinstance(value, tuple) and all(isinstance(v, str) for v in value)
    return value


def _opt_str(value: object) -> str | None:
    assert value is None or isinstance(value, str)
    return value
