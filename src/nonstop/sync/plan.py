"""What to send to one peer (pure): from dirty names and states to an ordered list of operations.

Order, like csync2: deletions deepest first, then creations and updates in ascending name order
(so a directory comes before what it holds). Unlike csync2, a rename (a new file whose bytes equal
those of a deleted one) becomes one ``mv`` operation instead of a delete plus a full re-send, and
a file whose new bytes the peer already holds under another name (a rotated log, a renumbered
voicemail message) names that file as ``src``, so the peer can copy it instead of receiving it.
A directory that a ``mv`` takes a file out of is still full until that ``mv``: its deletion, or
its replacement by a file or link of the same name, goes after every creation and update
(deepest first again).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from nonstop.records import record
from nonstop.sync.patterns import in_scope
from nonstop.sync.protocol import ProtocolError, field
from nonstop.sync.state import FileState, is_utf8

# Smaller files are sent even when the peer holds their bytes under another name: the copy's
# checks cost about what sending them does.
COPY_MIN = 16 << 10
# What a receiver copies at most per batch (the rest of the batch's copies are sent): bounds the
# writes a few frames can ask for, and the files held open.
COPY_FDS = 64
COPY_BYTES = 4 << 30


@record
class Op:
    """One change for the peer. ``base`` is what we believe the peer holds (None: nothing)."""

    kind: str  # "put" | "del" | "mv"
    name: str
    base: FileState | None
    new: FileState | None
    forced: bool = False
    # mv: the name that goes; put: a name whose bytes (as of before this batch) the peer may
    # copy instead of receiving them (it checks them against ``new``'s digest either way).
    src: str = ""
    src_base: FileState | None = None

    def to_wire(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "k": self.kind,
            "n": self.name,
            "b": self.base.to_wire() if self.base else None,
            "s": self.new.to_wire() if self.new else None,
            "f": self.forced,
        }
        if self.src:
            d["src"] = self.src
            d["sb"] = self.src_base.to_wire() if self.src_base else None
        return d

    @classmethod
    def from_wire(cls, raw: Any) -> Op:
        """Decode a peer's operation (bad input is ProtocolError)."""
        if not isinstance(raw, dict):
            raise ProtocolError("operation must be an object")
        kind = field(raw, "k", str)
        if kind not in ("put", "del", "mv"):
            raise ProtocolError(f"unknown operation {kind!r}")
        name = field(raw, "n", str)
        forced = field(raw, "f", bool)
        base = None if raw.get("b") is None else FileState.from_wire(raw["b"])
        new = None if raw.get("s") is None else FileState.from_wire(raw["s"])
        if (kind == "del") != (new is None):
            raise ProtocolError("operation state does not fit its kind")
        src, src_base = "", None
        if kind == "mv" or (kind == "put" and "src" in raw):
            src = field(raw, "src", str)
            src_base = None if raw.get("sb") is None else FileState.from_wire(raw["sb"])
        if not is_utf8(name) or not is_utf8(src):  # no scan of ours sends one (scan.py)
            raise ProtocolError("operation name is not UTF-8")
        return cls(kind, name, base, new, forced, src, src_base)


@record
class Plan:
    """The operations for one peer, and dirty names that need none."""

    ops: tuple[Op, ...]
    settled: tuple[str, ...]  # dirty names with nothing to send (gone here and unknown there)


def plan(
    dirty: Iterable[tuple[str, bool]],
    local: Mapping[str, FileState],
    synced: Mapping[str, FileState],
) -> Plan:
    """Operations for the dirty names (name, forced) given our states and the peer's last ones."""
    dels: list[Op] = []
    puts: list[Op] = []
    settled: list[str] = []
    for name, forced in dirty:
        cur, base = local.get(name), synced.get(name)
        if cur is None and base is None:
            settled.append(name)
        elif cur is None:
            dels.append(Op("del", name, base, None, forced))
        else:
            puts.append(Op("put", name, base, cur, forced))
    dels, puts = _renames(dels, puts)
    puts = _copies(puts, synced)
    # A directory renamed on our side (voicemail/default/1000 -> 2000) holds the sources of
    # the moves: removed before them, its rmdir would fail with ENOTEMPTY.
    held = {d for o in puts if o.kind == "mv" for d in _parents(o.src)}
    late: list[Op] = []
    if held:
        def emptied(o: Op) -> bool:
            return o.name in held and (o.new is None or o.new.kind != "dir")
        late = sorted(filter(emptied, dels + puts), key=lambda o: o.name, reverse=True)
        dels = [o for o in dels if not emptied(o)]
        puts = [o for o in puts if not emptied(o)]
    dels.sort(key=lambda o: o.name, reverse=True)
    puts.sort(key=lambda o: o.name)
    return Plan(tuple(dels + puts + late), tuple(settled))


def _parents(name: str) -> list[str]:
    """The directories above an absolute name, nearest first ("/" not included)."""
    out = []
    while (name := name.rpartition("/")[0]):
        out.append(name)
    return out


def _renames(dels: list[Op], puts: list[Op]) -> tuple[list[Op], list[Op]]:
    by_digest: dict[tuple[str, int], Op] = {}
    for d in dels:
        b = d.base
        if b is not None and b.kind == "reg" and b.size > 0 and not d.forced:
            by_digest.setdefault((b.digest, b.size), d)
    if not by_digest:
        return dels, puts
    used: set[str] = set()
    out: list[Op] = []
    for p in puts:
        n = p.new
        if p.base is None and n is not None and n.kind == "reg" and not p.forced:
            key = (n.digest, n.size)
            hit = by_digest.pop(key) if key in by_digest else None
            if hit is not None:
                used.add(hit.name)
                out.append(Op("mv", p.name, None, n, False, hit.name, hit.base))
                continue
        out.append(p)
    return [d for d in dels if d.name not in used], out


def _copies(puts: list[Op], synced: Mapping[str, FileState]) -> list[Op]:
    """Name a copy source for each new content the peer already holds under another name."""
    out: list[Op] = []
    held: dict[tuple[str, int], str] | None = None
    for p in puts:
        n = p.new
        if (p.kind == "put" and n is not None and n.kind == "reg" and n.size >= COPY_MIN
                and not p.forced and not (p.base is not None and p.base.same_content(n))):
            if held is None:
                held = {}
                for name, st in synced.items():
                    if st.kind == "reg" and st.size >= COPY_MIN:
                        held.setdefault((st.digest, st.size), name)
            src = held.get((n.digest, n.size))
            if src is not None and src != p.name:
                p = Op("put", p.name, p.base, n, False, src, synced[src])
        out.append(p)
    return out


def copy_span(op: Op) -> tuple[int, str]:
    """How many bytes of a put the peer copies from ``op.src``, and their digest: all of
    ``op.new``'s, or the first ``op.src_base.size`` of a file that grew after its rename (the
    rest is sent). (0, "") for any other operation."""
    new, old = op.new, op.src_base
    if op.kind != "put" or not op.src or new is None:
        return 0, ""
    if old is not None and old.kind == "reg" and 0 < old.size < new.size:
        return old.size, old.digest
    return new.size, new.digest


def plan_forced(
    local: Mapping[str, FileState],
    remote: Mapping[str, FileState],
    synced: Mapping[str, FileState],
    ignore: frozenset[str],
) -> list[Op]:
    """Forced operations that make the peer's disk equal to ours within a ``-f`` scope.

    ``remote`` is what the peer reported it holds there right now, so the peer's unsynced edits
    and files only it has are overwritten or removed. ``base`` stays our record of the last sync,
    so the peer can tell a plain update from an overwritten local change, which it backs up and
    reports.
    """
    ops: list[Op] = []
    for name in set(local) | set(remote):
        cur, theirs = local.get(name), remote.get(name)
        if cur is None:
            ops.append(Op("del", name, synced.get(name), None, True))
        elif not cur.same(theirs, ignore):
            ops.append(Op("put", name, synced.get(name), cur, True))
    dels = sorted((o for o in ops if o.kind == "del"), key=lambda o: o.name, reverse=True)
    puts = sorted((o for o in ops if o.kind != "del"), key=lambda o: o.name)
    return dels + puts


@record
class ForcedPush:
    """A forced push worked out: the operations, and what to record around them."""

    ops: list[Op]  # every forced operation, in the order of plan_forced
    later: list[Op]  # deletions of directories with a dirty row left below: after those rows
    left: list[tuple[str, bool]]  # the dirty rows outside every forced scope
    equal: list[tuple[str, FileState]]  # already equal on the peer, recorded before sending
    gone: list[tuple[str, FileState | None]]  # dirty, held by neither side: recorded after

    def first(self) -> list[Op]:
        """The operations sent before the dirty rows left."""
        deferred = {op.name for op in self.later}
        return [op for op in self.ops if not (op.kind == "del" and op.name in deferred)]


def plan_forced_push(
    local: Mapping[str, FileState],
    remote: Mapping[str, FileState],
    synced: Mapping[str, FileState],
    ignore: frozenset[str],
    forced: list[tuple[str, bool]],
    rows: list[tuple[str, bool]],
) -> ForcedPush:
    """:func:`plan_forced` for the ``forced`` scopes, and the dirty ``rows`` it covers.

    A file the peer already holds as ours is recorded as sent only where our record of the peer
    says otherwise or the name is dirty: at a takeover the peer is usually in step, and writing
    every unchanged row again cost 20,000 writes for a site's 20,000 voicemail files."""
    ops = plan_forced(local, remote, synced, ignore)
    covered = [r for r in rows if any(in_scope(r[0], p, rec) for p, rec in forced)]
    dirty = {n for n, _ in covered}
    left = [r for r in rows if r[0] not in dirty]
    above = {d for n, _ in left for d in _parents(n)}
    later = [op for op in ops if op.kind == "del" and op.name in above]
    return ForcedPush(
        ops=ops,
        later=later,
        left=left,
        equal=[(n, st) for n, st in local.items() if st.same(remote.get(n), ignore)
               and (n in dirty or synced.get(n) != st)],
        gone=[(n, None) for n, _ in covered if n not in remote and n not in local],
    )


def batches(ops: Iterable[Op], max_ops: int = 1000, max_bytes: int = 64 << 20) -> list[list[Op]]:
    """Split operations into batches bounded in count and in bytes of content to send.

    What the peer may copy (``src``) counts no bytes, up to what a receiver copies in a batch
    (COPY_FDS, COPY_BYTES): its source is usually deleted or replaced in the same plan (a log
    rotation), and the peer can copy it only within that same batch. The rest of a file that
    grew past its copy counts as sent."""
    out: list[list[Op]] = []
    cur: list[Op] = []
    size = copies = copied = 0
    for op in ops:
        n = op.new.size if op.new is not None and op.kind == "put" else 0
        c = copy_span(op)[0]
        free = bool(c) and copies < COPY_FDS and copied + c <= COPY_BYTES
        if cur and (len(cur) >= max_ops or size + n - (c if free else 0) > max_bytes):
            out.append(cur)
            cur, size, copies, copied = [], 0, 0, 0
            free = bool(c) and c <= COPY_BYTES
        cur.append(op)
        if free:
            copies, copied, n = copies + 1, copied + c, n - c
        size += n
    if cur:
        out.append(cur)
    return out
