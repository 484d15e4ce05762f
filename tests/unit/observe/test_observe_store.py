"""The history file: records round-trip, a torn or damaged record is skipped, the size is
bounded, numbering continues after a restart, and a follower sees records across a rotation."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nonstop.observe.events import (
    BadRecord,
    Record,
    decode_line,
    encode_line,
    environment,
    format_timeline,
)
from nonstop.observe.store import CURRENT, PREVIOUS, HistoryFile, follow, read_records


def rec(seq: int, kind: str = "node_dead", **data: str | int | None) -> Record:
    return Record(seq, 1_800_000_000.0 + seq, 100.0 + seq, "vpbx1-2", kind, node="vpbx1-1",
                  group="", reason=f"event {seq}", data=data)


def test_a_record_round_trips_through_its_line() -> None:
    r = rec(7, duration_ms=12, who="uid 0 (root) pid 1 (init)")
    assert decode_line(encode_line(r)) == r


def test_a_torn_or_altered_line_is_refused() -> None:
    line = encode_line(rec(1))
    with pytest.raises(BadRecord, match="torn"):
        decode_line(line[:-5])
    with pytest.raises(BadRecord, match="checksum"):
        decode_line(line.replace(b"event 1", b"event 2"))
    with pytest.raises(BadRecord):
        decode_line(b"garbage\n")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_give_a_record_or_bad_record(data: bytes) -> None:
    with contextlib.suppress(BadRecord):
        decode_line(data)


def test_restart_continues_the_sequence_and_ignores_a_torn_tail(tmp_path: Path) -> None:
    f = HistoryFile(tmp_path)
    assert f.open() == 0
    f.append([rec(1), rec(2), rec(3)])
    f.close()
    # The daemon died in the middle of writing record 4.
    with open(tmp_path / CURRENT, "ab") as fh:
        fh.write(encode_line(rec(4))[:20])
    assert [r.seq for r in read_records(tmp_path)] == [1, 2, 3]
    again = HistoryFile(tmp_path)
    assert again.open() == 3
    again.append([rec(4)])
    again.close()
    assert [r.seq for r in read_records(tmp_path)] == [1, 2, 3, 4]
    assert (tmp_path / CURRENT).read_bytes().count(b"\n") == 4  # the torn bytes were cut


def test_a_damaged_record_in_the_middle_costs_only_itself(tmp_path: Path) -> None:
    f = HistoryFile(tmp_path)
    f.open()
    f.append([rec(1), rec(2), rec(3)])
    f.close()
    data = (tmp_path / CURRENT).read_bytes().replace(b"event 2", b"evil! 2")
    (tmp_path / CURRENT).write_bytes(data)
    assert [r.seq for r in read_records(tmp_path)] == [1, 3]
    assert [r.seq for r in read_records(tmp_path, after=1)] == [3]


def test_the_history_is_bounded_by_two_segments(tmp_path: Path) -> None:
    f = HistoryFile(tmp_path, segment_bytes=4096)
    f.open()
    for i in range(1, 401):
        f.append([rec(i)])
    f.close()
    total = sum(p.stat().st_size for p in tmp_path.iterdir())
    line = len(encode_line(rec(400)))
    assert total <= 2 * 4096 + line
    seqs = [r.seq for r in read_records(tmp_path)]
    assert seqs == list(range(seqs[0], 401))  # the newest, without a gap
    assert seqs[0] > 300
    # After a rotation the current file may be empty: numbering still continues.
    (tmp_path / CURRENT).write_bytes(b"")
    assert HistoryFile(tmp_path).open() == max(r.seq for r in read_records(tmp_path))
    assert (tmp_path / PREVIOUS).exists()


def test_follow_reads_new_records_across_a_rotation(tmp_path: Path) -> None:
    f = HistoryFile(tmp_path, segment_bytes=4096)  # rotates every ~20 records
    f.open()
    f.append([rec(1)])
    got: list[int] = []
    stop = threading.Event()

    def reader() -> None:
        for r in follow(tmp_path, 0, poll_s=0.01, should_stop=stop.is_set):
            got.append(r.seq)
            if r.seq == 60:
                stop.set()

    t = threading.Thread(target=reader)
    t.start()
    for i in range(2, 61):
        f.append([rec(i)])
        if i % 5 == 0:
            time.sleep(0.02)  # a burst, then a pause: the follower is never a segment behind
    t.join(10)
    stop.set()
    f.close()
    assert got == list(range(1, 61))


def test_timeline_and_environment_say_the_event() -> None:
    r = rec(5, kind="group_acquired", duration_ms=1234)
    lines = format_timeline([rec(4), r])
    assert lines[0].startswith("-- ")
    assert "#5" in lines[2] and "group acquired" in lines[2] and "(1234 ms)" in lines[2]
    assert "+1.000 s" in lines[2]
    env = environment(r)
    assert env["NONSTOP_EVENT_KIND"] == "group_acquired"
    assert env["NONSTOP_EVENT_SEQUENCE"] == "5"
    assert env["NONSTOP_EVENT_NODE"] == "vpbx1-1"
    assert env["NONSTOP_EVENT_DURATION_MS"] == "1234"
    assert env["NONSTOP_EVENT_TIMESTAMP"].startswith("2027-01-15T08:00:05")
    assert env["NONSTOP_EVENT_TIMESTAMP_EPOCH"] == "1800000005"


def test_a_short_write_leaves_no_torn_record_and_is_an_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A nearly full disk takes part of a batch: the rest of the history must not be lost to
    a torn record, and the writer must hear of it (its log line)."""
    f = HistoryFile(tmp_path)
    f.open()
    f.append([rec(1)])
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, data[:17]))
    with pytest.raises(OSError, match="No space left on device"):
        f.append([rec(2), rec(3)])
    monkeypatch.undo()
    f.append([rec(4)])
    f.close()
    assert [r.seq for r in read_records(tmp_path)] == [1, 4]
    assert (tmp_path / CURRENT).read_bytes().count(b"\n") == 2
