"""csync2's own test suite (tests/csync2_upstream, vendored) against csync2 2.0 and nonstop.

Each ``t/*.t`` runs (its TAP read as ``prove`` reads it) in its own network, mount and PID
namespace: a private copy of
``/etc/hosts`` (the suite appends its ``N.csync2.test`` names), 127.2.1.N on that namespace's
``lo`` (the suite adds them), a private ``/var/lib``. It runs once with the suite's ``csync2``
being the real csync2 2.0 and once being a wrapper that only changes the program name to
``nonstop sync``. Every assertion that passes with csync2 must pass with nonstop, except the ones
in ``SKIPPED`` (named with their reason in docs/SYNC.md).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

SUITE = Path(__file__).resolve().parents[1] / "csync2_upstream" / "tests"
CSYNC2 = "/usr/sbin/csync2"
FILES = sorted(p.name for p in (SUITE / "t").glob("*.t"))

# (file, assertion number): why nonstop does not pass it by design (docs/SYNC.md repeats these).
SKIPPED = {
    ("0004.diff.t", 10): "csync2 -T compares the two databases, nonstop -T the two disks: "
                         "2.csync2.test never checked its directory, so csync2 reports "
                         "%demodir% itself as 'R' while both disks have it",
    ("0004.diff.t", 11): "-TT needs a read-only 'send me this file' request that nonstop's "
                         "protocol does not have yet; nonstop refuses -TT with that reason",
}

PROVE_TIMEOUT = 120  # seconds for one t/*.t (nonstop takes about 10)
_TAP = re.compile(r"^(not ok|ok) (\d+) - (.*)$")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(t) for t in ("unshare", "perl", "ss", "nc"))
    or not os.path.exists(CSYNC2),
    reason="needs root, unshare, perl, ss, nc and csync2 (scripts/setup.sh installs them)",
)


def run_suite(test: str, program: list[str], work: Path) -> tuple[dict[int, tuple[bool, str]],
                                                                  str]:
    """Run one ``t/*.t`` with ``csync2`` being ``program``; (assertion -> (ok, text)), output."""
    root = work / "suite"
    shutil.copytree(SUITE, root / "tests")
    wrapper = root / "csync2"  # include.sh runs "$SOURCE_DIR/csync2", the tests' parent dir
    wrapper.write_text("#!/bin/sh\nexec " + " ".join(shlex.quote(a) for a in program)
                       + ' "$@"\n')
    wrapper.chmod(0o755)
    hosts = work / "hosts"
    log = work / "prove.log"
    shutil.copyfile("/etc/hosts", hosts)
    script = "\n".join([
        "set -e",
        "mount --make-rprivate /",
        f"mount --bind {shlex.quote(str(hosts))} /etc/hosts",
        "mount -t tmpfs tmpfs /var/lib",
        "ip link set lo up",
        f"cd {shlex.quote(str(root / 'tests'))}",
        # The TAP straight from the script (what prove reads): when the script ends, so does
        # the namespace, with any csync2 -iii a failed step left waiting.
        f"exec bash t/{shlex.quote(test)} >{shlex.quote(str(log))} 2>&1",
    ])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CSYNC2_", "NONSTOP_SYNC_"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    # --kill-child: killing unshare (at the time limit) kills the namespace's first process, and
    # with it every process in the namespace.
    proc = subprocess.Popen(
        ["unshare", "--net", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc",
         "bash", "-c", script], env=env, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + PROVE_TIMEOUT
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
    output = log.read_text(errors="replace") if log.exists() else ""
    results: dict[int, tuple[bool, str]] = {}
    for line in output.splitlines():
        m = _TAP.match(line)
        if m:
            results[int(m.group(2))] = (m.group(1) == "ok", m.group(3))
    return results, output


@pytest.mark.netns
@pytest.mark.slow
@pytest.mark.parametrize("test", FILES)
def test_upstream_suite_passes_with_only_the_program_name_changed(test: str,
                                                                   tmp_path: Path) -> None:
    # The suite starts `csync2 -iii` and its client at the same moment; now and then csync2's
    # client wins that race and the step fails (0000 then bails out). An assertion counts as
    # passing with csync2 when it passed in one of up to three runs.
    ref: dict[int, tuple[bool, str]] = {}
    for attempt in range(3):
        got, ref_out = run_suite(test, [CSYNC2], tmp_path / f"csync2-{attempt}")
        for n, (ok, text) in got.items():
            ref[n] = (ok or ref.get(n, (False, ""))[0], text)
        if got and all(ok for ok, _ in ref.values()) and len(ref) == _plan(ref_out):
            break
    assert ref, f"csync2 ran no assertion of {test}:\n{ref_out[-3000:]}"
    ours, out = run_suite(test, [sys.executable, "-m", "nonstop", "sync"], tmp_path / "nonstop")
    failed = [
        f"{n} - {text}" for n, (ok, text) in sorted(ref.items())
        if ok and (test, n) not in SKIPPED and not ours.get(n, (False, ""))[0]
    ]
    assert not failed, (f"passes with csync2 2.0, fails with nonstop: {failed}\n"
                        f"{out[-12000:]}")


def _plan(tap: str) -> int:
    m = re.search(r"^1\.\.(\d+)$", tap, re.M)
    return int(m.group(1)) if m else -1
