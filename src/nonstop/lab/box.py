"""The private file system of a box: the directories Heartbeat 3.0.6 writes, and stubs for reboot.

A box stands for a whole machine, so every global path its programs use is a per-node directory
on the host, bind-mounted in by the box's prologue. Heartbeat's ResourceManager answers a failed
stop with ``/sbin/reboot -nf``: in a box every reboot/halt/systemctl binary is covered by a stub
that only records the call in the box's ``/var/log/lab-stubs.log``.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterable
from pathlib import Path

from nonstop.lab.mounts import Bind

HOST_HA_DIR = Path("/etc/ha.d")
HEARTBEAT_STATE_DIR = Path("/var/lib/heartbeat")
HEARTBEAT_RUN_DIR = Path("/run/heartbeat")
HEARTBEAT_PIDFILE = "/run/heartbeat.pid"
HEARTBEAT_BINARY = "/usr/libexec/heartbeat/heartbeat"
STUB_LOG = "/var/log/lab-stubs.log"
MAIL_LOG = "/var/log/lab-mail.log"
DANGEROUS = (
    "/sbin/reboot", "/usr/sbin/reboot", "/sbin/halt", "/usr/sbin/halt", "/sbin/poweroff",
    "/usr/sbin/poweroff", "/sbin/shutdown", "/usr/sbin/shutdown", "/bin/systemctl",
    "/usr/bin/systemctl",
)
READY_MARKER = "/run/.lab-box-ready"

_STUB = f"""#!/bin/sh
# lab stub: a box must never reboot or drive systemd on the shared machine.
echo "$(date '+%F %T') stub: $0 $*" >> {STUB_LOG}
exit 0
"""

# Debian 12's heartbeat has no mail(1) (its MailTo agent needs one): a box gets this stand-in on
# its PATH, which keeps each message in the box's log instead of sending it anywhere.
_MAIL = f"""#!/bin/sh
# lab stand-in for mail(1): appends the message to {MAIL_LOG}
{{ echo "From lab-mail $(date '+%F %T') args: $*"; cat; echo; }} >> {MAIL_LOG}
exit 0
"""


def _mirror_dirs(source: Path, dest: Path) -> None:
    """Recreate the directory tree of ``source`` (directories only, same owner and mode)."""
    if not source.is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        return
    for root, dirs, _files in os.walk(source):
        rel = Path(root).relative_to(source)
        for name in ["", *dirs]:
            src = Path(root) / name
            dst = dest / rel / name
            dst.mkdir(parents=True, exist_ok=True)
            st = src.stat()
            os.chown(dst, st.st_uid, st.st_gid)
            os.chmod(dst, stat.S_IMODE(st.st_mode))


def _stub_targets(paths: Iterable[str]) -> list[str]:
    """The distinct real files behind ``paths`` (reboot is a symlink to systemctl on Debian 12)."""
    seen: list[str] = []
    for path in paths:
        if os.path.exists(path):
            real = os.path.realpath(path)
            if real not in seen:
                seen.append(real)
    return seen


def install_ha_config(config_dir: Path, dest: Path) -> None:
    """Make ``dest`` the box's /etc/ha.d: the host's packaged files overlaid with ``config_dir``."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(HOST_HA_DIR, dest, symlinks=True)
    shutil.copytree(config_dir, dest, symlinks=True, dirs_exist_ok=True)
    authkeys = dest / "authkeys"
    if authkeys.exists():
        # Git does not keep mode 600, and Heartbeat refuses a readable authkeys.
        authkeys.chmod(0o600)


def box_bin(box_dir: Path) -> Path:
    """The directory put first on the PATH of a box's programs (holds the mail stand-in)."""
    return box_dir / "bin"


def prepare_box(box_dir: Path) -> list[Bind]:
    """Create a box's private directories under ``box_dir``; return the binds that mount them.

    ``/run`` starts empty on every box start, like a machine's after boot; ``/var/lib/heartbeat``
    and ``/var/log`` persist across restarts, like a disk.
    """
    run = box_dir / "run"
    if run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True)
    _mirror_dirs(HEARTBEAT_RUN_DIR, run / "heartbeat")
    for sub in ("lock", "resource-agents", "heartbeat/rsctmp"):
        (run / sub).mkdir(parents=True, exist_ok=True)
    state = box_dir / "var-lib-heartbeat"
    if not state.exists():
        _mirror_dirs(HEARTBEAT_STATE_DIR, state)
    log = box_dir / "var-log"
    log.mkdir(parents=True, exist_ok=True)
    etc = box_dir / "etc-ha.d"
    etc.mkdir(parents=True, exist_ok=True)
    stub = box_dir / "reboot-stub"
    stub.write_text(_STUB)
    stub.chmod(0o755)
    bin_dir = box_bin(box_dir)
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "mail").write_text(_MAIL)
    (bin_dir / "mail").chmod(0o755)
    binds = [
        Bind(str(etc), str(HOST_HA_DIR)),
        Bind(str(state), str(HEARTBEAT_STATE_DIR)),
        Bind(str(log), "/var/log"),
    ]
    binds.extend(Bind(str(stub), target) for target in _stub_targets(DANGEROUS))
    binds.append(Bind(str(run), "/run"))
    return binds
