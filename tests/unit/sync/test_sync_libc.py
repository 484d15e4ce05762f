"""The replication modules reach libc and librsync without ctypes.util.find_library, which runs
`ldconfig -p` in a child process (and imports tempfile) at every start of a daemon or a push."""

from __future__ import annotations

import subprocess
import sys


def test_loading_the_replication_modules_runs_no_ldconfig() -> None:
    code = ("import sys, nonstop.daemon, nonstop.sync.fsops, nonstop.sync.inotify, "
            "nonstop.sync.rdiff as r; print('ctypes.util' in sys.modules, r._lib is not None)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.split() == ["False", "True"]


def test_libc_symbols_come_from_the_interpreters_own_namespace() -> None:
    from nonstop.sync import fsops, inotify

    assert hasattr(fsops._libc, "renameat2") and hasattr(inotify._libc, "inotify_init1")
