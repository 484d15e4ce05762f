"""Keep overwritten and deleted files in backup-directory, at most N generations per file.

Layout as csync2 writes it: ``DIR/<full path>`` is the newest copy, ``DIR/<full path>.1`` the one
before, up to ``.N-1``, so exactly N copies are kept (csync2 2.0 keeps 2 whatever N is). N = 0
turns backups off; a name too long for a suffix keeps only its newest copy. The copy is a hard
link when the backup directory is on the same filesystem: the old inode survives the rename that
replaces the file, so a backup costs no data copy.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat

from nonstop.errors import MachineError


def backup_path(backup_dir: str, name_path: str) -> str:
    """Where the newest backup of ``name_path`` (an absolute path) goes."""
    return os.path.join(backup_dir, name_path.lstrip("/"))


def keep(local: str, backup_dir: str, name_path: str, generations: int) -> str | None:
    """Back up the regular file at ``local``; returns the backup's path (None if disabled).

    The caller must then replace ``local`` by rename or unlink it, never write it in place: the
    backup may be a hard link to the same inode.

    A name may have been a file, then a directory, then a file again: where a backup of one
    stands in the way of the other (a file's backup where a directory of backups is needed,
    or the reverse), it is rotated to its next generation like any older copy, and the oldest
    falls off. A backup never blocks the change it keeps the old version of.
    """
    if generations <= 0:
        return None
    dest = backup_path(backup_dir, name_path)
    if _holds(dest, local):
        # An earlier attempt kept this very version and then failed (a read-only file system,
        # an immutable file): rotating again at each retry pushed the real history out.
        return dest
    try:
        os.makedirs(backup_dir, mode=0o700, exist_ok=True)
        _make_parents(backup_dir, dest, generations)
        _free(dest, generations)
    except OSError as e:
        raise _cannot_keep(backup_dir, e) from e
    try:
        os.link(local, dest, follow_symlinks=False)
    except OSError:
        try:
            shutil.copy2(local, dest, follow_symlinks=False)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.unlink(dest)  # never a partial copy as the newest backup
            if isinstance(e, FileNotFoundError) and not os.path.lexists(local):
                raise  # the file itself went away: its callers know that case
            raise _cannot_keep(backup_dir, e) from e
    return dest


def _holds(dest: str, local: str) -> bool:
    """Whether the newest backup ``dest`` already is the file at ``local``: the same inode (a
    hard link), or a copy with its size, mtime and bytes."""
    try:
        a, b = os.lstat(dest), os.lstat(local)
        if not (stat.S_ISREG(a.st_mode) and stat.S_ISREG(b.st_mode)):
            return False
        if os.path.samestat(a, b):
            return True
        if (a.st_size, a.st_mtime_ns) != (b.st_size, b.st_mtime_ns):
            return False
        with open(dest, "rb") as x, open(local, "rb") as y:
            while True:
                chunk = x.read(1 << 20)
                if chunk != y.read(1 << 20):
                    return False
                if not chunk:
                    return True
    except OSError:
        return False


def _cannot_keep(backup_dir: str, e: OSError) -> MachineError:
    return MachineError(e.errno or errno.EIO,
                        f"cannot keep its old version in {backup_dir}: {e.strerror or e}")


def _make_parents(backup_dir: str, dest: str, generations: int) -> None:
    """The directories above ``dest`` under ``backup_dir``, any other thing in their place (a
    backup of a file that had a directory's name) rotated out of the way."""
    path = backup_dir
    for part in os.path.relpath(os.path.dirname(dest), backup_dir).split(os.sep):
        if part in ("", "."):
            continue
        path = os.path.join(path, part)
        if os.path.lexists(path) and not _is_dir(path):
            _free(path, generations)
        if not os.path.lexists(path):
            os.mkdir(path, 0o700)


def _free(path: str, generations: int) -> None:
    """Make room at ``path``: what is there rotates to ``.1`` (with one generation, or a name
    with no room for a suffix, it is dropped: the newest copy replaces the last one)."""
    _rotate(path, generations)
    if os.path.lexists(path):
        _discard(path)


def _rotate(dest: str, generations: int) -> None:
    """dest.(N-2) -> dest.(N-1), ..., dest -> dest.1: the oldest falls off, whatever the type
    of each (a file's copies and a directory of backups may alternate under one name)."""
    for i in range(generations - 1, 0, -1):
        older = dest if i == 1 else f"{dest}.{i - 1}"
        if not os.path.lexists(older):
            continue
        target = f"{dest}.{i}"
        if os.path.lexists(target) and (_is_dir(target) or _is_dir(older)):
            _discard(target)  # rename replaces only a file by a file; it falls off anyway
        try:
            os.replace(older, target)
        except OSError as e:
            if e.errno != errno.ENAMETOOLONG:
                raise
            # A name at the file system's length limit (255 bytes) has no room for a
            # suffix: only its newest copy is kept, rather than no update at all.
            break


def _is_dir(path: str) -> bool:
    return stat.S_ISDIR(os.lstat(path).st_mode)


def _discard(path: str) -> None:
    if _is_dir(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def generations_of(backup_dir: str, name_path: str) -> list[str]:
    """Existing backups of a file, newest first."""
    dest = backup_path(backup_dir, name_path)
    out = [dest] if os.path.lexists(dest) else []
    i = 1
    while os.path.lexists(f"{dest}.{i}"):
        out.append(f"{dest}.{i}")
        i += 1
    return out
