"""A small asyncio inotify watcher over ctypes (no extra dependency).

Watches directory trees, reports changed names through a callback, follows new directories and
says when the kernel queue overflowed (then the caller must rescan everything).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import os
import struct
from collections.abc import Callable

# The C library through the interpreter's own symbols: ctypes.util.find_library would run
# `ldconfig -p` in a child process (and import tempfile) at every start.
_libc = ctypes.CDLL(None, use_errno=True)

IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ISDIR = 0x40000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
MASK = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE
        | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF)
_EVENT = struct.Struct("iIII")

# (local path, is_dir, new_dir) for each change; None means "overflow: rescan everything".
Callback = Callable[[str | None, bool, bool], None]


class Watcher:
    """Recursive inotify watches on local directories."""

    def __init__(self, callback: Callback, descend: Callable[[str], bool]) -> None:
        self._cb = callback
        self._descend = descend
        fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        self.fd: int = fd
        self._wd: dict[int, str] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.error = ""  # why add_tree last stopped short, if it did

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.fd, self._read)

    def close(self) -> None:
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self.fd)
        with contextlib.suppress(OSError):
            os.close(self.fd)

    @property
    def watch_count(self) -> int:
        return len(self._wd)

    def add_tree(self, path: str) -> bool:
        """Watch ``path`` and every directory below it that ``descend`` allows, depth first
        and without recursion (a tree 1,100 directories deep raised RecursionError and ended
        the daemon's replication start). A directory the kernel cannot watch because it is
        gone, not ours to read, or named by a path longer than it takes is left out (the
        periodic scan covers it and says what it cannot replicate). False, with ``error``
        saying why, if a watch was refused otherwise (out of watches: ENOSPC): the rest of the
        tree is then not watched, and the caller must rely on scans."""
        stack = [path]
        while stack:
            top = stack.pop()
            try:
                if not self._add(top):
                    continue
            except OSError as e:
                self.error = str(e)
                return False
            try:
                entries = list(os.scandir(top))
            except OSError:
                continue
            stack.extend(e.path for e in reversed(entries)
                         if e.is_dir(follow_symlinks=False) and self._descend(e.path))
        return True

    def watch_roots(self, roots: list[str]) -> bool:
        """Watch each root's tree, and each root's parent alone, so that a root created later
        is noticed; False (``error`` says why) if the kernel refused watches on the way."""
        for root in roots:
            if not self.add_tree(root):
                return False
            parent = os.path.dirname(root)
            try:
                if os.path.isdir(parent):
                    self._add(parent)
            except OSError as e:
                self.error = str(e)
                return False
        return True

    def _add(self, path: str) -> bool:
        wd = _libc.inotify_add_watch(self.fd, os.fsencode(path), MASK)
        if wd < 0:
            err = ctypes.get_errno()
            if err in (errno.ENOENT, errno.ENOTDIR, errno.EACCES, errno.ENAMETOOLONG,
                       errno.ELOOP):
                return False
            why = os.strerror(err)
            if err == errno.ENOSPC:
                why = "out of inotify watches (sysctl fs.inotify.max_user_watches sets how many)"
            raise OSError(err, f"inotify_add_watch {path}: {why}")
        self._wd[wd] = path
        return True

    def _read(self) -> None:
        try:
            data = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return
        i = 0
        while i + _EVENT.size <= len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, i)
            raw = data[i + _EVENT.size : i + _EVENT.size + length].rstrip(b"\x00")
            i += _EVENT.size + length
            if mask & IN_Q_OVERFLOW:
                self._cb(None, False, False)
                continue
            base = self._wd.get(wd)
            if mask & IN_IGNORED:
                self._wd.pop(wd, None)
                continue
            if base is None:
                continue
            path = os.path.join(base, os.fsdecode(raw)) if raw else base
            is_dir = bool(mask & IN_ISDIR)
            new_dir = is_dir and bool(mask & (IN_CREATE | IN_MOVED_TO))
            if new_dir and self._descend(path) and not self.add_tree(path):
                # Out of watches (ENOSPC) or the like: the rest of this buffer must not be
                # lost; report it as an overflow, so a full scan catches everything.
                self._cb(None, False, False)
            self._cb(path, is_dir, new_dir)

