"""An interpreter that starts as on a machine where nonstop is installed and nothing else.

This machine's site-packages hold a ``.pth`` file that is not part of any Debian install (the
sandbox's CA injector, ``_sandboxing_egress_ca.pth``): it imports certifi, and with it
importlib.resources, zipfile, tempfile and more, at the start of every Python process, about
25 ms here. A start-up figure measured with it says more about the sandbox than about nonstop.

The clean interpreter is a venv of the same Python without system site-packages: its one
``.pth`` names the directories nonstop and its dependencies are imported from, so nothing else
runs at start-up (lines of a ``.pth`` file only extend ``sys.path``; the ``.pth`` files in
those directories are not read).
"""

from __future__ import annotations

import site
import sys
import sysconfig
import venv
from pathlib import Path

import nonstop


def clean_python(workdir: Path) -> Path:
    """Create (once) and return the clean interpreter under ``workdir``."""
    home = workdir / "clean-python"
    python = home / "bin" / "python3"
    if python.exists():
        return python
    venv.EnvBuilder(with_pip=False, symlinks=True, clear=True).create(home)
    dirs = [str(Path(nonstop.__file__).resolve().parents[1])]
    dirs += [d for d in [*site.getsitepackages(), sysconfig.get_paths()["purelib"]]
             if d not in dirs and Path(d).is_dir()]
    purelib = Path(sysconfig.get_paths(vars={"base": str(home), "platbase": str(home)})["purelib"])
    purelib.mkdir(parents=True, exist_ok=True)
    (purelib / "nonstop-bench.pth").write_text("".join(f"{d}\n" for d in dict.fromkeys(dirs)))
    return python


if __name__ == "__main__":
    print(clean_python(Path(sys.argv[1])))
