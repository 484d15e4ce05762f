"""Whose name an unauthenticated status message carries (for the forged-identity log line)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from nonstop.config.model import AuthKey, AuthMethod
from nonstop.heartbeat.claims import SCAN_LIMIT, claimed_sender
from nonstop.heartbeat.codec import WireFormat, encode
from nonstop.heartbeat.message import Message

NODES = ("vpbx1-1", "vpbx1-2")
WRONG = AuthKey(1, AuthMethod.SHA1, b"not the cluster's key")


def status(src: str, t: str = "status") -> Message:
    return Message([("t", t), ("st", "active"), ("src", src), ("srcuuid", b"\x01" * 16),
                    ("seq", "1")])


def test_a_status_naming_a_configured_node_is_recognised_in_both_wire_forms() -> None:
    forms: tuple[WireFormat, ...] = ("netstring", "classic")
    for fmt in forms:
        assert claimed_sender(encode(status("VPBX1-2"), WRONG, fmt), NODES) == "vpbx1-2"
        assert claimed_sender(encode(status("rogue"), WRONG, fmt), NODES) is None
        assert claimed_sender(encode(status("vpbx1-1", t="NS_rexmit"), WRONG, fmt),
                              NODES) is None


def test_only_the_head_of_a_datagram_is_looked_at() -> None:
    late = b"###\n" + b"x" * SCAN_LIMIT + b"11:(0)t=status,14:(0)src=vpbx1-1,"
    assert claimed_sender(late, NODES) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_any_bytes_give_a_configured_name_or_none(data: bytes) -> None:
    assert claimed_sender(data, NODES) in (None, *NODES)
