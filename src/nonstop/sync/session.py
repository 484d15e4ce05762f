"""One replication session after the handshake, both roles, with no I/O (like h11's Connection).

The client (the node pushing) and the server (the node receiving) each own a session object:
bytes from the peer go in (:meth:`receive_data`), typed events come out (:meth:`next_event`);
what to send is asked of the session (``offer``, ``verdict``, ``data``...), which returns encoded
frames. The session knows which frame may come next; a frame out of order, a field of the wrong
type or an index outside the batch is :class:`~nonstop.sync.protocol.ProtocolError` (bad remote
input), an ERROR frame is :class:`~nonstop.sync.protocol.RemoteError`; a send the state does not
allow is :class:`SessionMisuse` (a bug here, never the peer's doing).

The exchange, client to server::

    LIST scopes                      -> LISTING* (the last with end)
    OFFER b ops                      -> VERDICT b (results now, files needed, our copies)
      per needed file: [START append|delta] DATA* EOF   (delta: <- SIG* SIGEND first)
        or, v2, for several needed files sent whole as offered: WHOLE
      COMMIT b                       -> RESULTS b, whenever ready (the next OFFER may go first)
    FETCH names                      -> FILES; NEED -> per needed file: DATA* EOF
    BYE [keep]                       -> BYE (keep: the session stays open for the next run)
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from nonstop.errors import NonstopError
from nonstop.logs import escape
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
    Scope,
    Signature,
    SignatureEnd,
    Start,
    Verdict,
    Whole,
    indices,
    results_of,
    state_or_none,
)
from nonstop.sync.patterns import valid_name
from nonstop.sync.plan import Op
from nonstop.sync.protocol import (
    CHUNK,
    MAX_FRAME,
    PROTO_VERSION,
    Decoder,
    Frame,
    Kind,
    ProtocolError,
    RemoteError,
    data_frames,
    encode,
    encode_obj,
    field,
    hole_size,
    pack_whole,
    unpack_whole,
)
from nonstop.sync.state import FileState

__all__ = ["Basis", "ClientSession", "Event", "Phase", "Result", "Scope", "ServerSession",
           "SessionMisuse"]

MAX_OPS_PER_OFFER = 10_000


class SessionMisuse(NonstopError, RuntimeError):
    """This side asked to send something the session's state does not allow (a local bug)."""


class Phase(enum.Enum):
    """Where a session stands; the tables below say which frames may arrive in each."""

    IDLE = "between requests"
    AWAIT_VERDICT = "waiting for the verdict"
    SENDING = "sending files"
    AWAIT_SIGNATURE = "waiting for a signature"
    AWAIT_LISTING = "waiting for a listing"
    AWAIT_FILES = "waiting for a file list"
    NEED_DUE = "about to say which files it needs"
    RECEIVING = "receiving files"
    AWAIT_BYE = "waiting for goodbye"
    VERDICT_DUE = "judging an offer"
    SIGNATURE_DUE = "sending a signature"
    AWAIT_COMMIT = "waiting for a commit"
    LISTING_DUE = "sending a listing"
    FILES_DUE = "sending a file list"
    AWAIT_NEED = "waiting for the files needed"
    BYE_DUE = "saying goodbye"
    CLOSED = "closed"


def _chunked(kind: Kind, data: bytes) -> list[bytes]:
    return [encode(kind, data[i : i + CHUNK]) for i in range(0, len(data), CHUNK)]



class _Session:
    """What both roles share: decoding, the phase and its table, files streamed each way."""

    RECEIVES: ClassVar[Mapping[Phase, frozenset[Kind]]]

    def __init__(self, pending: bytes = b"", version: int = PROTO_VERSION) -> None:
        self._decoder = Decoder(MAX_FRAME)
        self._decoder.push(pending)
        self.version = version  # agreed in the handshake: 2 allows WHOLE frames
        self.phase = Phase.IDLE
        self._out: deque[int] = deque()  # indices of the files we stream next, in order
        self._in: deque[int] = deque()  # indices of the files the peer streams next
        self._in_started = False  # the file at the head of _in has begun (START or DATA)

    def receive_data(self, data: bytes) -> None:
        """Bytes from the peer."""
        self._decoder.push(data)

    def next_event(self) -> Event | None:
        """The next event, or None until more bytes arrive."""
        f = self._decoder.next()
        if f is None:
            return None
        if f.kind is Kind.ERROR:
            raise RemoteError(escape(f.obj().get("error", "unknown error"), 300))
        if f.kind not in self.RECEIVES[self.phase]:
            raise ProtocolError(f"{f.kind.name} frame while {self.phase.value}")
        return self._handle(f)

    def _handle(self, f: Frame) -> Event:
        raise NotImplementedError

    def _need(self, *phases: Phase) -> None:
        if self.phase not in phases:
            raise SessionMisuse(f"cannot send that while {self.phase.value}")

    # --- files we stream (client: needed files of a batch; server: fetched files)
    def data(self, payload: bytes) -> list[bytes]:
        """DATA frames with the next bytes of the file being sent."""
        self._need(Phase.SENDING)
        if not self._out:
            raise SessionMisuse("no file is being sent")
        return data_frames(payload, self.version >= 5)

    def eof(self, i: int, state: FileState | None) -> bytes:
        """The end of file ``i`` and the state actually sent (None: it vanished)."""
        self._need(Phase.SENDING)
        if not self._out or self._out[0] != i:
            raise SessionMisuse(f"file {i} is not the one being sent")
        self._out.popleft()
        if not self._out:
            self._sent_all()
        return encode_obj(Kind.EOF, {"i": i, "s": state.to_wire() if state else None})

    def _sent_all(self) -> None:
        raise NotImplementedError

    # --- files the peer streams
    def _incoming(self, f: Frame) -> Event:
        i = self._in[0]
        if f.kind is Kind.DATA or f.kind is Kind.HOLE:
            self._in_started = True
            return Data(i, f.payload if f.kind is Kind.DATA else bytes(hole_size(f)))
        obj = f.obj()
        if obj.get("i") != i:
            raise ProtocolError("data for an unexpected file")
        state = state_or_none(obj.get("s"))
        self._in.popleft()
        self._in_started = False
        if not self._in:
            self._received_all()
        return Eof(i, state)

    def _received_all(self) -> None:
        raise NotImplementedError


_ANY_TIME = frozenset({Kind.RESULTS})


class ClientSession(_Session):
    """The pushing side's session."""

    RECEIVES: ClassVar[Mapping[Phase, frozenset[Kind]]] = {
        Phase.IDLE: _ANY_TIME,
        Phase.AWAIT_VERDICT: _ANY_TIME | {Kind.VERDICT},
        Phase.SENDING: _ANY_TIME,
        Phase.AWAIT_SIGNATURE: _ANY_TIME | {Kind.SIG, Kind.SIGEND},
        Phase.AWAIT_LISTING: _ANY_TIME | {Kind.LISTING},
        Phase.AWAIT_FILES: frozenset({Kind.FILES}),
        Phase.NEED_DUE: frozenset(),
        Phase.RECEIVING: frozenset({Kind.DATA, Kind.HOLE, Kind.EOF}),
        Phase.AWAIT_BYE: _ANY_TIME | {Kind.BYE},
        Phase.CLOSED: frozenset(),
    }

    def __init__(self, pending: bytes = b"", version: int = PROTO_VERSION) -> None:
        super().__init__(pending, version)
        self._offered: tuple[int, int] = (-1, 0)  # batch id and size awaiting its verdict
        self._batch = (-1, 0)  # the batch whose files are being sent
        self.inflight: dict[int, int] = {}  # committed batches awaiting RESULTS: id -> size
        self._sig = (-1, 0, 0)  # file, signature bytes allowed, received
        self._fetching: list[str] = []
        self._files: list[FileState | None] = []
        self._keep = False

    def _handle(self, f: Frame) -> Event:
        if f.kind is Kind.RESULTS:
            return self._onresults_of(f.obj())
        if f.kind is Kind.VERDICT:
            return self._on_verdict(f.obj())
        if f.kind is Kind.SIG:
            return self._on_sig(f.payload)
        if f.kind is Kind.SIGEND:
            return self._on_sigend(f.obj())
        if f.kind is Kind.LISTING:
            return self._on_listing(f.obj())
        if f.kind is Kind.FILES:
            return self._on_files(f.obj())
        if f.kind is Kind.BYE:
            self.phase = Phase.IDLE if self._keep else Phase.CLOSED
            return Bye(self._keep)
        return self._incoming(f)

    def _onresults_of(self, obj: dict[str, Any]) -> Results:
        b = obj.get("b")
        if type(b) is not int or b not in self.inflight:
            raise ProtocolError("results for an unknown batch")
        return Results(b, results_of(field(obj, "r", list), self.inflight.pop(b), self.version))

    def _on_verdict(self, obj: dict[str, Any]) -> Verdict:
        bid, n = self._offered
        if obj.get("b") != bid:
            raise ProtocolError("verdict for an unexpected batch")
        results = results_of(field(obj, "r", list), n, self.version)
        need = indices(field(obj, "need", list), n, "need")
        raw = obj.get("have", {})
        if not isinstance(raw, dict):
            raise ProtocolError("bad basis map")
        have: dict[int, Basis] = {}
        for key, item in raw.items():
            if not key.isdigit() or int(key) not in need:
                raise ProtocolError("basis for a file not needed")
            have[int(key)] = Basis.from_wire(item)
        self._batch = (bid, n)
        self._out = deque(need)
        self.phase = Phase.SENDING
        return Verdict(bid, results, need, have)

    def _on_sig(self, piece: bytes) -> Signature:
        i, cap, got = self._sig
        got += len(piece)
        if got > cap:
            raise ProtocolError("signature larger than the file allows")
        self._sig = (i, cap, got)
        return Signature(piece)

    def _on_sigend(self, obj: dict[str, Any]) -> SignatureEnd:
        if obj.get("i") != self._sig[0]:
            raise ProtocolError("signature for an unexpected file")
        self.phase = Phase.SENDING
        return SignatureEnd(self._sig[0], obj.get("ok") is True)

    def _on_listing(self, obj: dict[str, Any]) -> Listing:
        entries: dict[str, FileState] = {}
        for item in field(obj, "entries", list):
            if not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], str):
                raise ProtocolError("bad listing entry")
            entries[item[0]] = FileState.from_wire(item[1])
        end = obj.get("end") is True
        if end:
            self.phase = Phase.IDLE
        return Listing(entries, end)

    def _on_files(self, obj: dict[str, Any]) -> Files:
        raw = field(obj, "entries", list)
        if len(raw) != len(self._fetching):
            raise ProtocolError("file list does not match the request")
        entries: list[tuple[str, FileState | None]] = []
        for name, item in zip(self._fetching, raw, strict=True):
            if not isinstance(item, list) or len(item) != 2 or item[0] != name:
                raise ProtocolError("bad file list entry")
            entries.append((name, state_or_none(item[1])))
        self._files = [s for _, s in entries]
        self.phase = Phase.NEED_DUE
        return Files(entries)

    # --- what the client sends
    def offer(self, b: int, ops: Sequence[Op]) -> bytes:
        """Offer batch ``b``; its VERDICT comes next (RESULTS of earlier batches may first)."""
        self._need(Phase.IDLE)
        if b in self.inflight or not 0 < len(ops) <= MAX_OPS_PER_OFFER:
            raise SessionMisuse(f"batch {b} cannot be offered")
        self._offered = (b, len(ops))
        self.phase = Phase.AWAIT_VERDICT
        return encode_obj(Kind.OFFER, {"b": b, "ops": [op.to_wire() for op in ops]})

    def start_append(self, i: int, at: int) -> bytes:
        """File ``i`` comes as the bytes after the receiver's first ``at``."""
        self._starting(i)
        return encode_obj(Kind.START, {"i": i, "m": "append", "at": at})

    def start_delta(self, i: int, max_signature: int) -> bytes:
        """File ``i`` comes as a delta: the receiver's signature (at most ``max_signature``
        bytes) comes first."""
        self._starting(i)
        self._sig = (i, max_signature, 0)
        self.phase = Phase.AWAIT_SIGNATURE
        return encode_obj(Kind.START, {"i": i, "m": "delta"})

    def whole(self, files: Sequence[tuple[int, bytes]]) -> bytes:
        """One WHOLE frame: the next needed files, each whole and exactly as offered (its
        state is the offer's, so no EOF follows). Version 2 only."""
        self._need(Phase.SENDING)
        if self.version < 2:
            raise SessionMisuse("WHOLE frames need protocol version 2")
        if not files or [i for i, _ in files] != list(self._out)[: len(files)]:
            raise SessionMisuse("WHOLE files are not the next ones due")
        for _ in files:
            self._out.popleft()
        if not self._out:
            self._sent_all()
        return pack_whole([data for _, data in files])

    def _starting(self, i: int) -> None:
        self._need(Phase.SENDING)
        if not self._out or self._out[0] != i:
            raise SessionMisuse(f"file {i} is not the one being sent")

    def _sent_all(self) -> None:
        """Every needed file went: the batch waits for its COMMIT (still SENDING)."""

    def commit(self, b: int) -> bytes:
        """Commit the batch whose files were all sent."""
        self._need(Phase.SENDING)
        if self._out or self._batch[0] != b:
            raise SessionMisuse(f"batch {b} is not ready to commit")
        self.inflight[b] = self._batch[1]
        self.phase = Phase.IDLE
        return encode_obj(Kind.COMMIT, {"b": b})

    def list_scopes(self, scopes: Iterable[Scope]) -> bytes:
        """Ask for the peer's files in ``scopes``."""
        self._need(Phase.IDLE)
        self.phase = Phase.AWAIT_LISTING
        return encode_obj(Kind.LIST, {"scopes": [[p, r] for p, r in scopes]})

    def fetch(self, names: Sequence[str]) -> bytes:
        """Ask for the peer's version of ``names`` (after every batch has its results)."""
        self._need(Phase.IDLE)
        if self.inflight:
            raise SessionMisuse("fetch while batches await their results")
        self._fetching = list(names)
        self.phase = Phase.AWAIT_FILES
        return encode_obj(Kind.FETCH, {"names": self._fetching})

    def need(self, need: Sequence[int]) -> bytes:
        """The fetched files we want the bytes of (regular files of the FILES list)."""
        self._need(Phase.NEED_DUE)
        if any(not 0 <= i < len(self._files) or self._files[i] is None for i in need):
            raise SessionMisuse("need outside the file list")
        self._in = deque(need)
        self.phase = Phase.RECEIVING if need else Phase.IDLE
        return encode_obj(Kind.NEED, {"need": list(need)})

    def _received_all(self) -> None:
        self.phase = Phase.IDLE

    def bye(self, keep: bool) -> bytes:
        """End this run (``keep``: the session stays open for the next)."""
        self._need(Phase.IDLE)
        self._keep = keep
        self.phase = Phase.AWAIT_BYE
        return encode_obj(Kind.BYE, {"keep": True} if keep else {})


class ServerSession(_Session):
    """The receiving side's session."""

    RECEIVES: ClassVar[Mapping[Phase, frozenset[Kind]]] = {
        Phase.IDLE: frozenset({Kind.OFFER, Kind.LIST, Kind.FETCH, Kind.BYE}),
        Phase.VERDICT_DUE: frozenset(),
        Phase.RECEIVING: frozenset({Kind.START, Kind.DATA, Kind.HOLE, Kind.EOF, Kind.WHOLE}),
        Phase.SIGNATURE_DUE: frozenset(),
        Phase.AWAIT_COMMIT: frozenset({Kind.COMMIT}),
        Phase.LISTING_DUE: frozenset(),
        Phase.FILES_DUE: frozenset(),
        Phase.AWAIT_NEED: frozenset({Kind.NEED}),
        Phase.SENDING: frozenset(),
        Phase.BYE_DUE: frozenset(),
        Phase.CLOSED: frozenset(),
    }

    def __init__(self, pending: bytes = b"", version: int = PROTO_VERSION) -> None:
        super().__init__(pending, version)
        self._batch = -1  # the batch being received
        self._committed: set[int] = set()  # batches committed whose RESULTS are not sent yet
        self._keep = False
        self._names: list[str] = []
        self._regular: set[int] = set()  # the fetched names that are regular files here
        self._sig_for = -1

    def _handle(self, f: Frame) -> Event:
        if f.kind is Kind.OFFER:
            return self._on_offer(f.obj())
        if f.kind is Kind.LIST:
            return self._on_list(f.obj())
        if f.kind is Kind.FETCH:
            return self._on_fetch(f.obj())
        if f.kind is Kind.NEED:
            return self._on_need(f.obj())
        if f.kind is Kind.START:
            return self._on_start(f.obj())
        if f.kind is Kind.WHOLE:
            return self._on_whole(f.payload)
        if f.kind is Kind.COMMIT:
            if f.obj().get("b") != self._batch:
                raise ProtocolError("commit for an unexpected batch")
            self._committed.add(self._batch)
            self.phase = Phase.IDLE
            return Commit(self._batch)
        if f.kind is Kind.BYE:
            self._keep = f.obj().get("keep") is True
            self.phase = Phase.BYE_DUE
            return Bye(self._keep)
        return self._incoming(f)

    def _on_offer(self, obj: dict[str, Any]) -> Offer:
        b = field(obj, "b", int)
        raw = field(obj, "ops", list)
        if len(raw) > MAX_OPS_PER_OFFER:
            raise ProtocolError("too many operations in one offer")
        if b in self._committed:
            raise ProtocolError("offer of a batch still being committed")
        ops = [Op.from_wire(x) for x in raw]
        self._batch = b
        self.phase = Phase.VERDICT_DUE
        return Offer(b, ops)

    def _on_list(self, obj: dict[str, Any]) -> ListRequest:
        scopes: list[Scope] = []
        for item in field(obj, "scopes", list):
            if (not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], str)
                    or not isinstance(item[1], bool) or not valid_name(item[0])):
                raise ProtocolError("bad scope")
            scopes.append((item[0], item[1]))
        self.phase = Phase.LISTING_DUE
        return ListRequest(scopes)

    def _on_fetch(self, obj: dict[str, Any]) -> Fetch:
        names = field(obj, "names", list)
        if len(names) > MAX_OPS_PER_OFFER or not all(
            isinstance(n, str) and valid_name(n) for n in names
        ):
            raise ProtocolError("bad fetch request")
        self._names = names
        self.phase = Phase.FILES_DUE
        return Fetch(list(names))

    def _on_need(self, obj: dict[str, Any]) -> Need:
        need = indices(field(obj, "need", list), len(self._names), "need")
        if any(i not in self._regular for i in need):
            raise ProtocolError("bad need list")
        self._out = deque(need)
        self.phase = Phase.SENDING if need else Phase.IDLE
        return Need(need)

    def _on_whole(self, payload: bytes) -> Whole:
        if self.version < 2 or self._in_started:
            raise ProtocolError("WHOLE frame not allowed here")
        files = unpack_whole(payload, len(self._in))
        out = [(self._in.popleft(), data) for data in files]
        if not self._in:
            self._received_all()
        return Whole(out)

    def _on_start(self, obj: dict[str, Any]) -> Start:
        i = self._in[0]
        if obj.get("i") != i or self._in_started:
            raise ProtocolError("start of an unexpected file")
        self._in_started = True
        mode = obj.get("m")
        if mode == "append":
            return Start(i, "append", field(obj, "at", int))
        if mode != "delta":
            raise ProtocolError("unknown transfer mode")
        self._sig_for = i
        self.phase = Phase.SIGNATURE_DUE
        return Start(i, "delta")

    def _received_all(self) -> None:
        self.phase = Phase.AWAIT_COMMIT

    def _sent_all(self) -> None:
        self.phase = Phase.IDLE

    # --- what the server sends
    def verdict(self, b: int, results: Iterable[Result], need: Sequence[int],
                have: Mapping[int, Basis]) -> bytes:
        """What batch ``b`` needs: results of what applied at once, the files to stream, our
        copies of them."""
        self._need(Phase.VERDICT_DUE)
        if b != self._batch:
            raise SessionMisuse(f"batch {b} was not offered")
        self._in = deque(need)
        self._in_started = False
        self.phase = Phase.RECEIVING if need else Phase.AWAIT_COMMIT
        return encode_obj(Kind.VERDICT, {
            "b": b, "r": [r.to_wire(self.version) for r in results], "need": list(need),
            "have": {str(i): basis.to_wire() for i, basis in have.items()},
        })

    def signature(self, piece: bytes) -> list[bytes]:
        """SIG frames with the next bytes of our signature."""
        self._need(Phase.SIGNATURE_DUE)
        return _chunked(Kind.SIG, piece)

    def signature_end(self, ok: bool) -> bytes:
        """The end of our signature (``ok`` False: none, the file comes whole)."""
        self._need(Phase.SIGNATURE_DUE)
        self.phase = Phase.RECEIVING
        return encode_obj(Kind.SIGEND, {"i": self._sig_for, "ok": ok})

    def results(self, b: int, results: Iterable[Result]) -> bytes:
        """What a committed batch did (any time after its COMMIT, once)."""
        if b not in self._committed:
            raise SessionMisuse(f"batch {b} is not committed")
        self._committed.discard(b)
        return encode_obj(Kind.RESULTS, {"b": b, "r": [r.to_wire(self.version) for r in results]})

    def listing(self, entries: list[list[Any]], end: bool) -> bytes:
        """One chunk of the listing asked for (``end`` on the last)."""
        self._need(Phase.LISTING_DUE)
        if end:
            self.phase = Phase.IDLE
        return encode_obj(Kind.LISTING, {"entries": entries, "end": end})

    def files(self, states: Sequence[FileState | None]) -> bytes:
        """Our states of the names fetched (None: we have none)."""
        self._need(Phase.FILES_DUE)
        if len(states) != len(self._names):
            raise SessionMisuse("one state per fetched name")
        self._regular = {i for i, s in enumerate(states) if s is not None and s.kind == "reg"}
        self.phase = Phase.AWAIT_NEED
        return encode_obj(Kind.FILES, {"entries": [[n, s.to_wire() if s else None]
                                                   for n, s in zip(self._names, states,
                                                                   strict=True)]})

    def bye(self) -> bytes:
        """Answer the client's BYE."""
        self._need(Phase.BYE_DUE)
        self.phase = Phase.IDLE if self._keep else Phase.CLOSED
        return encode_obj(Kind.BYE, {})
