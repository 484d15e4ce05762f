"""A copy of this checkout somewhere else (/tmp, /srv ...), run as on a machine where that copy
is the only nonstop: issue 10's "from a fresh clone anywhere"."""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEPENDENCIES = ("click", "aiosmtpd")


@contextlib.contextmanager
def fresh_checkout(under: str, parts: Sequence[str] = ("src",),
                   ) -> Iterator[tuple[Path, dict[str, str]]]:
    """Copy ``parts`` of this checkout into a new directory under ``under``; yield it and the
    environment to run it with: a virtualenv (under /var/tmp) whose ``python3`` is first on
    PATH, and a PYTHONPATH naming the copy's src/, the copy itself and the directories holding
    the dependencies, so that no installed nonstop (an editable install of the development
    tree) can stand in for the copy. Both are removed afterwards."""
    deps = set()
    for name in DEPENDENCIES:
        module = importlib.import_module(name)
        assert module.__file__ is not None
        deps.add(str(Path(module.__file__).resolve().parents[1]))
    Path(under).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="nonstop-checkout-", dir=under) as tmp, \
            tempfile.TemporaryDirectory(prefix="nonstop-venv-", dir="/var/tmp") as venv:
        checkout = Path(tmp)
        for part in parts:
            shutil.copytree(REPO / part, checkout / part,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
        env = dict(os.environ,
                   PYTHONPATH=os.pathsep.join([str(checkout / "src"), str(checkout),
                                               *sorted(deps)]),
                   PATH=f"{venv}/bin:{os.environ.get('PATH', '')}")
        imported = subprocess.run(["python3", "-c", "import nonstop; print(nonstop.__file__)"],
                                  env=env, cwd=checkout, capture_output=True, text=True)
        assert imported.stdout.strip() == f"{checkout}/src/nonstop/__init__.py", imported
        yield checkout, env
