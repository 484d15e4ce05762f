"""The one typed model that ha.cf, authkeys, haresources and csync2.cfg parse into.

Every parser in this package returns these frozen dataclasses; the rest of nonstop reads only
them, never the files. Times are integer milliseconds, as Heartbeat keeps them.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

from nonstop.config import settings as s
from nonstop.config.errors import ConfigError, ConfigErrors, Location
from nonstop.config.etcd import EtcdSettings
from nonstop.config.settings import AutoFailback as AutoFailback
from nonstop.config.settings import HbGenMethod as HbGenMethod
from nonstop.config.settings import MsgFmt as MsgFmt
from nonstop.config.settings import UuidFrom as UuidFrom

if TYPE_CHECKING:  # only annotations: resources imports this module
    from nonstop.ping.targets import PingTarget
    from nonstop.resources.respawn import RespawnSpec
    from nonstop.resources.stonith import StonithDevice

T = TypeVar("T")

HEARTBEAT_PORT = s.UDPPORT.initial


@dataclass(frozen=True)
class Bcast:
    """``bcast IFACE``: UDP broadcast on one interface."""

    iface: str
    port: int = HEARTBEAT_PORT
    loc: Location | None = field(default=None, compare=False, repr=False)  # its ha.cf line

    @property
    def name(self) -> str:
        return self.iface


@dataclass(frozen=True)
class Ucast:
    """``ucast IFACE ADDR``: UDP unicast to one peer address through one interface."""

    iface: str
    peer: str
    port: int = HEARTBEAT_PORT
    loc: Location | None = field(default=None, compare=False, repr=False)

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
    loc: Location | None = field(default=None, compare=False, repr=False)

    @property
    def name(self) -> str:
        return self.iface


Medium = Bcast | Ucast | Mcast


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
    """``ha.cf`` after parsing and validation, defaults filled in as Heartbeat fills them.

    A field declared ``S.field()`` holds setting ``S`` of nonstop.config.settings: its default
    and the syntax of its value are written there, once.
    """

    path: str
    nodes: tuple[str, ...]
    media: tuple[Medium, ...]
    keepalive_ms: int = s.KEEPALIVE.field()
    deadtime_ms: int = s.DEADTIME.field()
    warntime_ms: int = s.WARNTIME.field()
    initdead_ms: int = s.INITDEAD.field()
    udpport: int = s.UDPPORT.field()
    auto_failback: AutoFailback = s.AUTO_FAILBACK.field()
    use_logd: bool = s.USE_LOGD.field()
    logfile: str | None = s.LOGFILE.field()
    debugfile: str | None = s.DEBUGFILE.field()
    logfacility: str | None = s.LOGFACILITY.field()
    debug: int = s.DEBUG.field()
    watchdog: str | None = s.WATCHDOG.field()
    hopfudge: int = s.HOPFUDGE.field()
    cluster: str = s.CLUSTER.field()
    msgfmt: MsgFmt = s.MSGFMT.field()
    log_badpack: bool = s.LOG_BADPACK.field()
    max_rexmit_delay_ms: int = s.MAX_REXMIT_DELAY.field()
    # nonstop's own directives (documented in docs/CONFIG.md); None = feature off.
    monitor_interval_ms: int | None = s.NONSTOP_MONITOR.field()
    sync_config: str | None = s.NONSTOP_SYNC.field()  # the csync2.cfg the daemon replicates with
    # MailTo's SMTP relay (host, port); None = the local MTA's sendmail when there is one, else
    # localhost:25.
    mail_relay: tuple[str, int] | None = s.NONSTOP_MAILRELAY.field()
    # The status page and /metrics (docs/OBSERVE.md); None: not served.
    metrics_address: tuple[str, int] | None = s.NONSTOP_METRICS.field()
    notify_programs: tuple[str, ...] = ()  # nonstop_notify (repeatable): run for every event
    # Who may hold a group: leases in this etcd (docs/ETCD.md). The default is None, and
    # EtcdSettings is frozen: nothing mutable is shared (ruff cannot tell from the type).
    etcd: EtcdSettings | None = s.NONSTOP_ETCD.field()  # noqa: RUF009
    # ARP probe of a virtual address before a takeover adds it (docs/SECURITY.md); None = off.
    address_probe_ms: int | None = s.NONSTOP_ADDRESS_PROBE.field()
    # The string recorded for each directive, given or defaulted (cl_status hbparameter).
    parameters: dict[str, str] = field(default_factory=dict)
    # Where each directive was given, for messages that need to point back at the file.
    locations: dict[str, Location] = field(default_factory=dict)
    uuidfrom: UuidFrom = s.UUIDFROM.field()
    hbgenmethod: HbGenMethod = s.HBGENMETHOD.field()
    realtime: bool = s.REALTIME.field()
    rtprio: int | None = s.RTPRIO.field()  # None: the lowest SCHED_RR priority, as Heartbeat
    coredumps: bool = s.COREDUMPS.field()
    # Ping nodes (``ping``) and groups (``ping_group``), timed out after deadping.
    ping_targets: tuple[PingTarget, ...] = ()
    deadping_ms: int = s.DEADPING.field()
    # Built-in ipfail, on with ``respawn ... ipfail`` or ``apiauth ipfail ...``.
    ipfail: bool = False
    # The respawn clients nonstop starts (ipfail and refused programs are not here), and the
    # environment ``env`` lines give them (HA_NAME=value).
    respawn: tuple[RespawnSpec, ...] = ()
    respawn_env: tuple[tuple[str, str], ...] = ()
    # (fromhost, device) of each stonith/stonith_host line, in file order (``stonith`` is "*").
    stonith: tuple[tuple[str, StonithDevice], ...] = ()
    # Problems that do not stop nonstop from starting (printed by `nonstop check`).
    warnings: tuple[ConfigWarning, ...] = ()

    def stonith_device(self, local_node: str) -> StonithDevice | None:
        """The device ``local_node`` fences with: the last stonith/stonith_host line for
        ``*`` or for it (None: fencing is not configured for it)."""
        from nonstop.resources.stonith import device_for  # resources imports this module

        return device_for(local_node, self.stonith)


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
