"""A name csync2.cfg no longer matches is no longer this node's business.

Taking an ``include`` out or adding an ``exclude`` on the active node (a user trial: the other
nodes still had the old file) made the next push delete the standbys' copies, and left dirty
rows that the peers, once they had the new file too, refused for ever. csync2 skips such names
when it looks for deletions and ``-R`` drops their rows; a check now forgets them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from sync_harness import KEY, TALK_CFG, pair, talk_config

from nonstop.config.csync2 import Csync2Config, parse_csync2_text
from nonstop.records import replace
from nonstop.sync.node import ALL, Node, Options
from nonstop.sync.patterns import Owner
from nonstop.sync.scan import scan

if TYPE_CHECKING:  # a name pytest would try to collect as a test class
    from sync_harness import TestNode

CODEC = "/usr/lib/asterisk/modules/codec_g729.so"
NOTES = "/etc/asterisk/notes.tmp"
CONF = "/etc/asterisk/a.conf"
DROPPED = ("/usr/lib/asterisk", "/usr/lib/asterisk/modules", CODEC, NOTES)


def _narrowed(tmp: Path) -> Csync2Config:
    """The talk's csync2.cfg without ``include /usr/lib/asterisk``, with ``exclude *.tmp``."""
    talk_config(tmp)  # writes the key
    text = TALK_CFG.replace("/etc/csync2.key_vpbx1", str(tmp / "key"))
    text = text.replace("    include /usr/lib/asterisk;\n", "")
    text = text.replace("exclude *~ .* ok lock control;",
                        "exclude *~ .* ok lock control;\n    exclude *.tmp;")
    assert text.count("*.tmp") == 1 and "/usr/lib/asterisk" not in text
    return parse_csync2_text(text, "/etc/csync2.cfg")


def _restart(n: TestNode, cfg: Csync2Config) -> None:
    """The node's engine again, on the same database and files, with another csync2.cfg."""
    opts = n.node.opts
    n.node.close()
    n.node = Node(replace(opts, config=cfg), lambda _lvl, msg: n.log.append(msg))


async def _synced_wide(n1: TestNode, n2: TestNode) -> None:
    for n in (n1, n2):
        n.path("/usr/lib/asterisk/modules").mkdir(parents=True)
    n1.write(CODEC, b"licensed codec\n")
    n1.write(NOTES, "operator notes\n")
    n1.write(CONF, "a\n")
    assert await n1.sync() == []
    assert n2.path(CODEC).exists() and n2.path(NOTES).exists()


def _rows(n: TestNode) -> set[str]:
    return set(DROPPED) & n.node.db.names()


async def test_a_narrowed_config_leaves_the_peers_files_alone_and_forgets_their_rows(
        tmp_path: Path) -> None:
    async with pair(tmp_path) as (n1, n2):
        await _synced_wide(n1, n2)
        _restart(n1, _narrowed(tmp_path))
        n1.write(CONF, "a, edited\n")
        assert await n1.sync() == []
        assert n2.path(CODEC).read_bytes() == b"licensed codec\n"
        assert n2.path(NOTES).read_text() == "operator notes\n"
        assert n2.path(CONF).read_text() == "a, edited\n"  # the rest still replicates
        assert n1.node.dirty_lines() == []
        assert _rows(n1) == set()  # not deletions: forgotten
        assert n1.path(CODEC).exists() and n1.path(NOTES).exists()
        assert not any("deleted" in line for line in n1.log)


async def test_dirty_rows_of_names_no_longer_matched_are_dropped_not_pushed(
        tmp_path: Path) -> None:
    # The trial's database: a check before the fix took the names for deletions.
    async with pair(tmp_path) as (n1, n2):
        await _synced_wide(n1, n2)
        _restart(n1, _narrowed(tmp_path))
        db, g = n1.node.db, n1.node.groups[0]
        db.record_check(ALL, scan(g.matcher, g.paths, ALL, db.local_all(), time.time_ns()),
                        ["vpbx1-2"])  # no owner: as before
        assert {r.name for r in db.dirty("vpbx1-2")} == set(DROPPED)
        assert await n1.sync() == []
        assert n1.node.dirty_lines() == [] and _rows(n1) == set()
        assert n2.path(CODEC).exists() and n2.path(NOTES).exists()


async def test_a_narrow_check_drops_them_too(tmp_path: Path) -> None:
    # The daemon checks only where inotify saw changes: stale dirty rows go all the same.
    async with pair(tmp_path) as (n1, n2):
        await _synced_wide(n1, n2)
        _restart(n1, _narrowed(tmp_path))
        db, g = n1.node.db, n1.node.groups[0]
        db.record_check(ALL, scan(g.matcher, g.paths, ALL, db.local_all(), time.time_ns()),
                        ["vpbx1-2"])
        n1.node.check([(CONF, False)])
        assert n1.node.dirty_lines() == []
        assert not n1.node.has_pending()


def test_with_several_groups_only_names_no_group_includes_are_forgotten(
        tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text(KEY + "\n")

    def cfg(second: str) -> Csync2Config:
        return parse_csync2_text(
            f"group a {{ host vpbx1-1 vpbx1-2; key {key}; include /srv/a; }}\n"
            f"group b {{ host vpbx1-1 vpbx1-2; key {key}; {second} }}\n",
            str(tmp_path / "csync2.cfg"))

    root = tmp_path / "root"
    for name in ("srv/a/1", "srv/b/2", "srv/c/3"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(name)
    state = str(tmp_path / "state")
    wide = Node(Options(cfg("include /srv/b; include /srv/c;"), "vpbx1-1", state, root=str(root)))
    wide.check()
    assert {"/srv/a/1", "/srv/b/2", "/srv/c/3"} <= wide.db.names()
    wide.close()
    narrow = Node(Options(cfg("include /srv/b;"), "vpbx1-1", state, root=str(root)))
    try:
        narrow.check()
        names = narrow.db.names()
        assert {"/srv/a", "/srv/a/1", "/srv/b", "/srv/b/2"} <= names
        assert not {"/srv/c", "/srv/c/3"} & names
        assert {r.name for r in narrow.db.dirty("vpbx1-2")} == {
            "/srv/a", "/srv/a/1", "/srv/b", "/srv/b/2"}  # never sent: still to send
    finally:
        narrow.close()


def test_an_owner_is_this_groups_names_and_kept_is_any_groups() -> None:
    o = Owner(lambda n: n.startswith("/a"), lambda n: n.startswith(("/a", "/b")))
    assert o("/a/x") and not o("/b/x") and o.kept("/b/x") and not o.kept("/c")


async def test_a_forced_push_never_deletes_a_peer_file_we_do_not_include(
        tmp_path: Path) -> None:
    async with pair(tmp_path) as (n1, n2):
        await _synced_wide(n1, n2)
        _restart(n1, _narrowed(tmp_path))
        n1.node.force([("/etc/asterisk", True), ("/usr/lib/asterisk", True)])
        report = await n1.node.update()
        assert report.problems == []
        assert n2.path(NOTES).exists() and n2.path(CODEC).exists()


async def test_a_compare_lists_only_what_our_config_includes(tmp_path: Path) -> None:
    """-T listed the peer's files our narrowed config excludes as only there ('R'), and an
    -I (init) run of it would have made them deletions."""
    async with pair(tmp_path) as (n1, n2):
        await _synced_wide(n1, n2)
        n1.path(NOTES).unlink()  # gone here; on the peer, but no longer ours
        _restart(n1, _narrowed(tmp_path))
        n1.write(CONF, "a, edited here only\n")
        lines, problems = await n1.node.compare([("/etc/asterisk", True)])
        assert problems == []
        assert lines == [f"X\tvpbx1-1\tvpbx1-2\t{CONF}"]
