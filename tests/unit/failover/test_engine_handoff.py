"""A planned release's replication hook: its last push comes after the services stopped and
before the group is announced released; a standby whose push fails keeps the group."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_engine import Harness

from nonstop.errors import InvalidValue
from nonstop.failover.decide import Action
from nonstop.failover.state import GroupState


def _hooked(h: Harness, refuse: str | None = None) -> list[tuple[object, ...]]:
    calls: list[tuple[object, ...]] = []

    async def hook(stopped: bool, may_refuse: bool) -> str | None:
        stops = sum(1 for _r, a in h.acted() if a == "stop")
        calls.append((stopped, may_refuse, stops, h.engine.groups[0].state))
        return None if stopped else refuse

    h.engine.before_release = hook
    return calls


async def test_the_last_push_comes_after_every_stop_and_before_the_release(
        tmp_path: Path) -> None:
    h = Harness(tmp_path)
    await h.run(Action.ACQUIRE, epoch=1)
    calls = _hooked(h)
    h.world.clear()
    h.engine.standby("all")
    assert await h.run(Action.RELEASE) is GroupState.NONE
    assert calls == [(False, True, 0, GroupState.HELD), (True, False, 4, GroupState.STOPPING)]


async def test_a_standby_whose_push_fails_keeps_the_group_and_stops_nothing(
        tmp_path: Path) -> None:
    h = Harness(tmp_path)
    await h.run(Action.ACQUIRE, epoch=1)
    _hooked(h, refuse="the peer's disk is full")
    h.world.clear()
    h.engine.standby("all")
    assert await h.run(Action.RELEASE) is GroupState.HELD
    assert h.acted() == [] and h.engine.declines == set()


@pytest.mark.parametrize("how", ["shutdown", "failback"])
async def test_a_shutdown_or_a_failback_goes_ahead_whatever_the_push_says(
        tmp_path: Path, how: str) -> None:
    h = Harness(tmp_path)
    await h.run(Action.ACQUIRE, epoch=1)
    calls = _hooked(h, refuse="the peer's disk is full")
    if how == "shutdown":
        await h.engine.release_all()
        assert h.engine.groups[0].state is GroupState.NONE
    else:
        assert await h.run(Action.RELEASE) is GroupState.NONE
    assert [c[:2] for c in calls] == [(False, False), (True, False)]


async def test_a_conflict_release_pushes_nothing(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    await h.run(Action.ACQUIRE, epoch=1)
    calls = _hooked(h)
    assert await h.run(Action.RELEASE, conflict=True) is GroupState.NONE
    assert calls == []


async def test_standby_is_refused_at_once_while_replication_fails(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.engine.standby_refusal = lambda: "replication from n1 is failing (disk full)"
    h.engine.standby("all")  # nothing held: nothing to refuse
    h.engine.declines.clear()
    await h.run(Action.ACQUIRE, epoch=1)
    with pytest.raises(InvalidValue, match="standby refused: replication from n1 is failing"):
        h.engine.standby("all")
    assert h.engine.declines == set()
