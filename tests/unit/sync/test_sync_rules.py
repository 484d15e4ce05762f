"""Pure cores: csync2 pattern rules, planning, conflict verdicts, backups rotation."""

from __future__ import annotations

from pathlib import Path

import pytest

from nonstop.config.csync2 import AutoMode, Pattern, load_csync2
from nonstop.config.errors import Location
from nonstop.sync import backups
from nonstop.sync.conflicts import Action, judge
from nonstop.sync.patterns import Matcher, path_pattern_matches, valid_name
from nonstop.sync.plan import Op, batches, plan, plan_forced, plan_forced_push
from nonstop.sync.state import FileState
from nonstop.talk import talk_path

TALK = load_csync2(str(talk_path("csync2.cfg"))).groups[0]


@pytest.mark.parametrize(
    ("name", "synced"),
    [
        ("/etc/asterisk/sip.conf", True),
        ("/etc/asterisk/okay.conf", True),
        ("/etc/asterisk/ok", False),
        ("/etc/asterisk/x~", False),
        ("/etc/asterisk/.hidden", False),
        ("/etc/asterisk/outgoing/control", False),
        ("/etc/asterisk/lock", False),
        ("/etc/hosts", True),
        ("/etc/hosts.allow", False),
        ("/etc/passwd", False),
        ("/etc/asterisk", True),
        ("/etc", False),
        ("/var/spool/asterisk/outgoing/call.call", True),
        ("/etc/asterisk/.nonstop-tmp-abc", False),
    ],
)
def test_talk_patterns(name: str, synced: bool) -> None:
    assert Matcher(TALK.patterns).included(name) is synced


def test_talk_walk_roots_and_pruning() -> None:
    m = Matcher(TALK.patterns)
    assert "/etc/asterisk" in m.roots() and "/etc/hosts" in m.roots()
    assert not m.descend("/etc/asterisk/.git")
    assert m.descend("/etc/asterisk/sub")


def _pats(*items: tuple[str, bool]) -> list[Pattern]:
    return [Pattern(t, inc, Location("x", 1)) for t, inc in items]


def test_path_pattern_flags() -> None:
    assert path_pattern_matches("/etc/*.conf", "/etc/a.conf")
    assert not path_pattern_matches("/etc/*.conf", "/etc/sub/a.conf")  # * stays in a component
    assert path_pattern_matches("/etc/**.conf", "/etc/sub/a.conf")  # ** crosses /
    assert path_pattern_matches("/etc/asterisk", "/etc/asterisk/deep/file")  # leading dir
    assert not path_pattern_matches("/etc/asterisk", "/etc/asterisk2")
    assert path_pattern_matches("/etc/[a-c]x", "/etc/bx")
    assert not path_pattern_matches("/etc/[!a-c]x", "/etc/bx")


def test_last_match_wins_per_category() -> None:
    m = Matcher(_pats(("/srv", True), ("/srv/private", False), ("/srv/private/pub", True),
                      ("*.tmp", False), ("keep.tmp", True)))
    assert m.included("/srv/a")
    assert not m.included("/srv/private/a")
    assert m.included("/srv/private/pub/a")
    assert not m.included("/srv/x.tmp")
    assert m.included("/srv/keep.tmp")
    assert m.roots() == ("/srv",)
    wild = Matcher(_pats(("/srv/*/conf", True)))
    assert wild.roots() == ("/srv",)
    assert wild.descend("/srv/a") and not wild.descend("/other")


@pytest.mark.parametrize("bad", ["relative", "/a/../b", "/a/./b", "/a//b", "/a/", "/a\x00b"])
def test_invalid_names(bad: str) -> None:
    assert not valid_name(bad)


def reg(data: str, mtime: int = 1, mode: int = 0o644, uid: int = 0) -> FileState:
    return FileState("reg", mode, uid, 0, len(data), mtime, f"d-{data}")


def test_plan_orders_deletions_deepest_first_then_creations() -> None:
    d = FileState("dir", 0o755, 0, 0)
    synced = {"/a": d, "/a/b": d, "/a/b/f": reg("x"), "/z": reg("z")}
    local = {"/n": d, "/n/f": reg("new"), "/z": reg("z2")}
    p = plan([(n, False) for n in ("/a", "/a/b", "/a/b/f", "/n/f", "/n", "/z", "/gone")],
             local, synced)
    assert [(o.kind, o.name) for o in p.ops] == [
        ("del", "/a/b/f"), ("del", "/a/b"), ("del", "/a"),
        ("put", "/n"), ("put", "/n/f"), ("put", "/z"),
    ]
    assert p.settled == ("/gone",)
    assert p.ops[-1].base == reg("z")


def test_plan_turns_delete_plus_identical_create_into_rename() -> None:
    p = plan([("/old", False), ("/new", False)], {"/new": reg("data", 5)}, {"/old": reg("data")})
    assert [(o.kind, o.name, o.src) for o in p.ops] == [("mv", "/new", "/old")]


def test_plan_forced_covers_peer_only_files_and_keeps_our_base() -> None:
    local = {"/e/a": reg("ours")}
    remote = {"/e/a": reg("theirs"), "/e/extra": reg("x")}
    synced = {"/e/a": reg("base")}
    ops = plan_forced(local, remote, synced, frozenset())
    assert [(o.kind, o.name, o.forced) for o in ops] == [("del", "/e/extra", True),
                                                          ("put", "/e/a", True)]
    assert ops[1].base == reg("base")


def test_a_forced_push_records_again_only_what_our_record_of_the_peer_gets_wrong() -> None:
    """At a takeover the peer is usually in step: an equal file whose record already says so
    is not written again (20,000 writes for 20,000 voicemail files); an equal file recorded
    otherwise, never recorded, or dirty, is."""
    same, dirty, stale, unknown = reg("same"), reg("dirty"), reg("stale"), reg("unknown")
    local = {"/e/same": same, "/e/dirty": dirty, "/e/stale": stale, "/e/unknown": unknown}
    synced = {"/e/same": same, "/e/dirty": dirty, "/e/stale": reg("older")}
    fp = plan_forced_push(local, dict(local), synced, frozenset(), [("/e", True)],
                          [("/e/dirty", False)])
    assert fp.ops == [] and fp.left == [] and fp.gone == []
    assert sorted(n for n, _ in fp.equal) == ["/e/dirty", "/e/stale", "/e/unknown"]


def test_a_forced_push_defers_a_deleted_directory_above_a_dirty_row_left() -> None:
    """A deleted directory goes after a dirty row below it that its scope does not cover (``-f``
    of the directory alone); a dirty name that neither side holds is recorded as gone."""
    gone_dir, x = FileState("dir", 0o755, 0, 0), reg("x")
    fp = plan_forced_push({}, {"/e/gone": gone_dir, "/e/gone/x": x}, {}, frozenset(),
                          [("/e/gone", True)], [("/e/gone/x", False), ("/f/other", False)])
    assert fp.left == [("/f/other", False)] and fp.later == []
    assert [(o.kind, o.name) for o in fp.first()] == [("del", "/e/gone/x"), ("del", "/e/gone")]
    fp = plan_forced_push({}, {"/e/gone": gone_dir}, {}, frozenset(), [("/e/gone", False)],
                          [("/e/gone/sub/new", False)])
    assert fp.left == [("/e/gone/sub/new", False)]
    assert [(o.kind, o.name) for o in fp.later] == [("del", "/e/gone")] and fp.first() == []
    fp = plan_forced_push({}, {}, {}, frozenset(), [("/e", True)], [("/e/vanished", False)])
    assert fp.ops == [] and fp.gone == [("/e/vanished", None)]


def test_batches_bounded_in_count_and_bytes() -> None:
    ops = [Op("put", f"/f{i}", None, reg("x" * 10)) for i in range(25)]
    assert [len(b) for b in batches(ops, max_ops=10)] == [10, 10, 5]
    assert [len(b) for b in batches(ops, max_bytes=35)] == [3] * 8 + [1]


def _judge(base: FileState | None, new: FileState | None, cur: FileState | None,
           auto: AutoMode = AutoMode.NONE, forced: bool = False) -> Action:
    return judge("/f", base, new, cur, forced=forced, auto=auto, sender="s", receiver="r",
                 hosts=("s", "r")).action


def test_a_forced_change_of_a_name_unchanged_here_says_only_the_receiver_changed_it() -> None:
    a, b, c = reg("a"), reg("b"), reg("c")
    untouched = judge("/f", a, a, b, forced=True, auto=AutoMode.NONE, sender="s",
                      receiver="r", hosts=("s", "r"))
    assert untouched.action is Action.FORCE
    assert "/f changed on r since the last sync (changed content" in untouched.reason
    assert "both" not in untouched.reason and "metadata" not in untouched.reason
    edited = judge("/f", a, c, b, forced=True, auto=AutoMode.NONE, sender="s", receiver="r",
                   hosts=("s", "r"))
    assert "changed on both s and r" in edited.reason


def test_judge_fast_forward_same_and_conflict() -> None:
    a, b, c = reg("a"), reg("b"), reg("c")
    assert _judge(a, b, a) is Action.APPLY
    assert _judge(a, b, b) is Action.SAME
    assert _judge(None, a, None) is Action.APPLY
    assert _judge(a, None, None) is Action.SAME
    assert _judge(a, b, c) is Action.CONFLICT
    assert _judge(None, a, b) is Action.CONFLICT
    assert _judge(a, None, c) is Action.CONFLICT
    assert _judge(a, b, c, forced=True) is Action.FORCE


def test_a_conflict_says_where_to_resolve_it_under_the_daemon() -> None:
    """A PBX trial: the advice 'on the node whose version should win' failed on the standby
    (the holder takes no pushes from it) and left a pending force there."""
    v = judge("/etc/asterisk/sip.conf", reg("a"), reg("b"), reg("c"), forced=False,
              auto=AutoMode.NONE, sender="vpbx1-1", receiver="vpbx1-2",
              hosts=("vpbx1-1", "vpbx1-2"))
    assert v.action is Action.CONFLICT
    assert v.reason.endswith(
        "resolve with: nonstop sync -f /etc/asterisk/sip.conf on the node whose version should "
        "win (with the daemon, the node holding the group: copy the other node's version to it "
        "first to keep that one)")


def test_judge_identical_content_with_other_mtimes_is_not_a_conflict() -> None:
    # one file installed on both nodes of a new cluster at different times
    assert _judge(None, reg("hosts", mtime=5), reg("hosts", mtime=9)) is Action.APPLY
    assert _judge(reg("x"), reg("y", mtime=5), reg("y", mtime=9)) is Action.APPLY
    # a different mode or owner on each side still is one, as in csync2 (SETMOD/SETOWN)
    assert _judge(None, reg("h", mode=0o600), reg("h", mtime=9)) is Action.CONFLICT
    assert _judge(None, reg("h", uid=5), reg("h", mtime=9)) is Action.CONFLICT


def test_judge_same_size_same_mtime_different_content_is_a_change() -> None:
    assert _judge(reg("aaaa"), reg("bbbb"), reg("cccc")) is Action.CONFLICT
    assert _judge(reg("aaaa"), reg("bbbb"), reg("aaaa")) is Action.APPLY


def test_judge_auto_modes() -> None:
    old, new = reg("sender", mtime=10), reg("receiver!", mtime=5)
    base = reg("base")
    assert _judge(base, old, new, AutoMode.YOUNGER) is Action.AUTO_WIN
    assert _judge(base, old, new, AutoMode.OLDER) is Action.LOSE
    assert _judge(base, old, new, AutoMode.BIGGER) is Action.LOSE
    assert _judge(base, old, new, AutoMode.SMALLER) is Action.AUTO_WIN
    assert _judge(base, old, new, AutoMode.FIRST) is Action.AUTO_WIN
    assert _judge(base, old, new, AutoMode.LEFT) is Action.AUTO_WIN
    assert _judge(base, old, new, AutoMode.RIGHT) is Action.LOSE
    # a deletion never wins under younger/older/bigger/smaller
    assert _judge(base, None, new, AutoMode.YOUNGER) is Action.LOSE
    assert _judge(base, old, None, AutoMode.OLDER) is Action.AUTO_WIN
    # ties stay conflicts
    assert _judge(base, reg("x", 3), reg("y", 3), AutoMode.YOUNGER) is Action.CONFLICT


def test_judge_reason_names_both_sides() -> None:
    v = judge("/etc/asterisk/sip.conf", reg("a"), reg("b"), None, forced=False,
              auto=AutoMode.NONE, sender="vpbx1-1", receiver="vpbx1-2",
              hosts=("vpbx1-1", "vpbx1-2"))
    assert "vpbx1-2: deleted" in v.reason and "vpbx1-1: changed content" in v.reason
    assert "nonstop sync -f /etc/asterisk/sip.conf" in v.reason


@pytest.mark.parametrize("generations", [0, 1, 2, 5])
def test_backup_rotation_keeps_exactly_n(tmp_path: Path, generations: int) -> None:
    f = tmp_path / "live"
    bdir = tmp_path / "bak"
    f.write_text("v0")
    for i in range(1, 9):
        backups.keep(str(f), str(bdir), "/etc/x.conf", generations)
        # the receiver always replaces a backed-up file by rename, never in place
        (tmp_path / "new").write_text(f"v{i}")
        (tmp_path / "new").replace(f)
    kept = backups.generations_of(str(bdir), "/etc/x.conf")
    assert [Path(k).read_text() for k in kept] == [f"v{i}" for i in range(7, 7 - generations, -1)]


@pytest.mark.parametrize("generations", [1, 2, 5])
def test_backups_of_a_name_that_turns_file_directory_file_never_block(
        tmp_path: Path, generations: int) -> None:
    """A file's backups and a directory of backups under one name: each rotates the other out
    of the way as an older generation, the oldest falls off, and no backup raises."""
    f = tmp_path / "live"
    bdir = tmp_path / "bak"
    for round_no in range(3):
        f.write_text(f"x{round_no}")
        backups.keep(str(f), str(bdir), "/etc/x", generations)
        backups.keep(str(f), str(bdir), "/etc/x/a", generations)
        backups.keep(str(f), str(bdir), "/etc/x/sub/b", generations)
        assert (bdir / "etc/x/a").read_text() == f"x{round_no}"
        backups.keep(str(f), str(bdir), "/etc/x", generations)
        assert (bdir / "etc/x").read_text() == f"x{round_no}"
    kept = backups.generations_of(str(bdir), "/etc/x")
    assert 1 <= len(kept) <= generations


def test_a_backup_that_cannot_be_kept_says_so(tmp_path: Path) -> None:
    f = tmp_path / "live"
    f.write_text("v")
    (tmp_path / "bak").write_text("a file where the backup directory should be")
    with pytest.raises(OSError, match=r"cannot keep its old version in .*bak"):
        backups.keep(str(f), str(tmp_path / "bak"), "/etc/x", 2)


@pytest.mark.parametrize("rules", [
    (("/d", True), ("*~", False), (".*", False), ("ok", False)),
    (("/d", True), ("*.conf", False), ("keep*", True), ("*x*", False)),
    (("/d", True), ("a*", True), ("*b", False), ("ab*", True), ("*c", False), ("[!z]", False)),
])
def test_child_filter_decides_as_included(rules: tuple[tuple[str, bool], ...]) -> None:
    """The per-directory filter folds runs of basename rules into one regex each: the last
    matching rule must still decide, as in included()."""
    m = Matcher(_pats(*rules))
    check = m.child_filter("/d/sub")
    for base in ("a", "ab", "abc", "ab.conf", "keep.conf", "keepx", "x~", ".h", "ok", "b",
                 "cb", "c", "z", "y", "xb", "plain"):
        assert check(f"/d/sub/{base}", base) is m.included(f"/d/sub/{base}"), base


def test_a_backup_copy_that_fails_leaves_no_partial_copy_and_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import os
    import shutil

    f = tmp_path / "live"
    f.write_bytes(b"x" * 10_000)

    def cross_device(*_a: object, **_k: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    def disk_full(src: str, dst: str, **_k: object) -> None:
        Path(dst).write_bytes(b"x" * 100)  # a partial copy, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "link", cross_device)
    monkeypatch.setattr(shutil, "copy2", disk_full)
    with pytest.raises(OSError, match=r"cannot keep its old version in .*: No space left"):
        backups.keep(str(f), str(tmp_path / "bak"), "/etc/x.conf", 2)
    assert not (tmp_path / "bak/etc/x.conf").exists()


@pytest.mark.parametrize("linked", [True, False])
def test_a_failed_update_retried_keeps_the_backup_history(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, linked: bool) -> None:
    """A change that fails after its backup (a read-only file system, `chattr +i`) is retried
    by every run: each attempt used to rotate the generations, until all of them were copies
    of the current file and the real history was gone. Without hard links (another file
    system, an immutable file) the backups are copies, so a copy counts as the same too."""
    import errno
    import os

    if not linked:
        def cross_device(*_a: object, **_k: object) -> None:
            raise OSError(errno.EXDEV, "Invalid cross-device link")

        monkeypatch.setattr(os, "link", cross_device)
    f, bdir = tmp_path / "live", str(tmp_path / "bak")
    f.write_text("v0")
    for i in range(1, 6):
        backups.keep(str(f), bdir, "/etc/x.conf", 5)
        (tmp_path / "new").write_text(f"v{i}")
        (tmp_path / "new").replace(f)
    for _ in range(6):  # the update fails after its backup, and is retried
        backups.keep(str(f), bdir, "/etc/x.conf", 5)
    kept = backups.generations_of(bdir, "/etc/x.conf")
    assert [Path(k).read_text() for k in kept] == ["v5", "v4", "v3", "v2", "v1"]
    (tmp_path / "new").write_text("v6")  # the update works at last
    (tmp_path / "new").replace(f)
    backups.keep(str(f), bdir, "/etc/x.conf", 5)
    kept = backups.generations_of(bdir, "/etc/x.conf")
    assert [Path(k).read_text() for k in kept] == ["v6", "v5", "v4", "v3", "v2"]
