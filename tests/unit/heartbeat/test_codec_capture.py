"""Every datagram of a real Heartbeat 3.0.6 session decodes, authenticates and re-encodes."""

from __future__ import annotations

import ast
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pcapread import Datagram, udp_datagrams

from nonstop.config.model import AuthKey, AuthKeys, AuthMethod
from nonstop.heartbeat.codec import Message, decode, encode

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "heartbeat-wire"
KEY = AuthKey(1, AuthMethod.SHA1, b"ThisIsTheAuthkeyForTheCluster")
KEYS = AuthKeys(1, {1: KEY})
DATAGRAMS = udp_datagrams(FIXTURES / "hb-session.pcap")


@dataclass
class Example:
    """One datagram of decoded-examples.txt as its author printed it."""

    raw: bytes
    fields: list[tuple[str, str | bytes]] = field(default_factory=list)
    trailer: str = ""


def load_examples() -> list[Example]:
    examples: list[Example] = []
    field_line = re.compile(r"    \((\d)\) (\S+)\s+= (.*)")
    for line in (FIXTURES / "decoded-examples.txt").read_text().splitlines():
        if line.startswith("raw: "):
            examples.append(Example(ast.literal_eval(line[len("raw: ") :])))
        elif m := field_line.fullmatch(line):
            ftype, name, value = m.groups()
            if ftype == "1":
                assert value.startswith("hex:")
                examples[-1].fields.append((name, bytes.fromhex(value[4:])))
            else:
                examples[-1].fields.append((name, value))
        elif line.startswith("    trailer    = "):
            examples[-1].trailer = line.split("= ", 1)[1]
    return examples


EXAMPLES = load_examples()


def test_capture_holds_a_whole_session() -> None:
    types = Counter(decode(d.payload, KEYS).message.get("t") for d in DATAGRAMS)
    assert len(DATAGRAMS) == 248
    assert types["status"] > 100
    for t in ("NS_ackmsg", "reqnodes", "repnodes", "starting", "resource", "ask_resources"):
        assert types[t] > 0, t


@pytest.mark.parametrize("dgram", DATAGRAMS, ids=lambda d: f"{d.src}-{d.time:.6f}")
def test_datagram_authenticates_and_reencodes_byte_for_byte(dgram: Datagram) -> None:
    got = decode(dgram.payload, KEYS)
    assert got.fmt == "netstring"
    assert got.key_index == 1
    assert got.message.names()[-1] == "auth"
    assert got.message.get("src") == {"198.18.1.1": "vpbx1-1", "198.18.1.2": "vpbx1-2"}[dgram.src]
    assert encode(got.message.without("auth"), KEY, "netstring") == dgram.payload


def test_decoded_examples_file_covers_eight_types() -> None:
    assert len(EXAMPLES) == 8
    assert all(ex.raw in {d.payload for d in DATAGRAMS} for ex in EXAMPLES)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda ex: str(ex.fields[0][1]))
def test_decoded_examples_fields_and_digests(example: Example) -> None:
    got = decode(example.raw, KEYS)
    assert list(got.message) == example.fields
    assert example.raw.endswith(b"%%%\n42:" + example.trailer.encode() + b",")


def test_status_fields_as_heartbeat_sends_them() -> None:
    first = decode(EXAMPLES[0].raw, KEYS).message
    assert first.names() == [
        "t", "st", "dt", "protocol", "src", "srcuuid", "seq", "hg", "ts", "ld", "ttl", "auth",
    ]  # fmt: skip
    assert first.get("st") == "init"
    assert first.get_hex("dt") == 4000
    assert first.get_int("protocol") == 1
    assert first.get_bytes("srcuuid") == bytes.fromhex("39ec54a81e124b958230ea3a061cf99f")
    assert first.get("srcuuid") is None  # binary, not a string
    assert first.get_hex("seq") == 1
    assert first.get_hex("hg") == 0x6B06285D
    assert first.get("ld") == "2.02 1.85 1.51 5/245 59"


def tcpdump_payloads() -> list[bytes]:
    """The UDP payloads of the packets printed by ``tcpdump -X`` in tcpdump-X.txt."""
    packets: list[bytearray] = []
    for line in (FIXTURES / "tcpdump-X.txt").read_text().splitlines():
        if m := re.fullmatch(r"\t0x([0-9a-f]{4}):  ((?:[0-9a-f]{2,4} ?)+)  .*", line):
            if m.group(1) == "0000":
                packets.append(bytearray())
            packets[-1] += bytes.fromhex(m.group(2).replace(" ", ""))
    return [bytes(p[28:]) for p in packets]  # after the 20-byte IPv4 and 8-byte UDP headers


TCPDUMP = tcpdump_payloads()


def test_tcpdump_status_packets_decode_and_reencode() -> None:
    assert [len(p) for p in TCPDUMP] == [310, 310]
    first, second = (decode(p, KEYS).message for p in TCPDUMP)
    assert first.get("auth") == "1 a7515b4ae687226a0ca9a90a117dc228c8858465"
    assert TCPDUMP[0].endswith(b"42:1 7b2e9c90f9b3c2fa33ed2cb02770be600c651e32,")
    assert second.get("auth") == "1 9a34c4cb71f84500df4ed4e0b633e1eeae0238fc"
    assert second.get("src") == "vpbx1-2"
    assert [encode(m.without("auth"), KEY) for m in (first, second)] == TCPDUMP


def test_membership_can_build_a_status_that_matches_the_capture() -> None:
    # Built field by field as the membership core will, from the values in tcpdump-X.txt.
    msg = Message.of(
        [
            ("t", "status"),
            ("st", "active"),
            ("dt", f"{2000:x}"),
            ("protocol", "1"),
            ("src", "vpbx1-1"),
            ("srcuuid", bytes.fromhex("39ec54a81e124b958230ea3a061cf99f")),
            ("seq", f"{0x6C:x}"),
            ("hg", f"{0x6B06285D:x}"),
            ("ts", f"{0x6B062EA0:x}"),
            ("ld", "1.94 1.85 1.52 1/253 684"),
            ("ttl", "3"),
        ]
    )
    assert encode(msg, KEY) == TCPDUMP[0]


def test_classic_form_of_a_captured_message_carries_the_same_inner_auth() -> None:
    # Heartbeat's inner auth is computed over the classic text, so signing the same fields in
    # the classic form must give the auth value captured inside the netstring packet.
    got = decode(EXAMPLES[0].raw, KEYS).message
    classic = encode(got.without("auth"), KEY, "classic")
    assert classic == (
        b">>>\nt=status\nst=init\ndt=fa0\nprotocol=1\nsrc=vpbx1-1\n"
        b"(1)srcuuid=OexUqB4SS5WCMOo6Bhz5nw==\nseq=1\nhg=6b06285d\nts=6b062e8e\n"
        b"ld=2.02 1.85 1.51 5/245 59\nttl=3\n"
        b"auth=1 9d20a2a4e3fb7f44cbcd798e0b90f005ea086383\n<<<\n\0"
    )
    again = decode(classic, KEYS)
    assert again.fmt == "classic"
    assert again.message == got
