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
from dataclasses import dataclass

from nonstop.sync.patterns import TMP_PREFIX, Matcher, PathMap
from nonstop.sync.state import FileState, supported

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


def describe(path: str, cached: Seen | None, now_ns: int) -> Seen | None:
    """The state of one local path (None if it does not exist or is a socket)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None
    if not supported(st):
        return None
    digest = target = ""
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
        try:
            digest, _ = hash_file(path)
        except FileNotFoundError:
            return None
        st2 = os.lstat(path)
        if st2.st_mtime_ns != st.st_mtime_ns or st2.st_size != st.st_size:
            # Written while we read it: describe what is there now; the next scan re-hashes.
            return describe(path, None, now_ns)
    elif stat.S_ISLNK(st.st_mode):
        target = os.readlink(path)
    return Seen(FileState.from_stat(st, digest, target), st.st_ino, st.st_ctime_ns, now_ns)


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
    for scope, recursive in scopes:
        _scan_one(matcher, paths, scope, recursive, get, now_ns, out)
    return out


def _scan_one(
    matcher: Matcher,
    paths: PathMap,
    scope: str,
    recursive: bool,
    get: Callable[[str], Seen | None],
    now_ns: int,
    out: dict[str, Seen],
) -> None:
    starts: list[str] = []
    if recursive:
        # A scope above the includes (e.g. "/") walks from the include roots below it.
        for root in matcher.roots():
            if root == scope or root.startswith(scope.rstrip("/") + "/"):
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
            seen = describe(local, get(start), now_ns)
            if seen is not None:
                out[start] = seen
        if recursive and os.path.isdir(local) and not os.path.islink(local) and (
            matcher.descend(start)
        ):
            _walk(matcher, local, start, get, now_ns, out)


def _walk(
    matcher: Matcher,
    local_dir: str,
    name_dir: str,
    get: Callable[[str], Seen | None],
    now_ns: int,
    out: dict[str, Seen],
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
                seen = describe(entry.path, get(name), now_ns)
                if seen is not None:
                    out[name] = seen
        if is_dir and matcher.descend(name):
            _walk(matcher, entry.path, name, get, now_ns, out)
