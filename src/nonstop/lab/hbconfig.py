"""Adapt a Heartbeat configuration directory for a lab (talk files -> lab addresses and timing)."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

from nonstop.lab.kamailio import write_asterisk_service
from nonstop.talk import copy_talk

TALK_VIP = "10.0.10.10"
# What a lab Heartbeat needs beyond the talk's ha.cf: a short initdead (the talk's 120 s would
# make every test wait two minutes) and a log file inside the box instead of ha_logd.
BOX_DIRECTIVES: Mapping[str, str | None] = {
    "initdead": "5", "use_logd": "no", "logfile": "/var/log/ha-log",
}


def set_directives(text: str, directives: Mapping[str, str | None]) -> str:
    """Set ``keyword value`` lines of an ha.cf text: replace the first line of each keyword
    (dropping later ones), append missing ones; a value of None removes the keyword."""
    wanted = {key.lower(): value for key, value in directives.items()}
    done: set[str] = set()
    out: list[str] = []
    for line in text.splitlines():
        words = line.split()
        key = words[0].lower() if words and not words[0].startswith("#") else None
        if key is None or key not in wanted:
            out.append(line)
            continue
        value = wanted[key]
        if key not in done and value is not None:
            out.append(f"{words[0]} {value}")
        done.add(key)
    out.extend(f"{key} {value}" for key, value in wanted.items()
               if key not in done and value is not None)
    return "\n".join(out) + "\n"


def adapt_ha_config(src: Path, dest: Path, *, directives: Mapping[str, str | None] = {},
                    replace: Mapping[str, str] = {}) -> Path:
    """Copy Heartbeat config directory ``src`` to ``dest``, set ``directives`` in ha.cf and
    replace each ``replace`` key by its value in haresources (e.g. the talk's 10.0.10.10)."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest, symlinks=True)
    ha_cf = dest / "ha.cf"
    if directives:
        ha_cf.write_text(set_directives(ha_cf.read_text(), directives))
    haresources = dest / "haresources"
    if replace and haresources.exists():
        text = haresources.read_text()
        for old, new in replace.items():
            text = text.replace(old, new)
        haresources.write_text(text)
    authkeys = dest / "authkeys"
    if authkeys.exists():
        authkeys.chmod(0o600)
    return dest


def heartbeat_talk_config(dest: Path, *, node: str, vip: str, state_dir: Path,
                          directives: Mapping[str, str | None] = BOX_DIRECTIVES) -> Path:
    """The talk's ha.d for one lab node running the real Heartbeat, written to ``dest``.

    ha.cf gets ``directives``; haresources gets ``vip`` for the talk's 10.0.10.10; resource.d
    gets the node's ``asterisk`` script (kamailio on ``vip`` naming ``node``; config, pid file
    and log in ``state_dir``). Pass the result to :meth:`Lab.start_heartbeat`.
    """
    talk = copy_talk(dest.parent / f"{dest.name}.talk")
    adapt_ha_config(talk / "ha.d", dest, directives=directives, replace={TALK_VIP: vip})
    shutil.rmtree(talk)
    write_asterisk_service(dest / "resource.d", state_dir, node=node, listen_ip=vip)
    return dest
