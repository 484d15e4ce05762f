"""Counters, gauges and histograms in the Prometheus text format (version 0.0.4).

The text is what ``prometheus_client.generate_latest`` writes for the same metrics, byte for
byte (a unit test compares them): ``_total`` for counters, a ``_created`` series per counter
and histogram child, labels sorted by name, Go's float notation, the process's own
``process_*`` metrics. The client library itself is not used: importing it loads
http.server, wsgiref, urllib.request and email, ~1.8 MB of heap in a daemon that serves
``nonstop_metrics`` with its own small web server (issue 15: an idle node under 25 MB PSS).
"""

from __future__ import annotations

import math
import os
import threading
import time

from nonstop.errors import InvalidValue

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

Labels = tuple[tuple[str, str], ...]
Sample = tuple[str, Labels, float]  # full name, labels (in the family's order), value

INF = float("inf")


def go_float(value: float) -> str:
    """A value as Go (and so Prometheus's client library) writes it."""
    d = float(value)
    if d == INF:
        return "+Inf"
    if d == -INF:
        return "-Inf"
    if math.isnan(d):
        return "NaN"
    s = repr(d)
    dot = s.find(".")
    if d > 0 and dot > 6:  # Go switches to exponents sooner than Python
        mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1:]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return s


class Family:
    """One metric family: its samples as collected (``add_metric`` for the families built
    at each scrape, as prometheus_client's ``*MetricFamily``)."""

    def __init__(self, name: str, doc: str, kind: str, labels: Sequence[str] = ()) -> None:
        # A counter's name is kept without ``_total``; its samples carry it.
        self.name = name[:-6] if kind == "counter" and name.endswith("_total") else name
        self.doc = doc
        self.kind = kind
        self.labelnames = tuple(labels)
        self.samples: list[Sample] = []

    def add_metric(self, values: Sequence[str], value: float) -> None:
        suffix = "_total" if self.kind == "counter" else ""
        self.samples.append((self.name + suffix, tuple(zip(self.labelnames, values,
                                                           strict=True)), float(value)))


def gauge(name: str, doc: str, labels: Sequence[str] = ()) -> Family:
    return Family(name, doc, "gauge", labels)


def counter(name: str, doc: str, labels: Sequence[str] = ()) -> Family:
    return Family(name, doc, "counter", labels)


def _escape_label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _line(name: str, labels: Labels, value: float) -> str:
    if not labels:
        return f"{name} {go_float(value)}\n"
    inner = ",".join(f'{k}="{_escape_label(v)}"' for k, v in sorted(labels))
    return f"{name}{{{inner}}} {go_float(value)}\n"


def render(families: Iterable[Family]) -> bytes:
    """The exposition text of ``families``, as ``generate_latest`` writes it."""
    out: list[str] = []
    for f in families:
        name = f.name + "_total" if f.kind == "counter" else f.name
        doc = f.doc.replace("\\", r"\\").replace("\n", r"\n")
        out += [f"# HELP {name} {doc}\n", f"# TYPE {name} {f.kind}\n"]
        created = [_line(*s) for s in f.samples if s[0] == f.name + "_created"]
        out += [_line(*s) for s in f.samples if s[0] != f.name + "_created"]
        if created:  # OpenMetrics' series: a gauge family of its own, after
            out += [f"# HELP {f.name}_created {doc}\n", f"# TYPE {f.name}_created gauge\n",
                    *created]
    return "".join(out).encode()


class _Child:
    __slots__ = ("buckets", "created", "sum", "value")

    def __init__(self, buckets: int) -> None:
        self.value = 0.0
        self.sum = 0.0
        self.buckets = [0.0] * buckets
        self.created = time.time()


class Metric:
    """A counter, gauge or histogram, with or without labels; ``labels(...)`` gives the
    series of those label values (made on first use), which ``inc``, ``set`` or
    ``observe``. Updated on the event loop, rendered from a worker thread."""

    def __init__(self, name: str, doc: str, kind: str, labels: Sequence[str] = (),
                 buckets: Sequence[float] = ()) -> None:
        self.name = name
        self.doc = doc
        self.kind = kind
        self.labelnames = tuple(labels)
        self.bounds = (*buckets, INF) if buckets and buckets[-1] != INF else tuple(buckets)
        self._children: dict[tuple[str, ...], _Child] = {}
        self._lock = threading.Lock()
        self._values: tuple[str, ...] = ()
        if not self.labelnames:
            self._children[()] = _Child(len(self.bounds))

    def labels(self, *values: object) -> Metric:
        if len(values) != len(self.labelnames):
            raise InvalidValue(f"{self.name}: {len(self.labelnames)} label values expected")
        key = tuple(str(v) for v in values)
        if key not in self._children:
            with self._lock:
                self._children.setdefault(key, _Child(len(self.bounds)))
        view = Metric.__new__(Metric)
        view.__dict__.update(self.__dict__)
        view._values = key
        return view

    def _child(self) -> _Child:
        return self._children[self._values]

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0 and self.kind == "counter":
            raise InvalidValue("Counters can only be incremented by non-negative amounts.")
        self._child().value += amount

    def set(self, value: float) -> None:
        self._child().value = float(value)

    def observe(self, amount: float) -> None:
        child = self._child()
        child.sum += amount
        for i, bound in enumerate(self.bounds):
            if amount <= bound:
                child.buckets[i] += 1
                break

    def collect(self) -> Family:
        family = Family(self.name, self.doc, self.kind, self.labelnames)
        with self._lock:
            children = list(self._children.items())
        for values, c in children:
            labels = tuple(zip(self.labelnames, values, strict=True))
            if self.kind == "gauge":
                family.samples.append((self.name, labels, c.value))
                continue
            if self.kind == "counter":
                family.samples.append((self.name + "_total", labels, c.value))
            else:
                acc = 0.0
                for bound, n in zip(self.bounds, c.buckets, strict=True):
                    acc += n
                    family.samples.append((self.name + "_bucket",
                                           (*labels, ("le", go_float(bound))), acc))
                family.samples.append((self.name + "_count", labels, acc))
                family.samples.append((self.name + "_sum", labels, c.sum))
            family.samples.append((self.name + "_created", labels, c.created))
        return family


class ProcessMetrics:
    """The client library's process collector: memory, CPU, start time, descriptors."""

    def __init__(self) -> None:
        self._ticks = float(os.sysconf("SC_CLK_TCK"))
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._btime = 0.0
        try:
            with open("/proc/stat", "rb") as f:
                for line in f:
                    if line.startswith(b"btime "):
                        self._btime = float(line.split()[1])
        except OSError:
            pass

    def collect(self) -> list[Family]:
        if not self._btime:
            return []
        out: list[Family] = []

        def one(name: str, doc: str, value: float, kind: str = "gauge") -> Family:
            f = Family(name, doc, kind)
            f.add_metric([], value)
            return f

        try:
            with open("/proc/self/stat", "rb") as f:
                parts = f.read().split(b")")[-1].split()
            out += [
                one("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                    float(parts[20])),
                one("process_resident_memory_bytes", "Resident memory size in bytes.",
                    float(parts[21]) * self._page),
                one("process_start_time_seconds",
                    "Start time of the process since unix epoch in seconds.",
                    float(parts[19]) / self._ticks + self._btime),
                one("process_cpu_seconds_total",
                    "Total user and system CPU time spent in seconds.",
                    float(parts[11]) / self._ticks + float(parts[12]) / self._ticks,
                    "counter"),
            ]
        except OSError:
            pass
        try:
            max_fds = None
            with open("/proc/self/limits", "rb") as f:
                for line in f:
                    if line.startswith(b"Max open file"):
                        max_fds = float(line.split()[3])
                        break
            out.append(one("process_open_fds", "Number of open file descriptors.",
                           len(os.listdir("/proc/self/fd"))))
            if max_fds is not None:
                out.append(one("process_max_fds", "Maximum number of open file descriptors.",
                               max_fds))
        except OSError:
            pass
        return out
