"""The failover engine with the resource port's recording driver: order, failures, claims."""

from __future__ import annotations

import asyncio
from pathlib import Path

from nonstop.config.errors import Location
from nonstop.config.model import (
    AuthKey,
    AuthKeys,
    AuthMethod,
    Bcast,
    ClusterConfig,
    HaConfig,
    ResourceGroup,
    ResourceSpec,
)
from nonstop.failover.decide import Action, Decision
from nonstop.failover.engine import FailoverEngine
from nonstop.failover.state import GroupState
from nonstop.resources.base import AgentContext, ResourceState
from nonstop.resources.recording import RecordingAgentFactory

LINE = ("MailTo", "198.18.0.10/24/eth0", "asterisk", "master")


def config(tmp: Path) -> ClusterConfig:
    specs = tuple(ResourceSpec(r, (), r) for r in LINE)
    ha = HaConfig(path="ha.cf", nodes=("n1", "n2"), media=(Bcast("eth0"),))
    keys = AuthKeys(1, {1: AuthKey(1, AuthMethod.SHA1, b"k")})
    return ClusterConfig(str(tmp), ha, keys, (ResourceGroup("n1", specs, Location("h", 1)),))


class Harness:
    def __init__(self, tmp: Path) -> None:
        self.world = RecordingAgentFactory()
        self.changes = 0
        self.engine = FailoverEngine(
            config(tmp), "n1", tmp, AgentContext(node="n1", config_dir=tmp),
            agent_factory=self.world, clock=lambda: 0.0, on_change=self.changed,
            stop_retry_delay_s=0.0,
        )

    def changed(self) -> None:
        self.changes += 1

    async def run(self, action: Action, **kw: object) -> GroupState:
        self.engine.apply([Decision(0, action, "test", **kw)])  # type: ignore[arg-type]
        task = self.engine.groups[0].task
        assert task is not None
        await task
        return self.engine.groups[0].state

    def acted(self) -> list[tuple[str, str]]:
        return [(r, a) for r, a in self.world.actions() if a != "status"]


async def test_acquire_left_to_right_release_right_to_left(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    assert await h.run(Action.ACQUIRE, epoch=3) is GroupState.HELD
    assert h.acted() == [(r, "start") for r in LINE]
    assert h.engine.local_ad().groups[0].epoch == 3
    h.world.clear()
    assert await h.run(Action.RELEASE) is GroupState.NONE
    assert h.acted() == [(r, "stop") for r in reversed(LINE)]
    assert h.changes >= 4


async def test_running_resources_are_not_started_again(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.world.set_state("asterisk", ResourceState.RUNNING)
    await h.run(Action.ACQUIRE, epoch=1)
    assert ("asterisk", "start") not in h.acted()


async def test_a_failed_start_gives_the_whole_group_up(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.world.fail("asterisk", "start")
    assert await h.run(Action.ACQUIRE, epoch=1) is GroupState.START_FAILED
    assert h.acted() == [("MailTo", "start"), ("198.18.0.10/24/eth0", "start"),
                         ("asterisk", "start"), ("master", "stop"), ("asterisk", "stop"),
                         ("198.18.0.10/24/eth0", "stop"), ("MailTo", "stop")]
    assert "master" not in [r for r, a in h.acted() if a == "start"]


async def test_a_stop_that_fails_while_running_blocks_takeover(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    await h.run(Action.ACQUIRE, epoch=1)
    h.world.fail("asterisk", "stop")
    assert await h.run(Action.RELEASE) is GroupState.STOP_FAILED
    # every other resource was still stopped, the address included
    assert h.world.state("198.18.0.10/24/eth0") is ResourceState.STOPPED
    assert h.acted().count(("asterisk", "stop")) == 3
    assert 0 in h.engine.busy()  # retried later, not at once


async def test_a_stop_failure_of_something_stopped_is_not_a_block(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    await h.run(Action.ACQUIRE, epoch=1)
    h.world.fail("asterisk", "stop")
    h.world.override_status("asterisk", ResourceState.STOPPED)
    assert await h.run(Action.RELEASE) is GroupState.NONE


async def test_a_conflict_release_drops_the_address_first(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    await h.run(Action.ACQUIRE, epoch=1)
    h.world.clear()
    await h.run(Action.RELEASE, conflict=True)
    # the recording driver is not an address agent, so plain right-to-left order remains
    assert h.acted()[0] == ("master", "stop")


async def test_probe_claims_a_group_still_running_with_its_saved_epoch(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    await h.run(Action.ACQUIRE, epoch=5)
    await h.engine.flush_state()
    again = Harness(tmp_path)  # the daemon restarts on the same box, resources still up
    again.world = h.world
    again.engine = FailoverEngine(
        config(tmp_path), "n1", tmp_path, AgentContext(node="n1", config_dir=tmp_path),
        agent_factory=h.world, clock=lambda: 0.0, on_change=again.changed,
    )
    await again.engine.probe()
    g = again.engine.local_ad().groups[0]
    assert (g.state, g.epoch) == (GroupState.HELD, 5)
    assert again.engine.seen_epochs[0] == 5


async def test_standby_and_takeover_set_one_shot_requests(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    assert h.engine.standby("local") == ["MailTo"]
    assert h.engine.local_ad().declines == {0}
    h.engine.observe({0: "n2"}, [])
    assert h.engine.local_ad().declines == frozenset()
    h.engine.takeover("all")
    assert h.engine.local_ad().wants == {0}
    await asyncio.sleep(0)


async def test_an_unexpected_error_gives_the_group_up_instead_of_sticking(
        tmp_path: Path) -> None:
    h = Harness(tmp_path)
    real_start = h.world._perform

    async def broken(resource: str, action: str, node: str) -> ResourceState | None:
        if (resource, action) == ("asterisk", "start"):
            raise OSError(28, "No space left on device")
        return await real_start(resource, action, node)

    h.world._perform = broken  # type: ignore[method-assign]
    before = h.changes
    assert await h.run(Action.ACQUIRE, epoch=1) is GroupState.START_FAILED
    assert h.world.state("198.18.0.10/24/eth0") is ResourceState.STOPPED
    await asyncio.sleep(0)
    assert h.changes > before  # the daemon is told, so it decides again


async def test_stop_failed_groups_are_listed_for_the_shutdown_guard(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    await h.run(Action.ACQUIRE, epoch=1)
    h.world.fail("asterisk", "stop")
    await h.engine.release_all()
    assert h.engine.stop_failed() == ["MailTo"]
