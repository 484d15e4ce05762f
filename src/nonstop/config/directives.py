"""The ha.cf directive table: every directive Heartbeat knows, honoured or rejected with why.

Each honoured directive either holds one value, described by its
:class:`~nonstop.config.settings.Setting` (type, default, converter), or has a handler for a
list or for effects beyond its own value (``node``, the media, ``udpport``,
``auto_failback``/``nice_failback``). The table is data so that docs/CONFIG.md and the tests
are checked against the same list. A handler reports a single-error line by raising
:class:`~nonstop.config.settings.BadValue`, which the reader turns into a ``file:line`` error.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import re
import socket
from dataclasses import dataclass, field
from typing import Any

from nonstop.config import settings as s
from nonstop.config.builder import Builder, Handler, convert, one_value
from nonstop.config.errors import Location
from nonstop.config.model import AutoFailback, Bcast, Mcast, Ucast
from nonstop.config.settings import BadValue, Setting
from nonstop.config.units import parse_bool
from nonstop.ping.targets import PingTarget
from nonstop.resources.respawn import (
    RespawnError,
    RespawnKind,
    RespawnSpec,
    classify,
    client_environment,
)
from nonstop.resources.stonith import (
    StonithConfigError,
    parse_stonith_host_line,
    parse_stonith_line,
)

MAX_NODES = 100
MAX_NODE_NAME = 100


class Kind(enum.Enum):
    """How the rest of a directive's line is split into values."""

    OPTIONS = "options"  # on commas and whitespace (Heartbeat's Directives[] table)
    LINE = "line"  # on whitespace only (whole-line directives and media plugins)


class Support(enum.Enum):
    HONOURED = "honoured"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Directive:
    """One ha.cf directive: how it is split, what it means, and how its value is read.

    Honoured directives have a handler (and a setting when they hold one value); rejected ones
    have neither, and ``text`` says why.
    """

    name: str
    kind: Kind
    # Honoured: what it does in nonstop. Rejected: why not.
    text: str
    setting: Setting[Any] | None = field(default=None, compare=False, repr=False)
    handler: Handler | None = field(default=None, compare=False, repr=False)

    @property
    def support(self) -> Support:
        return Support.HONOURED if self.handler is not None else Support.REJECTED

    @property
    def default(self) -> str | None:
        """The default as docs/CONFIG.md and HaConfig.parameters show it."""
        return None if self.setting is None else self.setting.default


# ---------------------------------------------------------------------------------------------
# handlers


def _scalar(setting: Setting[Any]) -> Handler:
    """The handler of a directive with exactly one value, read by its setting."""

    def handle(b: Builder, name: str, args: list[str], loc: Location) -> None:
        raw = one_value(name, args)
        b.set(setting, convert(setting, raw), raw, loc)

    return handle


def notify(b: Builder, name: str, args: list[str], loc: Location) -> None:
    path = one_value(name, args)
    if not path.startswith("/"):
        raise BadValue(f"nonstop_notify needs an absolute path to a program, not {path!r}")
    if path in b.notify:
        b.warn(loc, f"nonstop_notify {path} is given twice; it runs once per event")
        return
    b.notify.append(path)
    b.parameters[name] = " ".join(b.notify)
    b.locations.setdefault(name, loc)
def _words(setting: Setting[Any]) -> Handler:
    """The handler of a setting whose one value is several words (read as one line)."""

    def handle(b: Builder, name: str, args: list[str], loc: Location) -> None:
        raw = " ".join(args)
        b.set(setting, convert(setting, raw), raw, loc)

    return handle


def node(b: Builder, name: str, args: list[str], loc: Location) -> None:
    if not args:
        raise BadValue("'node' needs at least one node name")
    for arg in args:
        lowered = arg.lower()  # Heartbeat lowercases node names (g_strdown)
        if len(lowered) > MAX_NODE_NAME:
            b.error(loc, f"node name '{arg}' is longer than {MAX_NODE_NAME} characters")
        elif lowered in b.nodes:
            b.warn(loc, f"node '{lowered}' is listed twice; using it once")
        elif len(b.nodes) >= MAX_NODES:
            b.error(loc, f"too many nodes: at most {MAX_NODES}")
        else:
            b.nodes.append(lowered)
    b.locations.setdefault("node", loc)
    b.parameters["node"] = " ".join(b.nodes)


def _bcast(b: Builder, name: str, args: list[str], loc: Location) -> None:
    if not args:
        raise BadValue("'bcast' needs at least one interface")
    for arg in args:
        try:
            b.add_medium("bcast", Bcast(s.iface(arg), b.get(s.UDPPORT)), arg, loc)
        except ValueError as e:
            b.error(loc, f"'bcast': {e}")


def _udp(b: Builder, name: str, args: list[str], loc: Location) -> None:
    b.warn(loc, "directive 'udp' replaced by 'bcast' (write 'bcast')")
    b.locations.setdefault("udp", loc)
    _bcast(b, "bcast", args, loc)


def _udpport(b: Builder, name: str, args: list[str], loc: Location) -> None:
    raw = one_value("udpport", args)
    port = convert(s.UDPPORT, raw)
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
    b.set(s.UDPPORT, port, raw, loc)


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
        raise BadValue(f"{what} '{text}' is not an IPv4 address") from None


_HOSTNAME_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")


def _ucast(b: Builder, name: str, args: list[str], loc: Location) -> None:
    if len(args) != 2:
        raise BadValue(f"'ucast' takes an interface and one peer address, got {len(args)} values")
    dev, peer = args
    try:
        s.iface(dev)
    except ValueError as e:
        raise BadValue(f"'ucast': {e}") from None
    if re.fullmatch(r"[0-9.]+", peer):
        _ipv4(peer, "ucast peer")
    elif ":" in peer:
        raise BadValue(f"ucast peer '{peer}' is IPv6; ucast6 is not supported, use an IPv4 address")
    elif not _HOSTNAME_RE.fullmatch(peer):
        raise BadValue(f"ucast peer '{peer}' is neither an IPv4 address nor a host name")
    b.add_medium("ucast", Ucast(dev, peer, b.get(s.UDPPORT)), " ".join(args), loc)


def _mcast(b: Builder, name: str, args: list[str], loc: Location) -> None:
    if len(args) != 5:
        raise BadValue(f"'mcast' takes 5 values (dev group port ttl loop), got {len(args)}")
    dev, group_s, port_s, ttl_s, loop_s = args
    try:
        s.iface(dev)
        port = s.int_range(1, 65535)(port_s)
        ttl = s.int_range(0, 255)(ttl_s)
        loop = s.int_range(0, 1)(loop_s)
    except ValueError as e:
        raise BadValue(f"'mcast': {e}") from None
    group = _ipv4(group_s, "mcast group")
    if not group.is_multicast:
        raise BadValue(f"mcast group '{group_s}' is not a multicast address (224.0.0.0/4)")
    if ttl == 0:
        b.warn(loc, "mcast ttl 0 never leaves this host: peers will not hear it")
    elif ttl > 4:
        b.warn(loc, f"mcast ttl {ttl}: Heartbeat itself refuses ttl > 4 (bad ttl)")
    b.add_medium("mcast", Mcast(dev, str(group), port, ttl, bool(loop)), " ".join(args), loc)


def _auto_failback(b: Builder, name: str, args: list[str], loc: Location) -> None:
    raw = one_value("auto_failback", args)
    value = convert(s.AUTO_FAILBACK, raw)
    b.nice_failback = value is not AutoFailback.LEGACY
    b.set(s.AUTO_FAILBACK, value, raw, loc)


def _nice_failback(b: Builder, name: str, args: list[str], loc: Location) -> None:
    raw = one_value("nice_failback", args)
    try:
        parse_bool(raw)
    except ValueError as e:
        raise BadValue(f"'nice_failback': {e}") from None
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
    b.set(s.AUTO_FAILBACK, value, raw, loc, warn=False)
    b.locations["nice_failback"] = loc


def _add_ping(b: Builder, target: PingTarget, loc: Location) -> None:
    if any(t.name == target.name for t in b.ping_targets):
        b.warn(loc, f"ping node {target.name} is listed twice; using it once")
        return
    b.ping_targets.append(target)


def _ping(b: Builder, name: str, args: list[str], loc: Location) -> None:
    if not args:
        raise BadValue("'ping' needs at least one IPv4 address")
    for arg in args:
        try:
            _add_ping(b, PingTarget.node(arg), loc)
        except ValueError:
            b.error(loc, f"ping node '{arg}' is not an IPv4 address")
    b.record("ping", " ".join(args), loc, sep=" ")


def _ping_group(b: Builder, name: str, args: list[str], loc: Location) -> None:
    if len(args) < 2:
        raise BadValue("'ping_group' needs a name and at least one IPv4 address")
    try:
        target = PingTarget.ping_group(args[0], args[1:])
    except ValueError as e:
        raise BadValue(f"'ping_group': {e}") from None
    _add_ping(b, target, loc)
    b.record("ping_group", " ".join(args), loc)


def _respawn(b: Builder, name: str, args: list[str], loc: Location) -> None:
    raw = " ".join(args)
    try:
        spec = RespawnSpec.parse(raw, loc)
    except RespawnError as e:
        raise BadValue(str(e)) from None
    verdict = classify(spec)
    if verdict.kind is RespawnKind.REFUSED:
        raise BadValue(verdict.message)
    if verdict.kind is RespawnKind.BUILTIN:
        b.ipfail = True
    else:
        b.respawn.append(spec)
    b.record("respawn", raw, loc)


def _env(b: Builder, name: str, args: list[str], loc: Location) -> None:
    raw = " ".join(args)
    try:
        b.respawn_env.update(client_environment([raw]))
    except RespawnError as e:
        raise BadValue(str(e)) from None
    b.record("env", raw, loc)


def _apiauth(b: Builder, name: str, args: list[str], loc: Location) -> None:
    if not args:
        raise BadValue("'apiauth' needs a client name and its uid=/gid= lists")
    if args[0] == "ipfail":
        b.ipfail = True
    else:
        b.warn(loc, f"apiauth {args[0]}: nonstop serves no Heartbeat client API, so this line "
               "has no effect (only 'apiauth ipfail' means something: ipfail is built in)")
    b.record("apiauth", " ".join(args), loc)


def _stonith(b: Builder, name: str, args: list[str], loc: Location) -> None:
    raw = " ".join(args)
    try:
        line = ("*", parse_stonith_line(raw)) if name == "stonith" else parse_stonith_host_line(raw)
    except StonithConfigError as e:
        raise BadValue(f"'{name}': {e}") from None
    b.stonith.append((line[0], dataclasses.replace(line[1], loc=loc)))
    b.record(name, raw, loc)


# ---------------------------------------------------------------------------------------------
# the table

_PING_REASON = (
    "hbaping pings a Fibre Channel host bus adapter; use ping or ping_group nodes"
)
_SERIAL_REASON = "nonstop sends heartbeats over UDP only (bcast, ucast, mcast); no serial links"
_RESPAWN_REASON = (
    "nonstop does not implement failfast clients; use respawn, or run the program as a "
    "systemd service"
)
_IPV6_REASON = "IPv6 heartbeat media are not implemented; use mcast or ucast over IPv4"
_COMPRESSION_REASON = s.COMPRESSION_REASON
_CRM = s.CRM_REASON


def _d(name: str, kind: Kind, text: str, handler: Handler | None = None) -> Directive:
    """A rejected directive (no handler), or one honoured by a handler of its own."""
    return Directive(name, kind, text, None, handler)


def _s(setting: Setting[Any], text: str, handler: Handler | None = None) -> Directive:
    """A single-valued directive read by its setting (split like Heartbeat's options)."""
    return Directive(setting.name, Kind.OPTIONS, text, setting, handler or _scalar(setting))


OPT, LINE = Kind.OPTIONS, Kind.LINE

_TABLE: tuple[Directive, ...] = (
    _s(s.KEEPALIVE, "Interval between our heartbeats on every medium."),
    _s(s.DEADTIME, "Silence after which a peer is declared dead; advertised to peers in each "
       "heartbeat (dt), and peers time us out with it."),
    _s(s.WARNTIME, "A gap between two heartbeats of a node longer than this logs 'Late "
       "heartbeat'. Must be less than deadtime."),
    _s(s.INITDEAD, "Deadtime used until every node has been heard from once after start."),
    _s(s.DEADPING, "Silence after which a ping node (or group) is declared dead, as deadtime "
       "for nodes; must be more than 2 x keepalive."),
    _s(s.MAX_REXMIT_DELAY, "Upper bound (integer ms) of the random delay before asking a peer "
       "once to retransmit the messages missing from a gap in its sequence numbers."),
    _s(s.UDPPORT, "UDP port of the bcast and ucast media declared after it.", _udpport),
    _d("bcast", OPT, "UDP broadcast heartbeats on each named interface.", _bcast),
    _d("mcast", LINE, "IPv4 multicast heartbeats: dev group port ttl loop. nonstop accepts "
       "ttl 0..255 as documented by Heartbeat (its parser refuses ttl > 4: a warning says "
       "so); loop 0 or 1.", _mcast),
    _d("ucast", LINE, "UDP unicast heartbeats to one peer through one interface; a line naming "
       "this node's own address is harmless, so both nodes can share one ha.cf.", _ucast),
    _d("serial", OPT, _SERIAL_REASON),
    _d("baud", OPT, "it sets the speed of serial heartbeat links, which nonstop does not have"),
    _d("mcast6", LINE, _IPV6_REASON),
    _d("ucast6", LINE, _IPV6_REASON),
    _d("ping", OPT, "Ping nodes: each address is pinged (ICMP echo) every keepalive and is "
       "up or dead like a node (deadping). Their states are in nonstop status; with ipfail "
       "on they decide failover (docs/CONFIG.md, Ping nodes and ipfail).", _ping),
    _d("ping_group", LINE, "A ping group: name, then addresses; it is up while any member "
       "answers, and counts as one ping node for ipfail.", _ping_group),
    _d("hbaping", OPT, _PING_REASON),
    _d("udp", OPT, "Old name of bcast; accepted with Heartbeat's warning.", _udp),
    _d("tipc", LINE, "TIPC media are not implemented; nonstop sends heartbeats over UDP only"),
    _d("node", OPT, "A cluster node (lowercased). --node must name one of them; haresources "
       "lines must start with one of them.", node),
    _s(s.AUTOJOIN, "Only 'none' (the default): a fixed node list, which haresources needs. "
       "'other' and 'any' are rejected, as Heartbeat rejects them with haresources."),
    _s(s.HOPFUDGE, "Added to the node count to make the ttl field of our messages."),
    _s(s.CLUSTER, "Cluster name (informational, as in Heartbeat)."),
    _d("quorum_server", OPT, "it configures the crm/ccm quorum daemon; " + _CRM),
    _s(s.UUIDFROM, "Where this node's UUID comes from: 'file' (kept in the state directory) "
       "or 'nodename' (derived from the node name)."),
    _s(s.HBGENMETHOD, "Accepted for Heartbeat's files: 'file' (Heartbeat: a counter in the "
       "state directory) or 'time' (Heartbeat: the start time). nonstop does the same for both: "
       "the last generation plus one, or the clock when that is higher, so neither a restored "
       "state directory nor a clock set back makes peers drop the node as a replay."),
    _s(s.AUTO_FAILBACK, "on: groups return to their preferred node when it comes back; off: "
       "they stay where they are; legacy (the default, with a warning): Heartbeat's old "
       "behaviour.", _auto_failback),
    _d("nice_failback", OPT, "Obsolete; mapped as Heartbeat maps it (off only after an "
       "auto_failback on/off line, else legacy), with warnings.", _nice_failback),
    _s(s.CRM, "Only a false value (off, no, ...): nonstop manages haresources groups. Any "
       "true value is rejected: " + _CRM + "."),
    _s(s.PACEMAKER, "Heartbeat 3 name of crm; same rule."),
    _d("stonith", LINE, "A fencing device for every node: type and parameter file, run "
       "through cluster-glue's stonith command (stonith -t type -F file).", _stonith),
    _d("stonith_host", LINE, "A fencing device: fromhost (* or a node), type, parameters; the "
       "last line for * or this node applies. A dead peer is fenced before its groups are "
       "taken over; no takeover while fencing fails (retried every 5 s).", _stonith),
    _s(s.WATCHDOG, "Kernel watchdog device, opened at start and fed each time our own "
       "heartbeat comes back; timeout ceil((deadtime+10ms)/1000) s."),
    _d("respawn", LINE, "user and command: the command is started as that user once comm is "
       "up and restarted when it exits, as Heartbeat does. ipfail is built in (the line turns "
       "it on); programs that need Heartbeat's client API (ccm, crmd, dopd, ...) are refused "
       "with what to use instead.", _respawn),
    _d("failfast", LINE, _RESPAWN_REASON),
    _d("env", LINE, "NAME=value: respawn clients get HA_NAME=value in their environment.",
       _env),
    _d("apiauth", LINE, "'apiauth ipfail ...' turns the built-in ipfail on; other clients are "
       "accepted with a warning (nonstop serves no Heartbeat client API).", _apiauth),
    _s(s.LOGFILE, "File for log messages (absolute path). Reopened when logrotate moves "
       "it; while it cannot be written (a full disk) one line on stderr says so, its lines "
       "are lost (stderr and syslog still get them) and the first line written after "
       "says how many were lost."),
    _s(s.DEBUGFILE, "File for debug messages (absolute path)."),
    _s(s.LOGFACILITY, "Syslog facility for log messages, or none."),
    _s(s.USE_LOGD, "yes: log to the system log (nonstop has no ha_logd; journald/syslog takes "
       "its place). Default yes when no logfile, debugfile or logfacility is given, else no."),
    _d("conn_logd_time", OPT, "nonstop does not connect to ha_logd, so there is no connection "
       "to retry"),
    _d("syslogmsgfmt", OPT, "nonstop's log line format is fixed"),
    _s(s.LOG_BADPACK, "When false, bad or unauthenticated packets are only counted, not "
       "logged."),
    _s(s.DEBUG, "Debug level 0..255; above 0 nonstop logs debug messages."),
    _s(s.REALTIME, "true: run the daemon SCHED_RR and lock its memory, so heartbeats keep "
       "their timing under load."),
    _s(s.RTPRIO, "SCHED_RR priority 1..99 when realtime; 0 or less means the lowest."),
    _d("memreserve", OPT, "a Python daemon cannot preallocate a fixed memory reserve; realtime "
       "locks the memory in use instead"),
    _s(s.COREDUMPS, "true: allow core dumps of the daemon (RLIMIT_CORE)."),
    _d("coreroot", OPT, "nonstop does not change directory for core dumps; the kernel's "
       "core_pattern decides where they go"),
    _s(s.MSGFMT, "Wire format of outgoing messages: classic or netstring. Default netstring, "
       "which Heartbeat 3.0.6 actually sends (its messages carry binary fields)."),
    _d("compression", OPT, _COMPRESSION_REASON),
    _d("compression_threshold", OPT, _COMPRESSION_REASON),
    _s(s.TRADITIONAL_COMPRESSION, "Only a false value: nonstop never compresses."),
    _s(s.USE_APPHBD, "Only a false value: nonstop does not register with apphbd."),
    _d("normalpoll", OPT, "it selects Heartbeat's poll implementation; nonstop uses asyncio"),
    _d("record_config_changes", OPT, _CRM),
    _d("record_pengine_inputs", OPT, _CRM),
    _d("enable_config_writes", OPT, _CRM),
    _d("crm_daemon_dir", OPT, _CRM),
    _d("crmd_spawns_pengine", OPT, _CRM),
    _s(s.NONSTOP_MONITOR, "nonstop only: check each started resource with its status action "
       "every <time> (e.g. 'nonstop_monitor 5' = every 5 s) and recover a group whose "
       "resource stopped. Absent or 0: no monitoring, as in Heartbeat v1."),
    _s(s.NONSTOP_SYNC, "nonstop only: replicate continuously with the csync2.cfg at this "
       "absolute path (e.g. 'nonstop_sync /etc/csync2.cfg'): the node holding a group pushes "
       "each change within a second, force-syncs on takeover and pushes once more when it "
       "releases. Absent: no replication by the daemon (cron + 'nonstop sync -x' still work)."),
    _s(s.NONSTOP_MAILRELAY, "nonstop only: MailTo sends through SMTP to this relay, "
       "host[:port] (port 25 if not given; plain SMTP, no authentication). Absent: MailTo "
       "hands its mail to the local MTA's sendmail (/usr/sbin/sendmail: nullmailer, msmtp, "
       "exim, postfix...) when there is one, as Heartbeat's MailTo used mail(1), else SMTP "
       "to localhost:25."),
    _d("nonstop_notify", OPT, "nonstop only (repeatable): run this program (absolute path) "
       "for every history event, in order, one at a time, the event in NONSTOP_EVENT_* "
       "variables; retried with back-off until it exits 0 (docs/OBSERVE.md).", notify),
    _s(s.NONSTOP_METRICS, "nonstop only: serve Prometheus /metrics and the read-only status "
       "page on PORT of localhost, or on ADDRESS:PORT (another address must be written out; "
       "docs/OBSERVE.md). Absent: not served."),
    _s(s.NONSTOP_ETCD, "nonstop only: a group may be held only under a lease in this etcd "
       "cluster: endpoint URLs, then prefix=, cacert=, cert=, key= (docs/ETCD.md). Absent: "
       "heartbeats alone decide, as in Heartbeat v1.", _words(s.NONSTOP_ETCD)),
    _s(s.NONSTOP_ADDRESS_PROBE, "nonstop only: before a takeover from a node declared dead "
       "adds a virtual address, ask the link with ARP probes for this long whether another "
       "host answers for it; if one does, the address is not added and the start fails "
       "(docs/SECURITY.md). No probe in a hand-off from a live node. 0: never probe."),
)  # fmt: skip

DIRECTIVES: dict[str, Directive] = {d.name: d for d in _TABLE}

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
                                       "nonstop_etcd", "nonstop_notify", "nonstop_metrics",
                                       "nonstop_address_probe")
