"""Nothing the project runs names a path of the machine it was developed on (issue 10: the tests
once read the talk's files from the development tree's sibling folder, and failed everywhere
else). The talk's files come from the package (``nonstop.talk``); other files from paths
relative to the repository."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHECKED = ("src", "tests", "bench", "scripts", ".ci")
# Written in pieces so that this file does not match itself.
MACHINE_PATH = re.compile(
    r"(?<![\w>}\])])(" + "|".join(re.escape(p) for p in (
        "/" + "work/", "/" + "home/", "/" + "root/", "/" + "Users/", ".." + "/shared",
        "." + "pyenv",
    )) + ")")


def offending_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if MACHINE_PATH.search(line)]


def test_the_pattern_catches_machine_paths_and_spares_proc_paths() -> None:
    assert offending_lines('TALK = Path("/' + 'work/shared/reference/talk/csync2.cfg")')
    assert offending_lines("see ../" + "shared/reference/README.md")
    assert offending_lines("PYTHON=/" + "root/." + "pyenv/versions/3.11.7/bin/python3")
    assert not offending_lines('Path(f"/proc/{holder.pid}/root") / "srv"')
    assert not offending_lines("``/proc/<holder>/root/...``")
    assert not offending_lines("/var/tmp/nonstop-lab/n1/tmp")


def test_no_file_names_a_path_of_the_development_machine() -> None:
    found = []
    for top in CHECKED:
        for path in sorted((REPO / top).rglob("*")):
            # Build products (pip's egg-info copies README, which may name the development
            # tree's layout) are not the project's files.
            if not path.is_file() or any(part == "__pycache__" or part.endswith(".egg-info")
                                         for part in path.parts):
                continue
            try:
                text = path.read_text()
            except UnicodeDecodeError:
                continue  # binary fixtures (captured packets)
            found += [f"{path.relative_to(REPO)}: {line}" for line in offending_lines(text)]
    assert found == []
