"""A directory a rename takes files out of is removed after those moves, not before.

A user trial renamed voicemail/default/1000 to 2000: the plan sent the directory deletions
first (deepest first, as csync2), while the files were still in them, to be moved out by the
``mv`` operations after: each standby logged ``1000/INBOX: Directory not empty`` and the run
failed until the retry.
"""

from __future__ import annotations

import os
from pathlib import Path

from sync_harness import pair

from nonstop.sync.plan import plan
from nonstop.sync.state import FileState

D = FileState("dir", 0o755, 0, 0)


def reg(data: str) -> FileState:
    return FileState("reg", 0o644, 0, 0, len(data), 1, f"d-{data}")


def _ops(local: dict[str, FileState], synced: dict[str, FileState]) -> list[tuple[str, ...]]:
    names = sorted(n for n in set(local) | set(synced) if local.get(n) != synced.get(n))
    p = plan([(n, False) for n in names], local, synced)
    return [(o.kind, o.name, o.src) if o.kind == "mv" else (o.kind, o.name) for o in p.ops]


def test_a_renamed_directory_goes_after_the_moves_out_of_it() -> None:
    vm = "/vm/default"
    synced = {vm: D, f"{vm}/1000": D, f"{vm}/1000/INBOX": D,
              f"{vm}/1000/INBOX/msg0000.txt": reg("m0"), f"{vm}/1000/INBOX/gone.txt": reg("g")}
    local = {vm: D, f"{vm}/2000": D, f"{vm}/2000/INBOX": D,
             f"{vm}/2000/INBOX/msg0000.txt": reg("m0")}
    assert _ops(local, synced) == [
        ("del", f"{vm}/1000/INBOX/gone.txt"),
        ("put", f"{vm}/2000"), ("put", f"{vm}/2000/INBOX"),
        ("mv", f"{vm}/2000/INBOX/msg0000.txt", f"{vm}/1000/INBOX/msg0000.txt"),
        ("del", f"{vm}/1000/INBOX"), ("del", f"{vm}/1000"),
    ]


def test_nested_renames_empty_each_directory_before_it_goes() -> None:
    # /a -> /b, and inside it c -> d: every old directory holds a moved file until the end
    synced = {"/a": D, "/a/f": reg("f"), "/a/c": D, "/a/c/g": reg("g"), "/a/e": D,
              "/a/e/x": reg("x-old")}
    local = {"/b": D, "/b/f": reg("f"), "/b/d": D, "/b/d/g": reg("g")}
    assert _ops(local, synced) == [
        ("del", "/a/e/x"), ("del", "/a/e"),  # nothing moves out of /a/e: first, as before
        ("put", "/b"), ("put", "/b/d"), ("mv", "/b/d/g", "/a/c/g"), ("mv", "/b/f", "/a/f"),
        ("del", "/a/c"), ("del", "/a"),
    ]


def test_a_directory_replaced_by_a_file_of_its_name_waits_for_the_moves_out_of_it() -> None:
    synced = {"/s": D, "/s/d": D, "/s/d/f": reg("f")}
    local = {"/s": D, "/s/d": reg("now a file"), "/s/f": reg("f")}
    assert _ops(local, synced) == [("mv", "/s/f", "/s/d/f"), ("put", "/s/d")]
    # and a file replaced by a directory is made before a move into it, as before
    synced = {"/s": D, "/s/d": reg("was a file"), "/s/f": reg("f")}
    local = {"/s": D, "/s/d": D, "/s/d/f": reg("f")}
    assert _ops(local, synced) == [("put", "/s/d"), ("mv", "/s/d/f", "/s/f")]


def test_a_directory_whose_mode_changes_is_not_held_back() -> None:
    synced = {"/s": D, "/s/old": reg("f")}
    local = {"/s": FileState("dir", 0o700, 0, 0), "/s/new": reg("f")}
    assert _ops(local, synced) == [("put", "/s"), ("mv", "/s/new", "/s/old")]


async def test_renaming_a_mailbox_is_one_run_without_errors(tmp_path: Path) -> None:
    vm = "/var/spool/asterisk/voicemail/default"
    async with pair(tmp_path) as (n1, n2):
        for box in ("INBOX", "Old"):
            for i in range(3):
                n1.write(f"{vm}/1000/{box}/msg{i:04d}.txt", f"{box} {i}\n" * 50)
        n1.write(f"{vm}/1000/greet.wav", os.urandom(5000))
        assert await n1.sync() == []
        os.rename(n1.path(f"{vm}/1000"), n1.path(f"{vm}/2000"))
        assert await n1.sync() == []
        assert not n2.path(f"{vm}/1000").exists()
        assert sorted(p.relative_to(n2.root) for p in n2.path(f"{vm}/2000").rglob("*")) == \
            sorted(p.relative_to(n1.root) for p in n1.path(f"{vm}/2000").rglob("*"))
        assert n1.node.dirty_lines() == []
        assert any("renamed from" in line for line in n1.log)
