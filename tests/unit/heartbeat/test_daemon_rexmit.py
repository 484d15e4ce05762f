"""The daemon asks a peer to retransmit only what is still missing when its random delay ends.

Heartbeat 3.0.6's messages can overtake each other (seq 0x56 before 0x55 at its shutdown); the
late one usually arrives within a millisecond, long before the request would go out.
"""

from __future__ import annotations

from pathlib import Path

from daemon_harness import RecordingMedia, talk_daemon

from nonstop.daemon import REXMIT_ATTEMPTS
from nonstop.heartbeat.codec import decode
from nonstop.heartbeat.envelope import Field
from nonstop.heartbeat.membership import MessageView, RexmitWanted


def status(seq: int) -> MessageView:
    fields: list[Field] = [("t", "status"), ("st", "active"), ("dt", "7d0"), ("protocol", "1"),
                           ("src", "vpbx1-2"), ("srcuuid", b"\x02" * 16), ("seq", f"{seq:x}"),
                           ("hg", "7"), ("ts", "6b062e8e"), ("ttl", "3")]
    return MessageView(fields)


async def test_rexmit_request_only_for_packets_still_missing(tmp_path: Path) -> None:
    daemon, cfg = talk_daemon(tmp_path)
    media = daemon.media
    assert isinstance(media, RecordingMedia) and daemon.membership and daemon.loop
    m = daemon.membership
    now = daemon.loop.time()
    m.receive(status(1), "eth0", now)
    m.receive(status(5), "eth0", now)  # 2, 3 and 4 missing
    m.receive(status(2), "eth0", now)  # overtaken, not lost

    daemon._send_rexmit_request(RexmitWanted("vpbx1-2", 2, 4), 0)
    assert len(media.sent) == 1
    fields = dict(decode(media.sent[0], cfg.authkeys).message.fields)
    assert (fields["t"], fields["dest"], fields["firstseq"], fields["lastseq"]) == (
        "NS_rexmit", "vpbx1-2", "3", "4")

    m.receive(status(3), "eth0", now)
    m.receive(status(4), "eth0", now)
    daemon._send_rexmit_request(RexmitWanted("vpbx1-2", 2, 4), 1)
    assert len(media.sent) == 1  # everything arrived: nothing to ask


async def test_a_packet_that_never_comes_is_asked_for_again_then_given_up(
        tmp_path: Path) -> None:
    daemon, _ = talk_daemon(tmp_path)
    media = daemon.media
    assert isinstance(media, RecordingMedia) and daemon.membership and daemon.loop
    m = daemon.membership
    now = daemon.loop.time()
    m.receive(status(1), "eth0", now)
    m.receive(status(3), "eth0", now)  # 2 is lost for good
    for attempt in range(REXMIT_ATTEMPTS):
        daemon._send_rexmit_request(RexmitWanted("vpbx1-2", 2, 2), attempt)
    assert len(media.sent) == REXMIT_ATTEMPTS
    daemon._send_rexmit_request(RexmitWanted("vpbx1-2", 2, 2), REXMIT_ATTEMPTS)
    assert len(media.sent) == REXMIT_ATTEMPTS  # no more asking
    assert m.missing("vpbx1-2") == frozenset()  # acks to the peer can resume
    assert m.counters["lost_for_good"] == 1
