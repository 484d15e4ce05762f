"""Prometheus metrics (names and labels: docs/METRICS.md).

Two sources: what the recorder counts as things happen (takeovers and their durations,
resource actions, conflicts, notifications), kept in counters and histograms; and the state
of the moment, read from the ``status --json`` document at each scrape, so that ``/metrics``
and ``nonstop status --json`` can never disagree on the state of the cluster. The text is
the official client library's (nonstop.observe.exposition).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from nonstop.observe.exposition import Family, Metric, ProcessMetrics, counter, gauge, render

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
NODE_STATES = ("init", "up", "active", "dead")
GROUP_STATES = ("none", "starting", "held", "stopping", "stop_failed", "start_failed")
RESOURCE_STATES = ("unknown", "running", "stopped", "failed")
TAKEOVER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0)
ACTION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


Sample = tuple[str, tuple[tuple[str, str], ...]]


def parse(text: str) -> tuple[dict[str, str], dict[Sample, float]]:
    """A scraped text read back (for the tests and the benchmarks, with the official client
    library's parser): each family's type by name, and each sample's value by (name, sorted
    labels)."""
    from prometheus_client.parser import text_string_to_metric_families

    families = list(text_string_to_metric_families(text))  # type: ignore[no-untyped-call,unused-ignore]
    types = {f.name: f.type for f in families}
    return types, {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for f in families for s in f.samples}


class Registry:
    """The recorded metrics, in the order they were made, after the process's own."""

    def __init__(self) -> None:
        self.process = ProcessMetrics()
        self.metrics: list[Metric] = []

    def add(self, name: str, doc: str, kind: str, labels: list[str] | None = None,
            buckets: tuple[float, ...] = ()) -> Metric:
        metric = Metric(name, doc, kind, labels or (), buckets)
        self.metrics.append(metric)
        return metric

    def collect(self) -> list[Family]:
        return [*self.process.collect(), *(m.collect() for m in self.metrics)]

    def get_sample_value(self, name: str, labels: Mapping[str, str] | None = None
                         ) -> float | None:
        """One sample's value, None if absent (as the client library's registry)."""
        want = sorted((labels or {}).items())
        for family in self.collect():
            for sample_name, sample_labels, value in family.samples:
                if sample_name == name and sorted(sample_labels) == want:
                    return value
        return None


class Metrics:
    """The counters and histograms the recorder feeds, in a registry of their own (with the
    process's CPU and memory)."""

    def __init__(self) -> None:
        r = self.registry = Registry()

        def counter_(name: str, doc: str, labels: list[str] | None = None) -> Metric:
            return r.add(name, doc, "counter", labels)

        self.events = counter_("nonstop_events", "History records written, by kind.", ["kind"])
        self.node_changes = counter_("nonstop_node_status_changes", "Status changes of each "
                                     "node as seen here, by new status.", ["node", "status"])
        self.takeovers = counter_("nonstop_takeovers", "Groups acquired by this node (start "
                                  "to held).", ["group"])
        self.takeover_seconds = r.add(
            "nonstop_takeover_duration_seconds", "Time from starting a group's acquisition "
            "to holding it (every resource started).", "histogram", ["group"],
            TAKEOVER_BUCKETS)
        self.group_failures = counter_("nonstop_group_failures", "Failed group starts and "
                                       "stops on this node.", ["group", "action"])
        self.action_seconds = r.add(
            "nonstop_resource_action_duration_seconds", "Duration of resource actions "
            "(start, stop; monitor: status checks that found a change).", "histogram",
            ["resource", "action"], ACTION_BUCKETS)
        self.action_failures = counter_("nonstop_resource_action_failures", "Failed resource "
                                        "actions (monitor: a resource found not running).",
                                        ["resource", "action"])
        self.sync_conflicts = counter_("nonstop_sync_conflicts", "Replication conflicts met "
                                       "while pushing.")
        self.notify_pending = r.add("nonstop_notify_pending_events", "Events recorded but not "
                                    "yet delivered to a nonstop_notify program.", "gauge",
                                    ["program"])
        self.notify_delivered = counter_("nonstop_notify_delivered", "Events a nonstop_notify "
                                         "program accepted (exit 0).", ["program"])
        self.notify_failures = counter_("nonstop_notify_failures", "Runs of a nonstop_notify "
                                        "program that failed or timed out (each is retried).",
                                        ["program"])

    def render(self, status: Mapping[str, Any]) -> bytes:
        """The exposition text: the recorded metrics, then the state of ``status``."""
        return render(self.registry.collect()) + render(StatusCollector(status).collect())


def _g(name: str, doc: str, labels: list[str] | None = None) -> Family:
    return gauge(name, doc, labels or ())


def _c(name: str, doc: str, labels: list[str] | None = None) -> Family:
    return counter(name, doc, labels or ())


def _one_of(family: Family, labels: list[str], states: tuple[str, ...],
            current: str) -> None:
    """An enumeration as Prometheus wants it: one series per state, 1 for the current one."""
    for s in (*states, *(() if current in states else (current,))):
        family.add_metric([*labels, s], 1.0 if s == current else 0.0)


class StatusCollector:
    """The families read from one ``status --json`` document."""

    def __init__(self, st: Mapping[str, Any]) -> None:
        self.st = st

    def collect(self) -> Iterator[Family]:
        st = self.st
        info = _g("nonstop_info", "This node (always 1).", ["node", "cluster"])
        info.add_metric([st["node"], st["cluster"]], 1)
        yield info
        for name, value, doc in (
            ("nonstop_comm_up", float(st["comm_up"]), "1 once every node was heard or "
             "declared dead (Heartbeat's comm up)."),
            ("nonstop_uptime_seconds", st["uptime_s"], "Seconds since the daemon started."),
            ("nonstop_generation", st["generation"], "This node's heartbeat generation."),
        ):
            g = _g(name, doc)
            g.add_metric([], value)
            yield g
        for key in ("keepalive", "deadtime", "warntime", "initdead"):
            g = _g(f"nonstop_{key}_seconds", f"Configured {key} (ha.cf).")
            g.add_metric([], st["timing"][f"{key}_ms"] / 1000)
            yield g
        yield from self._nodes(st["nodes"])
        yield from self._packets(st["packets"])
        yield from self._groups(st["groups"], [n["name"] for n in st["nodes"]])
        yield from self._sync(st.get("sync"))

    def _nodes(self, nodes: list[dict[str, Any]]) -> Iterator[Family]:
        status = _g("nonstop_node_status", "Each node's status as seen here (1 for the "
                    "current one).", ["node", "status"])
        heard = _g("nonstop_node_last_heard_age_seconds", "Seconds since the node's last "
                   "heartbeat (absent if never heard).", ["node"])
        dead = _g("nonstop_node_deadtime_seconds", "Silence after which the node is declared "
                  "dead.", ["node"])
        gen = _g("nonstop_node_generation", "The node's generation as last heard.", ["node"])
        link = _g("nonstop_link_up", "1 while authentic heartbeats from the node arrive on the "
                  "link, 0 when it is dead.", ["node", "link"])
        for n in nodes:
            _one_of(status, [n["name"]], NODE_STATES, n["status"])
            if n["last_heard_ms_ago"] is not None:
                heard.add_metric([n["name"]], n["last_heard_ms_ago"] / 1000)
            dead.add_metric([n["name"]], n["deadtime_ms"] / 1000)
            if n["generation"] is not None:
                gen.add_metric([n["name"]], n["generation"])
            for name, state in sorted(n["links"].items()):
                link.add_metric([n["name"], name], 1.0 if state == "up" else 0.0)
        yield from (status, heard, dead, gen, link)

    def _packets(self, p: dict[str, Any]) -> Iterator[Family]:
        for key, name, doc in (
            ("sent", "nonstop_packets_sent", "Heartbeat messages sent (each copy)."),
            ("received", "nonstop_packets_received", "Datagrams received, before any check."),
            ("send_errors", "nonstop_packet_send_errors", "Sends a medium refused."),
            ("kernel_dropped", "nonstop_packets_kernel_dropped", "Datagrams the kernel "
             "dropped before the daemon read them."),
        ):
            c = _c(name, doc)
            c.add_metric([], p[key])
            yield c
        dropped = _c("nonstop_packets_dropped", "Packets refused or not used, by reason "
                     "(docs/STATUS.md).", ["reason"])
        for reason, n in sorted(p["dropped"].items()):
            dropped.add_metric([reason], n)
        yield dropped
        rexmit = _c("nonstop_rexmit", "Retransmission requests from peers and what they got.",
                    ["outcome"])
        for outcome, n in sorted(p["rexmit"].items()):
            rexmit.add_metric([outcome], n)
        yield rexmit

    def _groups(self, groups: list[dict[str, Any]], nodes: list[str]) -> Iterator[Family]:
        holder = _g("nonstop_group_holder", "1 for the node that holds (or is starting) the "
                    "group according to every live node's advertisement.", ["group", "node"])
        held = _g("nonstop_group_held", "1 while some node holds the group.", ["group"])
        local = _g("nonstop_group_local_state", "This node's state for the group (1 for the "
                   "current one).", ["group", "state"])
        epoch = _g("nonstop_group_epoch", "The group's takeover counter.", ["group"])
        res = _g("nonstop_resource_state", "Each resource's state on this node (1 for the "
                 "current one).", ["group", "resource", "state"])
        for g in groups:
            for n in nodes:
                holder.add_metric([g["key"], n], 1.0 if g["holder"] == n else 0.0)
            held.add_metric([g["key"]], 0.0 if g["holder"] is None else 1.0)
            _one_of(local, [g["key"]], GROUP_STATES, g["local_state"])
            epoch.add_metric([g["key"]], g["epoch"])
            for r in g["resources"]:
                _one_of(res, [g["key"], r["resource"]], RESOURCE_STATES, r["state"])
        yield from (holder, held, local, epoch, res)

    def _sync(self, s: dict[str, Any] | None) -> Iterator[Family]:
        enabled = _g("nonstop_sync_enabled", "1 when this node replicates (nonstop_sync).")
        enabled.add_metric([], 0.0 if s is None else 1.0)
        yield enabled
        if s is None:
            return
        for key, name, doc in (
            ("active", "nonstop_sync_active", "1 while this node pushes (it holds a group)."),
            ("lag_s", "nonstop_sync_lag_seconds", "Age of the oldest change not yet on the "
             "peers."),
            ("dirty", "nonstop_sync_dirty_files", "Files changed here and not yet pushed."),
            ("pending_hints", "nonstop_sync_pending_hints", "Change notifications waiting "
             "for the next push (the queue)."),
        ):
            g = _g(name, doc)
            g.add_metric([], float(s.get(key) or 0))
            yield g
        if s.get("not_replicated") is not None:
            g = _g("nonstop_sync_not_replicated_files", "Files the last full scan left out: "
                   "their name or link target is not UTF-8.")
            g.add_metric([], float(s["not_replicated"]["count"]))
            yield g
        if s.get("last_sync") is not None:
            g = _g("nonstop_sync_last_push_timestamp_seconds", "When the last push ended.")
            g.add_metric([], s["last_sync"])
            yield g
        pushes = _c("nonstop_sync_pushes", "Pushes done since start.")
        pushes.add_metric([], s.get("syncs", 0))
        yield pushes
        sent = _c("nonstop_sync_sent_bytes", "Frame bytes sent to the peers while pushing.")
        sent.add_metric([], s.get("bytes_sent", 0))
        yield sent
        server = s.get("server") or {}
        for key in ("sessions", "refused", "errors", "changes_received", "bytes_received"):
            unit = key.replace("bytes_received", "received_bytes")
            c = _c(f"nonstop_sync_server_{unit}", f"Receiving side: {key.replace('_', ' ')} "
                   "since start.")
            c.add_metric([], server.get(key, 0))
            yield c
