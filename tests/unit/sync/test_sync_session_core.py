"""The sans-IO session core: both roles wired back to back, no sockets, no files."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nonstop.sync import protocol as p
from nonstop.sync.messages import (
    Basis,
    Bye,
    Commit,
    Data,
    Eof,
    Event,
    Fetch,
    Files,
    Listing,
    ListRequest,
    Need,
    Offer,
    Result,
    Results,
    Signature,
    SignatureEnd,
    Start,
    Verdict,
)
from nonstop.sync.plan import Op
from nonstop.sync.protocol import Kind, ProtocolError, RemoteError, encode, encode_obj
from nonstop.sync.session import ClientSession, Phase, ServerSession, SessionMisuse
from nonstop.sync.state import FileState

A = FileState("reg", 0o644, 0, 0, 5, 1, "d1")
B = FileState("reg", 0o644, 0, 0, 9, 2, "d2")
OPS = [Op("put", "/etc/asterisk/a.conf", None, A), Op("put", "/etc/asterisk/b.conf", A, B),
       Op("del", "/etc/asterisk/c.conf", A, None)]


def deliver(frames: bytes | list[bytes], to: ClientSession | ServerSession) -> list[Event]:
    """Feed the bytes (split awkwardly, as TCP may) and collect every event."""
    data = frames if isinstance(frames, bytes) else b"".join(frames)
    out: list[Event] = []
    for cut in range(0, len(data), 7):
        to.receive_data(data[cut : cut + 7])
        while (ev := to.next_event()) is not None:
            out.append(ev)
    return out


def phases(*sessions: ClientSession | ServerSession) -> tuple[Phase, ...]:
    return tuple(x.phase for x in sessions)


def offered() -> tuple[ClientSession, ServerSession]:
    """A client that offered OPS as batch 0 and a server that received the offer."""
    c, s = ClientSession(), ServerSession()
    assert deliver(c.offer(0, OPS), s) == [Offer(0, OPS)]
    assert phases(c, s) == (Phase.AWAIT_VERDICT, Phase.VERDICT_DUE)
    return c, s


def test_a_batch_with_an_append_a_delta_and_pipelined_results() -> None:
    c, s = offered()
    verdict = s.verdict(0, [Result(2, "ok")], [0, 1], {1: Basis(5, "d1", True)})
    assert deliver(verdict, c) == [
        Verdict(0, {2: Result(2, "ok")}, [0, 1], {1: Basis(5, "d1", True)})]
    # file 0 whole, file 1 as a delta against the receiver's copy
    assert deliver([*c.data(b"hello"), c.eof(0, A)], s) == [Data(0, b"hello"), Eof(0, A)]
    assert deliver(c.start_delta(1, 100), s) == [Start(1, "delta")]
    assert phases(s) == (Phase.SIGNATURE_DUE,)
    sig = [*s.signature(b"s" * 10), s.signature_end(True)]
    assert deliver(sig, c) == [Signature(b"s" * 10), SignatureEnd(1, True)]
    assert deliver([*c.data(b"delta"), c.eof(1, B)], s) == [Data(1, b"delta"), Eof(1, B)]
    assert phases(s) == (Phase.AWAIT_COMMIT,)
    assert deliver(c.commit(0), s) == [Commit(0)]
    # the next batch is offered before the results of the first come back
    assert deliver(c.offer(1, OPS[:1]), s) == [Offer(1, OPS[:1])]
    assert deliver(s.results(0, [Result(0, "ok"), Result(1, "ok")]), c) == [
        Results(0, {0: Result(0, "ok"), 1: Result(1, "ok")})]
    assert deliver(s.verdict(1, [Result(0, "same")], [], {}), c)[0] == Verdict(
        1, {0: Result(0, "same")}, [], {})
    deliver(c.commit(1), s)
    deliver(s.results(1, []), c)
    assert c.inflight == {}
    assert deliver(c.bye(True), s) == [Bye(True)]
    assert deliver(s.bye(), c) == [Bye(True)]
    assert phases(c, s) == (Phase.IDLE, Phase.IDLE)  # kept for the next run
    deliver(c.bye(False), s)
    deliver(s.bye(), c)
    assert phases(c, s) == (Phase.CLOSED, Phase.CLOSED)


def test_append_start_listing_and_fetch() -> None:
    c, s = offered()
    deliver(s.verdict(0, [], [1], {1: Basis(5, "d1", True)}), c)
    assert deliver([c.start_append(1, 5), *c.data(b"more"), c.eof(1, B)], s) == [
        Start(1, "append", 5), Data(1, b"more"), Eof(1, B)]
    deliver(c.commit(0), s)
    deliver(s.results(0, []), c)
    assert deliver(c.list_scopes([("/etc", True)]), s) == [ListRequest([("/etc", True)])]
    got = deliver([s.listing([["/etc/a", A.to_wire()]], False),
                   s.listing([["/etc/b", B.to_wire()]], True)], c)
    assert got == [Listing({"/etc/a": A}, False), Listing({"/etc/b": B}, True)]
    assert deliver(c.fetch(["/etc/a", "/etc/gone"]), s) == [Fetch(["/etc/a", "/etc/gone"])]
    assert deliver(s.files([A, None]), c) == [Files([("/etc/a", A), ("/etc/gone", None)])]
    assert deliver(c.need([0]), s) == [Need([0])]
    assert deliver([*s.data(b"hello"), s.eof(0, A)], c) == [Data(0, b"hello"), Eof(0, A)]
    assert phases(c, s) == (Phase.IDLE, Phase.IDLE)


def test_big_data_is_cut_into_frames_the_peer_accepts() -> None:
    c, s = offered()
    deliver(s.verdict(0, [], [0], {}), c)
    big = b"x" * (p.CHUNK * 2 + 3)
    frames = c.data(big)
    assert len(frames) == 3
    events = deliver(frames, s)
    assert b"".join(e.payload for e in events if isinstance(e, Data)) == big


def test_bytes_read_before_the_session_started_are_not_lost() -> None:
    c = ClientSession()
    s = ServerSession(c.offer(0, OPS))
    assert s.next_event() == Offer(0, OPS)


# --- frames out of order: bad remote input ---------------------------------------------------
def obj(kind: Kind, **fields: object) -> bytes:
    return encode_obj(kind, fields)


@pytest.mark.parametrize(("frame", "why"), [
    (obj(Kind.COMMIT, b=0), "COMMIT frame while between requests"),
    (encode(Kind.DATA, b"x"), "DATA frame while between requests"),
    (obj(Kind.EOF, i=0, s=None), "EOF frame while between requests"),
    (obj(Kind.VERDICT, b=0, r=[], need=[]), "VERDICT frame while between requests"),
    (obj(Kind.HELLO), "HELLO frame while between requests"),
])
def test_the_server_refuses_frames_out_of_order(frame: bytes, why: str) -> None:
    with pytest.raises(ProtocolError, match=why):
        deliver(frame, ServerSession())


def test_the_server_refuses_a_frame_while_it_owes_an_answer() -> None:
    _c, s = offered()
    with pytest.raises(ProtocolError, match="OFFER frame while judging an offer"):
        deliver(obj(Kind.OFFER, b=1, ops=[]), s)


@pytest.mark.parametrize(("frames", "why"), [
    ([obj(Kind.EOF, i=1, s=None)], "data for an unexpected file"),
    ([obj(Kind.START, i=1, m="append", at=0)], "start of an unexpected file"),
    ([encode(Kind.DATA, b"x"), obj(Kind.START, i=0, m="append", at=0)],
     "start of an unexpected file"),
    ([obj(Kind.START, i=0, m="copy")], "unknown transfer mode"),
    ([obj(Kind.START, i=0, m="append")], "field 'at' missing"),
    ([obj(Kind.COMMIT, b=0)], "COMMIT frame while receiving files"),
    ([obj(Kind.EOF, i=0, s=None), obj(Kind.COMMIT, b=7)], "commit for an unexpected batch"),
    ([obj(Kind.EOF, i=0, s=[1, 2])], "file state must be a list of 9 fields"),
])
def test_the_server_refuses_bad_file_frames(frames: list[bytes], why: str) -> None:
    _c, s = offered()
    s.verdict(0, [], [0], {})
    with pytest.raises(ProtocolError, match=why):
        deliver(frames, s)


@pytest.mark.parametrize(("verdict", "why"), [
    ({"b": 1, "r": [], "need": []}, "verdict for an unexpected batch"),
    ({"b": 0, "r": [[3, "ok", ""]], "need": []}, "bad result"),
    ({"b": 0, "r": [[0, "ok"]], "need": []}, "bad result"),
    ({"b": 0, "r": [], "need": [3]}, "bad need list"),
    ({"b": 0, "r": [], "need": [0, 0]}, "bad need list"),
    ({"b": 0, "r": [], "need": [True]}, "bad need list"),
    ({"b": 0, "r": [], "need": [0], "have": {"1": {}}}, "basis for a file not needed"),
    ({"b": 0, "r": [], "need": [0], "have": {"0": {"size": "5"}}}, "field 'size'"),
    ({"b": 0, "r": [], "need": [0], "have": []}, "bad basis map"),
    ({"b": 0, "r": {}, "need": []}, "field 'r' missing"),
])
def test_the_client_refuses_a_bad_verdict(verdict: dict[str, object], why: str) -> None:
    c, _s = offered()
    with pytest.raises(ProtocolError, match=why):
        deliver(encode_obj(Kind.VERDICT, verdict), c)


def test_the_client_refuses_results_signatures_and_listings_it_did_not_ask_for() -> None:
    c, s = offered()
    with pytest.raises(ProtocolError, match="results for an unknown batch"):
        deliver(obj(Kind.RESULTS, b=0, r=[]), c)
    c, s = offered()
    deliver(s.verdict(0, [], [0], {0: Basis(5, "d1", False)}), c)
    with pytest.raises(ProtocolError, match="SIG frame while sending files"):
        deliver(encode(Kind.SIG, b"s"), c)
    c, s = offered()
    deliver(s.verdict(0, [], [0], {0: Basis(5, "d1", False)}), c)
    c.start_delta(0, 4)
    with pytest.raises(ProtocolError, match="signature larger than the file allows"):
        deliver(encode(Kind.SIG, b"sssss"), c)
    with pytest.raises(ProtocolError, match="LISTING frame while between requests"):
        deliver(obj(Kind.LISTING, entries=[], end=True), ClientSession())


def test_the_client_refuses_a_file_list_that_does_not_match_its_fetch() -> None:
    c = ClientSession()
    c.fetch(["/etc/a"])
    with pytest.raises(ProtocolError, match="bad file list entry"):
        deliver(obj(Kind.FILES, entries=[["/etc/other", None]]), c)
    c = ClientSession()
    c.fetch(["/etc/a"])
    with pytest.raises(ProtocolError, match="does not match the request"):
        deliver(obj(Kind.FILES, entries=[]), c)


def test_the_server_refuses_bad_requests() -> None:
    with pytest.raises(ProtocolError, match="bad scope"):
        deliver(obj(Kind.LIST, scopes=[["../etc", True]]), ServerSession())
    with pytest.raises(ProtocolError, match="bad fetch request"):
        deliver(obj(Kind.FETCH, names=["/etc/a", 3]), ServerSession())
    with pytest.raises(ProtocolError, match="too many operations"):
        deliver(obj(Kind.OFFER, b=0, ops=[{}] * 10_001), ServerSession())
    with pytest.raises(ProtocolError, match="operation must be an object"):
        deliver(obj(Kind.OFFER, b=0, ops=[1]), ServerSession())
    s = ServerSession()
    deliver(obj(Kind.FETCH, names=["/etc/a", "/etc/dir"]), s)
    s.files([A, FileState("dir", 0o755, 0, 0, 0, 0, "")])
    with pytest.raises(ProtocolError, match="bad need list"):
        deliver(obj(Kind.NEED, need=[1]), s)  # a directory has no bytes to send


@pytest.mark.parametrize("raw", [
    p.HEADER.pack(3, int(Kind.OFFER)) + b"{x}",  # not JSON
    p.HEADER.pack(2, int(Kind.OFFER)) + b"[]",  # not an object
    p.HEADER.pack(0, 99),  # unknown frame type
    p.HEADER.pack(p.MAX_FRAME + 1, int(Kind.DATA)),  # over the limit, refused at the header
])
def test_malformed_frames_are_bad_remote_input(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        deliver(raw, ServerSession())


def test_an_error_frame_is_the_peers_message_escaped() -> None:
    with pytest.raises(RemoteError, match=r"disk full\\n"):
        deliver(obj(Kind.ERROR, error="disk full\n"), ClientSession())


# --- sends the state does not allow: local misuse, never the peer's doing ------------------
def test_sends_out_of_order_are_local_misuse() -> None:
    c, s = offered()
    with pytest.raises(SessionMisuse):
        c.commit(0)  # the verdict has not come
    with pytest.raises(SessionMisuse):
        s.verdict(5, [], [], {})  # not the batch offered
    deliver(s.verdict(0, [], [0, 1], {}), c)
    with pytest.raises(SessionMisuse):
        c.eof(1, None)  # file 0 comes first
    with pytest.raises(SessionMisuse):
        c.commit(0)  # files still to send
    with pytest.raises(SessionMisuse):
        s.results(0, [])  # not committed
    with pytest.raises(SessionMisuse):
        ClientSession().need([0])


# --- whatever arrives, only the two remote-input errors -----------------------------------
def _server_in(phase: int) -> ServerSession:
    _c, s = offered()
    if phase:
        s.verdict(0, [], [0, 2], {})
    return s


def _client_in(phase: int) -> ClientSession:
    c, s = offered()
    if phase:
        deliver(s.verdict(0, [], [1], {1: Basis(5, "d1", False)}), c)
        c.start_delta(1, 1000)
    return c


frames = st.lists(
    st.tuples(st.sampled_from(list(Kind)),
              st.one_of(st.binary(max_size=40),
                        st.dictionaries(st.sampled_from(["b", "i", "r", "need", "have", "s", "m",
                                                         "at", "ok", "ops", "entries", "end"]),
                                        st.one_of(st.none(), st.booleans(),
                                                  st.integers(-2, 3), st.text(max_size=3),
                                                  st.lists(st.integers(-1, 3), max_size=3)),
                                        max_size=5))),
    max_size=6)


@settings(max_examples=300, deadline=None)
@given(frames, st.integers(0, 1), st.binary(max_size=12))
def test_any_frames_raise_only_remote_input_errors(
        seq: list[tuple[Kind, bytes | dict[str, object]]], phase: int, tail: bytes) -> None:
    for session in (_server_in(phase), _client_in(phase)):
        data = b"".join(encode(k, v) if isinstance(v, bytes) else encode_obj(k, v)
                        for k, v in seq) + tail
        with contextlib.suppress(ProtocolError, RemoteError):
            deliver(data, session)


@pytest.mark.parametrize("version", [3, 4])
def test_a_rename_whose_source_was_kept_reaches_each_version_of_sender(version: int) -> None:
    """Version 4 says both: the new name is in place, the source stays (a conflict). An older
    sender, which would record the source as deleted, hears of the source's fate alone."""
    c, s = ClientSession(version=version), ServerSession(version=version)
    deliver(c.offer(0, OPS), s)
    kept = Result(0, "ok", "", "conflict", "conflict: /etc/asterisk/old.conf changed on both")
    want = kept if version >= 4 else Result(0, "conflict", kept.src_message)
    assert deliver(s.verdict(0, [kept], [], {}), c) == [Verdict(0, {0: want}, [], {})]
    c = ClientSession(version=3)
    deliver(c.offer(0, OPS), ServerSession())
    with pytest.raises(ProtocolError, match="bad result"):
        deliver(encode_obj(Kind.VERDICT, {"b": 0, "r": [kept.to_wire(4)], "need": [],
                                          "have": {}}), c)
