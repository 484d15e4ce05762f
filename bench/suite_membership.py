"""Membership (issue 2): idle CPU and memory per node at keepalive 200 ms, and the detection
time from killing a node to the survivor's "node X: is dead" line.

Each system runs the talk's cluster with the group held by one node. Idle usage counts the
system's own processes only (nonstop: the daemon; Heartbeat: its 4 processes; keepalived: its
2), not kamailio or the mail server. Detection kills every process of the standby node (so no
resources move and trials are independent) and restarts it after each trial.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.framework import BenchContext, SuiteResult, Table, plot_path, ratio, spread
from bench.measure import Usage, sample_usage
from bench.systems import NODES, Cluster, other, running_cluster
from nonstop.lab import LabError

SYSTEM_KEYS = ("nonstop", "nonstop-observe", "heartbeat", "keepalived")
IDLE_S = 60.0
IDLE_QUICK_S = 5.0


@dataclass
class Results:
    usage: dict[str, dict[str, Usage]] = field(default_factory=dict)
    detect: dict[str, list[float]] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def _idle(cluster: Cluster, window: float) -> dict[str, Usage]:
    active = cluster.wait_settled(60.0)
    groups = {node: cluster.daemon_pids(node) for node in NODES}
    usage = sample_usage(groups, window)
    roles = {active: "active", other(active): "standby"}
    return {roles[node]: value for node, value in usage.items()}


def _detect(cluster: Cluster) -> float:
    active = cluster.wait_settled(60.0)
    victim = other(active)
    t = cluster.crash(victim)
    seen = cluster.watcher.wait(active, cluster.dead_pattern(victim), t, 20.0)
    cluster.restore(victim, "crash")
    return seen - t


def _measure(key: str, ctx: BenchContext, results: Results) -> None:
    window = IDLE_QUICK_S if ctx.quick else IDLE_S
    try:
        with running_cluster(key, ctx.workdir, quick=ctx.quick) as cluster:
            results.names[key] = cluster.name
            # Let the start-up settle (scripts, first mails) before measuring idle.
            settle = time.monotonic()
            cluster.wait_settled(60.0)
            while time.monotonic() - settle < 2.0:
                time.sleep(0.2)
            results.usage[key] = _idle(cluster, window)
            u = results.usage[key]
            ctx.progress(f"{cluster.name} idle {window:.0f} s: "
                         + ", ".join(f"{role} {v.cpu_percent:.2f} % CPU, {v.pss_mb:.1f} MB PSS"
                                     for role, v in u.items()))
            if not cluster.detects_death or cluster.idle_only:
                return
            for i in range(1, ctx.trials + 1):
                try:
                    value = _detect(cluster)
                except LabError as exc:
                    results.failures.append(f"{cluster.name} detection trial {i}: {exc}\n"
                                            + cluster.log_tails(15))
                    ctx.progress(f"FAILED {cluster.name} detection {i}: {exc}")
                    break
                results.detect.setdefault(key, []).append(value)
                ctx.progress(f"{cluster.name} detection {i}/{ctx.trials}: {value:.2f} s")
    except LabError as exc:
        results.failures.append(f"{key}: {exc}")
        ctx.progress(f"FAILED {key}: {str(exc).splitlines()[0]}")


def _plot(ctx: BenchContext, results: Results, systems: tuple[str, ...]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (cpu_ax, mem_ax, det_ax) = plt.subplots(1, 3, figsize=(12, 3.8))
    labels = list(systems)  # the keys: "nonstop" and "nonstop-observe" must differ
    width = 0.38
    for offset, role in ((-width / 2, "active"), (width / 2, "standby")):
        cpu = [results.usage[k][role].cpu_percent if k in results.usage else 0.0
               for k in systems]
        pss = [results.usage[k][role].pss_mb if k in results.usage else 0.0 for k in systems]
        xs = [i + offset for i in range(len(systems))]
        cpu_ax.bar(xs, cpu, width, label=role)
        mem_ax.bar(xs, pss, width, label=role)
    for ax, title in ((cpu_ax, "idle CPU (% of one core)"), (mem_ax, "PSS (MB)")):
        ax.set_xticks(range(len(systems)), labels)
        ax.set_title(title)
        ax.legend()
        ax.grid(axis="y", alpha=0.3)
    det = [k for k in systems if results.detect.get(k)]
    if det:
        det_ax.boxplot([results.detect[k] for k in det], widths=0.6)
        det_ax.set_xticks(range(1, len(det) + 1),
                          [results.names.get(k, k).split(" ")[0] for k in det])
    det_ax.set_title('kill to "is dead" (s)')
    det_ax.set_ylim(bottom=0)
    det_ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = plot_path(ctx, "membership")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run(ctx: BenchContext, *, systems: tuple[str, ...] = SYSTEM_KEYS) -> SuiteResult:
    """Idle usage of every system, detection time of nonstop and Heartbeat."""
    results = Results()
    for key in systems:
        _measure(key, ctx, results)
    window = IDLE_QUICK_S if ctx.quick else IDLE_S
    rows: list[list[str | float | int | None]] = []
    for key in systems:
        for role in ("active", "standby"):
            u = results.usage.get(key, {}).get(role)
            if u is None:
                continue
            ref = results.usage.get("heartbeat", {}).get(role)
            rows.append([results.names.get(key, key), role, u.processes, u.cpu_percent,
                         u.rss_mb, u.pss_mb,
                         ratio([u.cpu_percent], [ref.cpu_percent]) if ref else "-",
                         ratio([u.pss_mb], [ref.pss_mb]) if ref else "-"])
    result = SuiteResult("Membership: idle cost and failure detection (issue 2)")
    result.tables.append(Table(
        f"Idle CPU and memory per node ({window:.0f} s window, keepalive 200 ms)",
        ["system", "node", "processes", "CPU %", "RSS MB", "PSS MB", "CPU vs Heartbeat",
         "PSS vs Heartbeat"], rows,
        note="CPU % of one core from /proc/PID/stat (utime+stime) over the window; RSS and PSS "
             "(smaps_rollup) summed over the system's own processes at the end of it. nonstop "
             "is one Python process, so its RSS includes the interpreter."))
    det_rows: list[list[str | float | int | None]] = []
    for key in systems:
        values = results.detect.get(key, [])
        if values:
            det_rows.append([results.names.get(key, key), spread(values, "s"), len(values),
                             ratio(values, results.detect.get("heartbeat", []))])
    result.tables.append(Table(
        'Detection: all processes of the standby killed -> the active logs "node X: is dead"',
        ["system", "min / median / max", "trials", "median vs Heartbeat"], det_rows,
        note="deadtime 2 s, keepalive 200 ms (the talk's ha.cf). Log lines are timed when they "
             "appear (files polled every 10 ms), the same way for both systems."))
    result.plots.append(_plot(ctx, results, systems))
    result.notes.extend(f"Failure: {f}" for f in results.failures)
    return result
