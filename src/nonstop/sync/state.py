"""What one file looks like: the unit that scans record, peers compare and the wire carries."""

from __future__ import annotations

import stat

from nonstop.errors import InvalidValue
from nonstop.records import FrozenRecordError
from nonstop.sync.protocol import ProtocolError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

KINDS = ("reg", "dir", "lnk", "fifo", "chr", "blk")
_FIELDS = ("kind", "mode", "uid", "gid", "size", "mtime_ns", "digest", "target", "rdev")
# Times are kept in signed 64-bit nanoseconds (sqlite's INTEGER, the wire, utimensat). A file
# system may hold a later one (ext4: up to 2446): it is recorded, compared and sent as NS_MAX
# (2262-04-11), which leaves room for the racy window added to a time when it is recorded.
NS_MIN = -(1 << 63)
# The highest uid or gid a file can have ((uid_t)-1 means "unchanged" to chown).
ID_MAX = (1 << 32) - 2
NS_MAX = (1 << 63) - 1 - 10_000_000_000


def held_ns(ns: int) -> int:
    """A file's time as nonstop holds it (see NS_MAX)."""
    return ns if ns <= NS_MAX else NS_MAX


def is_utf8(text: str) -> bool:
    """Whether ``text`` is valid UTF-8 text. A file name or link target read from the disk with
    bytes that are not is kept by Python as lone surrogates: it can be neither stored in the
    state database nor sent as text."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


class FileState:
    """Type, permissions, owner, size, mtime (ns), content digest and link target of a file.

    ``digest`` is the blake2b of a regular file's content (empty for other kinds): two states with
    equal size and mtime but different digests differ, which is how nonstop sees a same-size edit
    made within the same second as the last sync (csync2 compares metadata only).

    Immutable, with slots; written out rather than a dataclass (one is made per file of a scan,
    and ``nonstop sync`` starts without importing dataclasses: nonstop.records).
    """

    __slots__ = _FIELDS
    __match_args__ = ("kind", "mode", "uid", "gid", "size", "mtime_ns", "digest", "target", "rdev")

    kind: str
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    digest: str
    target: str
    rdev: int

    def __init__(self, kind: str, mode: int, uid: int, gid: int, size: int = 0,
                 mtime_ns: int = 0, digest: str = "", target: str = "", rdev: int = 0) -> None:
        setter = object.__setattr__
        setter(self, "kind", kind)
        setter(self, "mode", mode)
        setter(self, "uid", uid)
        setter(self, "gid", gid)
        setter(self, "size", size)
        setter(self, "mtime_ns", mtime_ns)
        setter(self, "digest", digest)
        setter(self, "target", target)
        setter(self, "rdev", rdev)

    def _fields(self) -> tuple[object, ...]:
        return (self.kind, self.mode, self.uid, self.gid, self.size, self.mtime_ns,
                self.digest, self.target, self.rdev)

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenRecordError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenRecordError(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FileState):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={v!r}" for n, v in zip(_FIELDS, self._fields(), strict=True))
        return f"FileState({inner})"

    def __getstate__(self) -> tuple[object, ...]:
        return self._fields()

    def __setstate__(self, state: tuple[object, ...]) -> None:
        for name, value in zip(_FIELDS, state, strict=True):
            object.__setattr__(self, name, value)

    def with_size(self, size: int) -> FileState:
        """The same state with another size (what was read of a file that kept growing)."""
        return FileState(self.kind, self.mode, self.uid, self.gid, size, self.mtime_ns,
                         self.digest, self.target, self.rdev)

    def key(self, ignore: frozenset[str] = frozenset()) -> tuple[object, ...]:
        """What must be equal for two states to count as the same file.

        Directory and symlink mtimes are left out (they change when children change; csync2 leaves
        them out as well); ``ignore`` drops uid/gid/mod like csync2's ``ignore`` directive.
        """
        return (
            self.kind,
            None if "mod" in ignore else self.mode,
            None if "uid" in ignore else self.uid,
            None if "gid" in ignore else self.gid,
            self.size if self.kind == "reg" else 0,
            self.mtime_ns if self.kind in ("reg", "fifo", "chr", "blk") else 0,
            self.digest,
            self.target,
            self.rdev,
        )

    def same(self, other: FileState | None, ignore: frozenset[str] = frozenset()) -> bool:
        """Equal as far as syncing is concerned."""
        return other is not None and self.key(ignore) == other.key(ignore)

    def same_content(self, other: FileState | None) -> bool:
        """Same kind and bytes (regular files), target (links) or device: no data needs to move."""
        return (
            other is not None
            and self.kind == other.kind
            and self.digest == other.digest
            and self.size == other.size
            and self.target == other.target
            and self.rdev == other.rdev
        )

    def to_wire(self) -> list[object]:
        return [
            self.kind, self.mode, self.uid, self.gid, self.size, self.mtime_ns,
            self.digest, self.target, self.rdev,
        ]

    @classmethod
    def from_wire(cls, raw: Any) -> FileState:
        """Decode a state sent by a peer or stored in the database; bad input is ProtocolError."""
        if not isinstance(raw, list) or len(raw) != 9:
            raise ProtocolError("file state must be a list of 9 fields")
        kind, mode, uid, gid, size, mtime, digest, target, rdev = raw
        ints = (mode, uid, gid, size, rdev)
        if kind not in KINDS or not all(type(v) is int and v >= 0 for v in ints):
            raise ProtocolError("bad file state")
        if max(uid, gid) > ID_MAX or size >> 63 or rdev >> 64:  # what Linux can hold
            raise ProtocolError("bad file state")
        # A modification time may be before 1970 (negative), as Linux and ext4 allow.
        if type(mtime) is not int or not NS_MIN <= mtime <= NS_MAX:
            raise ProtocolError("bad file state")
        if not isinstance(digest, str) or not isinstance(target, str) or len(digest) > 128:
            raise ProtocolError("bad file state")
        if mode > 0o7777 or "\x00" in target or not is_utf8(target):
            raise ProtocolError("bad file state")
        return cls(kind, mode, uid, gid, size, mtime, digest, target, rdev)

    @classmethod
    def from_stat(cls, st: Any, digest: str = "", target: str = "") -> FileState:
        """The state of an ``os.stat_result`` (lstat); None-kinds (sockets) are the caller's job."""
        m = st.st_mode
        if stat.S_ISREG(m):
            kind = "reg"
        elif stat.S_ISDIR(m):
            kind = "dir"
        elif stat.S_ISLNK(m):
            kind = "lnk"
        elif stat.S_ISFIFO(m):
            kind = "fifo"
        elif stat.S_ISCHR(m):
            kind = "chr"
        elif stat.S_ISBLK(m):
            kind = "blk"
        else:
            raise InvalidValue("unsupported file type")
        return cls(
            kind=kind,
            mode=stat.S_IMODE(m),
            uid=st.st_uid,
            gid=st.st_gid,
            size=st.st_size if kind == "reg" else 0,
            mtime_ns=held_ns(st.st_mtime_ns),
            digest=digest,
            target=target,
            rdev=st.st_rdev if kind in ("chr", "blk") else 0,
        )

    def describe(self) -> str:
        """Short human text for messages (conflict reasons)."""
        if self.kind == "reg":
            return f"file of {self.size} bytes, mode {self.mode:o}, digest {self.digest[:12]}"
        if self.kind == "lnk":
            return f"symlink to {self.target!r}"
        return f"{self.kind}, mode {self.mode:o}"


def supported(st: Any) -> bool:
    """Sockets and anything unknown are not synced (csync2's receiver ignores sockets)."""
    m = st.st_mode
    return bool(
        stat.S_ISREG(m) or stat.S_ISDIR(m) or stat.S_ISLNK(m) or stat.S_ISFIFO(m)
        or stat.S_ISCHR(m) or stat.S_ISBLK(m)
    )
