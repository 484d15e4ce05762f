"""The benchmark's instruments and table helpers, on made-up records (no lab, no sleeping)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench.framework import Table, ratio, render_table, spread
from bench.measure import LogWatcher, ProbeLog, longest_silence

from nonstop.lab import LabError
from nonstop.lab.outage import Probe


def probe(seq: int, sent: float, answered: float | None, node: str | None = "n1") -> Probe:
    return Probe(seq=seq, sent=sent, answered=answered, node=node if answered else None,
                 status=200 if answered else None)


def test_longest_silence_spans_the_gap_around_the_fault() -> None:
    probes = [probe(1, 0.00, 0.01), probe(2, 0.02, 0.03), probe(3, 0.04, None),
              probe(4, 0.06, None), probe(5, 0.08, 2.51, "n2"), probe(6, 2.52, 2.53, "n2")]
    assert longest_silence(probes, 0.035, 2.51) == pytest.approx(2.48)
    # A later, shorter gap does not hide the outage; the end bounds what is looked at.
    assert longest_silence(probes, 0.035, 2.53) == pytest.approx(2.48)


def test_longest_silence_needs_answers_on_both_sides() -> None:
    with pytest.raises(LabError, match="before"):
        longest_silence([probe(1, 1.0, 1.1)], 0.5, 2.0)
    with pytest.raises(LabError, match="after"):
        longest_silence([probe(1, 0.0, 0.1), probe(2, 0.2, None)], 0.15, 2.0)


def test_probe_log_reads_incrementally_and_finds_the_first_answer_by_node(
        tmp_path: Path) -> None:
    path = tmp_path / "probes.jsonl"
    log = ProbeLog(path)
    assert log.first_answer(None, 0.0) is None  # no file yet
    rows = [{"seq": 1, "sent": 1.0, "answered": 1.01, "node": "n1", "status": 200},
            {"seq": 3, "sent": 1.4, "answered": 1.41, "node": "n2", "status": 200},
            {"seq": 2, "sent": 1.2, "answered": None, "node": None, "status": None}]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    path.write_text(text[:-10])  # a torn last line is kept for the next read
    assert [p.seq for p in log.refresh()] == [1, 3]
    with path.open("a") as fh:
        fh.write(text[-10:])
    assert [p.seq for p in log.refresh()] == [1, 3, 2]
    found = log.first_answer("n2", 1.1)
    assert found is not None and found.seq == 3
    assert log.first_answer("n1", 1.1) is None
    first = log.first_answer(None, 0.5)
    assert first is not None and first.seq == 1


def test_log_watcher_stamps_new_lines_only(tmp_path: Path) -> None:
    path = tmp_path / "ha-log"
    path.write_text("old: node a: is dead\n")
    watcher = LogWatcher()
    try:
        watcher.watch("n1", path)
        with path.open("a") as fh:
            fh.write("WARN: node vpbx1-1: is dead\npartial")
        watcher.poll()
        seen = watcher.first("n1", r"node vpbx1-1: is dead", 0.0)
        assert seen is not None
        assert watcher.first("n1", r"node a: is dead", 0.0) is None
        assert watcher.lines("n1") == ["WARN: node vpbx1-1: is dead"]
        assert watcher.first("n1", r"is dead", seen + 1000.0) is None
    finally:
        watcher.close()


def test_tables_print_spreads_and_ratios() -> None:
    assert spread([2.0, 1.0, 3.0], "s") == "1.00 / 2.00 / 3.00 s"
    assert spread([], "s") == "-"
    assert ratio([1.0, 1.0, 4.0], [2.0]) == "0.50×"
    assert ratio([], [2.0]) == "-"
    text = render_table(Table("T", ["a", "b"], [["x|y", 0.1234], [None, 12]], note="n"))
    assert "| x\\|y | 0.123 |" in text
    assert "| - | 12 |" in text
    assert text.endswith("n\n")
