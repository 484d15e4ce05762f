"""Filesystem writes of the receiver: atomic, durable, metadata exactly as sent.

A regular file is written to ``.nonstop-tmp-XXXXXXXX`` in its own directory (the name never
matches an include and is skipped by every scan), flushed to disk, given owner, mode and mtime,
then renamed over the target, and the directory is flushed. A reader sees the old file or the new
one, never a part. Many files are flushed with one ``syncfs`` instead of one fsync each.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import os
import secrets
import stat

from nonstop.errors import MachineError
from nonstop.sync.patterns import TMP_PREFIX
from nonstop.sync.state import FileState

# The C library through the interpreter's own symbols: ctypes.util.find_library would run
# `ldconfig -p` in a child process (and import tempfile) at every start.
_libc = ctypes.CDLL(None, use_errno=True)
# With more files than this in one batch, one syncfs is cheaper than an fsync per file.
SYNCFS_THRESHOLD = 16


def open_dir(root: str, path: str) -> int:
    """An fd of directory ``path`` (under ``root``), reached one component at a time without
    following a symlink anywhere below ``root``: writes made relative to it stay in the tree
    even if a directory on the way is swapped for a symlink later (OSError, ELOOP or ENOTDIR,
    if one is already there)."""
    top = os.path.normpath(root or "/")
    path = os.path.normpath(path)
    if top != "/" and not (path == top or path.startswith(top + "/")):
        top = "/"  # a csync2 prefix outside the root: no symlink on its whole way
    base = os.path.realpath(top)
    rel = os.path.relpath(path, top)
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    fd = os.open(base, flags)
    if rel == ".":
        return fd
    try:
        for part in rel.split("/"):
            if part in ("", ".", ".."):
                raise MachineError(errno.EINVAL, f"bad path component {part!r}")
            nxt = os.open(part, flags | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


# Temp names: a random tag per process and a counter, so a file costs no getrandom call (a
# receiver makes one per file); O_EXCL still refuses a name that exists.
_tmp_tag = secrets.token_hex(6)
_tmp_seq = itertools.count()


def _new_tmp_tag() -> None:
    global _tmp_tag, _tmp_seq
    _tmp_tag, _tmp_seq = secrets.token_hex(6), itertools.count()


os.register_at_fork(after_in_child=_new_tmp_tag)


def tmp_path_for(local: str) -> str:
    """A fresh temp path next to ``local``."""
    return os.path.join(os.path.dirname(local), f"{TMP_PREFIX}{_tmp_tag}{next(_tmp_seq):x}")


def _owner(st: FileState, ignore: frozenset[str]) -> tuple[int, int]:
    """uid/gid to set; -1 keeps ours (csync2's ``ignore uid|gid``)."""
    return (-1 if "uid" in ignore else st.uid), (-1 if "gid" in ignore else st.gid)


def set_meta(path: str, st: FileState, is_link: bool = False,
             ignore: frozenset[str] = frozenset()) -> None:
    """Owner, then mode (chown clears set-id bits), then mtime."""
    # Not root: the owner stays ours and shows up as a difference on the next check.
    with contextlib.suppress(PermissionError):
        os.chown(path, *_owner(st, ignore), follow_symlinks=False)
    if not is_link:
        if "mod" not in ignore:
            os.chmod(path, st.mode)
        os.utime(path, ns=(st.mtime_ns, st.mtime_ns))


def set_meta_fd(fd: int, st: FileState, ignore: frozenset[str] = frozenset(),
                keep: FileState | None = None, owner: tuple[int, int] | None = None,
                mode: int = -1) -> None:
    """``set_meta`` on an open regular file (no path lookups). What ``ignore`` names is taken
    from ``keep`` (the file being replaced) instead; a new file keeps ours and mode 0600.
    ``owner`` and ``mode``: the file's uid, gid and mode as known without a stat (a file just
    created), so an owner or mode already right costs no chown or chmod."""
    uid, gid = st.uid, st.gid
    if "uid" in ignore:
        uid = keep.uid if keep is not None else -1
    if "gid" in ignore:
        gid = keep.gid if keep is not None else -1
    chown = owner is None or uid not in (-1, owner[0]) or gid not in (-1, owner[1])
    if chown:
        with contextlib.suppress(PermissionError):
            os.fchown(fd, uid, gid)
    if "mod" not in ignore:
        if chown or st.mode != mode:  # a chown clears set-id bits: chmod after it
            os.fchmod(fd, st.mode)
    elif keep is not None:
        os.fchmod(fd, keep.mode)
    os.utime(fd, ns=(st.mtime_ns, st.mtime_ns))


_RENAME_NOREPLACE = 1
_renameat2: list[bool] = [hasattr(_libc, "renameat2")]


def rename(src: str, dst: str, dir_fd: int, replace: bool = True) -> bool:
    """Rename ``src`` to ``dst`` in the directory ``dir_fd``; without ``replace`` only if
    ``dst`` does not exist (renameat2 RENAME_NOREPLACE: no window between the check and the
    rename). False if it exists. Where the C library or a file system lacks renameat2, a hard
    link (which fails on an existing name) then unlinking ``src`` keeps that promise; only a file
    system without hard links too gets a plain replace."""
    if not replace and _renameat2[0]:
        if _libc.renameat2(dir_fd, os.fsencode(src), dir_fd, os.fsencode(dst),
                           _RENAME_NOREPLACE) == 0:
            return True
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            return False
        if err not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise MachineError(err, os.strerror(err))
        _renameat2[0] = False  # not here: the link way from now on
    if not replace:
        linked = _link_noreplace(src, dst, dir_fd)
        if linked is not None:
            return linked
    os.replace(src, dst, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    return True


def _link_noreplace(src: str, dst: str, dir_fd: int) -> bool | None:
    """``src`` linked as ``dst`` and then unlinked; False if ``dst`` exists, None if this file
    system has no hard links. A crash between the two leaves ``src`` as a second name of the
    new file: a temp name, removed at the next start."""
    try:
        os.link(src, dst, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK):
            return None
        raise
    os.unlink(src, dir_fd=dir_fd)
    return True


def fsync_path(path: str, directory: bool = False) -> None:
    flags = os.O_RDONLY | (os.O_DIRECTORY if directory else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def syncfs(path: str) -> None:
    """Flush the whole filesystem holding ``path`` (one call for a batch of files)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    finally:
        os.close(fd)


def _syncfs_each_device(dirs: set[str]) -> None:
    """One syncfs per filesystem among ``dirs`` (the files of a batch can span mounts)."""
    devices: dict[int, str] = {}
    for d in dirs:
        with contextlib.suppress(FileNotFoundError):
            devices.setdefault(os.stat(d).st_dev, d)
    for d in devices.values():
        syncfs(d)


def flush(files: list[str]) -> None:
    """Make the content of these (closed) files durable."""
    if len(files) > SYNCFS_THRESHOLD:
        _syncfs_each_device({os.path.dirname(f) for f in files})
    else:
        for f in files:
            fsync_path(f)


def flush_dirs(dirs: set[str], files: int = 0) -> None:
    """Make the renames of ``files`` files into ``dirs`` durable: one syncfs per filesystem
    for many (a directory fsync is a journal commit each), else an fsync per directory."""
    if len(dirs) > SYNCFS_THRESHOLD or files > SYNCFS_THRESHOLD:
        _syncfs_each_device(dirs)
    else:
        for d in dirs:
            with contextlib.suppress(FileNotFoundError):
                fsync_path(d, directory=True)


def remove(local: str) -> None:
    """Remove a file, symlink or (empty) directory."""
    st = os.lstat(local)
    if stat.S_ISDIR(st.st_mode):
        os.rmdir(local)
    else:
        os.unlink(local)


def make_special(local: str, st: FileState, ignore: frozenset[str] = frozenset()) -> None:
    """Create a directory, symlink, FIFO or device node at ``local`` with ``st``'s metadata.

    Non-directories are made under a temp name and renamed into place (atomic replace).
    """
    if st.kind == "dir":
        if not os.path.isdir(local) or os.path.islink(local):
            os.mkdir(local, 0o700)
        set_meta(local, st, ignore=ignore)
        return
    tmp = tmp_path_for(local)
    if st.kind == "lnk":
        os.symlink(st.target, tmp)
        set_meta(tmp, st, is_link=True, ignore=ignore)
    elif st.kind == "fifo":
        os.mkfifo(tmp, 0o600)
        set_meta(tmp, st, ignore=ignore)
    else:
        kind = stat.S_IFCHR if st.kind == "chr" else stat.S_IFBLK
        os.mknod(tmp, kind | 0o600, st.rdev)
        set_meta(tmp, st, ignore=ignore)
    try:
        os.replace(tmp, local)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
