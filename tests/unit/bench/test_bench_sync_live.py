"""The live-PBX workload's instruments (bench/sync_live.py), on small files and made-up
/proc records: the prefix check, the arrival and percentile arithmetic, CPU and link
parsing, and the log text generator."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from bench.sync_live import (
    TAIL,
    Delays,
    LiveResult,
    PrefixCheck,
    ProcStat,
    Workload,
    compare_files,
    disk_usage,
    lines_arrived,
    link_bytes,
    live_table,
    log_text,
    parse_proc_stat,
    parse_times,
    percentile,
    tree_ticks,
)


def _pair(tmp_path: Path, content: bytes) -> tuple[Path, Path]:
    src, rep = tmp_path / "src", tmp_path / "rep"
    src.write_bytes(content)
    rep.write_bytes(content)
    return src, rep


def test_a_growing_replica_that_lags_is_a_valid_prefix(tmp_path: Path) -> None:
    base = bytes(range(256)) * 1024  # 256 KiB, more than the re-read tail
    src, rep = _pair(tmp_path, base)
    check = PrefixCheck(src, rep, len(base))
    assert check.poll() == len(base)
    with open(src, "ab") as fh:
        fh.write(b"line one\nline two\n")
    assert check.poll() == len(base)  # behind, but a prefix
    with open(rep, "ab") as fh:
        fh.write(b"line one\n")
    assert check.poll() == len(base) + 9
    assert check.violations == [] and check.polls == 3


def test_a_wrong_byte_in_the_new_part_or_the_tail_is_a_violation(tmp_path: Path) -> None:
    base = b"x" * (3 * TAIL)
    src, rep = _pair(tmp_path, base)
    check = PrefixCheck(src, rep, len(base))
    with open(src, "ab") as fh:
        fh.write(b"appended\n")
    with open(rep, "ab") as fh:
        fh.write(b"appendeX\n")
    assert check.poll() is None
    assert len(check.violations) == 1 and "differ" in check.violations[0]
    # A byte changed just before the verified end (inside the tail) is seen too.
    rep.write_bytes(base[:-10] + b"y" + base[-9:])
    check2 = PrefixCheck(src, rep, len(base))
    assert check2.poll() is None and check2.violations


def test_a_replica_longer_than_the_source_is_a_violation(tmp_path: Path) -> None:
    src, rep = _pair(tmp_path, b"abc\n")
    with open(rep, "ab") as fh:
        fh.write(b"def\n")
    check = PrefixCheck(src, rep, 4)
    assert check.poll() is None
    assert "source 4" in check.violations[0]


def test_a_replaced_replica_is_sampled_in_its_older_content(tmp_path: Path) -> None:
    """A new inode (a rename into place) gets random blocks of the old content compared,
    so a replica whose beginning is wrong is caught even when its tail is right."""
    base = os.urandom(64 * TAIL)
    src, rep = _pair(tmp_path, base)
    check = PrefixCheck(src, rep, len(base), seed=3)
    assert check.poll() == len(base)
    bad = bytearray(base)
    for offset in range(0, len(base) - TAIL, 512):  # every older 4 KiB block has a wrong byte
        bad[offset] ^= 0xFF
    new = tmp_path / "rep.tmp"
    new.write_bytes(bytes(bad))
    new.rename(rep)
    assert check.poll() is None
    assert check.violations


def test_a_shorter_replica_is_counted(tmp_path: Path) -> None:
    src, rep = _pair(tmp_path, b"a\nb\nc\n")
    check = PrefixCheck(src, rep, 6)
    rep.write_bytes(b"a\nb\n")
    assert check.poll() == 4
    assert check.shrank == 1 and not check.violations


def test_a_missing_replica_is_neither_valid_nor_a_violation(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"a\n")
    check = PrefixCheck(src, tmp_path / "absent", 0)
    assert check.poll() is None and check.violations == []


def test_compare_files(tmp_path: Path) -> None:
    a, b = _pair(tmp_path, b"q" * 1000)
    assert compare_files(a, b) is None
    b.write_bytes(b"q" * 999)
    assert "differs" in (compare_files(a, b) or "")
    assert "missing" in (compare_files(a, tmp_path / "nope") or "")


def test_lines_arrive_only_when_complete() -> None:
    ends = [10, 20, 30]
    assert lines_arrived(ends, 0) == 0
    assert lines_arrived(ends, 19) == 1  # half of the second line is not the line
    assert lines_arrived(ends, 20) == 2
    assert lines_arrived(ends, 99) == 3


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 95) == 95.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0], 95) == 3.0
    assert math.isnan(percentile([], 50))


def test_delays_say_what_was_not_delivered() -> None:
    assert Delays(0, ()).describe() == "-"
    assert Delays(5, ()).describe() == "not delivered (0 of 5)"
    text = Delays(3, (0.1, 0.2)).describe()
    assert text.startswith("0.100 / 0.200 / 0.200 s") and "1 of 3 not delivered" in text


def test_proc_stat_with_a_name_holding_spaces_and_parentheses() -> None:
    fields = ["S", "41"] + ["0"] * 9 + ["120", "30", "7", "3"] + ["0"] * 4 + ["5555"] + ["0"] * 30
    st = parse_proc_stat("1234 (rsync (x) y) " + " ".join(fields))
    assert st == ProcStat(1234, 41, 120, 30, 7, 3, 5555)


def test_tree_ticks_counts_descendants_and_reaped_children_not_others() -> None:
    stats = [ProcStat(1, 0, 1000, 1000, 0, 0), ProcStat(10, 1, 5, 5, 100, 50),
             ProcStat(11, 10, 2, 1, 0, 0), ProcStat(12, 11, 1, 0, 0, 0),
             ProcStat(20, 1, 900, 900, 0, 0)]
    assert tree_ticks(stats, [10]) == 5 + 5 + 100 + 50 + 3 + 1
    assert tree_ticks(stats, [10, 11]) == 164  # each process once
    assert tree_ticks(stats, [99]) == 0


def test_parse_times_reads_the_childrens_line() -> None:
    assert parse_times("0m0.010s 0m0.020s\n1m2.500s 0m0.250s\n") == pytest.approx(62.75)
    assert parse_times("csync2: done\n0m0.000s 0m0.000s\n0m0.120s 0m0.080s\n") \
        == pytest.approx(0.2)
    assert parse_times("no times here") == 0.0


def test_link_bytes_adds_both_directions() -> None:
    doc = [{"ifname": "p2", "stats64": {"rx": {"bytes": 1500, "packets": 3},
                                        "tx": {"bytes": 500, "packets": 1}}}]
    assert link_bytes(json.dumps(doc)) == 2000


def test_log_text_is_the_exact_size_of_whole_lines_and_repeatable() -> None:
    size = (8 << 20) + 12345  # more than one chunk
    chunks = list(log_text(5, size))
    data = b"".join(chunks)
    assert len(data) == size and data.endswith(b"\n")
    assert data == b"".join(log_text(5, size))
    assert data != b"".join(log_text(6, size))
    lines = data.split(b"\n")[:-1]
    assert 100 < sum(map(len, lines)) / len(lines) < 250
    assert all(b"VERBOSE[" in line for line in lines[:1000])


def test_disk_usage_counts_a_hard_link_once(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"z" * 100_000)
    one = disk_usage(tmp_path)
    os.link(tmp_path / "a", tmp_path / "b")
    assert disk_usage(tmp_path) == one > 0
    assert disk_usage(tmp_path / "absent") == 0


def test_the_table_reports_a_system_that_delivered_nothing() -> None:
    w = Workload(log_bytes=1 << 20, duration_s=10, drain_s=5, initial_timeout_s=30)
    stuck = LiveResult("stuck", initial_s=1.0, lines=Delays(200, ()),
                       voicemail=Delays(50, ()), config=Delays(1, ()), prefix_polls=300,
                       wire_bytes=1000, changed_bytes=50_000, cpu={"vpbx1-1": 10.0},
                       workload_s=10.0)
    table = live_table([stuck], w)
    cells = {str(row[0]): str(row[1]) for row in table.rows}
    assert cells["every change: max delay"] == "not delivered: 251 of 251"
    assert any(v == "not delivered (0 of 200)" for v in cells.values())
    assert any(v == "10.00 s (100.0 %)" for v in cells.values())
    assert any(v == "0.02×" for v in cells.values())
