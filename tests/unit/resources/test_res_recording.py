"""The recording driver behaves like a small, scriptable world of resources."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from nonstop.config.model import ResourceSpec
from nonstop.resources.base import AgentContext, AgentFactory, ResourceError, ResourceState
from nonstop.resources.recording import RecordingAgentFactory

IP = ResourceSpec("IPaddr", ("198.18.0.10/24/eth0",), "198.18.0.10/24/eth0")
AST = ResourceSpec("asterisk", (), "asterisk")


def ctx(node: str) -> AgentContext:
    return AgentContext(node=node, config_dir=Path("/nonexistent"))


async def test_records_calls_and_tracks_state() -> None:
    factory = RecordingAgentFactory()
    as_port: AgentFactory = factory  # usable wherever make_agent is
    ip, ast = as_port(IP, ctx("n1")), as_port(AST, ctx("n1"))
    assert await ip.status() is ResourceState.STOPPED
    await ip.start()
    await ast.start()
    assert await ip.status() is ResourceState.RUNNING
    await ast.stop()
    assert factory.state("asterisk") is ResourceState.STOPPED
    assert factory.actions() == [
        ("198.18.0.10/24/eth0", "status"),
        ("198.18.0.10/24/eth0", "start"),
        ("asterisk", "start"),
        ("198.18.0.10/24/eth0", "status"),
        ("asterisk", "stop"),
    ]
    assert [c.outcome for c in factory.calls] == ["stopped", "ok", "ok", "running", "ok"]


async def test_failures_counted_and_state_unchanged() -> None:
    factory = RecordingAgentFactory()
    factory.set_state("asterisk", ResourceState.RUNNING)
    agent = factory(AST, ctx("n2"))
    factory.fail("asterisk", "stop", times=2)
    for _ in range(2):
        with pytest.raises(ResourceError) as info:
            await agent.stop()
        assert info.value.returncode == 1
        assert factory.state("asterisk") is ResourceState.RUNNING
    await agent.stop()
    assert factory.state("asterisk") is ResourceState.STOPPED
    factory.fail("asterisk", "start")
    for _ in range(3):
        with pytest.raises(ResourceError):
            await agent.start()
    factory.heal("asterisk", "start")
    await agent.start()
    assert [c.outcome for c in factory.calls] == ["failed"] * 2 + ["ok"] + ["failed"] * 3 + ["ok"]
    assert factory.actions(node="n1") == []
    with pytest.raises(ValueError):
        factory.fail("asterisk", "status")


async def test_status_override_and_gate() -> None:
    factory = RecordingAgentFactory()
    agent = factory(IP, ctx("n1"))
    factory.override_status(IP.raw, ResourceState.UNKNOWN)
    assert await agent.status() is ResourceState.UNKNOWN
    factory.override_status(IP.raw, None)
    assert await agent.status() is ResourceState.STOPPED
    gate = factory.gate(IP.raw, "start")
    task = asyncio.create_task(agent.start())
    await asyncio.sleep(0)
    assert not task.done() and factory.state(IP.raw) is ResourceState.STOPPED
    gate.set()
    await task
    assert factory.state(IP.raw) is ResourceState.RUNNING
