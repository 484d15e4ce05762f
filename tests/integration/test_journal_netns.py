"""Under systemd, each log line reaches the journal once, with its priority (issue 10, point 4).

A real systemd-journald runs in one lab node's own mount namespace (private /run and /dev; its
journal files in the node's directory), and the daemon runs as a service's main process does:
stderr connected to the journal's stdout stream (systemd-cat), JOURNAL_STREAM naming that
stream, /dev/log being journald's syslog socket, and the talk's ``use_logd yes``. Without
JOURNAL_STREAM (a daemon that does not know where its stderr goes) every line arrives twice,
through stderr and through syslog: the same check then fails, so it can see the difference.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from nodes import NonstopCluster, talk_config

from nonstop.lab import Lab

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(not (Path("/lib/systemd/systemd-journald").exists()
                            and shutil.which("systemd-cat") and shutil.which("journalctl")),
                       reason="needs systemd-journald, systemd-cat and journalctl"),
]

NODE = "vpbx1-1"


def _journal(path: Path) -> list[dict[str, str]]:
    # journald writes its volatile journal under /run/log/journal/<machine id>/
    out = subprocess.run(["journalctl", "-D", str(path / "journal"), "-o", "json",
                          "--no-pager"],
                         capture_output=True, text=True, timeout=30)
    entries = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    return [e for e in entries if isinstance(e.get("MESSAGE"), str)
            and e.get("SYSLOG_IDENTIFIER") == "nonstop"]


def _run_under_journald(make_lab: Callable[[Sequence[str]], Lab], journal_stream: bool,
                        ) -> list[dict[str, str]]:
    lab = make_lab((NODE,))
    config = talk_config(lab.workdir / "talk", directives={"node": NODE})
    cluster = NonstopCluster(lab, config)
    journal = lab.host_dir(NODE) / "journal-files"
    journal.mkdir()
    q = shlex.quote
    run = [sys.executable, "-m", "nonstop", "run", "--config-dir", str(config),
           "--state-dir", str(cluster.state_dir(NODE)), "--node", NODE]
    stream = 'export JOURNAL_STREAM="$(stat -L -c %d:%i /proc/self/fd/2)"; ' \
        if journal_stream else "unset JOURNAL_STREAM; "
    script = f"""set -e
mount -t tmpfs nonstop-run /run
mkdir -p /run/log
mount --bind {q(str(journal))} /run/log
mount -t tmpfs -o mode=0755 nonstop-dev /dev
# ip netns exec gave this namespace a fresh /sys without cgroups; journald wants its own.
mount -t cgroup2 nonstop-cgroup /sys/fs/cgroup
mknod -m 666 /dev/null c 1 3
mknod -m 666 /dev/urandom c 1 9
ln -s /run/systemd/journal/dev-log /dev/log
/lib/systemd/systemd-journald &
for i in $(seq 100); do [ -S /run/systemd/journal/stdout ] && break; sleep 0.05; done
exec systemd-cat -t nonstop sh -c {q(stream + 'exec "$@"')} service {" ".join(map(q, run))}
"""
    proc = lab.spawn(NODE, ["sh", "-c", script], log_path=cluster.log_path(NODE),
                     name="service")
    cluster.procs[NODE] = proc
    cluster.wait_for(lambda: any("Configuration validated" in e["MESSAGE"]
                                 for e in _journal(journal)), 30,
                     what="the daemon's lines in the journal")
    # An ERROR line: a reload refused for a broken authkeys.
    (config / "authkeys").write_text("auth 7\n1 sha1 secret\n")
    assert cluster.cli(NODE, "reload").returncode == 1
    cluster.wait_for(lambda: any("reload refused" in e["MESSAGE"] for e in _journal(journal)),
                     30, what="the refused reload in the journal")
    cluster.stop(NODE)
    cluster.wait_for(lambda: any("shutdown complete" in e["MESSAGE"]
                                 for e in _journal(journal)), 30, what="the last line")
    return _journal(journal)


def test_each_line_reaches_the_journal_once_with_its_priority(
        make_lab: Callable[[Sequence[str]], Lab]) -> None:
    entries = _run_under_journald(make_lab, journal_stream=True)
    counts = Counter(e["MESSAGE"] for e in entries)
    assert [m for m, n in counts.items() if n > 1] == []
    by_text = {e["MESSAGE"]: e for e in entries}
    started = next(m for m in by_text if "Configuration validated" in m)
    assert by_text[started]["PRIORITY"] == "6" and started.startswith("info: ")
    refused = next(m for m in by_text if "reload refused" in m)
    assert by_text[refused]["PRIORITY"] == "3" and refused.startswith("ERROR: ")
    assert all(e.get("_TRANSPORT") == "stdout" for e in entries)  # none through syslog
    assert not any(m.startswith("<") for m in counts)  # journald took every prefix


def test_without_journal_stream_the_same_lines_arrive_twice(
        make_lab: Callable[[Sequence[str]], Lab]) -> None:
    entries = _run_under_journald(make_lab, journal_stream=False)
    started = [e for e in entries if "Configuration validated" in e["MESSAGE"]]
    assert sorted(e.get("_TRANSPORT", "") for e in started) == ["stdout", "syslog"]
