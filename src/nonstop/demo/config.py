"""The talk's files, moved into the demo's network: pure text transformations, each one said.

The demo runs the talk's ``ha.cf``, ``haresources``, ``authkeys``, ``master`` and ``csync2.cfg``
with as few changes as a lab on one machine needs, and shows every change on screen. Each
function here returns the new text and a :class:`Change` naming what changed and why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nonstop.errors import InvalidValue

TALK_VIP = "10.0.10.10"
DEMO_VIP = "198.18.0.10"
NODE_NAMES: tuple[str, str] = ("vpbx1-1", "vpbx1-2")
CSYNC2_KEY_PATH = "/etc/csync2.key_vpbx1"


@dataclass(frozen=True)
class Change:
    """One line the demo changed in a talk file."""

    file: str
    before: str
    after: str
    why: str


def _replace_line(text: str, pattern: str, new: str, file: str, why: str,
                  ) -> tuple[str, Change]:
    lines = text.splitlines(keepends=True)
    compiled = re.compile(pattern)
    for i, line in enumerate(lines):
        if compiled.match(line.rstrip("\n")):
            old = line.rstrip("\n")
            lines[i] = new + ("\n" if line.endswith("\n") else "")
            return "".join(lines), Change(file, old, new, why)
    raise InvalidValue(f"{file}: no line matches {pattern!r}")


def demo_hacf(text: str, initdead_s: int, *, sync_config: str | None = None,
              mail_relay: str | None = None, page_port: int | None = None,
              ) -> tuple[str, list[Change]]:
    """The talk's ha.cf with ``initdead`` lowered so the demo does not wait two minutes and,
    with ``sync_config``, nonstop's ``nonstop_sync`` line: the daemon replicates by itself."""
    if initdead_s < 1:
        raise InvalidValue("initdead must be at least 1 s")
    new, change = _replace_line(
        text, r"^\s*initdead\s+\S+\s*$", f"initdead {initdead_s}", "ha.cf",
        "lowered for the demo (a real node waits 120 s for its peer after boot)")
    changes = [change]
    added = [
        (f"nonstop_sync {sync_config}" if sync_config is not None else None,
         "nonstop's own: the active node replicates the talk's csync2.cfg continuously (no cron "
         "line needed)"),
        (f"nonstop_mailrelay {mail_relay}" if mail_relay is not None else None,
         "the demo's mail server, even where this machine has its own MTA (a real node hands "
         "MailTo's mail to its MTA's sendmail)"),
        (f"nonstop_metrics {page_port}" if page_port is not None else None,
         "nonstop's own: the status page and Prometheus metrics on the node's localhost (the "
         "demo relays them to this machine's)"),
    ]
    for line, why in added:
        if line is not None:
            new = new + ("" if new.endswith("\n") else "\n") + line + "\n"
            changes.append(Change("ha.cf", "", line, why))
    return new, changes


def demo_haresources(text: str) -> tuple[str, list[Change]]:
    """The talk's haresources with the virtual IP moved to the lab's network."""
    if TALK_VIP not in text:
        raise InvalidValue(f"haresources: the talk's address {TALK_VIP} is not in it")
    changes: list[Change] = []
    out: list[str] = []
    for line in text.splitlines(keepends=True):
        if TALK_VIP in line:
            new = line.replace(TALK_VIP, DEMO_VIP)
            changes.append(Change("haresources", line.rstrip("\n"), new.rstrip("\n"),
                                  "the lab only uses 198.18.0.0/15, the benchmark range"))
            line = new
        out.append(line)
    return "".join(out), changes


def migrate_csync2_calls(text: str, file: str) -> tuple[str, list[Change]]:
    """``text`` (the master script, the crontab) with each call of the program ``csync2``
    (also by path, ``/usr/local/sbin/csync2``) replaced by ``nonstop sync``.

    Only commands change: a file name such as ``csync2.cfg`` is not a call and is left alone.
    """
    pattern = re.compile(r"(?<![\w./-])(?:/[\w./-]*/)?csync2(?=\s)")
    changes: list[Change] = []
    out: list[str] = []
    for line in text.splitlines(keepends=True):
        new = pattern.sub("nonstop sync", line)
        if new != line:
            changes.append(Change(file, line.rstrip("\n"), new.rstrip("\n"),
                                  "the migration: only the program name changed"))
        out.append(new)
    if not changes:
        raise InvalidValue(f"{file}: no csync2 command to migrate")
    return "".join(out), changes


def hosts_file(addresses: dict[str, str]) -> str:
    """``/etc/hosts`` of a demo node: csync2.cfg names its peers, which resolve here."""
    lines = ["127.0.0.1\tlocalhost"]
    lines += [f"{ip}\t{name}" for name, ip in addresses.items()]
    return "\n".join(lines) + "\n"


def describe_changes(changes: list[Change] | tuple[Change, ...]) -> list[str]:
    """The changes as a person reads them: per file and reason, each distinct line once
    (``(2 places)`` when the same line changed more than once, as in master's start and stop)."""
    out: list[str] = []
    seen: dict[tuple[str, str], list[tuple[str, str]]] = {}
    counts: dict[tuple[str, str, str, str], int] = {}
    for c in changes:
        pairs = seen.setdefault((c.file, c.why), [])
        key = (c.file, c.why, c.before, c.after)
        if key not in counts:
            pairs.append((c.before, c.after))
        counts[key] = counts.get(key, 0) + 1
    for (file, why), pairs in seen.items():
        out.append(f"{file}: {why}")
        for before, after in pairs:
            n = counts[(file, why, before, after)]
            more = f"   ({n} places)" if n > 1 else ""
            if before:
                out.append(f"  - {before.strip()}{more}")
            out.append(f"  + {after.strip()}")
    return out
