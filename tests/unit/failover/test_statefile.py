"""groups.json: what a restarted daemon reads of its last run, and says of it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from nonstop.failover.statefile import GroupStateFile

GROUP = "MailTo::tech@webinmotion.ca::Asterisk"


def _said(tmp_path: Path, content: object, caplog: pytest.LogCaptureFixture, *,
          replicated: bool = True) -> list[str]:
    path = tmp_path / "groups.json"
    path.write_text(json.dumps(content))
    with caplog.at_level(logging.WARNING, logger="nonstop.failover"):
        GroupStateFile(path, replicated=replicated).load()
    return [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize("state", ["HELD", "STARTING", "STOPPING"])
def test_a_run_that_ended_holding_a_group_is_said_at_the_next_start(
        tmp_path: Path, state: str, caplog: pytest.LogCaptureFixture) -> None:
    (said,) = _said(tmp_path, {GROUP: {"epoch": 3, "seen": 3, "state": state}}, caplog)
    assert said.startswith(f"The previous run ended while this node held {GROUP}, without "
                           "releasing it (the daemon killed or crashed, or the machine lost "
                           "power). What was written here in its last moments")
    assert "(history: sync_overwritten)" in said
    assert said.endswith("(`nonstop sync -T` compares this node's files with the peers').")


def test_without_replication_nothing_is_said_of_files(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (said,) = _said(tmp_path, {GROUP: {"epoch": 3, "state": "HELD"}}, caplog, replicated=False)
    assert said.endswith("or the machine lost power).")


def test_a_failed_stop_is_said_as_such(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (said,) = _said(tmp_path, {GROUP: {"epoch": 3, "state": "STOP_FAILED"}}, caplog,
                    replicated=False)
    assert said == (f"The previous run ended with a stop of {GROUP} failed: its services may "
                    "still run here; the start-up probe finds out.")


@pytest.mark.parametrize("content", [{GROUP: {"epoch": 3, "seen": 3, "state": "NONE"}},
                                     {GROUP: {"epoch": 0, "state": "START_FAILED"}}, [], {}])
def test_a_run_that_released_its_groups_says_nothing(
        tmp_path: Path, content: object, caplog: pytest.LogCaptureFixture) -> None:
    assert _said(tmp_path, content, caplog) == []


def test_an_unreadable_file_is_no_saved_state(tmp_path: Path) -> None:
    path = tmp_path / "groups.json"
    path.write_bytes(b"\x00{torn")
    assert GroupStateFile(path).load() == {}
    assert GroupStateFile(tmp_path / "missing.json").load() == {}


@pytest.mark.parametrize("epoch", ["x", 1e400, -1, True, 2**70, None])
def test_a_number_that_is_no_count_is_taken_as_0_not_a_stop(
        tmp_path: Path, epoch: object, caplog: pytest.LogCaptureFixture) -> None:
    """A hand-edited or damaged file stopped the start with a traceback (int('x'))."""
    path = tmp_path / "groups.json"
    path.write_text(json.dumps({GROUP: {"epoch": epoch, "seen": 4, "state": "HELD"}}))
    store = GroupStateFile(path)
    with caplog.at_level(logging.WARNING, logger="nonstop.failover"):
        saved = store.load()
    assert saved == {GROUP: {"epoch": 0, "seen": 4, "state": "HELD"}}
    assert store.ended_holding
    assert f"group {GROUP}: ignoring epoch {epoch!r} (not a count): taken as 0" in caplog.text


async def test_a_save_that_failed_is_tried_again_until_it_lands(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk at the last change of state: nothing changes after it, so nothing would
    save it again, and a restart would not know what this node claimed."""
    import asyncio

    import nonstop.failover.statefile as statefile

    monkeypatch.setattr(statefile, "RETRY_S", 0.05)
    path = tmp_path / "groups.json"
    blocker = path.with_suffix(".tmp")
    blocker.mkdir()  # the temporary file cannot be written: as on a full disk
    store = GroupStateFile(path)
    held = {GROUP: {"epoch": 6, "seen": 6, "state": "HELD"}}
    with caplog.at_level(logging.WARNING, logger="nonstop.failover"):
        store.save(held)
        await store.flush()
        assert not path.exists()
        await asyncio.sleep(0.2)  # several retries, one error line
        blocker.rmdir()
        for _ in range(100):
            if path.exists():
                break
            await asyncio.sleep(0.02)
    assert json.loads(path.read_text()) == held
    said = [r.getMessage() for r in caplog.records]
    assert len([m for m in said if m.startswith("cannot save group state")]) == 1
    assert said[-1] == f"saving group state to {path} works again"
