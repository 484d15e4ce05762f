"""Keep overwritten and deleted files in backup-directory, at most N generations per file.

Layout as csync2 writes it: ``DIR/<full path>`` is the newest copy, ``DIR/<full path>.1`` the one
before, up to ``.N-1``, so exactly N copies are kept (csync2 2.0 keeps 2 whatever N is). N = 0
turns backups off; a name too long for a suffix keeps only its newest copy. The copy is a hard
link when the backup directory is on the same filesystem: the old inode survives the rename that
replaces the file, so a backup costs no data copy.
"""

from __future__ import annotations

import errno
import os
import shutil


def backup_path(backup_dir: str, name_path: str) -> str:
    """Where the newest backup of ``name_path`` (an absolute path) goes."""
    return os.path.join(backup_dir, name_path.lstrip("/"))


def keep(local: str, backup_dir: str, name_path: str, generations: int) -> str | None:
    """Back up the regular file at ``local``; returns the backup's path (None if disabled).

    The caller must then replace ``local`` by rename or unlink it, never write it in place: the
    backup may be a hard link to the same inode.
    """
    if generations <= 0:
        return None
    dest = backup_path(backup_dir, name_path)
    os.makedirs(backup_dir, mode=0o700, exist_ok=True)
    os.makedirs(os.path.dirname(dest), mode=0o700, exist_ok=True)
    # Rotate: dest.(N-2) -> dest.(N-1), ..., dest -> dest.1 (the oldest falls off).
    for i in range(generations - 1, 0, -1):
        older = dest if i == 1 else f"{dest}.{i - 1}"
        if os.path.lexists(older):
            try:
                os.replace(older, f"{dest}.{i}")
            except OSError as e:
                if e.errno != errno.ENAMETOOLONG:
                    raise
                # A name at the file system's length limit (255 bytes) has no room for a
                # suffix: only its newest copy is kept, rather than no update at all.
                break
    if os.path.lexists(dest):
        os.unlink(dest)
    try:
        os.link(local, dest, follow_symlinks=False)
    except OSError:
        shutil.copy2(local, dest, follow_symlinks=False)
    return dest


def generations_of(backup_dir: str, name_path: str) -> list[str]:
    """Existing backups of a file, newest first."""
    dest = backup_path(backup_dir, name_path)
    out = [dest] if os.path.lexists(dest) else []
    i = 1
    while os.path.lexists(f"{dest}.{i}"):
        out.append(f"{dest}.{i}")
        i += 1
    return out
