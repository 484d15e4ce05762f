"""/metrics writes what the official client library wrote, byte for byte, without loading it
in the daemon (issue 15: the library costs ~1.8 MB of heap). The library is the oracle here."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_observe_recorder import SAMPLE_STATUS

from nonstop.observe.exposition import Family, go_float, render
from nonstop.observe.metrics import ACTION_BUCKETS, TAKEOVER_BUCKETS, Metrics, StatusCollector

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client import (  # noqa: E402
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily  # noqa: E402
from prometheus_client.utils import floatToGoString  # noqa: E402


def _library_metrics() -> tuple[CollectorRegistry, dict[str, object]]:
    """The metrics as nonstop made them with the client library (before issue 15)."""
    r = CollectorRegistry()
    m: dict[str, object] = {
        "events": Counter("nonstop_events", "History records written, by kind.", ["kind"],
                          registry=r),
        "node_changes": Counter("nonstop_node_status_changes", "Status changes of each node "
                                "as seen here, by new status.", ["node", "status"], registry=r),
        "takeovers": Counter("nonstop_takeovers", "Groups acquired by this node (start to "
                             "held).", ["group"], registry=r),
        "takeover_seconds": Histogram(
            "nonstop_takeover_duration_seconds", "Time from starting a group's acquisition to "
            "holding it (every resource started).", ["group"], buckets=TAKEOVER_BUCKETS,
            registry=r),
        "group_failures": Counter("nonstop_group_failures", "Failed group starts and stops "
                                  "on this node.", ["group", "action"], registry=r),
        "action_seconds": Histogram(
            "nonstop_resource_action_duration_seconds", "Duration of resource actions (start, "
            "stop; monitor: status checks that found a change).", ["resource", "action"],
            buckets=ACTION_BUCKETS, registry=r),
        "action_failures": Counter("nonstop_resource_action_failures", "Failed resource "
                                   "actions (monitor: a resource found not running).",
                                   ["resource", "action"], registry=r),
        "sync_conflicts": Counter("nonstop_sync_conflicts", "Replication conflicts met while "
                                  "pushing.", registry=r),
        "notify_pending": Gauge("nonstop_notify_pending_events", "Events recorded but not yet "
                                "delivered to a nonstop_notify program.", ["program"],
                                registry=r),
        "notify_delivered": Counter("nonstop_notify_delivered", "Events a nonstop_notify "
                                    "program accepted (exit 0).", ["program"], registry=r),
        "notify_failures": Counter("nonstop_notify_failures", "Runs of a nonstop_notify "
                                   "program that failed or timed out (each is retried).",
                                   ["program"], registry=r),
    }
    return r, m


def _apply(m: object, lib: dict[str, Any]) -> None:
    ours: dict[str, Any] = {name: getattr(m, name) for name in lib}
    for side in (ours, lib):
        side["events"].labels("node_dead").inc()
        side["events"].labels("node_dead").inc()
        side["events"].labels('odd "kind"\\\n').inc(3)
        side["node_changes"].labels("vpbx1-2", "dead").inc()
        side["takeovers"].labels("g").inc()
        for took in (0.03, 0.05, 1.5, 200.0):
            side["takeover_seconds"].labels("g").observe(took)
        side["group_failures"].labels("g", "start").inc()
        side["action_seconds"].labels("IPaddr::x", "start").observe(0.012)
        side["action_failures"].labels("IPaddr::x", "monitor").inc()
        side["sync_conflicts"].inc(2)
        side["notify_pending"].labels("/bin/true").set(4)
        side["notify_delivered"].labels("/bin/true").inc()


def test_recorded_metrics_render_as_the_library_renders_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", lambda: 1764921600.123456)  # every _created sample
    ours = Metrics()
    reg, lib = _library_metrics()
    assert render(m.collect() for m in ours.registry.metrics) == generate_latest(reg)
    _apply(ours, lib)
    assert render(m.collect() for m in ours.registry.metrics) == generate_latest(reg)
    assert ours.registry.get_sample_value("nonstop_takeover_duration_seconds_bucket",
                                          {"group": "g", "le": "0.05"}) == 2
    assert ours.registry.get_sample_value("nonstop_events_total", {"kind": "x"}) is None


def test_status_families_render_as_the_library_renders_them() -> None:
    for family in StatusCollector(SAMPLE_STATUS).collect():
        make = CounterMetricFamily if family.kind == "counter" else GaugeMetricFamily
        theirs = make(family.name, family.doc, labels=list(family.labelnames))
        for _name, labels, value in family.samples:
            theirs.add_metric([v for _k, v in labels], value)
        reg = CollectorRegistry()
        reg.register(_Fixed(theirs))  # type: ignore[arg-type]
        assert render([family]) == generate_latest(reg), family.name


class _Fixed:
    def __init__(self, family: object) -> None:
        self.family = family

    def collect(self) -> list[object]:
        return [self.family]


def test_process_metrics_are_the_library_collectors() -> None:
    from prometheus_client.process_collector import ProcessCollector

    reg = CollectorRegistry()
    ProcessCollector(registry=reg)
    theirs = [line for line in generate_latest(reg).decode().splitlines()
              if line.startswith("#")]
    ours = Metrics().render(SAMPLE_STATUS).decode().splitlines()
    assert [line for line in ours if line.startswith("#")][:len(theirs)] == theirs
    assert len(theirs) == 12
    rss = Metrics().registry.get_sample_value("process_resident_memory_bytes")
    assert rss is not None and rss > 1e6


@given(st.one_of(st.floats(allow_nan=True), st.integers(-10**20, 10**20)))
def test_values_are_written_as_go_writes_them(value: float) -> None:
    assert go_float(value) == floatToGoString(value)  # type: ignore[no-untyped-call]


def test_a_counter_refuses_to_go_down() -> None:
    m = Metrics()
    with pytest.raises(ValueError, match="non-negative"):
        m.sync_conflicts.inc(-1)
    with pytest.raises(ValueError):
        m.events.labels("a", "b")
    assert isinstance(StatusCollector(SAMPLE_STATUS).collect().__next__(), Family)


def test_a_node_with_metrics_does_not_load_the_client_library() -> None:
    code = ("import json, sys\nfrom nonstop.observe.metrics import Metrics\n"
            "Metrics().render(json.loads(sys.argv[1]))\n"
            "import nonstop.observe.web\n"
            "print(sorted(m for m in ('prometheus_client', 'http.server', 'email') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code, json.dumps(SAMPLE_STATUS)],
                          capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
