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
from nonstop.config.settings import SETTING

# HaConfig fields a running node takes at once.
LIVE = frozenset({
    "keepalive_ms", "deadtime_ms", "warntime_ms", "logfile", "debugfile", "logfacility",
    "use_logd", "debug", "log_badpack", "max_rexmit_delay_ms", "monitor_interval_ms",
    "sync_config", "deadping_ms",
})  # fmt: skip

# Fields a running node cannot take, and why: they are applied at the next start.
AT_START: dict[str, str] = {
    "nodes": "the node list is the membership every peer tracks",
    "media": "the heartbeat sockets are opened at start",
    "udpport": "the heartbeat sockets are opened at start",
    "initdead_ms": "it only matters while a node starts",
    "auto_failback": "groups were placed under the current rule",
    "watchdog": "the watchdog device is opened at start",
    "hopfudge": "the message TTL is fixed at start",
    "cluster": "the cluster name is fixed at start",
    "msgfmt": "peers expect one wire format for a node's whole run",
    "uuidfrom": "the node's identity is fixed at start",
    "hbgenmethod": "the node's identity is fixed at start",
    "realtime": "process settings are applied at start",
    "rtprio": "process settings are applied at start",
    "coredumps": "process settings are applied at start",
    "mail_relay": "MailTo agents are set up at start",
    "address_probe_ms": "address agents are set up at start",
    "metrics_address": "the status page's socket is opened at start",
    "notify_programs": "the notifiers are started at start",
    "etcd": "the etcd lease keeper is set up at start",
    "ping_targets": "the ping prober is set up at start",
    "ipfail": "peers compare ping counts under one rule for a node's whole run",
    "respawn": "respawn clients are started once, when comm is up",
    "respawn_env": "respawn clients are started once, when comm is up",
    "stonith": "the fencing device is set up at start",
}
# The ha.cf words of the fields that are lists, not one setting's value.
_LIST_WORDS = {"nodes": "node", "media": "bcast/ucast/mcast", "notify_programs": "nonstop_notify",
               "ping_targets": "ping/ping_group", "ipfail": "respawn/apiauth ipfail",
               "respawn": "respawn", "respawn_env": "env", "stonith": "stonith/stonith_host"}
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


def _word(f: dataclasses.Field[object]) -> str:
    """How ha.cf names a HaConfig field: its setting's directive, or the list it holds."""
    setting = f.metadata.get(SETTING)
    return setting.name if setting is not None else _LIST_WORDS.get(f.name, f.name)


# Settings whose 0 turns a feature off (parsed to None): a reload says "off", not "unset".
_NONE_IS_OFF = frozenset({"address_probe_ms", "monitor_interval_ms"})


def _show(field: str, value: object) -> str:
    if value is None:
        return "off" if field in _NONE_IS_OFF else "unset"
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
        change = f"{_word(f)}: {_show(name, before)} -> {_show(name, after)}"
        if name in LIVE:
            live[name] = after
            applied.append(change)
        else:
            why = AT_START.get(name, "it is read at start only")
            deferred.append(f"{change} is applied at the next start ({why})")
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
