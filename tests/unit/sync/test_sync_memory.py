"""What replication holds in memory does not grow with the tree (issue 15: an idle node stays
under 25 MB PSS, and what a daemon ever held stays resident): the daemon's state database has
a bounded page cache."""

from __future__ import annotations

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
