"""Walk the group's includes and describe every file (the filesystem side of change detection).

Hashing every file on every scan would be slow, so a file is re-hashed only when its size, mtime,
ctime or inode differ from the cached entry, or when the cached entry is *racy*: its mtime or ctime
was within the racy window of the moment it was recorded, so a later write in the same timestamp
tick would leave the metadata unchanged (git's racy-index rule). The window is 2 s on filesystems
with whole-second timestamps and 50 ms with nanosecond ones (the kernel stamps files from a coarse
clock that ticks every few milliseconds). That is how a same-size edit made within the
same second as the last sync is still found; ctime also catches an mtime put back with ``touch -r``.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

from nonstop.sync import sqlitefile
from nonstop.sync.digest import BLOCK, BLOCK_DIGEST, Hasher, blocks_match, extend, hash_fd
from nonstop.sync.patterns import Matcher, PathMap, in_scope
from nonstop.sync.skipped import not_replicated
from nonstop.sync.state import FileState, held_ns, is_utf8, supported
from nonstop.sync.walk import dir_listing, local_prefixes, lstat_or_none

TYPE_CHECKING = False
if TYPE_CHECKING:
    from concurrent.futures import Future

HASH_THREADS = 4
HASH_THREADED_SIZE = 128 << 10  # files this large are hashed on the threads, smaller ones inline
# A file that grew is described from its last old block on (an append), its first block checked
# too (a database's header). Its older blocks are read again a little at each scan, this many
# bytes per second of time since the last scan (at most VERIFY_STEP_MAX at once), and compared
# with their recorded digests: a file rewritten in place *and* grown is found within about
# size / rate (a 2 GB log: ~2 minutes; a 5 MB database: at once) for about 2 % of a core while a
# big file grows (blake2b at 0.7 GB/s, docs/SYNC.md), and no scan stalls on a whole re-read.
VERIFY_BYTES_PER_S = 16 << 20
VERIFY_STEP_MAX = 64 << 20
# A file this large that looks unchanged but was written within the racy window is checked by its
# last block only (within the same re-read budget); a smaller one is read whole, as always.
LARGE_FILE = 64 << 20


def verify_after_ns(size: int) -> int:
    """How long a large file's partial checks may stand before its whole content is re-read."""
    return size * 1_000_000_000 // VERIFY_BYTES_PER_S
RACY_NS = 2_000_000_000  # filesystems with whole-second timestamps
FINE_RACY_NS = 50_000_000  # nanosecond timestamps: the kernel's coarse clock ticks in <= 10 ms


def racy_window(mtime_ns: int, ctime_ns: int) -> int:
    """How long after a change a recorded state stays untrusted."""
    if mtime_ns % 1_000_000_000 == 0 and ctime_ns % 1_000_000_000 == 0:
        return RACY_NS
    return FINE_RACY_NS


class _Row(NamedTuple):
    """A ``local`` table row without its name: FileState's fields, then the scan's own."""

    kind: str
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    digest: str
    target: str
    rdev: int
    ino: int
    ctime_ns: int
    checked_ns: int
    blocks: bytes
    verified_ns: int
    verify_pos: int
    stepped_ns: int


class Seen(_Row):
    """A scanned file: its state plus the local-only facts used to skip re-hashing.

    ``blocks`` are a regular file's block digests (see :mod:`nonstop.sync.digest`; empty when
    unknown); ``checked_ns`` 0 means the state is not to be trusted at the next scan (the file
    changed while it was read); ``verified_ns`` is when the whole content was last read or
    re-checked; ``verify_pos`` is how far the current round of re-checks got, at ``stepped_ns``.

    A flat named tuple in the database's column order, not a dataclass holding a FileState: a
    no-change check of 20,000 files loads 20,000 of them (``from_row`` is a C-level tuple
    copy) and needs the FileState of none; ``state`` builds it when asked.
    """

    __slots__ = ()

    def __new__(cls, state: FileState, ino: int, ctime_ns: int, checked_ns: int,
                blocks: bytes = b"", verified_ns: int = 0, verify_pos: int = 0,
                stepped_ns: int = 0) -> Seen:
        return tuple.__new__(cls, (
            state.kind, state.mode, state.uid, state.gid, state.size, state.mtime_ns,
            state.digest, state.target, state.rdev, ino, ctime_ns, checked_ns, blocks,
            verified_ns, verify_pos, stepped_ns))

    @classmethod
    def from_row(cls, row: tuple[object, ...]) -> Seen:
        """A Seen from a ``local`` row without its name (our own rows: no remote-input checks);
        NULLs of columns added by later schema versions read as their defaults."""
        if row[12] is None or row[13] is None or row[14] is None or row[15] is None:
            row = (*row[:12], row[12] or b"", row[13] or 0, row[14] or 0, row[15] or 0)
        return tuple.__new__(cls, row)

    @property
    def state(self) -> FileState:
        return FileState(*self[:9])

    def with_state(self, state: FileState) -> Seen:
        """The same record with another state (owner or mode changed, content as recorded)."""
        return Seen(state, self.ino, self.ctime_ns, self.checked_ns, self.blocks,
                    self.verified_ns, self.verify_pos, self.stepped_ns)


class Brief(NamedTuple):
    """The columns of a ``local`` row that tell whether a file is as recorded (see
    :func:`unchanged`). A no-change check loads only these for every name (about half the
    cost of whole rows: no digest, link target or block digests to build per row) and whole
    rows only for the names that are not as recorded."""

    kind: str
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    ino: int
    ctime_ns: int
    checked_ns: int
    verified_ns: int


# A file to hash: name, local path, its stat, its cached entry.
_Todo = tuple[str, str, os.stat_result, Seen | None]


def hash_file(path: str) -> tuple[str, int]:
    """The content digest of a file, and the bytes read."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        h, n = hash_fd(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)
    return h.hexdigest(), n


def _probe(path: str, cached: Seen | None, now_ns: int) -> Seen | os.stat_result | None:
    """The state of a path, or its stat when its content must be hashed first."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return _classify(path, st, cached, now_ns)


def _classify(path: str, st: os.stat_result, cached: Seen | None,
              now_ns: int) -> Seen | os.stat_result | None:
    """The state of a path from its lstat, or the stat when its content must be hashed."""
    if not supported(st):
        return None
    target = ""
    if stat.S_ISDIR(st.st_mode):
        return _dir_seen(st, cached, now_ns)
    if stat.S_ISREG(st.st_mode):
        if cached is not None and _content_as_recorded(cached, st, now_ns):
            # Content as recorded. Owner and mode come from this stat: a chmod in the same
            # clock tick as the record leaves ctime equal, but never the content (a write moves
            # mtime; one put back with touch -r moves ctime).
            return _same_owner_mode(cached, st)
        return st
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.readlink(path)
        except (FileNotFoundError, NotADirectoryError, OSError):
            return None  # replaced since the walk looked at it: the next scan sees what is there
        if not is_utf8(target):
            not_replicated(path, "its link target is not UTF-8")
            return None
    return Seen(FileState.from_stat(st, "", target), st.st_ino, st.st_ctime_ns, now_ns)


def _content_as_recorded(cached: Seen | Brief, st: os.stat_result, now_ns: int) -> bool:
    """Whether a regular file's content is the recorded one, from its lstat alone."""
    return (
        cached.kind == "reg"
        and cached.ino == st.st_ino
        and cached.ctime_ns == st.st_ctime_ns
        and _same_mtime(cached, st)
        and cached.size == st.st_size
        and st.st_mtime_ns + (w := racy_window(st.st_mtime_ns, st.st_ctime_ns))
        <= cached.checked_ns
        and (cached.verified_ns >= st.st_mtime_ns + w
             or now_ns - cached.verified_ns < verify_after_ns(st.st_size))
    )


def _dir_as_recorded(cached: Seen | Brief, st: os.stat_result) -> bool:
    """Whether a directory is the recorded one (its record is metadata only)."""
    return (
        cached.kind == "dir"
        and cached.ino == st.st_ino
        and cached.ctime_ns == st.st_ctime_ns
        and _same_mtime(cached, st)
    )


def _owner_mode_as_recorded(cached: Seen | Brief, st: os.stat_result) -> bool:
    return (cached.mode == stat.S_IMODE(st.st_mode) and cached.uid == st.st_uid
            and cached.gid == st.st_gid)


def _same_owner_mode(cached: Seen, st: os.stat_result) -> Seen:
    """``cached`` itself when this stat's owner and mode are the recorded ones (the common case
    of a no-change check: no new object, and the database row is not rewritten)."""
    if _owner_mode_as_recorded(cached, st):
        return cached
    return cached.with_state(FileState.from_stat(st, cached.digest))


def _dir_seen(st: os.stat_result, cached: Seen | None, now_ns: int) -> Seen:
    """A directory's entry: the cached one while nothing of it changed (a directory's record
    is metadata only, so an unchanged one need not be built or stored again)."""
    if cached is not None and _dir_as_recorded(cached, st):
        return _same_owner_mode(cached, st)
    return Seen(FileState.from_stat(st), st.st_ino, st.st_ctime_ns, now_ns)


def unchanged(cached: Brief, st: os.stat_result, now_ns: int) -> bool:
    """Whether a scan would keep the cached entry itself for this lstat (so its row is not
    rewritten): a regular file or directory whose record still holds, owner and mode too.
    The same tests as :func:`_classify` makes, on the few columns a :class:`Brief` loads."""
    mode = st.st_mode
    if stat.S_ISREG(mode):
        if not _content_as_recorded(cached, st, now_ns):
            return False
    elif not (stat.S_ISDIR(mode) and _dir_as_recorded(cached, st)):
        return False
    return _owner_mode_as_recorded(cached, st)


def _grown(cached: Seen | None, st: os.stat_result, now_ns: int) -> Seen | None:
    """The cached entry when the file only looks appended to, its block digests known: the
    same inode and larger; or a large file as large as recorded and untouched since (same
    mtime and ctime: only the racy window or the age of its last whole read sent it here).
    Then only its first and last old blocks and the new bytes are read. A file of the same
    size written since its record was rewritten in place (an append always grows it): it is
    read whole."""
    if (
        cached is None
        or cached.kind != "reg"
        or cached.ino != st.st_ino
        or st.st_size < cached.size
        or (st.st_size == cached.size
            and (st.st_size < LARGE_FILE or not _untouched(cached, st)))
        or not blocks_match(cached.blocks, cached.size, cached.digest)
    ):
        return None
    return cached


def _untouched(cached: Seen, st: os.stat_result) -> bool:
    return cached.ctime_ns == st.st_ctime_ns and _same_mtime(cached, st)


def _same_mtime(cached: Seen | Brief, st: os.stat_result) -> bool:
    """The recorded mtime is this stat's (or what a file system that holds less kept of it)."""
    return cached.mtime_ns == st.st_mtime_ns or cached.mtime_ns == held_ns(st.st_mtime_ns)


def _hashed(path: str, st: os.stat_result, now_ns: int, cached: Seen | None = None) -> Seen | None:
    """Hash a file exactly as far as it reached when this scan looked at it (``st``).

    Every pass finishes: bytes written after ``st`` are the next scan's work, and a file that
    changed while it was read is recorded as what was read, untrusted (``checked_ns`` 0), so the
    next scan looks again. Nothing here re-reads or recurses until the file holds still.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:  # replaced by a symlink since the stat: next scan
            return None
        raise
    copy = -1
    try:
        st0 = os.fstat(fd)
        if not stat.S_ISREG(st0.st_mode):
            return None
        database = sqlitefile.database_head(fd, st0.st_size)
        try:  # a database: its committed copy, whole (locked by a commit: as it is, untrusted)
            got = sqlitefile.committed_copy(fd, path) if database else None
        except sqlitefile.NoLocks:  # no locks on this file system: read as any file
            got, database = None, False
        if got is not None:
            copy, st0 = got
        size = min(st.st_size, st0.st_size) if st0.st_ino == st.st_ino and copy < 0 \
            else st0.st_size
        h, verified, pos = _content(fd if copy < 0 else copy, size,
                                    None if database else _grown(cached, st0, now_ns), now_ns)
        st1 = os.lstat(path)
    except FileNotFoundError:
        return None
    finally:
        if copy >= 0:
            os.close(copy)
        os.close(fd)
    stable = (
        (copy >= 0 or not database)
        and h.size == st0.st_size
        and st1.st_ino == st0.st_ino
        and st1.st_size == st0.st_size
        and st1.st_mtime_ns == st0.st_mtime_ns
        and st1.st_ctime_ns == st0.st_ctime_ns
    )
    state = FileState.from_stat(st0, h.hexdigest()).with_size(h.size)
    return Seen(state, st0.st_ino, st0.st_ctime_ns, now_ns if stable else 0, h.blocks(), verified,
                pos, now_ns)


def _content(fd: int, size: int, base: Seen | None, now_ns: int) -> tuple[Hasher, int, int]:
    """The digest of the first ``size`` bytes, from the last old block on when the file only
    grew since ``base``; with the verification's (verified_ns, verify_pos) after it."""
    if base is not None and size >= base.size:
        h = extend(fd, base.blocks, base.size, size)
        step = _verify_step(fd, base, now_ns) if h is not None else None
        if h is not None and step is not None:
            return h, step[0], step[1]
        # rewritten, not (only) appended to: read it whole
    return hash_fd(fd, size)[0], now_ns, 0


def _verify_step(fd: int, base: Seen, now_ns: int) -> tuple[int, int] | None:
    """Re-read the next few of a grown file's older blocks (how many: the time since the last
    step at VERIFY_BYTES_PER_S) and compare them with their recorded digests. None if one
    differs; else (verified_ns, verify_pos) after this step."""
    last = (base.size - 1) // BLOCK  # re-hashed by extend() already
    first = base.verify_pos // BLOCK
    since = max(0, now_ns - base.stepped_ns)
    budget = min(VERIFY_STEP_MAX, since * VERIFY_BYTES_PER_S // 1_000_000_000)
    end = min(last, first + budget // BLOCK)
    # The first block at every step, wherever the round is: a database file (sqlite's astdb,
    # a Berkeley DB) that grows rewrites its header there at each commit.
    in_round = first == 0 and end > 0
    if last > 0 and not in_round and not _block_as_recorded(fd, 0, base.blocks):
        return None
    for i in range(first, end):
        if not _block_as_recorded(fd, i, base.blocks):
            return None
    if end >= last:
        return now_ns, 0  # a round is complete: every block was read after its record
    return base.verified_ns, end * BLOCK


def _block_as_recorded(fd: int, i: int, blocks: bytes) -> bool:
    """Whether whole block ``i`` of the file still has its recorded digest."""
    h = Hasher(b"", 0)
    return (h.feed_fd(fd, i * BLOCK, (i + 1) * BLOCK) == BLOCK
            and h.blocks() == blocks[i * BLOCK_DIGEST : (i + 1) * BLOCK_DIGEST])


def describe(path: str, cached: Seen | None, now_ns: int) -> Seen | None:
    """The state of one local path (None if it does not exist or is a socket)."""
    found = _probe(path, cached, now_ns)
    if isinstance(found, os.stat_result):
        return _hashed(path, found, now_ns, cached)
    return found


def _hash_all(todo: list[_Todo], now_ns: int, out: dict[str, Seen]) -> None:
    """Hash the files a scan found changed: large ones on a few threads (hashlib releases the
    GIL while it hashes a large buffer), small ones here meanwhile.

    Threads only pay where a file's bytes outweigh its Python overhead: 20,000 voicemail files
    of 5-38 KB hashed in ~0.97 s on this thread and ~1.35 s on four (each hand-off of the GIL
    is a futex call and a wait), while 200 recordings of 0.2-2 MB took ~0.55 s here and ~0.3 s
    on four threads."""
    big = [i for i, t in enumerate(todo) if t[2].st_size >= HASH_THREADED_SIZE]
    found: dict[int, Seen | None] = {}
    futures: dict[int, Future[Seen | None]] = {}
    pool = None
    if len(big) >= 2:
        from concurrent.futures import ThreadPoolExecutor  # only a scan with large files

        pool = ThreadPoolExecutor(max_workers=HASH_THREADS, thread_name_prefix="sync-hash")
    try:
        if pool is not None:
            futures = {i: pool.submit(_hashed, todo[i][1], todo[i][2], now_ns, todo[i][3])
                       for i in big}
        for i, (_name, path, st, old) in enumerate(todo):
            if i not in futures:
                found[i] = _hashed(path, st, now_ns, old)
        for i, fut in futures.items():
            found[i] = fut.result()
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    for i, (name, _path, _st, _old) in enumerate(todo):
        seen = found[i]
        if seen is not None:
            out[name] = seen


# What the walk found: name, local path, lstat.
_Found = tuple[str, str, os.stat_result]


def scan(
    matcher: Matcher,
    paths: PathMap,
    scopes: Iterable[tuple[str, bool]],
    cache: Callable[[str], Seen | None] | Mapping[str, Seen],
    now_ns: int,
) -> dict[str, Seen]:
    """Every included name under ``scopes`` (name, recursive) with its state.

    Excluded files are never opened: the walk tests each name before it stats or reads it, and
    does not enter directories the rules rule out.
    """
    get = cache.get if isinstance(cache, Mapping) else cache
    return describe_found(walk(matcher, paths, scopes), get, now_ns)


def scan_loading(
    matcher: Matcher,
    paths: PathMap,
    scopes: Iterable[tuple[str, bool]],
    load: Callable[[], Mapping[str, Seen]],
    now_ns: int,
) -> tuple[dict[str, Seen], Mapping[str, Seen]]:
    """``scan`` with its cache loaded by ``load``; returns the cache too."""
    found = walk(matcher, paths, scopes)
    cache = load()
    return describe_found(found, cache.get, now_ns), cache


def scan_changes(
    matcher: Matcher,
    paths: PathMap,
    scopes: Iterable[tuple[str, bool]],
    briefs: Callable[[], Mapping[str, Brief]],
    rows: Callable[[list[str]], Mapping[str, Seen]],
    now_ns: int,
) -> tuple[dict[str, Seen], set[str], Mapping[str, Brief]]:
    """A check's scan: what is not as recorded, described (new or changed names, with their
    state), the names found exactly as recorded, and the brief cache (every recorded name).

    ``briefs`` loads the brief cache of the scopes, ``rows`` the whole cached rows of some
    names: only those of names found changed are loaded (their block digests let a grown file
    be hashed from its last old block). The cache is loaded first and each file compared as
    the walk finds it: one found as recorded leaves only its name. Every file's lstat held at
    once made a check of 2,000 unchanged files peak at 3.0 MB of Python objects (2.2 MB so),
    and what a daemon ever held stays resident: it grew with the tree (issue 15)."""
    cache = briefs()
    same: set[str] = set()
    rest: list[_Found] = []

    def classify(f: _Found) -> None:
        if sqlitefile.is_journal_entry(*f):  # left out as if absent, as walk() does
            return
        b = cache.get(f[0])
        if b is not None and unchanged(b, f[2], now_ns):
            same.add(f[0])
        else:
            rest.append(f)

    for scope, recursive in scopes:
        walk_scope(matcher, paths, scope, recursive, classify)
    known = [f[0] for f in rest if f[0] in cache]
    old = rows(known) if known else {}
    return describe_found(rest, old.get, now_ns), same, cache


def describe_found(found: list[_Found], get: Callable[[str], Seen | None],
                  now_ns: int) -> dict[str, Seen]:
    out: dict[str, Seen] = {}
    todo: list[_Todo] = []
    for name, local, st in found:
        cached = get(name)
        seen = _classify(local, st, cached, now_ns)
        if isinstance(seen, os.stat_result):
            todo.append((name, local, seen, cached))
        elif seen is not None:
            out[name] = seen
    _hash_all(todo, now_ns, out)
    return out


def walk(matcher: Matcher, paths: PathMap, scopes: Iterable[tuple[str, bool]]) -> list[_Found]:
    """Every included name under the scopes with its local path and lstat (nothing read)."""
    found: list[_Found] = []
    for scope, recursive in scopes:
        walk_scope(matcher, paths, scope, recursive, found.append)
    return sqlitefile.without_journals(found)


# Walks the directories below one start: (matcher, local path, name, found).
TreeWalk = Callable[[Matcher, str, str, Callable[[_Found], None]], None]


def walk_scope(matcher: Matcher, paths: PathMap, scope: str, recursive: bool,
               found: Callable[[_Found], None], ordered: bool = False,
               tree: TreeWalk | None = None) -> None:
    """Every included name under the scope, to ``found``: the starts in name order if
    ``ordered``, the directories below each by ``tree`` (this module's walk by default)."""
    starts = scan_starts(matcher, paths, scope, recursive)
    for start, local, st in sorted(starts) if ordered else starts:
        if matcher.included(start):
            found((start, local, st))
        if recursive and stat.S_ISDIR(st.st_mode) and matcher.descend(start):
            (tree or _walk_tree)(matcher, local, start, found)


def scan_starts(matcher: Matcher, paths: PathMap, scope: str, recursive: bool) -> list[_Found]:
    """Where a walk of the scope starts (a scope above the includes, e.g. "/", starts at the
    include roots below it), each with its local path and lstat, if it exists."""
    starts: list[str] = []
    if recursive:
        for root in matcher.roots():
            if in_scope(root, scope, True):
                starts.append(root)
            elif scope.startswith(root.rstrip("/") + "/") or root == "/":
                starts.append(scope)
    else:
        starts.append(scope)
    out: list[_Found] = []
    for start in dict.fromkeys(starts):
        try:
            local = paths.local(start)
        except KeyError:
            continue
        try:
            out.append((start, local, os.lstat(local)))
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as e:  # a name too long, a loop of links above it, ...
            not_replicated(local, e.strerror or str(e), rename=False)
    return out


def _walk_tree(matcher: Matcher, local_top: str, name_top: str,
               found: Callable[[_Found], None]) -> None:
    """The directories below one start, depth first, without recursion (any depth)."""
    stack = [(local_top, name_top)]
    while stack:
        local_dir, name_dir = stack.pop()
        below: list[tuple[str, str]] = []
        lpre, cut = local_prefixes(local_dir, name_dir)
        for name, include, descend in dir_listing(matcher, local_dir, name_dir):
            path = lpre + name[cut:]
            if include and (st := lstat_or_none(path)) is not None:
                found((name, path, st))
            if descend:
                below.append((path, name))
        stack.extend(reversed(below))
