"""The one typed model that ha.cf, authkeys, haresources and csync2.cfg parse into.

Every parser in this package returns these frozen dataclasses; the rest of nonstop reads only
them, never the files. Times are integer milliseconds, as Heartbeat keeps them.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from nonstop.config.errors import ConfigError, ConfigErrors, Location

T = TypeVar("T")

HEARTBEAT_PORT = 694


@dataclass(frozen=True)
class Bcast:
    """``bcast IFACE``: UDP broadcast on one interface."""

    iface: str
    port: int = HEARTBEAT_PORT

    @property
    def name(self) -> str:
        return self.iface


@dataclass(frozen=True)
class Ucast:
    """``ucast IFACE ADDR``: UDP unicast to one peer address through one interface."""

    iface: str
    peer: str
    port: int = HEARTBEAT_PORT

    @property
    def name(self) -> str:
        return self.iface


@dataclass(frozen=True)
class Mcast:
    """``mcast IFACE GROUP PORT TTL LOOP``: IPv4 multicast."""

    iface: str
    group: str
    port: int
    ttl: int
    loop: bool

    @property
    def name(self) -> str:
        return self.iface


Medium = Bcast | Ucast | Mcast


class AutoFailback(enum.Enum):
    """``auto_failback on|off|legacy`` (Heartbeat's default is legacy)."""

    ON = "on"
    OFF = "off"
    LEGACY = "legacy"


class AuthMethod(enum.Enum):
    SHA1 = "sha1"
    MD5 = "md5"
    CRC = "crc"


@dataclass(frozen=True)
class AuthKey:
    index: int
    method: AuthMethod
    secret: bytes = field(repr=False)  # empty for crc; kept out of repr so it never reaches a log


@dataclass(frozen=True)
class AuthKeys:
    """``authkeys``: ``active`` signs outgoing packets; any listed index verifies incoming ones."""

    active: int
    keys: dict[int, AuthKey]
    loc: Location = Location("authkeys")

    @property
    def signing_key(self) -> AuthKey:
        return self.keys[self.active]


@dataclass(frozen=True)
class IPSpec:
    """An IPaddr argument ``a.b.c.d[/cidr[/iface[/bcast]]]`` (or ``a.b.c.d/cidr/bcast``).

    None means "not given": the agent derives it from the route that covers ``ip``.
    """

    ip: ipaddress.IPv4Address
    cidr: int | None
    iface: str | None
    broadcast: ipaddress.IPv4Address | None
    raw: str

    def __str__(self) -> str:
        return self.raw


@dataclass(frozen=True)
class ResourceSpec:
    """One resource of a haresources line: ``Name::arg1::arg2`` (IP shorthand becomes IPaddr)."""

    name: str
    args: tuple[str, ...]
    raw: str  # as written in the file, e.g. "10.0.10.10/24/eth0"

    def __str__(self) -> str:
        return self.raw


@dataclass(frozen=True)
class ResourceGroup:
    """One haresources line: the preferred node and its resources, started left to right."""

    node: str
    resources: tuple[ResourceSpec, ...]
    loc: Location

    @property
    def key(self) -> str:
        """The group key: the first resource as written (unique in the file)."""
        return self.resources[0].raw


@dataclass(frozen=True)
class HaConfig:
    """``ha.cf`` after parsing and validation, defaults filled in as Heartbeat fills them."""

    path: str
    nodes: tuple[str, ...]
    media: tuple[Medium, ...]
    keepalive_ms: int = 1000
    deadtime_ms: int = 30000
    warntime_ms: int = 15000
    initdead_ms: int = 30000
    udpport: int = HEARTBEAT_PORT
    auto_failback: AutoFailback = AutoFailback.LEGACY
    use_logd: bool = True
    logfile: str | None = None
    debugfile: str | None = None
    logfacility: str | None = None
    debug: int = 0
    watchdog: str | None = None
    hopfudge: int = 1
    cluster: str = "linux-ha"
    msgfmt: str = "netstring"
    log_badpack: bool = True
    max_rexmit_delay_ms: int = 250
    # nonstop's own directives (documented in docs/CONFIG.md); None = feature off.
    monitor_interval_ms: int | None = None
    sync_config: str | None = None  # nonstop_sync: the csync2.cfg the daemon replicates with
    # nonstop_mailrelay: MailTo's SMTP relay (host, port); None = the local MTA's sendmail when
    # there is one, else localhost:25.
    mail_relay: tuple[str, int] | None = None
    notify_programs: tuple[str, ...] = ()  # nonstop_notify (repeatable): run for every event
    metrics_address: tuple[str, int] | None = None  # nonstop_metrics: page and /metrics
    # The string recorded for each directive, given or defaulted (cl_status hbparameter).
    parameters: dict[str, str] = field(default_factory=dict)
    # Where each directive was given, for messages that need to point back at the file.
    locations: dict[str, Location] = field(default_factory=dict)
    uuidfrom: str = "file"  # "file" | "nodename"
    hbgenmethod: str = "file"  # "file" | "time"
    realtime: bool = True
    rtprio: int | None = None  # None: the lowest SCHED_RR priority, as Heartbeat does
    coredumps: bool = True
    # Problems that do not stop nonstop from starting (printed by `nonstop check`).
    warnings: tuple[ConfigWarning, ...] = ()


@dataclass(frozen=True)
class ClusterConfig:
    """A whole configuration directory (the talk's /etc/ha.d)."""

    directory: str
    ha: HaConfig
    authkeys: AuthKeys
    groups: tuple[ResourceGroup, ...]
    local_node: str | None = None  # the --node this configuration was loaded for, lowercased
    warnings: tuple[ConfigWarning, ...] = ()


@dataclass(frozen=True)
class ConfigWarning:
    """Something in a configuration file worth fixing that does not stop nonstop from starting."""

    loc: Location
    message: str

    def __str__(self) -> str:
        return f"{self.loc}: warning: {self.message}"


@dataclass(frozen=True)
class Parsed(Generic[T]):
    """What a parser found: the value (None when there were errors), every error, every warning."""

    value: T | None
    errors: tuple[ConfigError, ...] = ()
    warnings: tuple[ConfigWarning, ...] = ()

    def unwrap(self) -> T:
        """The value, or ConfigErrors carrying every error found."""
        ConfigErrors.raise_if_any(self.errors)
        assert self.value is not None, "a parser returned neither a value nor an error"
        return self.value
