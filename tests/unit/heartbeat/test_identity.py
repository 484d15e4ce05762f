"""The node's UUID and generation, as ha.cf's uuidfrom and hbgenmethod choose them."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from nonstop.config.model import HbGenMethod, UuidFrom
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


def test_generation_from_file_counts_up_by_one(tmp_path: Path) -> None:
    (tmp_path / GENERATION_FILE).write_text(f"{41:>16d}\n")
    assert next_generation(tmp_path, HbGenMethod.FILE) == 42
    assert next_generation(tmp_path) == 43


def test_generation_from_time_is_the_clock_but_never_goes_back(tmp_path: Path) -> None:
    before = int(time.time())
    assert next_generation(tmp_path, HbGenMethod.TIME) >= before
    future = before + 10_000
    (tmp_path / GENERATION_FILE).write_text(f"{future:>16d}\n")
    assert next_generation(tmp_path, HbGenMethod.TIME) == future + 1


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
