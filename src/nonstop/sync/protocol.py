"""The sync wire format (sans-IO): length-prefixed frames, JSON headers and raw data chunks.

A frame is ``uint32 length | uint8 type | payload``. Control frames carry one JSON object; DATA
frames carry raw file bytes. Everything a peer sends is checked here: any malformed input raises
:class:`ProtocolError` and nothing else, whatever the bytes.
"""

from __future__ import annotations

import enum
import struct

from nonstop.errors import InvalidValue, RemoteInputError
from nonstop.records import record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

# json, hashlib and hmac are imported where they are used: `nonstop sync -M` and a `-x` with
# nothing to send never frame anything, and these three cost ~8 ms of their start (issue 8).

# HELLO's "v" is always 1, which every version speaks; a client that knows more says so in
# "vmax" (a field older servers ignore), and the server answers the version both will use in
# CHALLENGE's "v" (a field older clients ignore). Both proofs cover the version chosen, so it
# cannot be changed on the way. Version 2 adds WHOLE frames (several small files in one);
# version 3 a put's copy source (``Op.src``), which an older receiver would ignore while the
# sender counted its bytes as copied (plan.batches); version 4 a rename's result that keeps its
# source (``Result.src_status``), which an older sender could not read; version 5 HOLE frames
# (a DATA frame's payload of zeros, sent as its length: a sparse file's holes cost nothing on
# the wire).
PROTO_VERSION = 1
PROTO_LATEST = 5
HEADER = struct.Struct("!IB")
MAX_FRAME = 8 * 1024 * 1024
# Until a peer has proved the group key, every frame it may send is this small (the handshake
# needs a few hundred bytes): an attacker cannot make us buffer or parse megabytes of JSON.
PREAUTH_MAX_FRAME = 4096
CHUNK = 256 * 1024


class ProtocolError(RemoteInputError):
    """Bad remote input: the session is dropped and the error counted."""


class RemoteError(RemoteInputError):
    """The peer sent an ERROR frame: its text, escaped."""


class AuthError(RemoteInputError):
    """Authentication failed (wrong key, host not in the group); the message says which."""


class PeerClosed(RemoteInputError, ConnectionError):
    """The peer closed the connection in the middle of a session (a ``ConnectionError``)."""


class Kind(enum.IntEnum):
    """Frame types."""

    HELLO = 1
    CHALLENGE = 2
    AUTH = 3
    WELCOME = 4
    ERROR = 5
    OFFER = 10
    VERDICT = 11
    DATA = 12
    EOF = 13
    COMMIT = 14
    RESULTS = 15
    LIST = 16
    LISTING = 17
    BYE = 18
    FETCH = 19
    FILES = 20
    NEED = 21
    START = 22  # how a file's bytes come: appended to the receiver's copy, or a delta
    SIG = 23  # the receiver's rsync signature of its copy (raw bytes)
    SIGEND = 24
    WHOLE = 25  # v2: needed files whole and exactly as offered, back to back (binary)
    HOLE = 26  # v5: a DATA frame of zeros, as its length (8 bytes, at most CHUNK)


@record
class Frame:
    """One decoded frame."""

    kind: Kind
    payload: bytes

    def obj(self) -> dict[str, Any]:
        """The JSON object of a control frame."""
        return decode_obj(self.payload)


def encode(kind: Kind, payload: bytes) -> bytes:
    """One frame."""
    if len(payload) > MAX_FRAME:
        raise InvalidValue("frame too large")
    return HEADER.pack(len(payload), int(kind)) + payload


def encode_obj(kind: Kind, obj: dict[str, Any]) -> bytes:
    """A control frame carrying ``obj`` as compact JSON."""
    import json

    return encode(kind, json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode())


def parse_header(raw: bytes, limit: int = MAX_FRAME) -> tuple[int, Kind]:
    """Length and kind from the 5 header bytes; a frame longer than ``limit`` is refused."""
    if len(raw) != HEADER.size:
        raise ProtocolError("short frame header")
    length, kind = HEADER.unpack(raw)
    if length > limit:
        raise ProtocolError(f"frame of {length} bytes is over the limit of {limit}")
    try:
        return length, Kind(kind)
    except ValueError:
        raise ProtocolError(f"unknown frame type {kind}") from None


def decode_obj(payload: bytes) -> dict[str, Any]:
    """A JSON object from a control frame payload."""
    import json

    try:
        obj = json.loads(payload.decode())
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ProtocolError("control frame is not valid JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError("control frame is not a JSON object")
    return obj


class Decoder:
    """Incremental frame decoder: push received bytes, take whole frames.

    The buffer is consumed by offset and compacted rarely, so a stream of large DATA frames
    costs one copy per byte (not one per frame of everything buffered behind it).
    """

    def __init__(self, limit: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self._pos = 0
        self.limit = limit

    def push(self, data: bytes) -> None:
        """Add received bytes."""
        if self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        elif self._pos > (1 << 20):
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def next(self) -> Frame | None:
        """The next whole frame, or None until more bytes arrive (ProtocolError on a bad or
        oversized header, as soon as its 5 bytes are here)."""
        pos = self._pos
        if len(self._buf) - pos < HEADER.size:
            return None
        length, kind = parse_header(bytes(self._buf[pos : pos + HEADER.size]), self.limit)
        end = pos + HEADER.size + length
        if len(self._buf) < end:
            return None
        # One copy, through a view that is released before the buffer may be resized.
        with memoryview(self._buf) as view, view[pos + HEADER.size : end] as part:
            payload = bytes(part)
        self._pos = end
        return Frame(kind, payload)

    def pending(self) -> bytes:
        """The bytes received but not decoded yet (handed on when a session takes over)."""
        out = bytes(self._buf[self._pos :])
        self._buf.clear()
        self._pos = 0
        return out

    def feed(self, data: bytes) -> list[Frame]:
        """Add received bytes; return the frames now complete."""
        self.push(data)
        out: list[Frame] = []
        while (f := self.next()) is not None:
            out.append(f)
        return out


_WHOLE_N = struct.Struct("!I")


def pack_whole(files: Sequence[bytes]) -> bytes:
    """WHOLE's payload: the count, each size, then the bytes (uint32s, network order)."""
    head = struct.pack(f"!{len(files) + 1}I", len(files), *map(len, files))
    return encode(Kind.WHOLE, b"".join((head, *files)))


def unpack_whole(payload: bytes, most: int) -> list[bytes]:
    """The files of a WHOLE payload: at least one, at most ``most`` (ProtocolError else)."""
    if len(payload) < _WHOLE_N.size:
        raise ProtocolError("short WHOLE frame")
    (n,) = _WHOLE_N.unpack_from(payload)
    head = _WHOLE_N.size * (n + 1)
    if not 0 < n <= most or len(payload) < head:
        raise ProtocolError("bad WHOLE frame")
    sizes = struct.unpack_from(f"!{n}I", payload, _WHOLE_N.size)
    if head + sum(sizes) != len(payload):
        raise ProtocolError("WHOLE frame sizes do not add up")
    out: list[bytes] = []
    pos = head
    for size in sizes:
        out.append(payload[pos : pos + size])
        pos += size
    return out


def field(obj: dict[str, Any], key: str, typ: type) -> Any:
    """A typed field of a peer's object, or ProtocolError."""
    val = obj.get(key)
    if not isinstance(val, typ) or (typ is int and isinstance(val, bool)):
        raise ProtocolError(f"field {key!r} missing or not {typ.__name__}")
    return val


# --- authentication ------------------------------------------------------------------------
# Both ends prove they hold the group key with an HMAC over a transcript that binds both nonces,
# both names, the group and the fingerprint of the server's TLS certificate. The key itself never
# crosses the wire; a man in the middle terminating TLS shows the client a different certificate,
# so the server's proof does not verify there, and the client's proof does not verify at the server.


def transcript(group: str, client: str, server: str, nc: str, ns: str, cert_fp: str,
               version: int = PROTO_VERSION) -> bytes:
    """The bytes both proofs cover (those of version 1 unchanged)."""
    return "\x00".join(("nonstop-sync", str(version), group, client, server, nc, ns,
                        cert_fp)).encode()


def proof(key: bytes, role: str, data: bytes) -> str:
    """HMAC-SHA256 proof of the key for ``role`` ("client" or "server")."""
    import hashlib
    import hmac

    return hmac.new(key, role.encode() + b"\x00" + data, hashlib.sha256).hexdigest()


def check_proof(key: bytes, role: str, data: bytes, got: str) -> bool:
    """Constant-time check of a peer's proof."""
    import hmac

    return hmac.compare_digest(proof(key, role, data), got)


def cert_fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate, as bound into the key proofs."""
    import hashlib

    return hashlib.sha256(der).hexdigest()


_HOLE = struct.Struct("!Q")
# Zeros shorter than this (a file system block) go as DATA and are written out: a HOLE frame
# or a hole on disk saves nothing worth the test.
HOLE_MIN = 4096


def is_hole(data: bytes | memoryview) -> bool:
    """Whether ``data`` is zeros only and at least HOLE_MIN long: sent as a HOLE frame, left as
    a hole in a new file. Cheap for other data: its first byte is almost never zero, and the
    comparison stops at the first difference."""
    return len(data) >= HOLE_MIN and data[:1] == b"\0" and data == bytes(len(data))


def data_frames(payload: bytes, holes: bool) -> list[bytes]:
    """DATA frames for ``payload``; with ``holes`` (version 5) a chunk of zeros only is a HOLE
    frame instead: a 1 GiB disk image holding 5 bytes crossed the wire whole (a user trial,
    182 s, every other change waiting behind it)."""
    out = []
    for i in range(0, len(payload), CHUNK):
        chunk = payload[i : i + CHUNK]
        if holes and is_hole(chunk):
            out.append(encode(Kind.HOLE, _HOLE.pack(len(chunk))))
        else:
            out.append(encode(Kind.DATA, chunk))
    return out


def hole_size(f: Frame) -> int:
    """The length of the zeros a HOLE frame stands for."""
    if len(f.payload) != _HOLE.size:
        raise ProtocolError("malformed HOLE frame")
    (n,) = _HOLE.unpack(f.payload)
    if not 0 < n <= CHUNK:
        raise ProtocolError(f"HOLE frame of {n} bytes (at most {CHUNK})")
    return int(n)
