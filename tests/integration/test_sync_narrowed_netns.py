"""csync2.cfg narrowed on the pushing node only: the next `nonstop sync -x` between namespace
hosts leaves the peer's copies of the names it no longer matches alone, and nothing stays dirty
(a user trial: the push deleted them, and the deletions stayed dirty for ever)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
from test_sync_netns import SyncLab

from nonstop.lab import Lab

pytestmark = pytest.mark.netns


@pytest.fixture
def narrowing(make_lab: Callable[[Sequence[str]], Lab]) -> SyncLab:
    return SyncLab(make_lab(("n1", "n2")))


def test_a_narrowed_config_leaves_the_peers_files_alone(narrowing: SyncLab) -> None:
    slab = narrowing
    slab.serve("n2")
    r1, r2 = slab.root("n1"), slab.root("n2")
    (r1 / "usr/lib/asterisk/modules").mkdir(parents=True)
    (r2 / "usr/lib").mkdir(parents=True)
    (r1 / "usr/lib/asterisk/modules/codec_g729.so").write_bytes(b"licensed codec\n")
    (r1 / "etc/asterisk/notes.tmp").write_text("operator notes\n")
    (r1 / "etc/asterisk/a.conf").write_text("a\n")
    code, out = slab.sync("n1", "-xv")
    assert code == 0, out
    assert (r2 / "usr/lib/asterisk/modules/codec_g729.so").exists()
    cfg = slab.config("n1")
    cfg.write_text(cfg.read_text().replace("    include /usr/lib/asterisk;\n", "").replace(
        "exclude *~ .* ok lock control;", "exclude *~ .* ok lock control;\n    exclude *.tmp;"))
    (r1 / "etc/asterisk/a.conf").write_text("a, edited\n")
    code, out = slab.sync("n1", "-xv")
    assert code == 0, out
    assert "deleted" not in out
    assert (r2 / "usr/lib/asterisk/modules/codec_g729.so").read_bytes() == b"licensed codec\n"
    assert (r2 / "etc/asterisk/notes.tmp").read_text() == "operator notes\n"
    assert (r2 / "etc/asterisk/a.conf").read_text() == "a, edited\n"
    code, out = slab.sync("n1", "-M")
    assert code == 2, out  # nothing dirty
