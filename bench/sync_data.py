"""The replication benchmark's data: seeded file trees, and manifests to prove two trees equal.

Three data sets, as issue 4 names them (sizes of the full run; quick mode shrinks the counts):

* ``configs``: 2,000 small text files (200 B - 4 KB) in 20 directories under
  ``etc/asterisk``, like an Asterisk configuration;
* ``recordings``: 200 files of 0.2 - 2 MB of random bytes (audio does not compress) under
  ``var/spool/asterisk/monitor``;
* ``many``: 20,000 files, ~216 MB as in the spec's measurement: 100 mailboxes x 100 voicemail
  messages, each a ``.txt`` envelope (~300 B) and a ``.wav`` (5 - 38 KB) under
  ``var/spool/asterisk/voicemail``.

Everything derives from a seed, so every system and every trial gets byte-identical trees.
Modification times are set to fixed moments in the past, as for files that have been around.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SEED = 20261125
BASE_MTIME = 1_735_689_600  # 2025-01-01T00:00:00Z: "old" files
KB = 1024
MB = 1024 * 1024


@dataclass(frozen=True)
class DataSet:
    """One workload's tree: ``files`` entries made by :func:`generate` under ``prefix``."""

    key: str
    title: str
    files: int
    prefix: str  # relative to the synced root, e.g. "etc/asterisk"


def datasets(quick: bool) -> dict[str, DataSet]:
    """The three data sets, with quick mode's tiny counts."""
    return {
        "configs": DataSet("configs", "small config files", 50 if quick else 2000,
                           "etc/asterisk"),
        "recordings": DataSet("recordings", "recordings of 0.2-2 MB", 5 if quick else 200,
                              "var/spool/asterisk/monitor"),
        "many": DataSet("many", "voicemail files", 200 if quick else 20000,
                        "var/spool/asterisk/voicemail"),
    }


def _text(rng: random.Random, size: int) -> bytes:
    """Printable config-like lines of about ``size`` bytes."""
    raw = base64.b64encode(rng.randbytes(size * 3 // 4 + 3))[:size]
    lines = [raw[i:i + 60] for i in range(0, len(raw), 60)]
    return b"\n".join(b"x" + line[1:] for line in lines) + b"\n"


def _entries(ds: DataSet, rng: random.Random) -> Iterator[tuple[str, bytes]]:
    if ds.key == "configs":
        for i in range(ds.files):
            size = rng.randint(200, 4 * KB)
            yield f"{ds.prefix}/conf{i % 20:02d}.d/file{i:05d}.conf", _text(rng, size)
    elif ds.key == "recordings":
        for i in range(ds.files):
            size = rng.randint(200 * KB, 2 * MB)
            yield f"{ds.prefix}/2026/{i % 12 + 1:02d}/rec-{i:04d}.wav", rng.randbytes(size)
    elif ds.key == "many":
        boxes = max(1, min(100, ds.files // 200))
        for i in range(ds.files // 2):
            box, msg = i % boxes, i // boxes
            base = f"{ds.prefix}/default/{1000 + box}/INBOX/msg{msg:04d}"
            yield base + ".txt", _text(rng, rng.randint(250, 350))
            yield base + ".wav", rng.randbytes(rng.randint(5 * KB, 38 * KB))
    else:
        raise ValueError(f"unknown data set {ds.key!r}")


def generate(ds: DataSet, root: Path) -> tuple[int, int]:
    """Write ``ds`` under ``root`` (which must not hold it yet); return (files, bytes)."""
    rng = random.Random(f"{SEED}-{ds.key}")
    count = total = 0
    made: set[Path] = set()
    for rel, data in _entries(ds, rng):
        path = root / rel
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        path.write_bytes(data)
        mtime = BASE_MTIME + count * 7
        os.utime(path, (mtime, mtime))
        count += 1
        total += len(data)
    return count, total


def change_one(ds: DataSet, root: Path, round_no: int) -> str:
    """Rewrite one file of ``ds`` in place with new content of another size (seeded by
    ``round_no``), as an edit would; return its path relative to ``root``."""
    rng = random.Random(f"{SEED}-{ds.key}-change-{round_no}")
    files = sorted(p for p in (root / ds.prefix).rglob("*") if p.is_file())
    if not files:
        raise ValueError(f"no files of {ds.key} under {root}")
    path = files[rng.randrange(len(files))]
    old = path.stat().st_size
    size = old + rng.randint(1, 512)
    path.write_bytes(_text(rng, size) if path.suffix in (".conf", ".txt") else rng.randbytes(size))
    return str(path.relative_to(root))


Entry = tuple[str, str, int, int, int, int, int, str]


def manifest(root: Path) -> dict[str, Entry]:
    """Every entry below ``root``: type, permission bits, uid, gid, size and mtime in whole
    seconds (regular files; csync2 keeps only seconds), a BLAKE2b digest of the content or the
    link target. Directory mtimes are left out: no system promises them."""
    out: dict[str, Entry] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISDIR(st.st_mode):
                out[rel] = (rel, "dir", mode, st.st_uid, st.st_gid, 0, 0, "")
            elif stat.S_ISLNK(st.st_mode):
                out[rel] = (rel, "lnk", mode, st.st_uid, st.st_gid, 0, 0, os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                h = hashlib.blake2b(digest_size=16)
                with open(path, "rb") as fh:
                    while chunk := fh.read(1 << 20):
                        h.update(chunk)
                out[rel] = (rel, "reg", mode, st.st_uid, st.st_gid, st.st_size,
                            int(st.st_mtime), h.hexdigest())
            else:
                out[rel] = (rel, "other", mode, st.st_uid, st.st_gid, 0, 0, "")
    return out


def differences(source: dict[str, Entry], replica: dict[str, Entry], limit: int = 5) -> list[str]:
    """Human-readable differences between two manifests (at most ``limit``), empty if equal."""
    problems: list[str] = []
    for rel in sorted(set(source) | set(replica)):
        a, b = source.get(rel), replica.get(rel)
        if a == b:
            continue
        if b is None:
            problems.append(f"{rel}: missing on the replica")
        elif a is None:
            problems.append(f"{rel}: only on the replica")
        else:
            fields = ("name", "type", "mode", "uid", "gid", "size", "mtime", "digest")
            what = [f"{f} {x!r} != {y!r}" for f, x, y in zip(fields, a, b, strict=True) if x != y]
            problems.append(f"{rel}: " + ", ".join(what))
        if len(problems) >= limit:
            problems.append("...")
            break
    return problems
