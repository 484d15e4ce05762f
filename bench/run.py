"""Run the benchmark suites and write docs/BENCHMARKS.md (tables, ratios, PNG plots).

    sudo python3 -m bench.run [--quick] [--suites membership,failover,sync] [--trials N]
                              [--out docs/BENCHMARKS.md] [--keep]

Each suite is ``bench/suite_<name>.py`` with ``run(ctx) -> SuiteResult`` (see
bench/framework.py). Progress goes to stderr, one line per measurement.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import inspect
import os
import shlex
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.framework import BenchContext, SuiteResult, render_table
from bench.machine import busy_percent, cpu_times, describe, loadavg
from nonstop.lab import cleanup_leftovers

DEFAULT_SUITES = ("membership", "failover", "sync")
WORK_ROOT = Path("/var/tmp/nonstop-bench")
TRIALS = 10
QUICK_TRIALS = 1
BUSY_WARNING_PERCENT = 25.0

METHOD = """\
* Every system runs the talk's two-node cluster (`vpbx1-1`, `vpbx1-2`) in network namespaces
  on this one machine: a bridge as the switch, one namespace per node, one for the client
  (see LAB.md). Each node is a *box*: its own PID, mount and UTS namespaces too, with an init
  that reaps orphans, for all three systems alike.
* Same files on both sides: the talk's ha.cf (keepalive 200ms, deadtime 2, warntime 1,
  auto_failback off; initdead 5 instead of 120 and a log file instead of logd, as in the
  spec's Part 2), its authkeys, and the haresources line
  `vpbx1-1 MailTo::tech@webinmotion.ca::Asterisk 198.18.0.10/24/eth0 asterisk master`.
  kamailio stands in for Asterisk (started after the address, answers OPTIONS naming the
  node). The `master` script is the talk's; the replication program it calls (`csync2` for
  Heartbeat and keepalived, `nonstop sync` for nonstop after the documented migration) is
  the same stand-in on every side that only records its arguments: replication is measured
  on its own below, and the spec's Part 2 left the csync2 step out as well.
* keepalived: one VRRP instance for the VIP, `advert_int 1` (as in the mission's table),
  `nopreempt` (auto_failback off), no authentication; notify scripts run the same
  `asterisk` and `master` scripts. Heartbeat's MailTo uses a mail(1) stand-in in its box,
  nonstop's MailTo an SMTP server (aiosmtpd) in the node's namespace; mail goes out in the
  background in nonstop and does not delay a takeover.
* Faults hit whichever node holds the VIP, so trials alternate between the nodes. Planned
  switchover: `nonstop standby` / `hb_standby` run inside the active node's box, keepalived
  stopped (SIGTERM, it sends a priority-0 advert) on the master. A crashed or cut-off node
  is killed, reconnected and restarted as the standby after each trial, and no fault comes
  within 6 s of a (re)start on any system (a Heartbeat node advertises a 4 s deadtime for
  its first initdead seconds, which would double its detection time).
* Times are CLOCK_MONOTONIC, shared by every process: the moment a fault is injected, the
  moment a log line appears (log files polled every 10 ms, for every system the same way)
  and the moment the client's SIP prober (OPTIONS every 20 ms) gets an answer.
* Replication (its own section) uses the same kind of lab: the push commands of nonstop
  sync, csync2 and rsync (plain and `--fsync`) between two nodes, the talk's nonstop cluster
  for the daemon, and the live-PBX workload of issue 8 (bench/sync_live.py: a growing log,
  voicemail and config edits) for the nonstop daemon, csync2 from cron and lsyncd + rsync.
  Each table's note says how it was measured.
"""


def _load_suite(name: str) -> object:
    return importlib.import_module(f"bench.suite_{name}")


def _run_suite(name: str, ctx: BenchContext, systems: tuple[str, ...] | None) -> SuiteResult:
    module = _load_suite(name)
    run = getattr(module, "run")  # noqa: B009 - a suite module is found by name
    kwargs: dict[str, object] = {}
    if systems is not None and "systems" in inspect.signature(run).parameters:
        kwargs["systems"] = systems
    result = run(ctx, **kwargs)
    if not isinstance(result, SuiteResult):
        raise TypeError(f"suite {name} returned {type(result).__name__}, not SuiteResult")
    return result


def _relative(path: Path, base: Path) -> str:
    try:
        return os.path.relpath(path.resolve(), base.resolve())
    except ValueError:
        return str(path)


# Findings written by hand (where the memory goes, analyses) follow this line in the output
# file; a new run regenerates everything above it and keeps the rest.
HAND_MARKER = "<!-- Written by hand from here on: bench/run.py keeps this part. -->"


def with_hand_written(text: str, path: Path) -> str:
    """``text`` followed by the hand-written part of the document at ``path``, if any."""
    try:
        old = path.read_text()
    except OSError:
        return text
    _, marker, kept = old.partition(HAND_MARKER)
    return text.rstrip("\n") + "\n\n" + marker + kept if marker else text


def render(results: list[SuiteResult], *, out: Path, command: str, machine: list[tuple[str, str]],
           started: datetime.datetime, elapsed: float, busy: float, load_before: str,
           load_after: str, quick: bool, trials: int,
           per_suite: dict[str, int] | None = None) -> str:
    """The whole Markdown document."""
    lines = ["# Benchmarks", ""]
    mode = (f"QUICK smoke mode ({trials} trial(s) per case; numbers are not meaningful)"
            if quick else f"{trials} trials per case")
    if per_suite:
        mode += " (" + ", ".join(f"{k}: {v}" for k, v in sorted(per_suite.items())) + ")"
    lines.append("Generated by `bench/run.py`; do not edit by hand. "
                 f"Run {started:%Y-%m-%d %H:%M} UTC, took {elapsed / 60:.1f} min, {mode}.")
    lines += ["", "Repeat with (as root, from the repository root):", "", "```",
              command, "```", ""]
    lines += ["## Machine", "", "| item | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in machine]
    lines.append(f"| load average before / after | {load_before} / {load_after} |")
    lines.append(f"| whole-machine CPU busy during the run | {busy:.0f} % |")
    lines.append("")
    if busy > BUSY_WARNING_PERCENT:
        lines += [f"**This machine was shared and busy during the run ({busy:.0f} % of all "
                  "cores used on average, the benchmark's own labs included).** Both "
                  "systems ran under the same load in the same run, so ratios are fairer "
                  "than absolute numbers.", ""]
    lines += ["## How it was measured", "", METHOD]
    for result in results:
        lines += [f"## {result.title}", ""]
        for table in result.tables:
            lines.append(render_table(table))
        for plot in result.plots:
            rel = _relative(plot, out.parent)
            lines += [f"![{plot.stem}]({rel})", ""]
        for note in result.notes:
            if "\n" in note:
                head, _, rest = note.partition("\n")
                lines += [f"* {head}", "", "```", rest.rstrip(), "```", ""]
            else:
                lines.append(f"* {note}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python3 -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke mode: 1 trial per case, short windows")
    parser.add_argument("--suites", default=None,
                        help="comma-separated suites (default: " + ",".join(DEFAULT_SUITES)
                             + ", those present)")
    parser.add_argument("--trials", type=int, default=None,
                        help=f"trials per case (default {TRIALS}, quick {QUICK_TRIALS})")
    parser.add_argument("--trials-for", action="append", default=[], metavar="SUITE=N",
                        help="trials for one suite (repeatable), e.g. sync=3")
    parser.add_argument("--systems", default=None,
                        help="only these systems where a suite compares several "
                             "(nonstop,heartbeat,keepalived; default all)")
    parser.add_argument("--out", type=Path, default=Path("docs/BENCHMARKS.md"))
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    return parser


def _suites(parser: argparse.ArgumentParser, wanted: str | None) -> tuple[list[str], list[str]]:
    """The suites to run, and the default ones missing from this tree."""
    if wanted is not None:
        suites = [s.strip() for s in wanted.split(",") if s.strip()]
        for name in suites:
            try:
                _load_suite(name)
            except ModuleNotFoundError as exc:
                parser.error(f"no suite {name!r}: {exc}")
        return suites, []
    suites, missing = [], []
    for name in DEFAULT_SUITES:
        try:
            _load_suite(name)
            suites.append(name)
        except ModuleNotFoundError:
            missing.append(name)
    return suites, missing


def _trials_per_suite(parser: argparse.ArgumentParser, items: list[str]) -> dict[str, int]:
    per_suite: dict[str, int] = {}
    for item in items:
        name, sep, count = item.partition("=")
        if not sep or not count.isdigit() or int(count) < 1:
            parser.error(f"--trials-for wants SUITE=N with N >= 1, not {item!r}")
        per_suite[name.strip()] = int(count)
    return per_suite


def _run_suites(suites: list[str], ctx_for: Callable[[str, Callable[[str], None]], BenchContext],
                systems: tuple[str, ...] | None, t0: float) -> tuple[list[SuiteResult], bool]:
    """Run each suite; one that raises is reported in the document, the others still run."""
    results: list[SuiteResult] = []
    failed = False
    for name in suites:
        def progress(msg: str, name: str = name) -> None:
            print(f"[{name}] {msg}  (+{time.monotonic() - t0:.0f} s)", file=sys.stderr,
                  flush=True)

        ctx = ctx_for(name, progress)
        ctx.workdir.mkdir(parents=True, exist_ok=True)
        progress("starting")
        try:
            results.append(_run_suite(name, ctx, systems))
        except Exception as exc:
            failed = True
            progress(f"FAILED: {exc!r}")
            results.append(SuiteResult(f"{name}: failed", notes=[
                f"The suite raised {type(exc).__name__}\n{traceback.format_exc()}"]))
        progress("done")
    return results, failed


def compile_nonstop() -> None:
    """Byte-compile the nonstop package the benchmarks run, as installing it does (a wheel or
    the Debian package ships .pyc files). A checkout run with PYTHONDONTWRITEBYTECODE set (this
    machine's shells, some CI machines) would otherwise compile every module again at each
    start of a command, and the start-up rows would time the compiler, not nonstop."""
    import compileall

    import nonstop
    compileall.compile_dir(str(Path(nonstop.__file__).parent), quiet=1)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = _parser()
    ns = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("the benchmarks build network namespaces: run as root")
    suites, missing = _suites(parser, ns.suites)
    trials = ns.trials if ns.trials is not None else (QUICK_TRIALS if ns.quick else TRIALS)
    if trials < 1:
        parser.error("--trials must be at least 1")
    per_suite = _trials_per_suite(parser, ns.trials_for)
    systems = tuple(s.strip() for s in ns.systems.split(",")) if ns.systems else None

    cleanup_leftovers()
    compile_nonstop()
    workdir = WORK_ROOT / str(os.getpid())
    workdir.mkdir(parents=True, exist_ok=True)
    # docs/BENCHMARKS.md keeps its plots in docs/bench/; any other output its own folder, so a
    # partial run written elsewhere never overwrites the main document's plots.
    plot_dir = ns.out.parent / "bench"
    if ns.out.name != "BENCHMARKS.md" or ns.out.parent.name != "docs":
        plot_dir = plot_dir / ns.out.stem
    started = datetime.datetime.now(datetime.UTC)
    t0 = time.monotonic()
    before = cpu_times()
    load_before = loadavg()
    machine = describe()

    def ctx_for(name: str, progress: Callable[[str], None]) -> BenchContext:
        return BenchContext(quick=ns.quick, trials=per_suite.get(name, trials),
                            workdir=workdir / name, plot_dir=plot_dir, progress=progress)

    results, failed = _run_suites(suites, ctx_for, systems, t0)
    results.extend(SuiteResult(f"{name}: not available", notes=[
        f"bench/suite_{name}.py is missing in this tree, so this run has no {name} numbers."])
        for name in missing)
    elapsed = time.monotonic() - t0
    busy = busy_percent(before, cpu_times())
    command = "python3 -m bench.run" + "".join(
        f" {shlex.quote(a)}" for a in (argv if argv is not None else sys.argv[1:]))
    text = render(results, out=ns.out, command=command, machine=machine, started=started,
                  elapsed=elapsed, busy=busy, load_before=load_before, load_after=loadavg(),
                  quick=ns.quick, trials=trials, per_suite=per_suite)
    ns.out.parent.mkdir(parents=True, exist_ok=True)
    ns.out.write_text(with_hand_written(text, ns.out))
    print(f"wrote {ns.out} ({elapsed:.0f} s)", file=sys.stderr)
    if ns.keep or failed:
        print(f"work directory kept: {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
