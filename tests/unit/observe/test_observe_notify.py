"""nonstop_notify: every event, in order, one at a time per program, retried with back-off,
a hung program killed and retried, nothing lost across a daemon restart."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import time
from pathlib import Path

from nonstop.config.loader import load_config_dir
from nonstop.config.model import ClusterConfig
from nonstop.observe.notify import Notifier, cursor_name
from nonstop.observe.recorder import Recorder
from nonstop.talk import copy_talk


def talk_config(tmp_path: Path, programs: tuple[str, ...] = ()) -> ClusterConfig:
    ha_d = tmp_path / "talk" / "ha.d"
    if not ha_d.exists():
        copy_talk(tmp_path / "talk")
    cfg = load_config_dir(str(ha_d), "vpbx1-1")
    return dataclasses.replace(cfg, ha=dataclasses.replace(cfg.ha, notify_programs=programs))


def program(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


async def wait_until(cond: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def start(tmp_path: Path, programs: tuple[str, ...], **notify: float) -> Recorder:
    rec = Recorder(talk_config(tmp_path, programs), "vpbx1-1", tmp_path / "state",
                   metrics=True)
    await rec.start()
    for service in rec._services:
        if isinstance(service, Notifier):
            for k, v in notify.items():
                setattr(service, k, v)
    return rec


async def test_events_arrive_in_order_one_at_a_time(tmp_path: Path) -> None:
    out = tmp_path / "out"
    prog = program(tmp_path, "slow", f'echo "begin $NONSTOP_EVENT_SEQUENCE" >> {out}\n'
                   f'sleep 0.05\necho "end $NONSTOP_EVENT_SEQUENCE $NONSTOP_EVENT_KIND '
                   f'$NONSTOP_EVENT_NODE" >> {out}\n')
    rec = await start(tmp_path, (prog,))
    first = rec.seq  # daemon_start of this run
    for i in range(5):
        rec.record("node_dead", node=f"n{i}", reason="test")
    last = rec.seq
    await wait_until(lambda: len(lines(out)) == 2 * (last - first + 1))
    await rec.close()
    got = lines(out)
    expected = []
    for seq in range(first, last + 1):
        expected.append(f"begin {seq}")
        kind_node = "daemon_start vpbx1-1" if seq == first else f"node_dead n{seq - first - 1}"
        expected.append(f"end {seq} {kind_node}")
    assert got[: len(expected)] == expected


async def test_a_failing_program_is_retried_with_back_off_and_keeps_the_order(
        tmp_path: Path) -> None:
    out = tmp_path / "out"
    tries = tmp_path / "tries"
    # Fails the first two attempts of every event, then takes it.
    prog = program(tmp_path, "flaky", f'echo "$NONSTOP_EVENT_SEQUENCE $NONSTOP_EVENT_ATTEMPT '
                   f'$(date +%s.%N)" >> {tries}\n'
                   f'[ "$NONSTOP_EVENT_ATTEMPT" -ge 3 ] || exit 1\n'
                   f'echo "$NONSTOP_EVENT_SEQUENCE" >> {out}\n')
    rec = await start(tmp_path, (prog,), backoff_first_s=0.05, backoff_max_s=0.2)
    first = rec.seq
    rec.record("group_acquired", group="g", reason="test")
    await wait_until(lambda: len(lines(out)) == 2)
    await rec.close()
    assert lines(out) == [str(first), str(first + 1)]
    attempts = [line.split() for line in lines(tries)]
    assert [(a[0], a[1]) for a in attempts] == [
        (str(first), "1"), (str(first), "2"), (str(first), "3"),
        (str(first + 1), "1"), (str(first + 1), "2"), (str(first + 1), "3")]
    gaps = [float(attempts[i + 1][2]) - float(attempts[i][2]) for i in range(2)]
    assert gaps[0] >= 0.04 and gaps[1] >= 0.09  # 50 ms, then doubled
    assert rec.metrics is not None
    assert rec.metrics.registry.get_sample_value("nonstop_notify_failures_total",
                                                 {"program": prog}) == 4


async def test_a_hung_program_is_killed_retried_and_never_blocks_the_loop(
        tmp_path: Path) -> None:
    out = tmp_path / "out"
    pidfile = tmp_path / "hung.pid"
    prog = program(tmp_path, "hangs", f'if [ ! -e {pidfile} ]; then echo $$ > {pidfile}; '
                   f'exec sleep 60; fi\necho "$NONSTOP_EVENT_SEQUENCE" >> {out}\n')
    rec = await start(tmp_path, (prog,), timeout_s=0.5, backoff_first_s=0.05)
    ticks: list[float] = []
    for _ in range(60):  # the heartbeat path's stand-in: a timer every 10 ms
        ticks.append(time.monotonic())
        await asyncio.sleep(0.01)
    await wait_until(lambda: len(lines(out)) == 1)
    await rec.close()
    assert max(b - a for a, b in itertools.pairwise(ticks)) < 0.2
    pid = int(pidfile.read_text())
    assert not os.path.exists(f"/proc/{pid}")  # killed (and reaped), not left hanging
    assert lines(out) == [str(rec.seq - 1)]  # the daemon_start event, at its second try


async def test_undelivered_events_are_delivered_after_a_restart(tmp_path: Path) -> None:
    out = tmp_path / "out"
    gate = tmp_path / "open"
    prog = program(tmp_path, "gated", f'[ -e {gate} ] || exit 1\n'
                   f'echo "$NONSTOP_EVENT_SEQUENCE $NONSTOP_EVENT_KIND" >> {out}\n')
    rec = await start(tmp_path, (prog,), backoff_first_s=0.05, backoff_max_s=0.05)
    first = rec.seq
    rec.record("node_dead", node="vpbx1-2", reason="silent")
    rec.record("group_starting", group="g", reason="taking over")
    await asyncio.sleep(0.2)
    await rec.close()  # the program never accepted anything in this run
    assert lines(out) == []
    cursor = tmp_path / "state" / "notify" / cursor_name(prog)
    assert int(cursor.read_text()) == first - 1

    gate.touch()
    again = await start(tmp_path, (prog,))
    upto = again.seq
    await wait_until(lambda: len(lines(out)) == upto - first + 1)
    await again.close()
    kinds = [line.split() for line in lines(out)]
    assert [int(k[0]) for k in kinds] == list(range(first, upto + 1))
    assert [k[1] for k in kinds[:5]] == ["daemon_start", "node_dead", "group_starting",
                                         "daemon_stop", "daemon_start"]


async def test_a_new_program_starts_with_the_events_of_its_first_run(tmp_path: Path) -> None:
    old = await start(tmp_path, ())
    old.record("node_dead", node="vpbx1-2")
    await old.close()
    out = tmp_path / "out"
    prog = program(tmp_path, "new", f'echo "$NONSTOP_EVENT_KIND" >> {out}\n')
    rec = await start(tmp_path, (prog,))
    await wait_until(lambda: len(lines(out)) == 1)
    await rec.close()
    assert lines(out)[0] == "daemon_start"
