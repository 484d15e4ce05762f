"""The replicator's inotify watches on trees a PBX may really have: very deep ones, one deeper
than a path may be, and more directories than the kernel grants watches. Before, a tree 1,100
directories deep raised RecursionError and one past PATH_MAX or the watch limit an OSError,
and either ended the daemon's replication start."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nonstop.sync.inotify import Watcher

HERE = Path(__file__).parent


def _chain(top: Path, levels: int, name: str) -> None:
    """``levels`` nested directories named ``name`` below ``top``, made relative to an open
    directory (the deep end may have no path the kernel takes)."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(levels):
            os.mkdir(name, dir_fd=fd)
            nxt = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nxt
    finally:
        os.close(fd)


def _unchain(top: Path, levels: int, name: str) -> None:
    """Remove what :func:`_chain` made (and the files at its deep end), without recursion:
    pytest's clean-up of its temporary directories would recurse as deep as the tree."""
    fds = [os.open(top, os.O_RDONLY | os.O_DIRECTORY)]
    try:
        for _ in range(levels):
            fds.append(os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fds[-1]))
        for entry in os.listdir(fds[-1]):
            os.unlink(entry, dir_fd=fds[-1])
        while len(fds) > 1:
            os.close(fds.pop())
            os.rmdir(name, dir_fd=fds[-1])
    finally:
        for fd in fds:
            os.close(fd)


async def test_a_tree_deeper_than_the_recursion_limit_is_watched_to_its_end(
        tmp_path: Path) -> None:
    levels = sys.getrecursionlimit() + 100
    _chain(tmp_path, levels, "a")
    seen: list[str] = []
    w = Watcher(lambda path, _d, _n: seen.append(path or ""), lambda _p: True)
    try:
        assert w.add_tree(str(tmp_path)) and w.error == ""
        assert w.watch_count == levels + 1
        w.start()
        deepest = tmp_path / "/".join(["a"] * levels)
        (deepest / "vm.txt").write_text("x")
        deadline = time.monotonic() + 5
        while str(deepest / "vm.txt") not in seen and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert str(deepest / "vm.txt") in seen
    finally:
        w.close()
        _unchain(tmp_path, levels, "a")


def test_a_tree_deeper_than_a_path_may_be_is_watched_as_far_as_the_kernel_takes(
        tmp_path: Path) -> None:
    _chain(tmp_path, 25, "d" * 200)  # 5,000 bytes of path below tmp_path
    w = Watcher(lambda *_a: None, lambda _p: True)
    try:
        assert w.add_tree(str(tmp_path)) and w.error == ""
        assert 10 < w.watch_count < 25  # up to 4,096 bytes
    finally:
        w.close()


SCRIPT = """
import asyncio, os, sys
sys.path.insert(0, sys.argv[2])
from pathlib import Path
from nonstop.sync.inotify import Watcher
from nonstop.sync.replicator import Replicator
from sync_harness import free_port, make_node, talk_config

with open("/proc/sys/user/max_inotify_watches", "w") as f:  # this user namespace's own
    f.write("8")
tmp = Path(sys.argv[1])
w = Watcher(lambda *a: None, lambda p: True)
print("watcher", w.add_tree(str(tmp / "many")), w.watch_count, w.error)
w.close()

async def main():
    n1 = make_node(tmp, "vpbx1-1", talk_config(tmp), free_port(), {"vpbx1-1": "127.0.0.1"})
    r = Replicator(n1.node, full_scan_interval=3600)
    await r.start()
    print("replicator", r.status().get("watch_error"))
    await r.stop()
    n1.node.close()
asyncio.run(main())
"""


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux's unshare")
def test_out_of_watches_is_said_and_replication_starts_all_the_same(tmp_path: Path) -> None:
    """Run in a user namespace of its own, whose watch limit (8) is set without touching the
    machine's."""
    for i in range(20):
        (tmp_path / "many" / f"mailbox{i}").mkdir(parents=True)
        (tmp_path / "vpbx1-1/var/spool/asterisk/voicemail/default" / str(1000 + i)).mkdir(
            parents=True)
    done = subprocess.run(["unshare", "-U", "-r", sys.executable, "-c", SCRIPT, str(tmp_path),
                           str(HERE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert lines["watcher"].startswith("False ")
    assert "out of inotify watches (sysctl fs.inotify.max_user_watches" in lines["watcher"]
    assert "out of inotify watches" in lines["replicator"]
    assert lines["replicator"].endswith("; the periodic scan finds the rest")
