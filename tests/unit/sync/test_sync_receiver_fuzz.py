"""Whatever operations an authenticated peer sends, the receiver answers with results, never
raises, and never creates anything outside the included trees."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sync_harness import talk_config

from nonstop.sync.patterns import Matcher, PathMap
from nonstop.sync.plan import Op
from nonstop.sync.receiver import Receiver
from nonstop.sync.state import KINDS, FileState
from nonstop.sync.statedb import StateDB

NAMES = st.one_of(
    st.sampled_from(["/etc/asterisk", "/etc/asterisk/a.conf", "/etc/asterisk/sub",
                     "/etc/asterisk/sub/b", "/etc/hosts", "/etc/passwd", "/var/log/asterisk/full",
                     "/etc/asterisk/../x", "%data%/x", "/etc/asterisk/.hidden", "relative"]),
    st.text(alphabet="/ae.%~\x00", max_size=12).map(lambda t: "/etc/asterisk/" + t),
)
STATES = st.builds(
    FileState,
    kind=st.sampled_from([k for k in KINDS if k not in ("chr", "blk")]),
    mode=st.integers(0, 0o7777), uid=st.integers(0, 70000), gid=st.integers(0, 70000),
    size=st.integers(0, 10), mtime_ns=st.integers(0, 2**62), digest=st.text("0af", max_size=4),
    target=st.text("ab/.", max_size=6), rdev=st.just(0),
)
OPS = st.builds(
    Op, kind=st.sampled_from(["put", "del", "mv"]), name=NAMES,
    base=st.none() | STATES, new=st.none() | STATES, forced=st.booleans(), src=NAMES,
    src_base=st.none() | STATES,
)


def _snapshot(root: Path) -> set[str]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, n), root))
    return out


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(OPS, max_size=8))
def test_receiver_never_raises_and_stays_inside_includes(tmp_path: Path, ops: list[Op]) -> None:
    with tempfile.TemporaryDirectory(dir=tmp_path) as d:
        _check(Path(d), ops)


def _check(tmp_path: Path, ops: list[Op]) -> None:
    root = tmp_path / "root"
    (root / "etc/asterisk").mkdir(parents=True, exist_ok=True)
    (root / "etc/asterisk/a.conf").write_text("aa")
    cfg = talk_config(tmp_path)
    group = cfg.groups[0]
    db = StateDB(str(tmp_path / "db.db3"))
    rec = Receiver(db, Matcher(group.patterns), PathMap(str(root), {}, "vpbx1-2"), group,
                   "vpbx1-2", "vpbx1-1")
    try:
        ops = [o for o in ops if (o.kind == "del") == (o.new is None)]
        results, need, batch = rec.evaluate(ops)
        assert len(results) == len(ops)
        for i in need:
            rec.open_data(batch, i)
            rec.write(batch, i, b"xy")
            rec.end_data(batch, i, ops[i].new or FileState("reg", 0, 0, 0))
        done = rec.commit(batch)
        assert {r.index for r in done} == set(need)
        m = Matcher(group.patterns)
        for p in _snapshot(root):
            assert (m.included("/" + p) or p.startswith("var/backups/csync2/")
                    or p in ("etc", "var", "var/backups", "var/backups/csync2")), p
        assert not list(tmp_path.glob("root/**/.nonstop-tmp-*"))
    finally:
        rec.close()
        db.close()
