"""bench/run.py regenerates docs/BENCHMARKS.md's tables and keeps its hand-written part."""

from __future__ import annotations

from pathlib import Path

from bench.run import HAND_MARKER, with_hand_written


def test_hand_written_part_survives_a_new_run(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    assert with_hand_written("# new\n", out) == "# new\n"  # no file yet
    out.write_text("# old tables\n")
    assert with_hand_written("# new\n", out) == "# new\n"  # nothing by hand
    out.write_text(f"# old tables\n\n{HAND_MARKER}\n## Findings\nkept\n")
    assert with_hand_written("# new\n", out) == f"# new\n\n{HAND_MARKER}\n## Findings\nkept\n"
