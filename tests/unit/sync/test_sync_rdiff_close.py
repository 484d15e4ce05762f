"""librsync state closed by the event loop while a worker thread still runs on it.

A push's task cancelled during ``await asyncio.to_thread(delta.feed, ...)`` (a takeover cuts a
catch-up push short) closed its Delta while the thread was still in ``rs_job_iter``: the daemon
died of a segfault (a core dump in librsync, test_replication_live, 2026-12-06). The child
process below does the same on purpose, many times; it must end normally."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from nonstop.sync import rdiff

pytestmark = pytest.mark.skipif(not rdiff.available(), reason="librsync2 is not installed")

CHILD = r"""
import os, sys, tempfile, threading, time
from nonstop.sync import rdiff

old = os.urandom(8 << 20)
fd, path = tempfile.mkstemp()
os.write(fd, old)
sig = b"".join(rdiff.signature(fd, len(old)))
new = old[: 4 << 20] + os.urandom(12 << 20)
outcomes = {"done": 0, "closed": 0}
for i in range(int(sys.argv[1])):
    for kind in ("delta", "patch"):
        if kind == "delta":
            job = rdiff.Delta()
            job.signature(sig, True)
            work = lambda: job.feed(new, True)
        else:
            job = rdiff.Patch(fd)
            d = rdiff.Delta()
            d.signature(sig, True)
            stream = d.feed(new, True)
            d.close()
            work = lambda: job.feed(stream, True)

        def run():
            try:
                work()
                outcomes["done"] += 1
            except rdiff.RdiffError:
                outcomes["closed"] += 1

        t = threading.Thread(target=run)
        t.start()
        time.sleep(0.001 * (i % 7))
        job.close()  # as the cancelled task's clean-up did, on another thread
        t.join()
        job.close()
print("ok", outcomes["done"], outcomes["closed"])
"""


def test_closing_while_a_worker_thread_feeds_is_safe() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    done = subprocess.run([sys.executable, "-c", CHILD, "8"], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.startswith("ok "), done.stdout
