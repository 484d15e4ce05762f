"""No module of the package is longer than a reader can take in (issue 11: "no module over
~600 lines"): past the bound, move a whole concern into a module of its own."""

from __future__ import annotations

from pathlib import Path

import nonstop

MAX_LINES = 580


def test_every_module_is_within_the_bound() -> None:
    src = Path(nonstop.__file__).parent
    modules = sorted(src.rglob("*.py"))
    assert len(modules) > 100  # the walk found the package, so the check below means something
    too_long = {p.relative_to(src).as_posix(): n for p in modules
                if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert too_long == {}

