"""The SIP prober's messages and the outage computed from its record."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nonstop.lab.kamailio import kamailio_config
from nonstop.lab.outage import Probe, client_outage, read_probes
from nonstop.lab.sipprobe import options_request, parse_reply

TAG = "labprobe42"


def answer(request: bytes, *, status: str = "200 OK vpbx1-2", node: str | None = "vpbx1-2",
           ) -> bytes:
    """A response built from a request the way a SIP server copies the dialog headers."""
    keep = ("via:", "from:", "to:", "call-id:", "cseq:")
    head = [line for line in request.decode().split("\r\n") if line.lower().startswith(keep)]
    if node is not None:
        head.append(f"X-Lab-Node: {node}")
    return "\r\n".join([f"SIP/2.0 {status}", *head, "Content-Length: 0", "", ""]).encode()


def test_a_request_and_its_answer_match_by_sequence_number() -> None:
    request = options_request(seq=17, target="198.18.0.10", port=5060, local_ip="198.18.0.100",
                              local_port=40000, tag=TAG)
    assert request.startswith(b"OPTIONS sip:198.18.0.10:5060 SIP/2.0\r\n")
    assert b"Call-ID: labprobe42-17@lab\r\n" in request
    assert b";rport\r\n" in request
    reply = parse_reply(answer(request), TAG)
    assert reply is not None
    assert (reply.seq, reply.status, reply.node) == (17, 200, "vpbx1-2")
    unnamed = parse_reply(answer(request, status="503 Busy", node=None), TAG)
    assert unnamed is not None and (unnamed.status, unnamed.node) == (503, None)


def test_answers_to_someone_else_are_ignored() -> None:
    request = options_request(seq=3, target="198.18.0.10", port=5060, local_ip="198.18.0.100",
                              local_port=40000, tag="labprobe7")
    assert parse_reply(answer(request), TAG) is None
    assert parse_reply(request, "labprobe7") is None  # a request is not a reply


@given(st.binary(max_size=600))
def test_any_datagram_is_a_reply_or_none(data: bytes) -> None:
    result = parse_reply(data, TAG)
    assert result is None or result.seq >= 0


def test_unicode_digits_are_not_numbers() -> None:
    bad_status = "SIP/2.0 2\u00b2 OK\r\nCall-ID: labprobe42-1@lab\r\n\r\n"
    bad_call_id = "SIP/2.0 200 OK\r\nCall-ID: labprobe42-\u00b2@lab\r\n\r\n"
    assert parse_reply(bad_status.encode(), TAG) is None
    assert parse_reply(bad_call_id.encode(), TAG) is None


def probes(*rows: tuple[float, float | None, str | None]) -> list[Probe]:
    return [Probe(seq=i + 1, sent=sent, answered=answered, node=node,
                  status=200 if answered is not None else None)
            for i, (sent, answered, node) in enumerate(rows)]


def test_outage_runs_from_last_answer_before_to_first_answer_after() -> None:
    record = probes((1.0, 1.01, "n1"), (2.0, 2.01, "n1"), (3.0, None, None), (4.0, None, None),
                    (5.0, 5.02, "n1"), (6.0, 6.01, "n2"))
    outage = client_outage(record, fault_at=2.5)
    assert (outage.last_before.seq, outage.first_after.seq, outage.lost) == (2, 5, 2)
    assert outage.seconds == pytest.approx(3.01)
    by_n2 = client_outage(record, fault_at=2.5, answered_by="n2")
    assert (by_n2.first_after.seq, by_n2.lost) == (6, 2)
    assert by_n2.seconds == pytest.approx(4.0)


def test_a_probe_in_flight_at_the_fault_does_not_end_the_outage() -> None:
    record = probes((1.0, 1.01, "n1"), (1.99, 2.02, "n1"), (3.0, 3.01, "n2"))
    outage = client_outage(record, fault_at=2.0)
    assert outage.last_before.seq == 1 and outage.first_after.seq == 3


def test_outage_needs_answers_on_both_sides() -> None:
    with pytest.raises(ValueError, match="before"):
        client_outage(probes((3.0, 3.01, "n1")), fault_at=2.0)
    with pytest.raises(ValueError, match="after the fault was answered by n2"):
        client_outage(probes((1.0, 1.01, "n1"), (3.0, 3.01, "n1")), fault_at=2.0,
                      answered_by="n2")


def test_read_probes_sorts_and_skips_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(
        '{"seq": 2, "sent": 2.0, "answered": null, "node": null, "status": null}\n'
        '{"seq": 1, "sent": 1.0, "answered": 1.5, "node": "n1", "status": 200}\n'
        '{"seq": 3, "sent": 3.0, "ans'
    )
    assert [(p.seq, p.answered, p.node) for p in read_probes(path)] == [
        (1, 1.5, "n1"), (2, None, None)]


def test_kamailio_config_names_the_node_and_binds_the_address() -> None:
    text = kamailio_config(node="vpbx1-1", listen_ip="198.18.0.10")
    assert "listen=udp:198.18.0.10:5060" in text
    assert 'sl_send_reply("200", "OK vpbx1-1");' in text
    assert 'append_to_reply("X-Lab-Node: vpbx1-1\\r\\n");' in text
    with pytest.raises(ValueError):
        kamailio_config(node='evil"name', listen_ip="198.18.0.10")
