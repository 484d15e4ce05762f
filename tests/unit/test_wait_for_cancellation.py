"""A cancellation that arrives as the awaited operation completes is never lost.

Python 3.11's ``asyncio.wait_for`` runs what it waits for as a task of its own; when that
task completes at the moment the waiting task is cancelled, wait_for returns the result and
drops the CancelledError (gh-86296, fixed in 3.12). The waiting code then went on: the
replicator and the notifier loops ran for ever (their stop hung the daemon's shutdown), a
cancelled push kept its session and went on to the next peer and its actions, a closed
server's session ran its next action. Each test here finishes the awaited operation (a fake
that completes when the test says) and cancels the waiting task some loop passes later, at
every point in between; the cancellation must always come through.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from nonstop.observe.events import Record
from nonstop.observe.metrics import Metrics
from nonstop.observe.notify import Notifier, cursor_name, write_cursor
from nonstop.sync import actions, transport
from nonstop.sync import protocol as sync_protocol
from nonstop.sync.client import Client
from nonstop.sync.context import Report
from nonstop.sync.protocol import Kind
from nonstop.sync.replicator import Replicator

SPINS = range(8)  # loop passes between the completion and the cancellation


async def spin(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def wait_until(check: Callable[[], object], what: str, timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.001)
    assert check(), what


async def finish(task: asyncio.Task[Any]) -> None:
    """Teardown: end a task that a failed test left running (bounded)."""
    for _ in range(10):
        if not task.cancel():  # done
            return
        await asyncio.wait({task}, timeout=0.2)


async def ends(stop: Awaitable[None]) -> bool:
    """Whether ``stop`` ends within a second. (Not asyncio.timeout around it: a stop that
    suppresses the CancelledError of the task it awaits swallows the timeout's too.)"""
    task = asyncio.ensure_future(stop)
    await asyncio.wait({task}, timeout=1.0)
    return task.done()


async def cancelled_as_it_completes(make: Callable[[], Awaitable[Any]],
                                    complete: Callable[[], object], spins: int,
                                    started: Callable[[], object]) -> str:
    """Run ``make()`` as a task until ``started()``, then ``complete()`` what it waits for
    and cancel it ``spins`` loop passes later: "cancelled", "ended first" (before the
    cancellation: nothing to lose) or "lost" (it ended otherwise after the cancellation)."""
    async def run() -> Any:
        return await make()

    task = asyncio.create_task(run())
    try:
        await wait_until(started, "the operation to start")
        complete()
        await spin(spins)
        if task.done():
            return "ended first"
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
        return "cancelled" if task.cancelled() else "lost"
    finally:
        await finish(task)


class FakeProcess:
    """An asyncio Process that exits when the test completes :attr:`exited`."""

    pid = 0x7FFFFFF0  # never a real process group (os.killpg is faked anyway)

    def __init__(self) -> None:
        self.exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.stdout = asyncio.StreamReader()
        self.stdout.feed_eof()
        self.returncode: int | None = None

    async def wait(self) -> int:
        self.returncode = await self.exited
        return self.returncode

    def kill(self) -> None:
        pass


@pytest.fixture
def processes(monkeypatch: pytest.MonkeyPatch) -> list[FakeProcess]:
    """Every subprocess started is a :class:`FakeProcess` (in order); no signal is sent."""
    made: list[FakeProcess] = []

    async def create(*_args: Any, **_kw: Any) -> FakeProcess:
        made.append(FakeProcess())
        return made[-1]

    monkeypatch.setattr(asyncio, "create_subprocess_exec", create)
    monkeypatch.setattr(os, "killpg", lambda _pid, _sig: None)
    return made


# --- the loops whose stop waited for ever


@pytest.mark.parametrize("spins", SPINS)
async def test_a_replicator_stopped_as_it_is_woken_stops(spins: int) -> None:
    async def no_sessions() -> None:
        pass

    node = SimpleNamespace(groups=[], keep_sessions=False, close_sessions=no_sessions,
                           out=lambda _level, _msg: None)
    r = Replicator(node, full_scan_interval=3600, serve=False, watch=False)  # type: ignore[arg-type]
    await r.start()
    task = r._task
    assert task is not None
    try:
        await spin(20)  # waiting for a wake-up (a standby: nothing to push)
        r.set_active(False)  # wakes it, as an inotify event or a takeover does
        await spin(spins)
        assert await ends(r.stop()), "the replicator's stop() waits for ever"
    finally:
        await finish(task)


class Source:
    """The recorder as a notifier sees it: one event to deliver."""

    metrics: Metrics | None = None

    def __init__(self) -> None:
        self.written = 1

    def listen(self, wake: Callable[[], None]) -> None:
        pass

    async def in_worker(self, run: Callable[[], Any]) -> Any:
        return run()

    async def written_after(self, after: int, limit: int = 100) -> list[Record]:
        return [Record(1, 0.0, 0.0, "n1", "node_dead", node="n2")] if after < 1 else []


@pytest.mark.parametrize("code", [0, 1])
@pytest.mark.parametrize("spins", SPINS)
async def test_a_notifier_closed_as_its_program_exits_stops(
        tmp_path: Path, processes: list[FakeProcess], spins: int, code: int) -> None:
    write_cursor(tmp_path / cursor_name("/bin/notify-me"), 0)
    n = Notifier("/bin/notify-me", Source(), tmp_path, backoff_first_s=0.001,
                 backoff_max_s=0.001)
    await n.start()
    task = n._task
    assert task is not None
    try:
        await wait_until(lambda: processes, "the program to start")
        processes[0].exited.set_result(code)
        await spin(spins)
        assert await ends(n.close()), "the notifier's close() waits for ever"
        assert len(processes) == 1, "a program started after the notifier was closed"
    finally:
        await finish(task)


# --- sync: the session goes no further once cancelled


class FakeWriter:
    """A stream writer whose close completes when the test completes :attr:`closed`."""

    def __init__(self) -> None:
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting = False

    def close(self) -> None:
        pass

    def is_closing(self) -> bool:
        return True

    async def wait_closed(self) -> None:
        self.waiting = True
        await self.closed

    def get_extra_info(self, _name: str) -> Any:
        return None


@pytest.mark.parametrize("spins", SPINS)
async def test_channel_close_lets_a_cancellation_through(spins: int) -> None:
    w = FakeWriter()
    chan = transport.Channel(asyncio.StreamReader(), w)  # type: ignore[arg-type]
    outcome = await cancelled_as_it_completes(chan.close, lambda: w.closed.set_result(None),
                                           spins, lambda: w.waiting)
    assert outcome != "lost"


@pytest.mark.parametrize("spins", SPINS)
async def test_connect_lets_a_cancellation_through(
        monkeypatch: pytest.MonkeyPatch, spins: int) -> None:
    opened: asyncio.Future[tuple[Any, Any]] = asyncio.get_running_loop().create_future()
    calls: list[str] = []

    async def open_connection(host: str, port: int, **_kw: Any) -> tuple[Any, Any]:
        calls.append(host)
        return await opened

    monkeypatch.setattr(asyncio, "open_connection", open_connection)
    outcome = await cancelled_as_it_completes(
        lambda: transport.connect("peer", 1, 5.0),
        lambda: opened.set_result((asyncio.StreamReader(), FakeWriter())), spins,
        lambda: calls)
    assert outcome != "lost"


@pytest.mark.parametrize("which", ["challenge", "welcome"])
@pytest.mark.parametrize("spins", SPINS)
async def test_the_client_handshake_lets_a_cancellation_through(
        monkeypatch: pytest.MonkeyPatch, spins: int, which: str) -> None:
    frame: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    expected: list[Kind] = []

    async def expect(*kinds: Kind) -> Any:
        expected.append(kinds[0])
        if kinds[0].name.lower() != which:
            return SimpleNamespace(obj=dict)  # (the proof is never checked: faked below)
        return await frame

    ssl = SimpleNamespace(getpeercert=lambda binary_form: b"cert")
    chan = SimpleNamespace(writer=SimpleNamespace(get_extra_info=lambda _n: ssl),
                           send_obj=lambda *_a: None, expect=expect)
    monkeypatch.setattr(sync_protocol, "field", lambda obj, key, typ: "x")
    monkeypatch.setattr(sync_protocol, "check_proof", lambda *_a: True)
    outcome = await cancelled_as_it_completes(
        lambda: transport.client_handshake(chan, b"k", "g", "me", "peer"),  # type: ignore[arg-type]
        lambda: frame.set_result(SimpleNamespace(obj=dict)), spins,
        lambda: any(k.name.lower() == which for k in expected))
    assert outcome != "lost"


@pytest.mark.parametrize("spins", SPINS)
async def test_a_push_cancelled_as_the_peer_says_bye_goes_no_further(spins: int) -> None:
    ran: list[object] = []

    async def run_actions(*args: object, **kw: object) -> None:
        ran.append(args)

    bye: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    waiting: list[bool] = []

    async def until(_link: object, _kind: object) -> object:
        waiting.append(True)
        return await bye

    async def nothing(*_a: object) -> None:
        pass

    client = Client(SimpleNamespace(keep_sessions=True, run_actions=run_actions))  # type: ignore[arg-type]
    client._until = until  # type: ignore[method-assign,assignment]
    chan = SimpleNamespace(send=lambda _d: None, drain=nothing, close=nothing,
                           bytes_sent=0, bytes_received=0)
    link = SimpleNamespace(chan=chan, session=SimpleNamespace(bye=lambda keep: b""))
    g = SimpleNamespace(group=SimpleNamespace(name="g"))
    outcome = await cancelled_as_it_completes(
        lambda: client._push_on(link, g, "peer", [], [], Report()),  # type: ignore[arg-type]
        lambda: bye.set_result(object()), spins, lambda: waiting)
    assert outcome != "lost"
    if outcome == "cancelled":
        assert client.kept == {}, "a cancelled push kept its session for the next run"
        assert ran == [], "a cancelled push ran its actions"


@pytest.mark.parametrize("spins", SPINS)
async def test_an_action_cancelled_as_it_exits_lets_the_cancellation_through(
        tmp_path: Path, processes: list[FakeProcess], spins: int) -> None:
    item = actions.Due("true", str(tmp_path / "log"), ("a",))
    outcome = await cancelled_as_it_completes(lambda: actions.run(item),
                                           lambda: processes[0].exited.set_result(0), spins,
                                           lambda: processes)
    assert outcome != "lost"
