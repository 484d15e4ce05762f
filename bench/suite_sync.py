"""Replication (issues 4 and 8): nonstop sync beside csync2 2.0 and rsync, measured in the same
lab and run, the daemon's write-to-replica latency and the live-PBX workload.

Per trial and data set (see bench/sync_data.py), for each system in turn (the order rotates
from trial to trial, so slow drifts of the shared machine fall on every system):

* initial sync: vpbx1-2's tree and both nodes' databases emptied, the receiver restarted, then
  one push from vpbx1-1 timed;
* no change: the same push again with nothing changed (config files and the 20,000 files);
* check: after the no-change push of the 20,000 files, a local no-change check of the whole
  tree (``nonstop sync -cr /srv`` / ``csync2 -cr /srv``; rsync has no such mode);
* one change: one of the 20,000 files rewritten with new content, then one push timed;
* nothing to do (with the config files' round): the push command against an empty tree with
  the receiver running, 10 runs (3 in quick mode) after an untimed one: the fixed cost.

rsync runs twice: plain, and with ``--fsync`` (the receiver fsyncs every file, as nonstop
does). Then the live-PBX workload of bench/sync_live.py (issue 8) runs in a lab of its own:
csync2 from cron, lsyncd + rsync and the nonstop daemon on a growing log, voicemail and config
edits.

After every push the two trees are compared entry by entry (type, mode, owner, size, mtime
seconds, BLAKE2b of the content): a push that leaves them different is a failure, not a number.
Both file systems are flushed (``sync -f``) before every timed push, outside the window.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bench.cleanpy import clean_python
from bench.framework import (
    BenchContext,
    SuiteResult,
    Table,
    fmt_float,
    median,
    plot_path,
    ratio,
    spread,
)
from bench.sync_data import DataSet, Entry, change_one, datasets, differences, generate, manifest
from bench.sync_latency import KINDS, Latencies, measure
from bench.sync_live import FULL as LIVE_FULL
from bench.sync_live import LIVE_SYSTEMS, LiveResult, live_table, measure_live
from bench.sync_live import QUICK as LIVE_QUICK
from bench.sync_rotation import Rotation
from bench.sync_rotation import measure_round as rotation_round
from bench.sync_rotation import prepare as prepare_rotation
from bench.sync_rotation import table as rotation_table
from bench.sync_systems import (
    N1,
    NODES,
    SYSTEMS,
    PrivateFilesystems,
    SyncLab,
    System,
    flush,
    prepare_tree,
    same_view_check,
)
from nonstop.lab import Lab, LabError

if TYPE_CHECKING:
    from matplotlib.axes import Axes

SYSTEM_ORDER = ("csync2", "rsync", "rsync_fsync", "nonstop")
# Short names for the ratio columns.
SHORT = {"csync2": "csync2", "rsync": "rsync", "rsync_fsync": "rsync --fsync",
         "nonstop": "nonstop"}
# The mission's targets, and the spec's measurements of the same workloads.
SPEC = {
    ("configs", "initial"): "csync2 3.47 s, rsync 0.29 s",
    ("recordings", "initial"): "csync2 5.21 s, rsync 0.56 s",
    ("many", "initial"): "csync2 40.1 s, rsync 1.99 s",
    ("configs", "nochange"): "csync2 0.068 s, rsync 0.143 s",
    ("many", "nochange"): "csync2 0.376 s, rsync 0.352 s",
    ("many", "onechange"): "csync2 0.437 s, rsync 0.374 s",
}
CASES = (("initial", "initial sync"),
         ("durable", "initial sync + `sync -f` of the replica's file system"),
         ("nochange", "nothing changed"),
         ("check", "no-change check (`-cr /srv`, no peer contacted)"),
         ("onechange", "one file changed"), ("startup", "start-up only (`-M`, nothing to list)"),
         ("idle", "push with nothing to do (empty tree), {runs} runs"))
# Cases measured once per trial, not per data set: their rows name no data set.
GLOBAL_CASES = ("startup", "idle")
IDLE_RUNS = 10
IDLE_QUICK_RUNS = 3
PUSH_TIMEOUT_S = 600.0
LATENCY_SAMPLES = 20
LATENCY_QUICK_SAMPLES = 3


@dataclass
class Results:
    """Seconds per (system, data set, case), failures with reasons, data set sizes."""

    times: dict[tuple[str, str, str], list[float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    filesystem: str = ""
    latency: Latencies = field(default_factory=Latencies)
    # The sources change only by change_one(); their manifests are computed once otherwise.
    source_manifests: dict[str, dict[str, Entry]] = field(default_factory=dict)
    rotation: Rotation | None = None

    def add(self, system: str, ds: str, case: str, value: float) -> None:
        self.times.setdefault((system, ds, case), []).append(value)


def _push(system: System, ds: DataSet, case: str, s: SyncLab, results: Results,
          ctx: BenchContext, label: str) -> bool:
    source = s.source(ds.key)
    timed = system.push(source, PUSH_TIMEOUT_S)
    # Right after the push, before the comparison reads both trees: what the push left in the
    # page cache of the replica is written out now and timed.
    flushed = system.flush_replica()
    if timed.returncode != 0:
        results.failures.append(f"{system.name}, {ds.key} {case} ({label}): exit "
                                f"{timed.returncode}\n{timed.output}")
        ctx.progress(f"FAILED {system.key} {ds.key} {case} {label}: exit {timed.returncode}")
        return False
    if ds.key not in results.source_manifests:
        results.source_manifests[ds.key] = manifest(source)
    diff = differences(results.source_manifests[ds.key], manifest(s.dst))
    if diff:
        results.failures.append(f"{system.name}, {ds.key} {case} ({label}): the trees differ "
                                f"after {timed.seconds:.3f} s:\n" + "\n".join(diff))
        ctx.progress(f"FAILED {system.key} {ds.key} {case} {label}: trees differ: {diff[0]}")
        return False
    results.add(system.key, ds.key, case, timed.seconds)
    ctx.progress(f"{system.key} {ds.key} {case} {label}: {timed.seconds:.3f} s")
    if case == "initial":
        on_disk = timed.seconds + flushed
        results.add(system.key, ds.key, "durable", on_disk)
        ctx.progress(f"{system.key} {ds.key} durable {label}: {on_disk:.3f} s")
    return True


def _idle(system: System, s: SyncLab, results: Results, ctx: BenchContext, label: str) -> bool:
    """The push command with nothing to do (an empty tree, the receiver running): its fixed
    cost, start-up and connection included; one untimed run first, then several timed."""
    empty = s.fs[N1] / "src" / "empty"
    prepare_tree(empty)
    runs = IDLE_QUICK_RUNS if ctx.quick else IDLE_RUNS
    for i in range(runs + 1):
        timed = system.s.timed(N1, system.push_argv(), empty, timeout=60.0, env=system.env(N1))
        if timed.returncode != 0:
            results.failures.append(f"{system.name}, push with nothing to do ({label}): exit "
                                    f"{timed.returncode}\n{timed.output}")
            return False
        if i:
            results.add(system.key, "configs", "idle", timed.seconds)
    values = results.times.get((system.key, "configs", "idle"), [])[-runs:]
    ctx.progress(f"{system.key} idle {label}: median {median(values):.3f} s of {runs}")
    return True


def _check(system: System, ds: DataSet, s: SyncLab, results: Results, ctx: BenchContext,
           label: str) -> bool:
    """A local no-change check of the whole tree (``-cr /srv``) right after a push."""
    argv = system.check_argv()
    if argv is None:
        return True
    for node in NODES:
        flush(s.fs[node])
    timed = s.timed(N1, argv, s.source(ds.key), timeout=PUSH_TIMEOUT_S, env=system.env(N1))
    if timed.returncode != 0:
        results.failures.append(f"{system.name}, {ds.key} check ({label}): exit "
                                f"{timed.returncode}\n{timed.output}")
        ctx.progress(f"FAILED {system.key} {ds.key} check {label}: exit {timed.returncode}")
        return False
    results.add(system.key, ds.key, "check", timed.seconds)
    ctx.progress(f"{system.key} {ds.key} check {label}: {timed.seconds:.3f} s")
    return True


def _round(system: System, ds: DataSet, s: SyncLab, results: Results, ctx: BenchContext,
           trial: int) -> None:
    label = f"{trial}/{ctx.trials}"
    system.reset()
    if ds.key == "configs":
        started = system.startup(s.source(ds.key))
        if started is not None and started.returncode in (0, 2):  # 2: "nothing listed"
            results.add(system.key, ds.key, "startup", started.seconds)
            ctx.progress(f"{system.key} startup {label}: {started.seconds:.3f} s")
        elif started is not None:
            results.failures.append(f"{system.name}, start-up ({label}): exit "
                                    f"{started.returncode}\n{started.output}")
        if system.key == "nonstop":
            # The interpreter's own start, in the same place: the floor of any Python program
            # (this machine's site hooks included), reported beside nonstop's start-up.
            bare = s.timed(N1, [sys.executable, "-c", "pass"], s.source(ds.key), timeout=60.0)
            if bare.returncode == 0:
                results.add("python", ds.key, "startup", bare.seconds)
            _clean_startup(system, ds, s, results, ctx)
    system.start()
    try:
        if ds.key == "configs" and not _idle(system, s, results, ctx, label):
            return
        if not _push(system, ds, "initial", s, results, ctx, label):
            return
        if ds.key in ("configs", "many") and not _push(system, ds, "nochange", s, results, ctx,
                                                       label):
            return
        if ds.key == "many" and not _check(system, ds, s, results, ctx, label):
            return
        if ds.key == "many":
            change_one(ds, s.source(ds.key), round_no=trial * 10 + SYSTEM_ORDER.index(system.key))
            results.source_manifests.pop(ds.key, None)  # the source changed
            _push(system, ds, "onechange", s, results, ctx, label)
    finally:
        system.stop()


def _measure(ctx: BenchContext, systems: tuple[str, ...], results: Results) -> None:
    sets = datasets(ctx.quick)
    size_mb = 1024 if ctx.quick else 3072
    with PrivateFilesystems(ctx.workdir, NODES, size_mb) as fs:
        results.filesystem = fs.description
        ctx.progress(f"file systems: {fs.description}")
        with Lab(NODES, workdir=ctx.workdir / "lab") as lab:
            s = SyncLab(lab, fs)
            same_view_check(s)
            for ds in sets.values():
                t = time.monotonic()
                prepare_tree(s.source(ds.key))
                results.sizes[ds.key] = generate(ds, s.source(ds.key))
                files, size = results.sizes[ds.key]
                ctx.progress(f"generated {ds.key}: {files} files, {size / 1e6:.1f} MB in "
                             f"{time.monotonic() - t:.1f} s")
            impls = {key: SYSTEMS[key](s) for key in systems}
            for trial in range(1, ctx.trials + 1):
                shift = (trial - 1) % len(systems)
                order = systems[shift:] + systems[:shift]
                for ds in sets.values():
                    for key in order:
                        try:
                            _round(impls[key], ds, s, results, ctx, trial)
                        except LabError as exc:
                            results.failures.append(f"{impls[key].name}, {ds.key} trial "
                                                    f"{trial}: {exc}")
                            ctx.progress(f"FAILED {key} {ds.key} {trial}: "
                                         f"{str(exc).splitlines()[0]}")
            t = time.monotonic()
            rot = results.rotation = prepare_rotation(s, ctx.quick)
            ctx.progress(f"generated the logs before and after a rotation in "
                         f"{time.monotonic() - t:.1f} s")
            for trial in range(1, ctx.trials + 1):
                shift = (trial - 1) % len(systems)
                for key in systems[shift:] + systems[:shift]:
                    try:
                        rotation_round(impls[key], s, rot, ctx, f"{trial}/{ctx.trials}")
                    except LabError as exc:
                        rot.failures.append(f"{impls[key].name}, log rotation trial {trial}: "
                                            f"{exc}")
            if "nonstop" in systems:
                samples = LATENCY_QUICK_SAMPLES if ctx.quick else LATENCY_SAMPLES
                results.latency = measure(s, samples, ctx.progress)


def _bars(ax: Axes, results: Results, systems: tuple[str, ...],
          cases: list[tuple[str, str]]) -> None:
    """Grouped bars: one group per (data set, case), one bar per system (median, min-max)."""
    width = 0.8 / max(1, len(systems))
    for i, key in enumerate(systems):
        meds, lows, highs = [], [], []
        for ds, case in cases:
            values = results.times.get((key, ds, case), [])
            m = median(values)
            meds.append(m if values else 0.0)
            lows.append(m - min(values) if values else 0.0)
            highs.append(max(values) - m if values else 0.0)
        xs = [j + (i - (len(systems) - 1) / 2) * width for j in range(len(cases))]
        ax.bar(xs, meds, width, yerr=[lows, highs], capsize=3, label=SYSTEMS[key].name)
        for x, m in zip(xs, meds, strict=True):
            if m > 0:
                ax.annotate(fmt_float(m), (x, m), ha="center", va="bottom", fontsize=7)
    ax.grid(axis="y", alpha=0.3, which="both")


def _plot(ctx: BenchContext, results: Results, systems: tuple[str, ...]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    sets = datasets(ctx.quick)
    fig, (first, later) = plt.subplots(1, 2, figsize=(12, 4.2),
                                       gridspec_kw={"width_ratios": [3, 3]})
    _bars(first, results, systems, [(key, "initial") for key in sets])
    labels = []
    for key, spec in sets.items():
        files, size = results.sizes.get(key, (spec.files, 0))
        mb = size / 1e6
        labels.append(f"{files:,} {spec.title}\n({mb:.0f} MB)" if mb >= 10
                      else f"{files:,} {spec.title}\n({mb:.1f} MB)")
    first.set_xticks(range(len(sets)), labels, fontsize=8)
    first.set_yscale("log")
    lowest = [v for (_k, _d, c), vs in results.times.items() if c == "initial" for v in vs]
    if lowest:
        # Bars on a log axis start at its bottom: put it a decade below the fastest run.
        first.set_ylim(bottom=10 ** math.floor(math.log10(min(lowest)) - 0.0001))
    first.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _pos: f"{v:g}"))
    # Minor ticks: label 2 and 5 of each decade only, or they run into each other.
    first.yaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(
        lambda v, _pos: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))
    first.set_ylabel("seconds (log; median, min-max)")
    first.set_title("Initial sync vpbx1-1 -> vpbx1-2")
    first.legend(fontsize=8)
    small, many = sets["configs"], sets["many"]
    later_cases = [("configs", "nochange"), ("many", "nochange"), ("many", "onechange")]
    _bars(later, results, systems, later_cases)
    later.set_xticks(range(len(later_cases)), [
        f"nothing changed\n{small.files:,} files", f"nothing changed\n{many.files:,} files",
        f"one file changed\namong {many.files:,}"], fontsize=8)
    later.set_ylabel("seconds (median, min-max)")
    later.set_title("Later runs (each a new process)")
    fig.tight_layout()
    path = plot_path(ctx, "sync_initial")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _clean_startup(system: System, ds: DataSet, s: SyncLab, results: Results,
                   ctx: BenchContext) -> None:
    """``-M`` and ``python3 -c pass`` again with the clean interpreter (bench/cleanpy.py):
    no site hook of this machine but nonstop's own install runs at their start."""
    argv = system.startup_argv()
    if argv is None:
        return
    python = str(clean_python(ctx.workdir))
    for key, cmd in (("nonstop-clean", [python, *argv[1:]]), ("python-clean", [python, "-c",
                                                                              "pass"])):
        s.timed(N1, cmd, s.source(ds.key), timeout=60.0, env=system.env(N1))  # warm-up
        done = s.timed(N1, cmd, s.source(ds.key), timeout=60.0, env=system.env(N1))
        if done.returncode in (0, 2):
            results.add(key, ds.key, "startup", done.seconds)


def _interpreter_note(results: Results) -> str:
    """The bare interpreter's start beside nonstop's (``python3 -c pass`` on vpbx1-1)."""
    bare = results.times.get(("python", "configs", "startup"), [])
    if not bare:
        return ""
    return (f"Python's own start on vpbx1-1 (`python3 -c pass`, the interpreter nonstop runs "
            f"on, this machine's site hooks included), in the same trials: "
            f"{spread(bare, 's')}; nonstop's start-up above includes it. "
            f"{_clean_note(results)}")


def _clean_note(results: Results) -> str:
    ours = results.times.get(("nonstop-clean", "configs", "startup"), [])
    bare = results.times.get(("python-clean", "configs", "startup"), [])
    if not ours or not bare:
        return ""
    return ("The same two commands with no site hook of this machine but nonstop's own (a "
            "venv whose one .pth names nonstop's and its dependencies' directories, "
            "bench/cleanpy.py: this sandbox's site-packages hold a CA injector that imports "
            "certifi at every interpreter start, which no Debian install has): "
            f"`nonstop sync -M` {spread(ours, 's')}, `python3 -c pass` {spread(bare, 's')}. ")


def _tables(ctx: BenchContext, results: Results, systems: tuple[str, ...]) -> list[Table]:
    sets = datasets(ctx.quick)
    data_rows: list[list[str | float | int | None]] = []
    for key, ds in sets.items():
        files, size = results.sizes.get(key, (0, 0))
        data_rows.append([ds.title, f"{files:,}", f"{size / 1e6:.1f}", f"/srv/{ds.prefix}"])
    tables = [Table("Data sets", ["data set", "files", "MB", "under"], data_rows,
                    note="Seeded pseudo-random content (the same bytes for every system and "
                         "trial); recordings and .wav files are random bytes, configs and .txt "
                         "envelopes printable text; modification times in the past. "
                         f"File systems: {results.filesystem}.")]
    columns = ["workload", *(SYSTEMS[k].name for k in systems)]
    if "nonstop" in systems:
        columns += [f"nonstop vs {SHORT[k]}" for k in systems if k != "nonstop"]
    columns.append("spec (same lab)")
    rows: list[list[str | float | int | None]] = []
    for case, case_title in CASES:
        for key, ds in sets.items():
            if not any((k, key, case) in results.times for k in systems):
                continue
            files, _ = results.sizes.get(key, (ds.files, 0))
            title = case_title.format(runs=IDLE_QUICK_RUNS if ctx.quick else IDLE_RUNS)
            what = title if case in GLOBAL_CASES else f"{title}, {files:,} {ds.title}"
            row: list[str | float | int | None] = [what]
            row += [spread(results.times.get((k, key, case), []), "s") for k in systems]
            if "nonstop" in systems:
                ours = results.times.get(("nonstop", key, case), [])
                row += [ratio(ours, results.times.get((k, key, case), [])) for k in systems
                        if k != "nonstop"]
            row.append(SPEC.get((key, case), "-") if not ctx.quick else "-")
            rows.append(row)
    tables.append(Table(
        "Push from vpbx1-1 to vpbx1-2: min / median / max", columns, rows,
        note="Wall time of one push command on vpbx1-1, timed inside its namespace: "
             "`nonstop sync -x` (a new Python process each time, start-up included; TLS), "
             "`csync2 -x` (nossl, as the talk), `rsync -a --delete /srv/ rsync://vpbx1-2/srv/` "
             "(daemon, chroot). Receivers: `nonstop sync -i`, `csync2 -ii`, `rsync --daemon`, "
             "restarted with empty databases before each initial sync. nonstop flushes "
             "received files to disk before renaming them into place (syncfs/fsync); csync2 "
             "and rsync do not, so their data may still be in the page cache when they "
             "finish; `rsync --fsync` is the same push with the receiver fsyncing every file "
             "it writes, nonstop's durability. Ratios are of the medians; below 1 means "
             "nonstop is faster. Every "
             "push was verified: both trees equal in type, mode, owner, size, mtime and "
             "content. Initial sync + `sync -f`: the push, then the replica's file system "
             "flushed (timed from outside right after the push), so the data is on disk for "
             "every system alike. Start-up only: `nonstop sync -M` / `csync2 -M` on vpbx1-1 "
             "(start, read the config, open the existing database, list nothing), the fixed "
             "cost inside every push; rsync has no such mode. nonstop's modules are byte-compiled "
             "before the run, as installing the package does. "
             f"{_interpreter_note(results)}No-change check: "
             "`nonstop sync -cr /srv` / `csync2 -cr /srv` on vpbx1-1 right after the no-change "
             "push (walk and compare with the database, mark changes dirty, no peer "
             "contacted). Push with nothing to do: the push command (`-x`, rsync's push) "
             "against a tree with only the empty include directories, the receiver running, "
             "one untimed run then each run timed (its min / median / max over all runs of "
             "all trials). The spec column is the "
             "spec's csync2 and rsync measurement of the same workload on this kind of lab."))
    lat_rows: list[list[str | float | int | None]] = []
    for kind, (title, directory, _suffix, _size) in KINDS.items():
        values = results.latency.samples.get(kind, [])
        if values:
            ms = [v * 1000 for v in values]
            lat_rows.append([f"{title} in {directory}", spread(ms, "ms"), len(values),
                             "cron, every 5 min: 0 - 300 s"])
    tables.append(Table(
        "Daemon: write on the active node -> same bytes on the standby", [
            "file", "nonstop daemon: min / median / max", "samples", "csync2 2.0 (talk)"],
        lat_rows,
        note="Two `nonstop run` daemons with the talk's ha.d plus `nonstop_sync` in ha.cf and "
             "`--sync-root` in each node's work directory; the node holding the group replicates. "
             "From just before the write (open, write, close) on the active node until the "
             "standby's file has the same bytes (polled every 2 ms from outside). The talk "
             "runs `csync2 -xv` from cron every 5 minutes; the spec measured lsyncd (inotify + "
             "rsync, delay 0) at 0.105 s on the same lab. Mission: under a second behind."))
    return tables


def run(ctx: BenchContext, *, systems: tuple[str, ...] = SYSTEM_ORDER) -> SuiteResult:
    """Initial sync, no-change and one-change pushes of csync2, rsync and nonstop sync, and
    the daemon's write-to-replica latency."""
    chosen = tuple(k for k in SYSTEM_ORDER if k in systems) or SYSTEM_ORDER
    results = Results()
    try:
        _measure(ctx, chosen, results)
    except LabError as exc:
        results.failures.append(f"lab: {exc}")
        ctx.progress(f"FAILED: {str(exc).splitlines()[0]}")
    # The live-PBX workload (issue 8), in a lab of its own: csync2, lsyncd (rsync's side)
    # and the nonstop daemon.
    live_keys = [k for k in LIVE_SYSTEMS
                 if k in chosen or (k == "lsyncd" and {"rsync", "rsync_fsync"} & set(chosen))]
    workload = LIVE_QUICK if ctx.quick else LIVE_FULL
    live: list[LiveResult] = []
    try:
        live, live_failures = measure_live(ctx.workdir, workload, live_keys, ctx.progress)
        results.failures.extend(live_failures)
    except (LabError, OSError) as exc:
        results.failures.append(f"live PBX lab: {exc}")
        ctx.progress(f"FAILED live: {str(exc).splitlines()[0]}")
    result = SuiteResult("Replication: nonstop sync, csync2 2.0 and rsync (issues 4 and 8)")
    result.tables.extend(_tables(ctx, results, chosen))
    if results.rotation is not None:
        result.tables.append(rotation_table(results.rotation, chosen,
                                            {k: SYSTEMS[k].name for k in chosen}, SHORT))
        results.failures.extend(results.rotation.failures)
    if live:
        result.tables.append(live_table(live, workload))
    result.plots.append(_plot(ctx, results, chosen))
    result.notes.extend(f"Failure: {f}" for f in results.failures + results.latency.failures)
    # What a system did wrong under the live workload is a finding, not a failed benchmark.
    result.notes.extend(f"Live PBX, {r.system}: {f}" for r in live for f in r.failures)
    return result
