"""A logrotate of the Asterisk logs, pushed by each replication program (issue 8: a change costs
what changed): the push's wall time and the bytes on the standby's cable.

Two trees of ``var/log/asterisk`` are made once, with the same seeded bytes for every system:
*before* (``full``, ``full.1`` and three compressed archives) and *after* the rotation that
Debian's asterisk package configures (``rotate``, ``compress``, ``delaycompress``): each archive
one number up, ``full.1`` compressed into the new ``full.2.gz``, ``full`` now ``full.1`` and a
new short ``full``. Moved files keep their bytes and modification times, as a rename does. A
round pushes *before* (untimed), then *after* as the source, timed, and reads the standby's
switch port counters around it. Whatever is new (the freshly compressed archive and the new
``full``) must cross the cable for every program; the rest only moved.
"""

from __future__ import annotations

import gzip
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from bench.framework import BenchContext, Table, median, ratio, spread
from bench.sync_data import differences, manifest
from bench.sync_live import port_bytes, write_base
from bench.sync_systems import N1, N2, SyncLab, System, prepare_tree

LOGS = "var/log/asterisk"
ROTATED_AT = 1_764_998_701_000_000_000  # 2025-12-06 05:25:01 UTC
WEEK_NS = 7 * 86_400 * 10**9
PUSH_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Sizes:
    """Bytes of ``full``, of ``full.1`` and of each archive before the rotation."""

    full: int
    full1: int
    archive: int


FULL_SIZES = Sizes(200 << 20, 200 << 20, 10 << 20)
QUICK_SIZES = Sizes(4 << 20, 4 << 20, 256 << 10)


@dataclass
class Rotation:
    """The two trees and what a round measured per system."""

    before: Path
    after: Path
    moved: int = 0  # bytes of the files that kept their bytes under a new name
    new: int = 0  # bytes of the files with new content
    seconds: dict[str, list[float]] = field(default_factory=dict)
    on_cable: dict[str, list[float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def prepare(s: SyncLab, quick: bool) -> Rotation:
    """Both trees on vpbx1-1's file system."""
    sizes = QUICK_SIZES if quick else FULL_SIZES
    rot = Rotation(s.fs[N1] / "src" / "logs-before", s.fs[N1] / "src" / "logs-after")
    for tree in (rot.before, rot.after):
        prepare_tree(tree)
    b, a = rot.before / LOGS, rot.after / LOGS
    # A week apart each, as a weekly rotation leaves them (and of different sizes): programs
    # that compare only size and mtime must not take one generation for another.
    write_base(b / "full", sizes.full, seed=31)
    _age(b / "full", 0)
    write_base(b / "full.1", sizes.full1 + 4321, seed=32)
    _age(b / "full.1", 1)
    for n in (2, 3, 4):
        with open(b / f"full.{n}.gz", "wb") as fh:
            fh.write(_archive(n, sizes.archive + n * 1000))
        _age(b / f"full.{n}.gz", n)
    for n in (4, 3, 2):
        shutil.copy2(b / f"full.{n}.gz", a / f"full.{n + 1}.gz")
    shutil.copy2(b / "full", a / "full.1")
    with open(b / "full.1", "rb") as src, gzip.open(a / "full.2.gz", "wb", compresslevel=6) as gz:
        shutil.copyfileobj(src, gz, 1 << 20)
    shutil.copystat(b / "full.1", a / "full.2.gz")  # gzip keeps the original's mtime
    (a / "full").write_bytes(b"[Dec  6 06:25:01] NOTICE[1234] logger.c: Asterisk Queue Logger "
                             b"restarted\n")
    _age(a / "full", -1)
    rot.new = (a / "full.2.gz").stat().st_size + (a / "full").stat().st_size
    rot.moved = sum(p.stat().st_size for p in a.iterdir()) - rot.new
    return rot


def _age(path: Path, weeks: int) -> None:
    """The file's mtime ``weeks`` weeks before the moment of the rotation."""
    when = ROTATED_AT - weeks * WEEK_NS
    os.utime(path, ns=(when, when))


def _archive(n: int, size: int) -> bytes:
    """An old compressed log: bytes that do not compress further (seeded)."""
    return random.Random(40 + n).randbytes(size)


def measure_round(system: System, s: SyncLab, rot: Rotation, ctx: BenchContext,
                  label: str) -> None:
    """One system: the logs as they were, then the rotation, pushed and measured."""
    system.reset()
    system.start()
    try:
        for step, tree in (("before", rot.before), ("after", rot.after)):
            start = port_bytes(s.lab, N2)
            timed = system.push(tree, PUSH_TIMEOUT_S)
            on_cable = port_bytes(s.lab, N2) - start
            if timed.returncode != 0:
                rot.failures.append(f"{system.name}, log rotation {step} ({label}): exit "
                                    f"{timed.returncode}\n{timed.output}")
                ctx.progress(f"FAILED {system.key} rotation {step} {label}")
                return
            diff = differences(manifest(tree), manifest(s.dst))
            if diff:
                rot.failures.append(f"{system.name}, log rotation {step} ({label}): the trees "
                                    "differ:\n" + "\n".join(diff))
                ctx.progress(f"FAILED {system.key} rotation {step} {label}: {diff[0]}")
                return
        rot.seconds.setdefault(system.key, []).append(timed.seconds)
        rot.on_cable.setdefault(system.key, []).append(float(on_cable))
        ctx.progress(f"{system.key} rotation {label}: {timed.seconds:.3f} s, "
                     f"{on_cable / 1e6:.2f} MB on vpbx1-2's cable")
    finally:
        system.stop()


def table(rot: Rotation, systems: tuple[str, ...], names: dict[str, str],
          short: dict[str, str]) -> Table:
    """Push time and bytes on the cable per system, with nonstop's ratios."""
    others = [k for k in systems if k != "nonstop"]
    columns = ["", *(names[k] for k in systems)]
    if "nonstop" in systems:
        columns += [f"nonstop vs {short[k]}" for k in others]
    mb = {k: [v / 1e6 for v in rot.on_cable.get(k, [])] for k in systems}
    rows: list[list[str | float | int | None]] = []
    for what, values, unit in (("push after the rotation", rot.seconds, "s"),
                               ("bytes on vpbx1-2's cable", mb, "MB")):
        row: list[str | float | int | None] = [what]
        row += [spread(values.get(k, []), unit) for k in systems]
        if "nonstop" in systems:
            row += [ratio(values.get("nonstop", []), values.get(k, [])) for k in others]
        rows.append(row)
    least = median(mb.get("nonstop", [])) if mb.get("nonstop") else float("nan")
    return Table(
        "Log rotation: the push after a logrotate of /srv/var/log/asterisk (min / median / max)",
        columns, rows,
        note="Debian's asterisk logrotate rules (`rotate`, `compress`, `delaycompress`) applied "
             "to `full`, `full.1` and three archives: each archive one number up, `full.1` "
             "compressed into the new `full.2.gz`, `full` renamed `full.1`, a new short `full`; "
             "moved files keep their bytes and modification times, as a rename does. Per "
             "round: the trees before the rotation pushed (untimed), then the trees after it. "
             f"Moved: {rot.moved / 1e6:.1f} MB; new content: {rot.new / 1e6:.1f} MB (the least "
             "any program must send). The push commands and receivers are those of the table "
             "above; bytes are both directions of vpbx1-2's port on the lab's switch (TCP, "
             "TLS for nonstop, headers included). nonstop copies on the standby the files "
             "whose bytes it already holds under another name (docs/SYNC.md)"
             + (f"; its median here: {least:.2f} MB." if least == least else "."))
