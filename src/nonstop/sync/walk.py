"""One directory as a walk of the includes sees it: which entries it keeps, and their lstat.

Shared by the scan's walk (kernel order) and a check's walk in name order (checkorder).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from nonstop.sync.patterns import TMP_PREFIX, Matcher
from nonstop.sync.skipped import not_replicated
from nonstop.sync.state import is_utf8

# A directory entry a walk keeps: its name, whether it is included, whether to walk into it.
Listed = tuple[str, bool, bool]


def dir_listing(matcher: Matcher, local_dir: str, name_dir: str) -> Iterator[Listed]:
    """The entries of one directory a walk keeps, in the kernel's order: names and two flags,
    nothing stat'ed (a walk lstats each entry as it reaches it, and the kernel's entries are
    not kept: 10,000 files in one directory held 3.8 MB of them). An entry's local path is
    ``os.path.join(local_dir, base)``."""
    prefix = name_dir.rstrip("/") + "/"
    included = matcher.child_filter(name_dir)
    try:
        with os.scandir(local_dir) as entries:
            for entry in entries:
                base = entry.name
                if base.startswith(TMP_PREFIX):
                    continue
                name = prefix + base
                is_dir = entry.is_dir(follow_symlinks=False)
                if not is_utf8(base):  # an excluded one is left out without a word
                    if matcher.wanted(name, is_dir):
                        not_replicated(entry.path, "its name is not UTF-8")
                    continue
                include = included(name, base)
                descend = is_dir and matcher.descend(name)
                if include or descend:
                    yield name, include, descend
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return
    except OSError as e:  # a path longer than the kernel takes, an I/O error, ...
        not_replicated(local_dir, e.strerror or str(e), rename=False)


def local_prefixes(local_dir: str, name_dir: str) -> tuple[str, int]:
    """What turns the name of an entry listed in ``local_dir`` into its local path: the
    directory's path ending in "/", and the length of the name's directory part."""
    return (local_dir if local_dir.endswith("/") else local_dir + "/",
            len(name_dir.rstrip("/")) + 1)


def lstat_or_none(path: str) -> os.stat_result | None:
    """The walk's lstat of an entry: None if it went meanwhile or cannot be stat'ed (said)."""
    try:
        return os.lstat(path)  # entry.stat() would live as long as the directory's entries
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        not_replicated(path, e.strerror or str(e), rename=False)
        return None
