"""MailTo mail that arrives (issue 10, point 6), with a real daemon in a namespace.

Through the local MTA: Debian's nullmailer, unpacked from its package (scripts/setup.sh
downloads it; installing it would give the whole machine a sendmail) and overlaid on the node's
own /usr, /etc and /var/spool only. The daemon finds /usr/sbin/sendmail, hands it the takeover
and release notices; nullmailer queues them and relays them over SMTP to a mail sink in the
node's namespace. Through SMTP: ``nonstop_mailrelay`` names the sink, which gets the same mails.
"""

from __future__ import annotations

import glob
import json
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from nodes import NonstopCluster, talk_config

from nonstop.lab import Lab, LabProcess

pytestmark = pytest.mark.netns

NODE = "vpbx1-1"
# Where scripts/setup.sh leaves the Debian packages the tests unpack (never installed).
DEB_DIR = Path("/var/cache/nonstop-tests")
SINK_PORT = 2525
OVERLAID = ("/usr/sbin", "/usr/bin", "/usr/lib", "/etc", "/var/spool")


def _nullmailer_deb() -> Path | None:
    found = sorted(glob.glob(str(DEB_DIR / "nullmailer_*.deb")))
    return Path(found[-1]) if found else None


def _start_sink(lab: Lab, mails: Path) -> LabProcess:
    sink = lab.spawn(NODE, [sys.executable, "-m", "aiosmtpd", "-n", "-l",
                            f"127.0.0.1:{SINK_PORT}", "-c", "nonstop.demo.mailsink.MailLog",
                            str(mails)], name="smtp-sink")
    NonstopCluster.wait_for(
        lambda: lab.run(NODE, ["ss", "-Hltn", f"sport = :{SINK_PORT}"]).stdout.strip()
        or not sink.running, 20, what="the mail sink to listen")
    assert sink.running, sink.read_log()
    return sink


def _mails(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _node_with_mailto(make_lab: Callable[[Sequence[str]], Lab],
                      directives: dict[str, str | None]) -> tuple[Lab, NonstopCluster]:
    lab = make_lab((NODE,))
    config = talk_config(lab.workdir / "talk", haresources=f"{NODE} MailTo::ops@example.com::PBX\n",
                         directives={"node": NODE, **directives})
    return lab, NonstopCluster(lab, config)


def _check_notices(mails: list[dict[str, Any]]) -> None:
    subjects = [m["subject"] for m in mails]
    assert len(subjects) == 2, subjects
    assert subjects[0].startswith("PBX Takeover in progress at ") and subjects[0].endswith(
        f" on {NODE}")
    assert subjects[1].startswith("PBX Migrating resource away at ") and subjects[1].endswith(
        f" from {NODE}")
    assert all(m["rcpt_tos"] == ["ops@example.com"] for m in mails)
    assert all(m["mail_from"] == f"root@{NODE}" for m in mails)


@pytest.mark.skipif(_nullmailer_deb() is None or shutil.which("dpkg-deb") is None,
                    reason=f"needs nullmailer's package in {DEB_DIR} (scripts/setup.sh)")
def test_mail_goes_through_the_local_mta_nullmailer(
        make_lab: Callable[[Sequence[str]], Lab]) -> None:
    deb = _nullmailer_deb()
    assert deb is not None
    lab, cluster = _node_with_mailto(make_lab, {})
    # The node's own layer over /usr, /etc and /var/spool: nullmailer's files, its relay,
    # and its spool as its postinst and tmpfiles.d would make them.
    node_fs = lab.host_dir(NODE) / "mta"
    upper, work = node_fs / "upper", node_fs / "work"
    unpacked = node_fs / "deb"
    unpacked.mkdir(parents=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True)
    for d in OVERLAID:
        (upper / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
        (work / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", f"{unpacked}/.", str(upper)], check=True)
    (upper / "etc/nullmailer/remotes").write_text(f"127.0.0.1 smtp --port={SINK_PORT}\n")
    (upper / "etc/mailname").write_text(f"{NODE}\n")
    spool = upper / "var/spool/nullmailer"
    subprocess.run(["mkfifo", str(spool / "trigger")], check=True)
    subprocess.run(["chown", "-R", "mail:mail", str(spool)], check=True)
    mounts = "".join(
        f"mount -t overlay nonstop-mta -o lowerdir={d},upperdir={shlex.quote(str(upper))}{d},"
        f"workdir={shlex.quote(str(work))}{d} {d}\n" for d in OVERLAID)
    mails = lab.host_dir(NODE) / "mails.jsonl"  # not under /tmp: the node's /tmp is its own
    sink = _start_sink(lab, mails)
    # nullmailer-send is the MTA's daemon (its systemd unit runs it so); the node's daemon
    # shares its file system view, as on a machine.
    mta_log = lab.host_dir(NODE) / "logs" / "nullmailer-send.log"
    script = (f"set -e\n{mounts}"
              f"setsid nullmailer-send > {shlex.quote(str(mta_log))} 2>&1 &\n"
              'exec "$@"\n')
    proc = lab.spawn(NODE, ["sh", "-c", script, "node", sys.executable, "-m", "nonstop", "run",
                            "--config-dir", str(cluster.config_dir), "--state-dir",
                            str(cluster.state_dir(NODE)), "--node", NODE],
                     log_path=cluster.log_path(NODE), name="nonstop")
    cluster.procs[NODE] = proc
    cluster.wait_for(lambda: len(_mails(mails)) >= 1 or not proc.running, 30,
                     what="the takeover notice to arrive through nullmailer")
    assert proc.running, cluster.log(NODE)
    cluster.stop(NODE)
    cluster.wait_for(lambda: len(_mails(mails)) >= 2, 30, what="the release notice")
    _check_notices(_mails(mails))
    log = cluster.log(NODE)
    assert "through sendmail /usr/sbin/sendmail" in log, log
    assert "delivery complete" in mta_log.read_text().lower(), mta_log.read_text()
    assert sink.running


def test_mail_goes_to_the_relay_ha_cf_names(
        make_lab: Callable[[Sequence[str]], Lab]) -> None:
    lab, cluster = _node_with_mailto(make_lab,
                                     {"nonstop_mailrelay": f"127.0.0.1:{SINK_PORT}"})
    mails = lab.host_dir(NODE) / "mails.jsonl"
    _start_sink(lab, mails)
    cluster.start(NODE)
    cluster.wait_for(lambda: len(_mails(mails)) >= 1, 30, what="the takeover notice")
    cluster.stop(NODE)
    cluster.wait_for(lambda: len(_mails(mails)) >= 2, 30, what="the release notice")
    _check_notices(_mails(mails))
    assert f"through SMTP 127.0.0.1:{SINK_PORT}" in cluster.log(NODE)
