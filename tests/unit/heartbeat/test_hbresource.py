"""Heartbeat's resource messages, driven by captures of two real Heartbeat 3.0.6 nodes.

tests/fixtures/heartbeat-rsc/<scenario>.messages.txt has one line per datagram (time, node,
type, fields) and the raw datagram of every message that is not a heartbeat or an ack;
capture_hb_resources.py there made them.
"""

from __future__ import annotations

import base64
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nonstop.config.model import AuthKey, AuthKeys, AuthMethod
from nonstop.heartbeat.codec import (
    BAD_FIELD,
    BadPacket,
    FieldError,
    Message,
    Value,
    decode,
    encode,
)
from nonstop.heartbeat.hbresource import (
    CONTROL_FIELDS,
    RESOURCE_TYPES,
    AskResources,
    HbTakeover,
    IpRequest,
    IpRequestResp,
    PeerResources,
    ResourceEvent,
    ResourcesHeld,
    RscSet,
    ShutDone,
    StandbyPhase,
    Starting,
    Stonith,
    StonithResult,
    TakeoverArg,
    parse,
    to_message,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "heartbeat-rsc"
KEY = AuthKey(1, AuthMethod.SHA1, b"ThisIsTheAuthkeyForTheCluster")
KEYS = AuthKeys(1, {1: KEY})
N1, N2 = "vpbx1-1", "vpbx1-2"
GROUP = "MailTo::tech@webinmotion.ca::Asterisk"
PREFERRED = {GROUP: N1}  # the talk's haresources: one group, on vpbx1-1's line
SCENARIOS = ("failback-off", "failback-on", "staggered")


@dataclass(frozen=True)
class Line:
    """One line of a capture: a datagram, or (``action`` set) a command given to the cluster."""

    scenario: str
    time: float
    node: str = ""
    kind: str = ""
    fields: tuple[tuple[str, str], ...] = ()
    raw: bytes = b""
    action: str = ""

    def __str__(self) -> str:
        return f"{self.scenario}@{self.time:.3f}:{self.node}:{self.kind}"


def load(scenario: str) -> list[Line]:
    lines: list[Line] = []
    for text in (FIXTURES / f"{scenario}.messages.txt").read_text().splitlines():
        if text.startswith("# ") and " action: " in text:
            at, action = text[2:].split(" action: ", 1)
            lines.append(Line(scenario, float(at), action=action))
        elif not text.startswith("#"):
            at, node, kind, *rest = shlex.split(text)
            pairs = [tuple(word.split("=", 1)) for word in rest]
            fields = tuple((n, v) for n, v in pairs if n != "raw")
            raw = next((base64.b64decode(v) for n, v in pairs if n == "raw"), b"")
            lines.append(Line(scenario, float(at), node, kind, fields, raw))
    return lines


CAPTURES = {name: load(name) for name in SCENARIOS}
WITH_RAW = [line for lines in CAPTURES.values() for line in lines if line.raw]
RESOURCE_LINES = [line for line in WITH_RAW if line.kind in RESOURCE_TYPES]


def decoded(line: Line) -> Message:
    return decode(line.raw, KEYS).message


def body_of(msg: Message) -> Message:
    return Message.of([(n, v) for n, v in msg.fields if n not in CONTROL_FIELDS])


def test_captures_cover_every_resource_message_heartbeat_sent() -> None:
    kinds = {line.kind for line in WITH_RAW}
    assert RESOURCE_TYPES - kinds == {"ip-request"}  # legacy mode only; the talk is nice_failback
    events = [parse(decoded(line)) for line in RESOURCE_LINES]
    assert {e.held for e in events if isinstance(e, ResourcesHeld)} == set(RscSet)
    assert {(e.rsc, e.phase) for e in events if isinstance(e, AskResources)} >= {
        (rsc, phase) for rsc in (RscSet.ALL, RscSet.FOREIGN, RscSet.LOCAL)
        for phase in StandbyPhase}
    assert {e.info for e in events if isinstance(e, ResourcesHeld)} == {
        None, "req_our_resources()", "standby", "shutdown", "mach_down"}
    assert {e.result for e in events if isinstance(e, Stonith)} == {
        StonithResult.NOT_CONFIGURED, StonithResult.UNNEEDED}


@pytest.mark.parametrize("line", WITH_RAW, ids=str)
def test_captured_message_decodes_to_its_event(line: Line) -> None:
    msg = decoded(line)
    assert msg.get("t") == line.kind and msg.get("src") == line.node
    # The decoded text of the fixture is the datagram's fields (quiet ones left out).
    assert [(n, v) for n, v in msg.fields if (n, v) in line.fields] == list(line.fields)
    event = parse(msg)
    if line.kind not in RESOURCE_TYPES:
        assert event is None  # reqnodes, repnodes: membership's business
        return
    assert event is not None and event.src == line.node


@pytest.mark.parametrize("line", RESOURCE_LINES, ids=str)
def test_what_we_would_send_is_what_heartbeat_sent(line: Line) -> None:
    """Our encoding of the event, plus the same control fields, is the captured datagram."""
    msg = decoded(line)
    event = parse(msg)
    assert event is not None
    body = to_message(event)
    assert body == body_of(msg)
    control = [(n, v) for n, v in msg.fields if n in CONTROL_FIELDS and n != "auth"]
    # Heartbeat writes the message's own fields first, then its control fields.
    assert msg.without("auth").fields == (*body.fields, *control)
    assert encode(Message.of([*body.fields, *control]), KEY) == line.raw


EXTRA_EVENTS: list[ResourceEvent] = [
    Starting(N2),
    ResourcesHeld(N2, RscSet.LOCAL, full=True, stable=True, info="req_our_resources()"),
    ResourcesHeld(N2, RscSet.FOREIGN, full=False, info="mach_down"),
    AskResources(N2, RscSet.LOCAL, StandbyPhase.ME),
    HbTakeover(N2, TakeoverArg.FAILBACK),
    ShutDone(N2),
    Stonith(N2, N1, StonithResult.OK),
    IpRequest(N2, GROUP),
    IpRequestResp(N2, N1, GROUP, we_own=False),
]


@pytest.mark.parametrize("event", EXTRA_EVENTS, ids=repr)
def test_event_round_trips_through_the_codec(event: ResourceEvent) -> None:
    body = to_message(event)
    control: list[tuple[str, Value]] = [
        ("src", event.src), ("srcuuid", b"\x01" * 16), ("seq", "2a"), ("hg", "6b13401b"),
        ("ts", "6b13401c"), ("ttl", "3")]
    payload = encode(Message.of([*body.fields, *control]), KEY)
    assert parse(decode(payload, KEYS).message) == event


def captured(kind: str, **match: str) -> Message:
    for line in RESOURCE_LINES:
        msg = decoded(line)
        if line.kind == kind and all(msg.get(n) == v for n, v in match.items()):
            return msg
    raise LookupError(kind)


BAD_CHANGES = [
    ("resource", {}, "rsc_hold", None),
    ("resource", {}, "rsc_hold", "most"),
    ("resource", {}, "rsc_hold", "ALL"),
    ("resource", {"rtype": "full"}, "isstable", "2"),
    ("resource", {"rtype": "full"}, "rtype", "partial"),
    ("ask_resources", {}, "info", None),
    ("ask_resources", {}, "info", "maybe"),
    ("ask_resources", {}, "rsc_hold", "some"),
    ("hb_takeover", {}, "rsc_hold", None),
    ("hb_takeover", {}, "rsc_hold", "everything"),
    ("shutdone", {}, "st", "active"),
    ("shutdone", {}, "st", None),
    ("stonith", {}, "node", None),
    ("stonith", {}, "result", "fenced"),
    ("ip-request-resp", {}, "weown", "perhaps"),
    ("ip-request-resp", {}, "ok", "NO"),
    ("ip-request-resp", {}, "dest", None),
    ("starting", {}, "src", None),
]


@pytest.mark.parametrize(("kind", "match", "name", "value"), BAD_CHANGES,
                         ids=[f"{k}-{n}={v}" for k, _, n, v in BAD_CHANGES])
def test_malformed_resource_message_is_bad_remote_input(
        kind: str, match: dict[str, str], name: str, value: str | None) -> None:
    msg = captured(kind, **match)
    changed = msg.without(name) if value is None else msg.with_field(name, value)
    received = decode(encode(changed, KEY), KEYS).message  # authentic, yet wrong
    with pytest.raises(BadPacket) as info:
        parse(received)
    assert info.value.reason == BAD_FIELD


def test_missing_optional_fields_read_as_heartbeat_reads_them() -> None:
    # ask_resources without rsc_hold: Heartbeat assumes "all".
    ask = Message.of([("t", "ask_resources"), ("info", "me"), ("src", N1)])
    assert parse(ask) == AskResources(N1, RscSet.ALL, StandbyPhase.ME)
    # The mach_down script's message has neither rtype nor isstable: a partial update.
    md = Message.of([("t", "resource"), ("rsc_hold", "foreign"), ("info", "mach_down"),
                     ("src", N2)])
    assert parse(md) == ResourcesHeld(N2, RscSet.FOREIGN, full=False, stable=None,
                                      info="mach_down")


resource_fields = st.lists(
    st.tuples(st.sampled_from(["t", "src", "rsc_hold", "rtype", "isstable", "info", "st",
                               "node", "result", "ipaddr", "dest", "weown", "ok", "x"]),
              st.one_of(st.sampled_from(sorted(RESOURCE_TYPES) + [v.value for v in RscSet]
                                        + ["full", "0", "1", "me", "dead", "OK", "yes"]),
                        st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1,
                                max_size=12),
                        st.binary(min_size=1, max_size=4))),
    max_size=8)


@settings(max_examples=300, deadline=None)
@given(resource_fields)
def test_parse_raises_only_bad_packet(fields: list[tuple[str, str | bytes]]) -> None:
    try:
        event = parse(Message.of(fields))
    except BadPacket as e:
        assert e.reason == BAD_FIELD
        return
    if event is not None:  # whatever parses, we can send back the same way
        assert parse(to_message(event).append("src", event.src)) == event


def test_to_message_refuses_what_heartbeat_cannot_carry() -> None:
    with pytest.raises(FieldError):
        to_message(IpRequest(N1, ""))


def test_sets_are_relative_to_their_node() -> None:
    assert RscSet.LOCAL.groups(N1, PREFERRED) == {GROUP}
    assert RscSet.LOCAL.groups(N2, PREFERRED) == frozenset()
    assert RscSet.FOREIGN.groups(N2, PREFERRED) == {GROUP}
    assert RscSet.FOREIGN.mirrored() is RscSet.LOCAL and RscSet.ALL.mirrored() is RscSet.ALL
    assert RscSet.FOREIGN | RscSet.LOCAL is RscSet.ALL and RscSet.NONE | RscSet.NONE is RscSet.NONE
    assert [TakeoverArg(a).peer_standby() for a in ("all", "local", "foreign", "failback")] == [
        RscSet.ALL, RscSet.FOREIGN, RscSet.LOCAL, RscSet.ALL]


def test_peer_resources_follows_heartbeats_bookkeeping() -> None:
    peer = PeerResources()
    assert not peer.heard and not peer.stable
    peer = peer.apply(ResourcesHeld(N2, RscSet.LOCAL, stable=False))
    assert (peer.held, peer.stable, peer.heard) == (RscSet.LOCAL, False, True)
    peer = peer.apply(ResourcesHeld(N2, RscSet.FOREIGN, full=False, info="mach_down"))
    assert (peer.held, peer.stable) == (RscSet.ALL, False)  # OR-update keeps stability
    peer = peer.apply(Starting(N2))
    assert (peer.held, peer.stable) == (RscSet.ALL, False)
    peer = peer.apply(ResourcesHeld(N2, RscSet.NONE, stable=True))
    assert (peer.held, peer.stable) == (RscSet.NONE, True)
    peer = peer.apply(AskResources(N2, RscSet.ALL, StandbyPhase.ME))
    assert not peer.stable
    assert peer.apply(Stonith(N2, N1, StonithResult.UNNEEDED)) == peer
    assert peer.apply(ShutDone(N2)) == PeerResources.gone() == PeerResources(RscSet.NONE, True,
                                                                              True)


# Who holds the group after each command of the capture (the VIP's place, as the script saw
# it before giving the command); None before anything started.
HOLDERS = {
    "failback-off": [None, N1, N2, N1, N2, N2, N1],
    "failback-on": [None, N1, N2, N1, N2, N1, N1],
    "staggered": [None, N2, N2, N1, N2, N2],
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_resource_messages_name_exactly_one_holder_between_commands(scenario: str) -> None:
    """Folding each node's messages into PeerResources gives one holder of the group at every
    quiet point, the node that had the VIP: what nonstop will read from a Heartbeat peer."""
    state: dict[str, PeerResources] = {N1: PeerResources(), N2: PeerResources()}
    seen: list[str | None] = []
    for line in CAPTURES[scenario]:
        if line.action:
            holders = [n for n, s in state.items() if GROUP in s.groups(n, PREFERRED)]
            assert len(holders) <= 1, (line, holders)
            seen.append(holders[0] if holders else None)
            if line.action.startswith("crash the box of "):
                # The survivor declares it dead after deadtime and takes over from it.
                state[line.action.split()[4]] = PeerResources.gone()
        elif line.kind in RESOURCE_TYPES:
            event = parse(decoded(line))
            assert event is not None
            state[line.node] = state[line.node].apply(event)
    assert seen == HOLDERS[scenario]
    assert all(s.held is RscSet.NONE and s.stable for s in state.values())  # both shut down
