"""What a reload (SIGHUP, ``nonstop reload``) may change in a running node, and what waits.

Pure: from the configuration the daemon runs on and the one just read, the configuration to run
on now (the old one with every part that can change live taken from the new one) and one
sentence per change, applied or left for the next start with the reason. The daemon applies
the result; an invalid new configuration never gets here (it is refused whole, with its errors).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from nonstop.config.model import AuthKeys, ClusterConfig, HaConfig

# ha.cf settings a running node takes at once, with the name ha.cf gives them.
LIVE: dict[str, str] = {
    "keepalive_ms": "keepalive",
    "deadtime_ms": "deadtime",
    "warntime_ms": "warntime",
    "logfile": "logfile",
    "debugfile": "debugfile",
    "logfacility": "logfacility",
    "use_logd": "use_logd",
    "debug": "debug",
    "log_badpack": "log_badpack",
    "max_rexmit_delay_ms": "max_rexmit_delay",
    "monitor_interval_ms": "nonstop_monitor",
    "sync_config": "nonstop_sync",
}

# Settings a running node cannot take, and why: they are applied at the next start.
AT_START: dict[str, tuple[str, str]] = {
    "nodes": ("node", "the node list is the membership every peer tracks"),
    "media": ("bcast/ucast/mcast", "the heartbeat sockets are opened at start"),
    "udpport": ("udpport", "the heartbeat sockets are opened at start"),
    "initdead_ms": ("initdead", "it only matters while a node starts"),
    "auto_failback": ("auto_failback", "groups were placed under the current rule"),
    "watchdog": ("watchdog", "the watchdog device is opened at start"),
    "hopfudge": ("hopfudge", "the message TTL is fixed at start"),
    "cluster": ("cluster", "the cluster name is fixed at start"),
    "msgfmt": ("msgfmt", "peers expect one wire format for a node's whole run"),
    "uuidfrom": ("uuidfrom", "the node's identity is fixed at start"),
    "hbgenmethod": ("hbgenmethod", "the node's identity is fixed at start"),
    "realtime": ("realtime", "process settings are applied at start"),
    "rtprio": ("rtprio", "process settings are applied at start"),
    "coredumps": ("coredumps", "process settings are applied at start"),
    "mail_relay": ("nonstop_mailrelay", "MailTo agents are set up at start"),
    "notify_programs": ("nonstop_notify", "the notifiers are started at start"),
    "metrics_address": ("nonstop_metrics", "the status page's socket is opened at start"),
}
# Bookkeeping of where things were written: never a change of behaviour.
_NOT_SETTINGS = frozenset({"path", "parameters", "locations", "warnings"})


@dataclass(frozen=True)
class ReloadPlan:
    """The configuration to run on from now, and one line per change (for the log)."""

    config: ClusterConfig
    applied: tuple[str, ...]
    deferred: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return bool(self.applied or self.deferred)


def _show(field: str, value: object) -> str:
    if value is None:
        return "unset"
    if field.endswith("_ms") and isinstance(value, int):
        return f"{value} ms"
    if isinstance(value, tuple):
        return " ".join(str(v) for v in value) or "none"
    return str(getattr(value, "value", value))


def _describe_keys(keys: AuthKeys) -> str:
    """The key indexes and methods, never a secret."""
    listed = ", ".join(f"{i} {k.method.value}" for i, k in sorted(keys.keys.items()))
    return f"signing with key {keys.active}, accepting {listed}"


def _groups(cfg: ClusterConfig) -> list[tuple[str, tuple[str, ...]]]:
    """The groups as written, without their line numbers (a new comment moves those)."""
    return [(g.node, tuple(r.raw for r in g.resources)) for g in cfg.groups]


def plan_reload(old: ClusterConfig, new: ClusterConfig) -> ReloadPlan:
    """Merge ``new`` into ``old`` as far as a running node can (see :data:`LIVE`)."""
    applied: list[str] = []
    deferred: list[str] = []
    live: dict[str, object] = {}
    for f in dataclasses.fields(HaConfig):
        name = f.name
        before, after = getattr(old.ha, name), getattr(new.ha, name)
        if name in _NOT_SETTINGS or before == after:
            continue
        if name in LIVE:
            live[name] = after
            applied.append(f"{LIVE[name]}: {_show(name, before)} -> {_show(name, after)}")
        else:
            word, why = AT_START.get(name, (name, "it is read at start only"))
            deferred.append(f"{word}: {_show(name, before)} -> {_show(name, after)} is applied "
                            f"at the next start ({why})")
    ha = dataclasses.replace(old.ha, **live, parameters=new.ha.parameters,  # type: ignore[arg-type]
                             locations=new.ha.locations, warnings=new.ha.warnings)
    authkeys = old.authkeys
    if new.authkeys != old.authkeys:
        authkeys = new.authkeys
        applied.append(f"authkeys: {_describe_keys(new.authkeys)}")
    if _groups(new) != _groups(old):
        deferred.append("haresources changed: applied at the next start (a running node does "
                        "not move or redefine resource groups under its peers; restart the "
                        "nodes one after the other)")
    config = dataclasses.replace(old, ha=ha, authkeys=authkeys, warnings=new.warnings)
    return ReloadPlan(config, tuple(applied), tuple(deferred))
