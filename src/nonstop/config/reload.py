"""What a reload (SIGHUP, ``nonstop reload``) may change in a running node, and what waits.

Pure: from the configuration the daemon runs on and the one just read, the configuration to run
on now (the old one with every part that can change live taken from the new one) and one
sentence per change, applied or left for the next start with the reason. The daemon applies
the result; an invalid new configuration never gets here (it is refused whole, with its errors).
The csync2.cfg named by ``nonstop_sync`` is part of it: a changed one (or a changed key of a
group this node is in) restarts replication with it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from nonstop.config.csync2 import Csync2Config, Group
from nonstop.config.errors import Location
from nonstop.config.model import AuthKeys, ClusterConfig, HaConfig, Mcast, Medium, Ucast
from nonstop.config.settings import SETTING
from nonstop.records import fields

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
class SyncFiles:
    """A csync2.cfg as replication reads it: the model and the keys of this node's groups (by
    group name; compared, never shown)."""

    config: Csync2Config
    keys: dict[str, bytes]


@dataclass(frozen=True)
class ReloadPlan:
    """The configuration to run on from now, one line per change (for the log), and whether
    replication restarts (``nonstop_sync`` names another file, or its files changed)."""

    config: ClusterConfig
    applied: tuple[str, ...]
    deferred: tuple[str, ...]
    restart_sync: bool = False

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
        if field == "media":
            return ", ".join(_medium(m) for m in value) or "none"
        return " ".join(str(v) for v in value) or "none"
    return str(getattr(value, "value", value))


def _medium(m: Medium) -> str:
    """A medium as its ha.cf line says it (not the dataclass's repr)."""
    if isinstance(m, Ucast):
        return f"ucast {m.iface} {m.peer}"
    if isinstance(m, Mcast):
        return f"mcast {m.iface} {m.group} {m.port} {m.ttl} {int(m.loop)}"
    return f"bcast {m.iface}"


def _describe_keys(keys: AuthKeys) -> str:
    """The key indexes and methods, never a secret."""
    listed = ", ".join(f"{i} {k.method.value}" for i, k in sorted(keys.keys.items()))
    return f"signing with key {keys.active}, accepting {listed}"


def _groups(cfg: ClusterConfig) -> list[tuple[str, tuple[str, ...]]]:
    """The groups as written, without their line numbers (a new comment moves those)."""
    return [(g.node, tuple(r.raw for r in g.resources)) for g in cfg.groups]


def _bare(value: object) -> object:
    """``value`` without where it was written: a comment that moves lines changes nothing."""
    if isinstance(value, Location):
        return None
    if hasattr(value, "__record_fields__"):
        return tuple((name, _bare(getattr(value, name))) for name in fields(value))
    if isinstance(value, tuple | list):
        return tuple(_bare(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _bare(v)) for k, v in value.items()))
    if isinstance(value, frozenset | set):
        return tuple(sorted(value))
    return value


# How csync2.cfg names the Group fields whose name is not the directive's.
_CSYNC2_WORDS = {"hosts": "host", "key_file": "key", "actions": "action"}


def _group_changes(before: Group, after: Group) -> list[str]:
    """What changed in one csync2 group, in csync2.cfg's words."""
    def written(g: Group) -> list[str]:
        return [f"{'include' if p.include else 'exclude'} {p.text}" for p in g.patterns]

    old, new = written(before), written(after)
    out = [f"{p} added" for p in new if p not in old]
    out += [f"{p} removed" for p in old if p not in new]
    if [p for p in new if p in old] != [p for p in old if p in new]:
        out.append("include/exclude order changed")
    for name in fields(after):
        b, a = getattr(before, name), getattr(after, name)
        if name in ("name", "patterns", "loc", "key_loc") or _bare(b) == _bare(a):
            continue
        word = _CSYNC2_WORDS.get(name, name.replace("_", "-"))
        if isinstance(a, tuple):  # hosts, compare patterns, actions
            out.append(f"{word} lines changed")
        else:
            out.append(f"{word} {_show(name, b)} -> {_show(name, a)}")
    return out


def sync_changes(before: SyncFiles, after: SyncFiles) -> list[str]:
    """What changed between two readings of a csync2.cfg and its keys, group by group (never
    a key); empty if nothing did."""
    old = {g.name: g for g in before.config.groups}
    new = {g.name: g for g in after.config.groups}
    out = [f"group {n} added" for n in new if n not in old]
    out += [f"group {n} removed" for n in old if n not in new]
    for n, g in new.items():
        if n not in old:
            continue
        parts = _group_changes(old[n], g)
        if before.keys.get(n) != after.keys.get(n):
            parts.append("its key changed")
        if parts:
            out.append(f"group {n}: {', '.join(parts)}")
    rest = [f for f in fields(after.config) if f not in ("path", "groups")]
    if any(_bare(getattr(before.config, f)) != _bare(getattr(after.config, f)) for f in rest):
        out.append("settings outside the groups changed")
    return out


def plan_reload(old: ClusterConfig, new: ClusterConfig, running_sync: SyncFiles | None = None,
                new_sync: SyncFiles | None = None) -> ReloadPlan:
    """Merge ``new`` into ``old`` as far as a running node can (see :data:`LIVE`).

    ``new_sync`` is the csync2.cfg ``new`` names (read with it), ``running_sync`` the one
    replication runs with (None: replication is not running)."""
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
    restart = new.ha.sync_config != old.ha.sync_config
    if not restart and new_sync is not None:
        path = new_sync.config.path
        if running_sync is None:
            restart = True
            applied.append(f"replication: was not running: started with {path}")
        elif changes := sync_changes(running_sync, new_sync):
            restart = True
            applied.append(f"replication: {path} changed ({'; '.join(changes)}): restarted")
    config = dataclasses.replace(old, ha=ha, authkeys=authkeys, warnings=new.warnings)
    return ReloadPlan(config, tuple(applied), tuple(deferred), restart)
