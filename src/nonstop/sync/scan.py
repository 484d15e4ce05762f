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

import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from nonstop.sync.patterns import TMP_PREFIX, Matcher, PathMap, in_scope
from nonstop.sync.state import FileState, supported

HASH_THREADS = 4
HASH_PARALLEL_MIN = 8  # fewer files than this are hashed inline
RACY_NS = 2_000_000_000  # filesystems with whole-second timestamps
FINE_RACY_NS = 50_000_000  # nanosecond timestamps: the kernel's coarse clock ticks in <= 10 ms


def racy_window(mtime_ns: int, ctime_ns: int) -> int:
    """How long after a change a recorded state stays untrusted."""
    if mtime_ns % 1_000_000_000 == 0 and ctime_ns % 1_000_000_000 == 0:
        return RACY_NS
    return FINE_RACY_NS
_READ = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Seen:
    """A scanned file: its state plus the local-only facts used to skip re-hashing."""

    state: FileState
    ino: int
    ctime_ns: int
    checked_ns: int


def hash_file(path: str) -> tuple[str, int]:
    """blake2b (20 bytes, hex) of a file's content, and the bytes read."""
    h = hashlib.blake2b(digest_size=20)
    n = 0
    with open(path, "rb", buffering=0) as fh:
        while chunk := fh.read(_READ):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


def _probe(path: str, cached: Seen | None, now_ns: int) -> Seen | os.stat_result | None:
    """The state of a path, or its stat when its content must be hashed first."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not supported(st):
        return None
    target = ""
    if stat.S_ISREG(st.st_mode):
        if (
            cached is not None
            and cached.state.kind == "reg"
            and cached.ino == st.st_ino
            and cached.ctime_ns == st.st_ctime_ns
            and cached.state.mtime_ns == st.st_mtime_ns
            and cached.state.size == st.st_size
            and max(st.st_mtime_ns, st.st_ctime_ns) + racy_window(st.st_mtime_ns, st.st_ctime_ns)
            <= cached.checked_ns
        ):
            return Seen(cached.state, st.st_ino, st.st_ctime_ns, cached.checked_ns)
        return st
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(path)
    return Seen(FileState.from_stat(st, "", target), st.st_ino, st.st_ctime_ns, now_ns)


def _hashed(path: str, st: os.stat_result, now_ns: int) -> Seen | None:
    try:
        digest, _ = hash_file(path)
        st2 = os.lstat(path)
    except FileNotFoundError:
        return None
    if st2.st_mtime_ns != st.st_mtime_ns or st2.st_size != st.st_size:
        # Written while we read it: describe what is there now; the next scan re-hashes.
        return describe(path, None, now_ns)
    return Seen(FileState.from_stat(st, digest), st.st_ino, st.st_ctime_ns, now_ns)


def describe(path: str, cached: Seen | None, now_ns: int) -> Seen | None:
    """The state of one local path (None if it does not exist or is a socket)."""
    found = _probe(path, cached, now_ns)
    if isinstance(found, os.stat_result):
        return _hashed(path, found, now_ns)
    return found


def _hash_all(todo: list[tuple[str, str, os.stat_result]], now_ns: int,
              out: dict[str, Seen]) -> None:
    """Hash the files a scan found changed, on a few threads (hashlib releases the GIL)."""
    if len(todo) < HASH_PARALLEL_MIN:
        results = [_hashed(path, st, now_ns) for _name, path, st in todo]
    else:
        with ThreadPoolExecutor(max_workers=HASH_THREADS, thread_name_prefix="sync-hash") as pool:
            results = list(pool.map(lambda t: _hashed(t[1], t[2], now_ns), todo))
    for (name, _path, _st), seen in zip(todo, results, strict=True):
        if seen is not None:
            out[name] = seen


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
    out: dict[str, Seen] = {}
    todo: list[tuple[str, str, os.stat_result]] = []
    for scope, recursive in scopes:
        _scan_one(matcher, paths, scope, recursive, get, now_ns, out, todo)
    _hash_all(todo, now_ns, out)
    return out


def _scan_one(
    matcher: Matcher,
    paths: PathMap,
    scope: str,
    recursive: bool,
    get: Callable[[str], Seen | None],
    now_ns: int,
    out: dict[str, Seen],
    todo: list[tuple[str, str, os.stat_result]],
) -> None:
    starts: list[str] = []
    if recursive:
        # A scope above the includes (e.g. "/") walks from the include roots below it.
        for root in matcher.roots():
            if in_scope(root, scope, True):
                starts.append(root)
            elif scope.startswith(root.rstrip("/") + "/") or root == "/":
                starts.append(scope)
    else:
        starts.append(scope)
    for start in dict.fromkeys(starts):
        try:
            local = paths.local(start)
        except KeyError:
            continue
        if matcher.included(start):
            _take(start, local, _probe(local, get(start), now_ns), out, todo)
        if recursive and os.path.isdir(local) and not os.path.islink(local) and (
            matcher.descend(start)
        ):
            _walk(matcher, local, start, get, now_ns, out, todo)


def _take(name: str, local: str, found: Seen | os.stat_result | None, out: dict[str, Seen],
          todo: list[tuple[str, str, os.stat_result]]) -> None:
    if isinstance(found, os.stat_result):
        todo.append((name, local, found))
    elif found is not None:
        out[name] = found


def _walk(
    matcher: Matcher,
    local_dir: str,
    name_dir: str,
    get: Callable[[str], Seen | None],
    now_ns: int,
    out: dict[str, Seen],
    todo: list[tuple[str, str, os.stat_result]],
) -> None:
    try:
        entries = list(os.scandir(local_dir))
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return
    prefix = name_dir.rstrip("/") + "/"
    included = matcher.child_filter(name_dir)
    for entry in entries:
        if entry.name.startswith(TMP_PREFIX):
            continue
        name = prefix + entry.name
        is_dir = entry.is_dir(follow_symlinks=False)
        if included(name, entry.name):
            if is_dir:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                out[name] = Seen(FileState.from_stat(st), st.st_ino, st.st_ctime_ns, now_ns)
            else:
                _take(name, entry.path, _probe(entry.path, get(name), now_ns), out, todo)
        if is_dir and matcher.descend(name):
            _walk(matcher, entry.path, name, get, now_ns, out, todo)
