"""The chaos run's invariants on made-up samples and probes (no lab, no sleeping)."""

from __future__ import annotations

import struct

import pytest
from bench.chaos_check import (
    Conditions,
    Injected,
    Sample,
    availability,
    blind_takeovers,
    detection_windows,
    dual_holders,
    fault_outage,
    hear,
    merge,
    reaches_ping,
)

from nonstop.lab import LabError
from nonstop.lab.addrwatch import parse_addresses
from nonstop.lab.faults import ChaosFault
from nonstop.lab.outage import Probe

NODES = ("a", "b")


def samples(*spans: tuple[float, float, frozenset[str]], step: float = 0.01) -> list[Sample]:
    out: list[Sample] = []
    for start, end, held in spans:
        t = start
        while t < end - 1e-9:
            out.append(Sample(round(t, 4), held))
            t += step
    return out


ONE = frozenset({"a"})
BOTH = frozenset({"a", "b"})
OTHER = frozenset({"b"})


def test_hearing_and_reaching_follow_the_injected_faults() -> None:
    assert hear("a", "b", frozenset())
    assert hear("a", "b", frozenset({("uplink", "a"), ("loss", "b"), ("stopped", "a")}))
    assert not hear("a", "b", frozenset({("cable", "b")}))
    assert not hear("a", "b", frozenset({("down", "a")}))
    assert reaches_ping("a", frozenset({("cable", "b"), ("loss", "a")}))
    for what in ("cable", "uplink", "down"):
        assert not reaches_ping("a", frozenset({(what, "a")}))


def test_two_holders_over_a_second_while_hearing_is_a_violation() -> None:
    run = samples((0, 1, ONE), (1, 2.5, BOTH), (2.5, 3, OTHER))
    found = dual_holders(run, Conditions(), NODES)
    assert len(found) == 1
    assert found[0].start == pytest.approx(1.0)
    assert found[0].end == pytest.approx(2.5)


def test_two_holders_under_a_second_or_cut_apart_are_not() -> None:
    short = samples((0, 1, ONE), (1, 1.9, BOTH), (1.9, 3, OTHER))
    assert dual_holders(short, Conditions(), NODES) == []
    conds = Conditions()
    conds.change(0.5, add=[("cable", "a")])
    conds.change(2.8, remove=[("cable", "a")])
    cut = samples((0, 1, ONE), (1, 2.9, BOTH), (2.9, 3, OTHER))
    # Both hold for 1.9 s but only 0.1 s of it after the cable came back.
    assert dual_holders(cut, conds, NODES) == []


def test_two_holders_still_at_the_end_are_reported() -> None:
    found = dual_holders(samples((0, 1, ONE), (1, 3, BOTH)), Conditions(), NODES)
    assert len(found) == 1 and "still at the end" in found[0].detail


def test_takeover_by_a_cut_off_node_is_a_violation_and_by_the_other_is_not() -> None:
    conds = Conditions()
    conds.change(1.0, add=[("cable", "b")])
    bad = samples((0, 2, ONE), (2, 3, BOTH))
    found = blind_takeovers(bad, conds, NODES)
    assert [v.start for v in found] == [pytest.approx(2.0)]
    assert "b took the VIP" in found[0].detail and "cable b" in found[0].detail
    # The active's uplink is cut and the other node takes over: what ipfail should do.
    conds2 = Conditions()
    conds2.change(1.0, add=[("uplink", "a")])
    assert blind_takeovers(samples((0, 2, ONE), (2, 3, OTHER)), conds2, NODES) == []
    # Both cut off: nobody reaches a ping node, so taking over breaks no rule of this kind.
    conds3 = Conditions()
    conds3.change(1.0, add=[("uplink", "a"), ("uplink", "b")])
    assert blind_takeovers(bad, conds3, NODES) == []


def answered(times: list[float], node: str = "a") -> list[Probe]:
    return [Probe(i, t - 0.001, t, node, 200) for i, t in enumerate(times)]


def test_availability_counts_gaps_over_t1_outside_windows() -> None:
    ticks = [i * 0.02 for i in range(0, 500)]            # 0 .. 9.98 s
    gone = [t for t in ticks if not (2.0 < t < 4.0) and not (6.0 < t < 6.4)]
    result = availability(answered(gone), 0.0, 10.0, [(2.0, 3.0)])
    # The 2 s gap is half inside the window; the 0.4 s one is under T1.
    assert result.counted_s == pytest.approx(9.0)
    assert result.unserved_s == pytest.approx(1.0, abs=0.03)
    assert result.ratio == pytest.approx(1 - 1.0 / 9.0, abs=0.01)
    assert len(result.gaps) == 1


def test_detection_windows_follow_the_kinds_that_need_detecting() -> None:
    def item(kind: str, at: float, end: float) -> Injected:
        fault = ChaosFault(at=at, kind=kind, role="active", duration=end - at)  # type: ignore[arg-type]
        return Injected(fault, "a", at, end)

    windows = detection_windows([item("loss", 0, 5), item("crash", 10, 13),
                                 item("cable", 20, 25), item("cpuhog", 30, 35)], 2.0)
    assert windows == [(10, 12), (20, 22), (25, 27)]
    assert merge([(0, 2), (1, 3), (5, 6)]) == [(0, 3), (5, 6)]


def test_fault_outage_is_the_longest_silence_up_to_the_next_fault() -> None:
    probes = answered([0.0, 0.98, 1.0, 3.5, 3.52, 6.0])
    seconds, none_after = fault_outage(probes, 1.1, 5.0)
    assert seconds == pytest.approx(2.5)
    assert not none_after
    seconds, none_after = fault_outage(probes, 3.6, 5.9)
    assert seconds == pytest.approx(5.9 - 3.52)
    assert none_after
    # The silence after the last answer counts up to the next fault...
    seconds, none_after = fault_outage(answered([0.0, 0.02, 0.04]), 0.03, 4.0)
    assert seconds == pytest.approx(3.96)
    assert not none_after
    # ...and a silence that began before the fault is not the fault's.
    seconds, _ = fault_outage(probes, 2.9, 5.0)
    assert seconds == pytest.approx(5.0 - 3.52)


def _newaddr(ip: bytes) -> bytes:
    ifa = struct.pack("=BBBBI", 2, 24, 0, 0, 2)
    attr = struct.pack("=HH", 8, 2) + ip
    body = ifa + attr
    return struct.pack("=IHHII", 16 + len(body), 20, 2, 1, 0) + body


def test_netlink_address_dump_is_parsed_and_errors_are_lab_errors() -> None:
    done = struct.pack("=IHHII", 20, 3, 2, 1, 0) + b"\0\0\0\0"
    found, finished = parse_addresses(_newaddr(bytes([198, 18, 0, 10])) + done)
    assert (found, finished) == (["198.18.0.10"], True)
    assert parse_addresses(_newaddr(bytes([127, 0, 0, 1]))) == (["127.0.0.1"], False)
    error = struct.pack("=IHHII", 20, 2, 0, 1, 0) + struct.pack("=i", -1)
    with pytest.raises(LabError, match="netlink error -1"):
        parse_addresses(error)
    with pytest.raises(LabError, match="malformed"):
        parse_addresses(struct.pack("=IHHII", 400, 20, 0, 1, 0))
