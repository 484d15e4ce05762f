"""A checkout under a path lab hosts see privately stays importable by the programs a lab
starts (issue 10: ``nonstop demo`` from /tmp, the sync bench from /srv)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import nonstop.lab.lab as lab_module
from nonstop.lab import Lab
from nonstop.lab.mounts import Bind, order_binds


def test_the_code_root_is_the_directory_nonstop_is_imported_from() -> None:
    import nonstop

    assert Path(nonstop.__file__).resolve().parent.parent == lab_module.CODE_ROOT


def test_code_hidden_by_a_mount_is_mounted_again_at_a_visible_place(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lab_module, "CODE_ROOT", Path("/tmp/clone/src"))
    lab = Lab(("n1",))
    assert lab.code_binds(["/etc/hosts", "/tmp"]) == {str(lab.code_dir): Path("/tmp/clone/src")}
    assert lab.code_binds(["/srv"]) == {}
    monkeypatch.setattr(lab_module, "CODE_ROOT", Path("/srv/clone/src"))
    assert lab.code_binds(["/tmp", "/srv"]) == {str(lab.code_dir): Path("/srv/clone/src")}
    # The code is mounted before /tmp hides it, wherever it comes in the list.
    monkeypatch.setattr(lab_module, "CODE_ROOT", Path("/tmp/clone/src"))
    binds = lab._with_code([Bind("/var/tmp/x/tmp", "/tmp")])
    assert [b.target for b in order_binds(binds)] == [str(lab.code_dir), "/tmp"]


def test_programs_find_the_code_dir_first_on_their_path() -> None:
    lab = Lab(("n1",))
    env = lab.child_env({"PYTHONPATH": "/elsewhere", "X": "1"})
    assert env["PYTHONPATH"] == f"{lab.code_dir}:/elsewhere" and env["X"] == "1"


def test_a_python_under_a_private_path_is_refused_at_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "prefix", "/tmp/venv")
    with pytest.raises(ValueError, match=r"Python \(/tmp/venv\) is under /tmp"):
        Lab(("n1",))
