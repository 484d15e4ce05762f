"""Paths the kernel will not look at: an include longer than a file name may be, a directory
tree deeper than PATH_MAX. Before, either ended every scan with a traceback (`-cr`, `-x`, `-T`
and the daemon alike: "OSError: [Errno 36] File name too long"), and nothing replicated; now
each is said once as not replicated, and the rest of the tree replicates."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from sync_harness import KEY

from nonstop.sync.cli import sync_command

LONG = "x" * 300  # over NAME_MAX (255)


def _deeper_than_path_max(top: Path) -> str:
    """A chain of directories whose full path is over 4096 bytes, made one level at a time
    (relative to an open directory, as nothing can name the deep end in one path)."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    depth = 0
    try:
        while len(str(top)) + depth * 201 < 4300:
            os.mkdir("d" * 200, dir_fd=fd)
            nxt = os.open("d" * 200, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nxt
            depth += 1
        made = os.open("deep.conf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(made, b"x\n")
        os.close(made)
    finally:
        os.close(fd)
    return str(top / "/".join(["d" * 200] * depth))


def test_a_too_long_include_and_a_too_deep_tree_are_skipped_not_fatal(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "nonstop.sync")
    tree = tmp_path / "tree"
    (tree / "deep").mkdir(parents=True)
    (tree / "sip.conf").write_text("[general]\n")
    deep_end = _deeper_than_path_max(tree / "deep")
    key = tmp_path / "key"
    key.write_text(KEY + "\n")
    cfg = tmp_path / "csync2.cfg"
    cfg.write_text(f"group g {{ host n1 n2; key {key}; include {tmp_path}/{LONG}/b; "
                   f"include {tree}; }}\n")
    (tmp_path / "db").mkdir()
    common = ["-N", "n1", "--config", str(cfg), "-D", str(tmp_path / "db")]
    r = CliRunner().invoke(sync_command, [*common, "-cr", "/"])
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output and r.exception is None
    warned = [m.getMessage() for m in caplog.records if m.name == "nonstop.sync"]
    # The include that cannot exist, and the deep chain where the kernel stops taking its
    # path: one line each, with the kernel's reason and no advice to rename.
    assert f"not replicated: {tmp_path}/{LONG}/b: File name too long" in warned
    deep = [m for m in warned if m.startswith(f"not replicated: {tree}/deep/")]
    assert len(deep) == 1 and deep[0].endswith(": File name too long"), warned
    assert len(warned) == 2
    # Everything else was recorded, and the deep end was not.
    listed = CliRunner().invoke(sync_command, [*common, "-M"])
    assert listed.exit_code == 0, listed.output
    assert f"{tree}/sip.conf" in listed.output
    assert deep_end + "/deep.conf" not in listed.output
