"""What replication holds in memory does not grow with the tree (issue 15: an idle node stays
under 25 MB PSS, and what a daemon ever held stays resident): the daemon's state database has
a bounded page cache, and a check holds one directory at a time."""

from __future__ import annotations

import gc
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from nonstop.sync.node import Node, open_node
from nonstop.sync.statedb import StateDB


def _cache_size(db: StateDB) -> int:
    size: int = db._db.execute("PRAGMA cache_size").fetchone()[0]
    return size  # negative: KiB; positive: pages


def _node(tmp_path: Path) -> Node:
    key = tmp_path / "csync2.key"
    key.write_text("k" * 40 + "\n")
    cfg = tmp_path / "csync2.cfg"
    cfg.write_text(f"group g\n{{\n    host vpbx1-1 vpbx1-2;\n    key {key};\n"
                   "    include /var/spool/asterisk;\n}\n")
    return open_node(str(cfg), "vpbx1-1", str(tmp_path / "state"), root=str(tmp_path / "root"))


def test_the_daemons_state_database_keeps_a_bounded_page_cache(tmp_path: Path) -> None:
    """With sqlite's default the cache held the whole database and grew with every file
    replicated, up to 2 MB (node.DAEMON_CACHE_KIB)."""
    node = _node(tmp_path)
    try:
        kib = -_cache_size(node.db)
        assert 0 < kib <= 512  # sqlite's default would let it grow to 2000 KiB
    finally:
        node.close()


def test_a_one_shot_run_keeps_sqlites_own_bound(tmp_path: Path) -> None:
    """`nonstop sync` is over in seconds: its big transactions (a first sync of 20,000 files)
    keep the cache they were measured with."""
    db = StateDB(str(tmp_path / "state" / "vpbx1-1.db3"))
    try:
        assert _cache_size(db) == -2000
    finally:
        db.close()


def _check_peaks(tmp_path: Path, n: int) -> tuple[int, int, int, int]:
    """The peaks of loading the recorded states, of a no-change check of ``n`` files and of
    listing their states (beyond the listing itself), each above what was held before it and
    the least of three, and the listing's size (run in a fresh interpreter)."""
    for i in range(n):  # mailboxes of 100 messages, as Asterisk keeps them
        inbox = tmp_path / f"root/var/spool/asterisk/voicemail/default/{1000 + i // 100}/INBOX"
        inbox.mkdir(parents=True, exist_ok=True)
        (inbox / f"msg{i % 100:04d}.txt").write_bytes(b"x" * 100)
    node = _node(tmp_path)
    try:
        dirty = node.check()  # every file and directory new, dirty for the peer
        assert dirty["vpbx1-2"] > n
        # As after a push: the peer holds them all (else a check lists all as still dirty).
        node.db.record_sent("vpbx1-2", [(k, s.state) for k, s in node.db.local_all().items()])
        assert node.check() == {"vpbx1-2": 0}  # found as they were, and nothing to send

        def peak(step: Callable[[], object]) -> int:
            got = []
            for _ in range(3):
                gc.collect()
                tracemalloc.reset_peak()
                before = tracemalloc.get_traced_memory()[0]
                step()
                got.append(tracemalloc.get_traced_memory()[1] - before)
            return min(got)

        tracemalloc.start()
        try:
            loading = peak(lambda: node.db.local_briefs_in([("/", True)]))
            checking = peak(node.check)
            g = node.groups[0]
            held = tracemalloc.get_traced_memory()[0]
            states = node.states(g, [("/var/spool/asterisk", True)])
            kept = tracemalloc.get_traced_memory()[0] - held  # the listing itself
            del states
            listing = peak(lambda: node.states(g, [("/var/spool/asterisk", True)])) - kept
        finally:
            tracemalloc.stop()
        assert node.check() == {"vpbx1-2": 0}
        return checking, loading, listing, kept
    finally:
        node.close()


def test_a_check_of_unchanged_files_holds_little_beside_the_recorded_states(
        tmp_path: Path) -> None:
    """The daemon checks the whole tree every minute. Holding every file's lstat (in a list
    and in the directory entries) made its peak 2.7 times what loading the recorded states
    takes, ~1.4 KB a file; compared as found, 1.9 times; compared with the rows in name order
    (checkorder), one directory and one page of rows: 0.1 times here. Measured in a child
    interpreter: tracemalloc counts every thread, and in the suite (xdist) another test's
    threads ran on in the same process (3.6 times in one CI run)."""
    n = 5000
    checking, loading, _listing, _kept = _peaks_in_a_child(tmp_path, n)
    assert checking < 0.35 * loading, (checking / n, loading / n)


def test_a_listing_for_a_peer_holds_the_states_and_little_more(tmp_path: Path) -> None:
    """At a takeover the new holder forces its tree onto the peer: both list every file's
    state. Scanned the old way (every lstat and every whole row at once) that took 2.5 KB a
    file beside the listing (50 MB for 20,000 files, both sides in one process); walked in
    name order beside the rows, a file found as recorded takes its row's state."""
    n = 5000
    _checking, _loading, listing, kept = _peaks_in_a_child(tmp_path, n)
    assert listing < 0.5 * kept, (listing / n, kept / n)


def _peaks_in_a_child(tmp_path: Path, n: int) -> tuple[int, ...]:
    child = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
             "from pathlib import Path; from test_sync_memory import _check_peaks; "
             f"print(*_check_peaks(Path({str(tmp_path)!r}), {n}))")
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    return tuple(int(x) for x in out)
