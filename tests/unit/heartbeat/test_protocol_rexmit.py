"""The heartbeat protocol asks a peer to retransmit only what is still missing when its random
delay ends, asks again while it is missing, then gives up; and answers a peer's requests from
its history. Simulated clock, seeded randomness, no Daemon.

Heartbeat 3.0.6's messages can overtake each other (seq 0x56 before 0x55 at its shutdown); the
late one usually arrives within a millisecond, long before the request would go out.
"""

from __future__ import annotations

import random
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

from pcapread import udp_datagrams
from peers import TALK, message

from nonstop.config.model import AuthKey, AuthKeys, AuthMethod, HaConfig
from nonstop.heartbeat.codec import decode
from nonstop.heartbeat.envelope import Identity
from nonstop.heartbeat.events import GapFilled, Output, RexmitGaveUp, RexmitWanted, Transmit
from nonstop.heartbeat.membership import MessageView
from nonstop.heartbeat.protocol import (
    HISTORY,
    REXMIT_ATTEMPTS,
    REXMIT_REPEAT_S,
    HeartbeatProtocol,
)

KEY = AuthKey(1, AuthMethod.SHA1, b"ThisIsTheAuthkeyForTheCluster")
KEYS = AuthKeys(1, {1: KEY})
MAX_DELAY = TALK.max_rexmit_delay_ms / 1000.0
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "heartbeat-wire"


def protocol(seed: int = 1, ha: HaConfig = TALK) -> HeartbeatProtocol:
    return HeartbeatProtocol(
        ha, Identity("vpbx1-1", b"\x01" * 16, 5), KEYS, 0.0,
        wall_clock=lambda: 0x6B062E8E, loadavg=lambda now: "0.00 0.00 0.00 1/100 1",
        rng=random.Random(seed),
    )


def status(seq: int) -> MessageView:
    """vpbx1-2's status, advertising a deadtime of 10 s (it stays alive through a test)."""
    return message(seq, ("t", "status"), ("st", "active"), ("dt", "2710"), ("protocol", "1"))


def sent(out: list[Output]) -> list[dict[str, object]]:
    """The fields of every datagram in ``out``, decoded as a peer would."""
    return [dict(decode(o.payload, KEYS).message.fields) for o in out if isinstance(o, Transmit)]


def run(p: HeartbeatProtocol, until: float) -> list[tuple[float, Output]]:
    """Advance the simulated clock from wakeup to wakeup up to ``until``: (time, output)."""
    got: list[tuple[float, Output]] = []
    while (now := p.next_wakeup()) <= until:
        got += [(now, o) for o in p.tick(now)]
    return got


def requests(got: list[tuple[float, Output]]) -> list[tuple[float, object, object]]:
    """The retransmit requests sent: (time, firstseq, lastseq)."""
    out: list[tuple[float, object, object]] = []
    for now, o in got:
        for f in sent([o]):
            if f["t"] == "NS_rexmit":
                assert f["dest"] == "vpbx1-2"
                out.append((now, f["firstseq"], f["lastseq"]))
    return out


def test_rexmit_request_only_for_packets_still_missing() -> None:
    p = protocol()
    p.receive_message(status(1), "eth0", 0.0)
    assert RexmitWanted("vpbx1-2", 2, 4) in p.receive_message(status(5), "eth0", 0.0)
    p.receive_message(status(2), "eth0", 0.0)  # overtaken, not lost

    (first,) = requests(run(p, MAX_DELAY))
    assert 0.0 <= first[0] <= MAX_DELAY  # after a random delay up to max_rexmit_delay
    assert first[1:] == ("3", "4")  # decimal, as Heartbeat's NS_rexmit

    p.receive_message(status(3), "eth0", first[0])
    p.receive_message(status(4), "eth0", first[0])
    assert requests(run(p, 1.5)) == []  # everything arrived: nothing more to ask


def test_a_packet_that_never_comes_is_asked_for_again_then_given_up() -> None:
    p = protocol()
    p.receive_message(status(1), "eth0", 0.0)
    p.receive_message(status(3), "eth0", 0.0)  # 2 is lost for good
    got = run(p, 4.0)
    asked = requests(got)
    assert [a[1:] for a in asked] == [("2", "2")] * REXMIT_ATTEMPTS
    for before, after in pairwise(asked):
        assert REXMIT_REPEAT_S <= after[0] - before[0] <= REXMIT_REPEAT_S + MAX_DELAY
    gave_up = [(now, o) for now, o in got if isinstance(o, RexmitGaveUp | GapFilled)]
    assert [o for _, o in gave_up] == [RexmitGaveUp("vpbx1-2", (2,)), GapFilled("vpbx1-2")]
    assert gave_up[0][0] - asked[-1][0] >= REXMIT_REPEAT_S  # one more wait, then no more asking
    assert p.membership.missing("vpbx1-2") == frozenset()  # acks to the peer can resume
    assert p.view(4.0).counters["lost_for_good"] == 1


def test_the_random_delay_comes_from_the_injected_generator() -> None:
    def first_request(seed: int) -> float:
        p = protocol(seed)
        p.receive_message(status(1), "eth0", 0.0)
        p.receive_message(status(3), "eth0", 0.0)
        return requests(run(p, MAX_DELAY))[0][0]

    assert first_request(7) == first_request(7)
    assert len({first_request(seed) for seed in range(5)}) > 1


def rexmit_request(first: int, last: int) -> MessageView:
    return message(None, ("t", "NS_rexmit"), ("dest", "vpbx1-1"), ("firstseq", str(first)),
                   ("lastseq", str(last)))


def test_two_thousand_replayed_requests_resend_each_packet_once() -> None:
    """Issue 9's probe: 2,000 copies of one captured request (at one instant here)."""
    p = protocol()
    ours = [o for _ in range(10) for o in p.send_status(0.0)]
    assert [f["seq"] for f in sent(ours)] == [f"{n:x}" for n in range(1, 11)]
    got = [o for _ in range(2000) for o in p.receive_message(rexmit_request(1, 10), "eth0", 0.1)]
    resent = [o for o in got if isinstance(o, Transmit) and o.mtype is None]
    assert resent == [Transmit(o.payload, None) for o in ours if isinstance(o, Transmit)]
    assert p.rexmit_counters() == {
        "requests": 2000, "resent": 10, "nak": 0, "suppressed": 2000 * 10 - 10}


def test_what_left_the_history_is_naked() -> None:
    p = protocol()
    for _ in range(HISTORY + 5):
        p.send_status(0.0)
    assert p.seq == HISTORY + 5 and min(p.history) == 6
    naks = sent(p.receive_message(rexmit_request(4, 6), "eth0", 0.1))
    assert [(f["t"], f["dest"], f["firstseq"], f["info"]) for f in naks[:2]] == [
        ("NS_nak_rexmit", "vpbx1-2", "4", "seqno too low"),
        ("NS_nak_rexmit", "vpbx1-2", "5", "seqno too low"),
    ]
    assert naks[2]["t"] == "status" and naks[2]["seq"] == "6"  # still held: resent as it was
    (gone,) = sent(p.receive_message(rexmit_request(0x300, 0x300), "eth0", 0.1))
    assert (gone["firstseq"], gone["info"]) == ("300", "seqno not found")
    assert "seq" not in gone  # NS_ messages are not numbered
    assert p.rexmit_counters()["nak"] == 3


def test_a_status_is_stamped_and_signed_byte_for_byte_as_heartbeat_does() -> None:
    """Rebuild a status vpbx1-1 (Heartbeat 3.0.6) sent in the captured session."""
    for dgram in udp_datagrams(FIXTURES / "hb-session.pcap"):
        msg = decode(dgram.payload, KEYS).message
        if (msg.get("src"), msg.get("t"), msg.get("st")) == ("vpbx1-1", "status", "active"):
            break
    uuid, ld = msg.get_bytes("srcuuid"), msg.get("ld")
    seq, gen, ts, dt = (msg.get_hex(n) for n in ("seq", "hg", "ts", "dt"))
    assert uuid and ld and seq and gen and ts and dt
    alone = replace(TALK, nodes=("vpbx1-1",), deadtime_ms=dt)  # active at once
    p = HeartbeatProtocol(alone, Identity("vpbx1-1", uuid, gen, int(msg.get("ttl") or 0)),
                          KEYS, 0.0, wall_clock=lambda: ts, loadavg=lambda now: ld)
    p.seq = seq - 1
    assert p.send_status(0.0) == [Transmit(dgram.payload, "status")]
    assert p.history[seq] == dgram.payload
