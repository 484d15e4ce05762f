"""The demo's pure parts: events to timeline and table, the client's service gap."""

from __future__ import annotations

import pytest

from nonstop.demo.timeline import (
    Event,
    Kind,
    format_timeline,
    service_gap,
    summarize,
    table,
    timeline,
)
from nonstop.lab.outage import Probe

FAULT = 100.0


def crash_events() -> list[Event]:
    return [
        Event(FAULT, Kind.FAULT, "vpbx1-1 crashed"),
        Event(FAULT + 2.0, Kind.DEATH_DECLARED, "vpbx1-2 declares vpbx1-1 dead"),
        Event(FAULT + 2.05, Kind.ADDRESS_MOVED, "198.18.0.10 configured on vpbx1-2"),
        Event(FAULT + 2.02, Kind.MAIL_RECEIVED, "takeover mail"),
        Event(FAULT + 2.1, Kind.VOICEMAIL_WRITTEN, "msg0002.txt"),
        Event(FAULT + 5.0, Kind.OLD_NODE_BACK, "vpbx1-1 powered on"),
        Event(FAULT + 6.5, Kind.REJOINED, "vpbx1-2 hears vpbx1-1"),
        Event(FAULT + 7.25, Kind.REPLICATION_RESUMED, "msg0002.txt reached vpbx1-1"),
    ]


def test_timeline_is_in_time_order_relative_to_the_fault() -> None:
    rows = timeline(reversed(crash_events()), FAULT)
    assert [r.kind for r in rows] == [
        Kind.FAULT, Kind.DEATH_DECLARED, Kind.MAIL_RECEIVED, Kind.ADDRESS_MOVED,
        Kind.VOICEMAIL_WRITTEN, Kind.OLD_NODE_BACK, Kind.REJOINED, Kind.REPLICATION_RESUMED]
    assert rows[0].offset_s == 0.0
    assert rows[1].offset_s == pytest.approx(2.0)
    lines = format_timeline(rows)
    assert lines[1] == "    +2.000 s  death declared           vpbx1-2 declares vpbx1-1 dead"


def test_simultaneous_events_keep_the_order_of_a_failover() -> None:
    events = [Event(FAULT, Kind.HANDOVER, "gives away"), Event(FAULT, Kind.FAULT, "standby")]
    assert [r.kind for r in timeline(events, FAULT)] == [Kind.FAULT, Kind.HANDOVER]


def test_summary_of_a_crash_round() -> None:
    r = summarize(round_no=1, fault="crash", old_active="vpbx1-1", new_active="vpbx1-2",
                  events=crash_events(), downtime_s=2.1, lost_probes=104,
                  replication_lag_s=0.8, final_holder="vpbx1-2")
    assert r.detection_s == pytest.approx(2.0)
    assert r.address_moved_s == pytest.approx(2.05)
    assert r.resumed_after_rejoin_s == pytest.approx(0.75)  # from the rejoin, not the write
    assert r.stayed_standby is True
    assert r.mail_received is True
    assert r.to_json()["downtime_s"] == 2.1


def test_failback_is_reported_as_not_staying_standby() -> None:
    r = summarize(round_no=1, fault="crash", old_active="vpbx1-1", new_active="vpbx1-2",
                  events=crash_events(), downtime_s=2.1, lost_probes=1,
                  replication_lag_s=None, final_holder="vpbx1-1")
    assert r.stayed_standby is False


def test_taking_the_vip_on_return_is_not_staying_standby() -> None:
    events = [*crash_events(), Event(FAULT + 6.6, Kind.OLD_NODE_CLAIMED, "VIP on vpbx1-1")]
    r = summarize(round_no=1, fault="crash", old_active="vpbx1-1", new_active="vpbx1-2",
                  events=events, downtime_s=2.1, lost_probes=1, replication_lag_s=None,
                  final_holder="vpbx1-2")
    assert r.stayed_standby is False


def test_missing_events_give_no_numbers() -> None:
    r = summarize(round_no=2, fault="crash", old_active="vpbx1-2", new_active=None,
                  events=[Event(FAULT, Kind.FAULT, "x")], downtime_s=None, lost_probes=None,
                  replication_lag_s=None, final_holder=None)
    assert (r.detection_s, r.address_moved_s, r.resumed_after_rejoin_s, r.stayed_standby) == (
        None, None, None, None)
    assert r.mail_received is False


def test_handover_has_no_detection_and_resumes_from_the_write() -> None:
    events = [Event(FAULT, Kind.FAULT, "standby"), Event(FAULT, Kind.HANDOVER, "gives away"),
              Event(FAULT + 2.0, Kind.VOICEMAIL_WRITTEN, "msg"),
              Event(FAULT + 2.5, Kind.REPLICATION_RESUMED, "arrived")]
    r = summarize(round_no=1, fault="standby", old_active="vpbx1-1", new_active="vpbx1-2",
                  events=events, downtime_s=1.5, lost_probes=70, replication_lag_s=0.4,
                  final_holder="vpbx1-2")
    assert r.detection_s is None
    assert r.resumed_after_rejoin_s == pytest.approx(0.5)
    assert r.stayed_standby is True


def test_table_has_one_column_per_round() -> None:
    r1 = summarize(round_no=1, fault="crash", old_active="vpbx1-1", new_active="vpbx1-2",
                   events=crash_events(), downtime_s=2.1234, lost_probes=104,
                   replication_lag_s=0.8, final_holder="vpbx1-2")
    r2 = summarize(round_no=2, fault="crash", old_active="vpbx1-2", new_active=None,
                   events=[], downtime_s=None, lost_probes=None, replication_lag_s=None,
                   final_holder=None)
    lines = table([r1, r2])
    assert lines[0].split() == ["round", "1", "(crash)", "round", "2", "(crash)"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    downtime = next(line for line in lines if line.lstrip().startswith("downtime"))
    assert "2.123 s" in downtime and downtime.rstrip().endswith("-")
    moved = next(line for line in lines if line.lstrip().startswith("active"))
    assert "vpbx1-1 -> vpbx1-2" in moved and "vpbx1-2 -> ?" in moved
    stayed = next(line for line in lines if "stayed standby" in line)
    assert stayed.split()[-2:] == ["yes", "-"]


def probe(seq: int, sent: float, answered: float | None, node: str | None) -> Probe:
    return Probe(seq=seq, sent=sent, answered=answered, node=node,
                 status=200 if answered is not None else None)


def test_service_gap_of_a_crash() -> None:
    probes = [probe(1, 99.94, 99.95, "vpbx1-1"), probe(2, 99.96, 99.97, "vpbx1-1"),
              probe(3, 99.98, None, None), probe(4, 100.5, None, None),
              probe(5, 102.0, 102.01, "vpbx1-2"), probe(6, 102.02, 102.03, "vpbx1-2")]
    gap = service_gap(probes, FAULT, "vpbx1-1", "vpbx1-2")
    assert gap is not None
    assert gap.seconds == pytest.approx(102.01 - 99.97)
    assert gap.lost == 2
    assert gap.first_new_at == 102.01


def test_service_gap_of_a_handover_counts_the_old_nodes_late_answers_as_service() -> None:
    probes = [probe(1, 99.9, 99.91, "vpbx1-1"), probe(2, 100.5, 100.51, "vpbx1-1"),
              probe(3, 100.6, None, None), probe(4, 101.0, 101.01, "vpbx1-2")]
    gap = service_gap(probes, FAULT, "vpbx1-1", "vpbx1-2")
    assert gap is not None
    assert gap.last_old_at == 100.51
    assert gap.seconds == pytest.approx(0.5)
    assert gap.lost == 1


def test_service_gap_needs_both_sides() -> None:
    only_old = [probe(1, 99.9, 99.91, "vpbx1-1"), probe(2, 100.1, None, None)]
    assert service_gap(only_old, FAULT, "vpbx1-1", "vpbx1-2") is None
    only_new = [probe(1, 100.1, 100.2, "vpbx1-2")]
    assert service_gap(only_new, FAULT, "vpbx1-1", "vpbx1-2") is None
