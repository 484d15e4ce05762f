"""What the frames of a replication session say, as checked values (see :mod:`.session`).

Bad input in any of them is :class:`~nonstop.sync.protocol.ProtocolError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

from nonstop.sync.patterns import Scope as Scope  # re-exported: the wire format names scopes
from nonstop.sync.plan import Op
from nonstop.sync.protocol import PROTO_LATEST, ProtocolError, field
from nonstop.sync.state import FileState


@dataclass(frozen=True)
class Result:
    """The outcome of one operation, sent back to the sender."""

    index: int
    status: str  # ok | same | forced | auto | conflict | lost | refused | error
    message: str = ""
    # A rename ("mv") whose new name holds the sender's version but whose source the receiver
    # kept (changed there since: a conflict, or lost to ``auto``, as a plain deletion would be):
    # that deletion's status and reason. Protocol version 4.
    src_status: str = ""
    src_message: str = ""

    @property
    def applied(self) -> bool:
        """Both sides now hold the sender's version."""
        return self.status in ("ok", "same", "forced", "auto")

    def to_wire(self, version: int = PROTO_LATEST) -> list[Any]:
        if not self.src_status:
            return [self.index, self.status, self.message]
        if version < 4:
            # An older sender would record the source as deleted: it hears of the source's
            # fate only, so it records neither name (the new one is found equal next time).
            return [self.index, self.src_status, self.src_message]
        return [self.index, self.status, self.message, self.src_status, self.src_message]


@dataclass(frozen=True)
class Basis:
    """The receiver's copy of a file it needs: what a delta or an append can build on."""

    size: int
    digest: str
    append: bool

    def to_wire(self) -> dict[str, Any]:
        return {"size": self.size, "digest": self.digest, "append": self.append}

    @classmethod
    def from_wire(cls, raw: object) -> Basis:
        if not isinstance(raw, dict):
            raise ProtocolError("bad basis")
        return cls(field(raw, "size", int), field(raw, "digest", str), field(raw, "append", bool))


# --- events: what the peer said, checked ------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    b: int
    results: dict[int, Result]
    need: list[int]
    have: dict[int, Basis]


@dataclass(frozen=True)
class Results:
    b: int
    results: dict[int, Result]


@dataclass(frozen=True)
class Listing:
    entries: dict[str, FileState]
    end: bool


@dataclass(frozen=True)
class Files:
    entries: list[tuple[str, FileState | None]]


@dataclass(frozen=True)
class Signature:
    piece: bytes


@dataclass(frozen=True)
class SignatureEnd:
    i: int
    ok: bool


@dataclass(frozen=True)
class Data:
    i: int
    payload: bytes


@dataclass(frozen=True)
class Eof:
    i: int
    state: FileState | None  # None: the file vanished on the sender


@dataclass(frozen=True)
class Whole:
    files: list[tuple[int, bytes]]  # (index, bytes) of needed files, whole and as offered


@dataclass(frozen=True)
class Bye:
    keep: bool


@dataclass(frozen=True)
class Offer:
    b: int
    ops: list[Op]


@dataclass(frozen=True)
class ListRequest:
    scopes: list[Scope]


@dataclass(frozen=True)
class Fetch:
    names: list[str]


@dataclass(frozen=True)
class Need:
    need: list[int]


@dataclass(frozen=True)
class Start:
    i: int
    mode: str  # append | delta
    at: int = 0


@dataclass(frozen=True)
class Commit:
    b: int


Event: TypeAlias = (Verdict | Results | Listing | Files | Signature | SignatureEnd | Data | Eof
         | Whole | Bye | Offer | ListRequest | Fetch | Need | Start | Commit)


def results_of(raw: list[object], n: int, version: int = PROTO_LATEST) -> dict[int, Result]:
    """The results of a batch of ``n`` operations."""
    out: dict[int, Result] = {}
    sizes = (3, 5) if version >= 4 else (3,)
    for item in raw:
        if (not isinstance(item, list) or len(item) not in sizes or type(item[0]) is not int
                or not all(isinstance(x, str) for x in item[1:]) or not 0 <= item[0] < n):
            raise ProtocolError("bad result")
        out[item[0]] = Result(*item)
    return out


def indices(raw: object, n: int, what: str) -> list[int]:
    """A list of distinct indices below ``n``."""
    if (not isinstance(raw, list) or any(type(i) is not int or not 0 <= i < n for i in raw)
            or len(set(raw)) != len(raw)):
        raise ProtocolError(f"bad {what} list")
    return list(raw)


def state_or_none(raw: object) -> FileState | None:
    """A file state, or None for null."""
    return None if raw is None else FileState.from_wire(raw)
