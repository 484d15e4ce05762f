"""The peers' generations and sequence numbers survive our restart (issue 9, point 2)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from daemon_harness import talk_daemon

from nonstop.daemon import REPLAY_SAVE_S, Daemon
from nonstop.heartbeat import replaystate
from nonstop.heartbeat.membership import MessageView


def test_round_trip(tmp_path: Path) -> None:
    replaystate.save(tmp_path, {"vpbx1-2": (1733, 42), "vpbx1-3": (9, None)})
    assert replaystate.load(tmp_path) == {"vpbx1-2": (1733, 42), "vpbx1-3": (9, None)}
    assert replaystate.load(tmp_path / "missing") == {}


@pytest.mark.parametrize("content", [b"vpbx1-2 x 3\n", b"vpbx1-2 1\n", b"\xff\n",
                                     b"a 1 2\n" * 20000])
def test_an_unusable_file_is_ignored_with_a_warning(
        tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / replaystate.PEERS_FILE).write_bytes(content)
    assert replaystate.load(tmp_path) == {}
    assert "ignoring" in caplog.text


def test_a_fifo_or_symlink_is_not_read(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / replaystate.PEERS_FILE)  # would hang a plain open()
    assert replaystate.load(tmp_path) == {}
    other = tmp_path / "elsewhere"
    other.mkdir()
    replaystate.save(other, {"vpbx1-2": (1, 2)})
    (tmp_path / replaystate.PEERS_FILE).unlink()
    (tmp_path / replaystate.PEERS_FILE).symlink_to(other / replaystate.PEERS_FILE)
    assert replaystate.load(tmp_path) == {}


def status(seq: int, gen: int = 7) -> MessageView:
    return MessageView([("t", "status"), ("st", "active"), ("dt", "7d0"), ("protocol", "1"),
                        ("src", "vpbx1-2"), ("seq", f"{seq:x}"), ("hg", f"{gen:x}"),
                        ("ts", "6b062e8e"), ("ttl", "3")])


async def wait_saved(tmp_path: Path, want: replaystate.State) -> None:
    for _ in range(1000):  # 10 s: a loaded CI machine (the record is written by a thread)
        if replaystate.load(tmp_path / "state") == want:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never recorded {want}: {replaystate.load(tmp_path / 'state')}")


async def save_over(daemon: Daemon) -> None:
    """Until the daemon's save has returned (its file can be in place before the worker's
    last fsync does: a save asked meanwhile is skipped, which failed a loaded run)."""
    for _ in range(1000):
        if not daemon._replay_saving:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the save never returned")


async def test_the_daemon_records_generations_at_once_and_seqs_every_few_seconds(
        tmp_path: Path) -> None:
    daemon, _ = talk_daemon(tmp_path)
    assert daemon.protocol is not None and daemon.loop is not None
    (tmp_path / "state").mkdir()
    now = daemon.loop.time()
    daemon.protocol.receive_message(status(1), "eth0", now)
    daemon._record_replay_state(now)
    await wait_saved(tmp_path, {"vpbx1-2": (7, 1)})
    await save_over(daemon)
    daemon.protocol.receive_message(status(2), "eth0", now)
    daemon._record_replay_state(now + 1)  # a new seq alone waits for REPLAY_SAVE_S
    await asyncio.sleep(0.05)
    assert replaystate.load(tmp_path / "state") == {"vpbx1-2": (7, 1)}
    daemon._record_replay_state(now + REPLAY_SAVE_S)
    await wait_saved(tmp_path, {"vpbx1-2": (7, 2)})
    await save_over(daemon)
    daemon.protocol.receive_message(status(1, gen=8), "eth0", now)  # restarted: at once
    daemon._record_replay_state(now + REPLAY_SAVE_S + 0.1)
    await wait_saved(tmp_path, {"vpbx1-2": (8, 1)})


async def test_a_full_state_disk_is_said_once_and_its_end_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """It logged an ERROR every 5 s for the whole outage, and nothing when it was over."""
    import errno

    daemon, _ = talk_daemon(tmp_path)
    assert daemon.protocol is not None and daemon.loop is not None
    (tmp_path / "state").mkdir()
    real = replaystate.save
    full = [True]

    def save(state_dir: Path, state: replaystate.State) -> None:
        if full[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(state_dir, state)

    monkeypatch.setattr(replaystate, "save", save)
    now = daemon.loop.time()
    for seq in range(1, 6):  # five saves due, every REPLAY_SAVE_S
        daemon.protocol.receive_message(status(seq, gen=seq), "eth0", now)
        daemon._record_replay_state(now)
        for _ in range(100):
            if not daemon._replay_saving:
                break
            await asyncio.sleep(0.01)
        now += REPLAY_SAVE_S
    errors = [r for r in caplog.records if "cannot record the peers" in r.getMessage()]
    assert len(errors) == 1
    full[0] = False
    daemon.protocol.receive_message(status(6, gen=6), "eth0", now)
    daemon._record_replay_state(now)
    await wait_saved(tmp_path, {"vpbx1-2": (6, 6)})
    assert "recording the peers' sequence numbers works again" in caplog.text
