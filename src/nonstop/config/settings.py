"""The single-valued ha.cf settings: each one's type, default and value syntax, in one place.

A :class:`Setting` holds the converter that parses a directive's value (``ValueError`` with a
message for humans; the parser adds ``file:line``), its default written as ha.cf would write
it, and the typed value that default converts to. The directive table
(:mod:`nonstop.config.directives`) refers to these settings, the parser stores what their
converters return, and :class:`~nonstop.config.model.HaConfig` declares each field with
``SETTING.field()``: a default is written once, here, the way Heartbeat's own Directives[]
table writes it (a string run through the same parser as a value in the file).
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from nonstop.config.etcd import EtcdSettings, parse_etcd
from nonstop.config.units import parse_bool, parse_msec
from nonstop.errors import InvalidValue, NonstopError

T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)

IFNAMSIZ = 15
SETTING = "setting"  # the key of a model field's metadata that names its Setting

SYSLOG_FACILITIES = frozenset(
    {
        "auth", "authpriv", "cron", "daemon", "ftp", "kern", "lpr", "mail", "news",
        "syslog", "user", "uucp",
        "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
    }
)  # fmt: skip


class BadValue(NonstopError):
    """A value that cannot be accepted, with the whole message for its line (no prefix)."""


class Unsupported(NonstopError):
    """A well-formed value asking for a feature nonstop lacks; the message is the reason."""


class AutoFailback(enum.Enum):
    """``auto_failback on|off|legacy`` (Heartbeat's default is legacy)."""

    ON = "on"
    OFF = "off"
    LEGACY = "legacy"


# The enums below are StrEnums: a member is the very string ha.cf holds, so code and logs that
# compare or print it as text keep working, while the model says which values can exist.


class MsgFmt(enum.StrEnum):
    """``msgfmt``: the wire format of the messages we send."""

    CLASSIC = "classic"
    NETSTRING = "netstring"


class UuidFrom(enum.StrEnum):
    """``uuidfrom``: where this node's UUID comes from."""

    FILE = "file"  # kept in the state directory
    NODENAME = "nodename"  # derived from the node name


class HbGenMethod(enum.StrEnum):
    """``hbgenmethod``: the source of the heartbeat generation number."""

    FILE = "file"  # a counter in the state directory
    TIME = "time"  # the start time


# ---------------------------------------------------------------------------------------------
# value converters (raise ValueError with a message for humans, or BadValue for a whole line)


def positive_time(text: str) -> int:
    """A Heartbeat time above 0, in milliseconds."""
    ms = parse_msec(text)
    if ms <= 0:
        raise InvalidValue(f"'{text}' must be more than 0 ms")
    return ms


def whole_number(text: str) -> int:
    if not re.fullmatch(r"-?[0-9]+", text):
        raise InvalidValue(f"'{text}' is not a whole number")
    return int(text)


def int_range(lo: int, hi: int) -> Callable[[str], int]:
    """A whole number in ``lo..hi``."""

    def convert(text: str) -> int:
        n = whole_number(text)
        if not lo <= n <= hi:
            raise InvalidValue(f"{n} is out of range {lo}..{hi}")
        return n

    return convert


def member(kind: type[E]) -> Callable[[str], E]:
    """One of an enum's values, as written (case-sensitive, as Heartbeat compares them)."""

    def convert(text: str) -> E:
        for m in kind:
            if m.value == text:
                return m
        raise InvalidValue(f"'{text}' must be one of: {', '.join(str(m.value) for m in kind)}")

    return convert


def abs_path(text: str) -> str:
    if not text.startswith("/"):
        raise InvalidValue(f"'{text}' must be an absolute path")
    return text


def name(text: str) -> str:
    return text


def iface(text: str) -> str:
    """A network interface name as the kernel allows it."""
    if len(text) > IFNAMSIZ or "/" in text or text in {".", ".."}:
        raise InvalidValue(f"'{text}' is not a network interface name")
    return text


def facility(text: str) -> str | None:
    """A syslog facility; ``none`` is no facility."""
    if text == "none":
        return None
    if text not in SYSLOG_FACILITIES:
        raise InvalidValue(
            f"'{text}' is not a syslog facility (use one of {', '.join(sorted(SYSLOG_FACILITIES))}"
            " or none)"
        )
    return text


def auto_failback(text: str) -> AutoFailback:
    if text.lower() == "legacy":
        return AutoFailback.LEGACY
    try:
        return AutoFailback.ON if parse_bool(text) else AutoFailback.OFF
    except ValueError:
        raise InvalidValue(f"'{text}' must be on, off or legacy") from None


def rtprio(text: str) -> int | None:
    prio = whole_number(text)
    if prio <= 0:
        return None  # Heartbeat: the lowest priority of the scheduling class
    if prio > 99:
        raise InvalidValue(f"{prio} is above the highest SCHED_RR priority 99")
    return prio


def monitor_interval(text: str) -> int | None:
    ms = parse_msec(text)
    return ms if ms > 0 else None


def address_probe(text: str) -> int | None:
    ms = parse_msec(text)
    if ms > 5000:
        raise InvalidValue(f"{text} is too long: an ARP probe of more than 5 s delays every "
                           "takeover by as much")
    return ms if ms > 0 else None


def autojoin(text: str) -> str:
    if text in {"other", "any"}:
        raise Unsupported(
            "R1 style resource management conflicts with autojoin set (haresources needs "
            "a fixed node list)"
        )
    if text != "none":
        raise InvalidValue(f"'{text}' must be none, other or any")
    return text


def only_false(reason: str, *, true_words: frozenset[str] = frozenset()) -> Callable[[str], bool]:
    """A boolean feature nonstop lacks: the false value is what nonstop does anyway.

    ``true_words``: more values that mean the feature is on (crm's respawn, minimal, ...).
    """

    def convert(text: str) -> bool:
        try:
            on = parse_bool(text)
        except ValueError:
            if text.lower() not in true_words:
                raise
            on = True
        if on:
            raise Unsupported(reason)
        return False

    return convert


def sync_config(text: str) -> str:
    if not text.startswith("/"):
        raise BadValue(f"nonstop_sync needs an absolute path to a csync2.cfg, not {text!r}")
    return text


def etcd(text: str) -> EtcdSettings:
    """``nonstop_etcd``: endpoint URLs and options, separated by commas or whitespace."""
    return parse_etcd([w for w in re.split(r"[,\s]+", text) if w])


def mail_relay(text: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
    if not colon:
        host, port = text, "25"
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise InvalidValue(f"write host[:port] (e.g. 'smtp.example.com:587'), not {text!r}")
    return host, int(port)


def metrics_address(text: str) -> tuple[str, int]:
    """``nonstop_metrics``: PORT (localhost), ADDRESS:PORT or [IPv6]:PORT. Another address
    than localhost must be written out, so the page is never served to a network by accident."""
    host, _, port = text.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    host = host[1:-1] if bracketed else host
    if not port.isdigit() or not 1 <= int(port) <= 65535 or "[" in host or "]" in host:
        raise InvalidValue(f"write PORT or ADDRESS:PORT (e.g. '127.0.0.1:9464'), not {text!r}")
    if ":" in host and not bracketed:  # '::1:9464' is also an address: where is the port?
        raise InvalidValue(f"write an IPv6 address in brackets, e.g. '[::1]:9464', not {text!r}")
    try:
        ipaddress.ip_address(host or "127.0.0.1")
    except ValueError:
        raise InvalidValue(f"{host!r} is not an IP address") from None
    return host or "127.0.0.1", int(port)


# ---------------------------------------------------------------------------------------------
# computed defaults (Heartbeat's startup rules for a directive that is absent)


def warntime_for(deadtime_ms: int) -> int:
    return deadtime_ms // 2


def initdead_for(deadtime_ms: int) -> int:
    if deadtime_ms > 10000:
        return deadtime_ms
    if deadtime_ms < 6000:
        return 12000
    return 2 * deadtime_ms


def use_logd_for(log_given: bool) -> bool:
    """use_logd when absent: yes unless a logfile, debugfile or logfacility is given."""
    return not log_given


# ---------------------------------------------------------------------------------------------
# the settings


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One single-valued directive: its converter, and its value when the file omits it."""

    name: str  # the directive, as written in ha.cf
    convert: Callable[[str], T] = dataclasses.field(repr=False)
    initial: T  # the value when the directive is absent
    # How the default is shown (docs/CONFIG.md, HaConfig.parameters): ha.cf syntax, or the
    # rule ("deadtime/2", "computed") of a computed one; None: absent means unset.
    default: str | None

    def field(self) -> T:
        """A model field (a dataclasses.field) that defaults to this setting and names it."""
        made: T = dataclasses.field(default=self.initial, metadata={SETTING: self})
        return made


def given(name: str, convert: Callable[[str], T], default: str) -> Setting[T]:
    """A setting whose default is written in ha.cf syntax and parsed like a value."""
    return Setting(name, convert, convert(default), default)


def optional(name: str, convert: Callable[[str], T]) -> Setting[T | None]:
    """A setting that is unset (None) when absent."""
    return Setting[T | None](name, convert, None, None)


def computed(name: str, convert: Callable[[str], T], rule: str, initial: T) -> Setting[T]:
    """A setting whose default follows from others (``rule`` says how, for the docs)."""
    return Setting(name, convert, initial, rule)


CRM_REASON = (
    "crm/pacemaker mode is out of scope; nonstop manages the haresources groups itself (crm off)"
)
_CRM_TRUE_WORDS = frozenset({"respawn", "minimal", "manual", "valgrind"})  # crm's "on" modes
COMPRESSION_REASON = "nonstop's messages are small and never compressed"

# In the order of the directive table. A model field names its setting with SETTING.field().
KEEPALIVE = given("keepalive", positive_time, "1000ms")
DEADTIME = given("deadtime", positive_time, "30000ms")
WARNTIME = computed("warntime", positive_time, "deadtime/2", warntime_for(DEADTIME.initial))
INITDEAD = computed("initdead", positive_time, "computed", initdead_for(DEADTIME.initial))
DEADPING = computed("deadping", positive_time, "deadtime", DEADTIME.initial)
MAX_REXMIT_DELAY = given("max_rexmit_delay", int_range(1, 60000), "250")
UDPPORT = given("udpport", int_range(1, 65535), "694")
AUTOJOIN = given("autojoin", autojoin, "none")
HOPFUDGE = given("hopfudge", int_range(0, 255), "1")
CLUSTER = given("cluster", name, "linux-ha")
UUIDFROM = given("uuidfrom", member(UuidFrom), "file")
HBGENMETHOD = given("hbgenmethod", member(HbGenMethod), "file")
AUTO_FAILBACK = given("auto_failback", auto_failback, "legacy")
CRM = given("crm", only_false(CRM_REASON, true_words=_CRM_TRUE_WORDS), "off")
PACEMAKER = optional("pacemaker", only_false(CRM_REASON, true_words=_CRM_TRUE_WORDS))
WATCHDOG = optional("watchdog", abs_path)
LOGFILE = optional("logfile", abs_path)
DEBUGFILE = optional("debugfile", abs_path)
LOGFACILITY = optional("logfacility", facility)
USE_LOGD = computed("use_logd", parse_bool, "computed", use_logd_for(log_given=False))
LOG_BADPACK = given("log_badpack", parse_bool, "true")
DEBUG = given("debug", int_range(0, 255), "0")
REALTIME = given("realtime", parse_bool, "true")
RTPRIO = optional("rtprio", rtprio)
COREDUMPS = given("coredumps", parse_bool, "true")
MSGFMT = given("msgfmt", member(MsgFmt), "netstring")
TRADITIONAL_COMPRESSION = optional("traditional_compression", only_false(COMPRESSION_REASON))
USE_APPHBD = optional(
    "use_apphbd", only_false("nonstop does not register with apphbd; systemd supervises it")
)
NONSTOP_MONITOR = optional("nonstop_monitor", monitor_interval)
NONSTOP_SYNC = optional("nonstop_sync", sync_config)
NONSTOP_MAILRELAY = optional("nonstop_mailrelay", mail_relay)
NONSTOP_METRICS = optional("nonstop_metrics", metrics_address)
NONSTOP_ETCD = optional("nonstop_etcd", etcd)
NONSTOP_ADDRESS_PROBE = given("nonstop_address_probe", address_probe, "100ms")
