"""The node's UUID and generation, as ha.cf's uuidfrom and hbgenmethod choose them."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from nonstop.config.model import UuidFrom
from nonstop.heartbeat.identity import (
    GENERATION_FILE,
    NAMESPACE_DNS,
    UUID_FILE,
    load_uuid,
    next_generation,
    uuid4,
    uuid5,
)


def test_uuid_from_the_node_name_is_the_same_everywhere_and_writes_nothing(tmp_path: Path) -> None:
    a = load_uuid(tmp_path / "a", UuidFrom.NODENAME, "vpbx1-1")
    b = load_uuid(tmp_path / "b", UuidFrom.NODENAME, "vpbx1-1")
    assert a == b == uuid.uuid5(uuid.NAMESPACE_DNS, "vpbx1-1").bytes
    assert load_uuid(tmp_path, UuidFrom.NODENAME, "vpbx1-2") != a
    assert not (tmp_path / "a").exists()


def test_uuid_from_file_is_made_once_and_kept(tmp_path: Path) -> None:
    first = load_uuid(tmp_path, UuidFrom.FILE, "vpbx1-1")
    assert (tmp_path / UUID_FILE).read_bytes() == first and len(first) == 16
    assert load_uuid(tmp_path, UuidFrom.FILE, "vpbx1-1") == first
    assert load_uuid(tmp_path) == first  # file is the default, as in Heartbeat


def test_generation_counts_up_by_one_while_it_is_ahead_of_the_clock(tmp_path: Path) -> None:
    ahead = int(time.time()) + 10_000  # a clock set back since the last start
    (tmp_path / GENERATION_FILE).write_text(f"{ahead:>16d}\n")
    assert next_generation(tmp_path) == ahead + 1
    assert next_generation(tmp_path) == ahead + 2
    assert (tmp_path / GENERATION_FILE).read_text() == f"{ahead + 2:>16d}\n"


def test_a_restored_or_lost_generation_file_still_comes_back_above_the_old_one(
        tmp_path: Path) -> None:
    """A state directory restored from a backup held 974 while the peers had heard 975: they
    dropped every packet as a replay until the node had restarted past it (Heartbeat too)."""
    before = int(time.time())
    assert next_generation(tmp_path) >= before  # no file: the clock
    heard = before - 3_600  # what the peers remember from the node's start an hour ago
    (tmp_path / GENERATION_FILE).write_text(f"{heard - 4:>16d}\n")  # an older backup
    assert next_generation(tmp_path) > heard
    (tmp_path / GENERATION_FILE).write_text(f"{974:>16d}\n")  # a counter from Heartbeat
    assert next_generation(tmp_path) >= before
    (tmp_path / GENERATION_FILE).write_text("garbage\n")
    assert next_generation(tmp_path) >= before


@given(st.text(max_size=80))
def test_name_based_uuid_is_the_uuid_modules(name: str) -> None:
    """identity makes its UUIDs without the uuid module (which loads platform: memory every
    daemon kept for one call at start): the same bytes."""
    assert uuid5(name) == uuid.uuid5(uuid.NAMESPACE_DNS, name).bytes
    assert uuid.NAMESPACE_DNS.bytes == NAMESPACE_DNS


def test_random_uuid_is_a_version_4_uuid() -> None:
    seen = {uuid4() for _ in range(50)}
    assert len(seen) == 50
    for raw in seen:
        u = uuid.UUID(bytes=raw)
        assert (u.version, u.variant) == (4, uuid.RFC_4122)


def test_a_generation_that_cannot_be_written_names_its_file(tmp_path: Path) -> None:
    """A full state directory at start said only "No space left on device"."""
    import subprocess
    import sys

    code = ("import resource, sys; from pathlib import Path\n"
            "from nonstop.heartbeat.identity import next_generation\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))\n"
            "import signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "next_generation(Path(sys.argv[1]))\n")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0
    assert f"{tmp_path / GENERATION_FILE}.tmp" in done.stderr.splitlines()[-1], done.stderr
    assert not (tmp_path / f"{GENERATION_FILE}.tmp").exists()
