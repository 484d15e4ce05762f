"""A push whose results the sender never recorded: its next push offers an older base.

A user trial: the standby committed a batch (a log being appended to) and the session broke
before the active node read that batch's RESULTS (standby killed or restarted, port blocked).
The standby recorded the new log as synced with vpbx1-1; vpbx1-1 still held the old state as
the standby's. Every later push was then a conflict, "changed on both vpbx1-1 and vpbx1-2",
though nobody wrote on vpbx1-2, and the standby's log stayed stale until someone forced it.

Here the broken push is a real session by hand that commits and is never recorded by the
sender (what a sender that never reads the RESULTS is left with); then the real client pushes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from sync_harness import KEY, pair, talk_config

from nonstop.config.csync2 import AutoMode
from nonstop.sync.conflicts import Action, judge, rebased
from nonstop.sync.plan import Op
from nonstop.sync.protocol import Kind, encode
from nonstop.sync.state import FileState
from nonstop.sync.transport import client_handshake, connect

if TYPE_CHECKING:
    from sync_harness import TestNode

LOG = "/var/log/asterisk/messages"
PEER = "vpbx1-2"
CHUNK = 64 << 10


def _lines(first: int, count: int) -> bytes:
    return b"".join(b"[Dec  6 12:29:%02d] NOTICE[%06d] chan_sip.c: line\n" % (n % 60, n)
                    for n in range(first, first + count))


def _append(node: TestNode, name: str, data: bytes) -> None:
    with open(node.path(name), "ab") as fh:
        fh.write(data)


async def _push_unrecorded(n1: TestNode, n2: TestNode, name: str) -> None:
    """Push ``name`` as vpbx1-1 holds it now, with the base vpbx1-1 has on record, in a
    session by hand: the receiver commits it, vpbx1-1's records never learn of it."""
    n1.node.check()
    seen = n1.node.db.local_get(name)
    new = seen.state if seen is not None else None
    base = n1.node.db.synced_for(PEER, [name]).get(name)
    op = Op("put" if new is not None else "del", name, base, new)
    chan = await connect("127.0.0.2", n2.node.opts.port)
    try:
        await client_handshake(chan, KEY.encode(), "vpbx1", "vpbx1-1", PEER, vmax=1)
        chan.send_obj(Kind.OFFER, {"b": 0, "ops": [op.to_wire()]})
        verdict = (await chan.expect(Kind.VERDICT)).obj()
        if verdict["need"]:
            assert new is not None
            data = n1.path(name).read_bytes()[:new.size]
            for at in range(0, len(data), CHUNK):
                chan.send(encode(Kind.DATA, data[at:at + CHUNK]))
            chan.send_obj(Kind.EOF, {"i": 0, "s": new.to_wire()})
        chan.send_obj(Kind.COMMIT, {"b": 0})
        await chan.drain()
        results = (await chan.expect(Kind.RESULTS)).obj()  # committed; nobody records it
        done = verdict["r"] + results["r"]  # a deletion is done at once, in the VERDICT
        assert [r[1] for r in done] == ["ok"], done
    finally:
        await chan.close()
    agreed = n2.node.db.synced_for("vpbx1-1", [name]).get(name)
    assert (agreed is None) if new is None else new.same(agreed)
    assert not (new is None and base is None) and not (new is not None and new.same(base))


async def test_a_log_whose_last_push_went_unrecorded_is_appended_not_a_conflict(
        tmp_path: Path) -> None:
    async with pair(tmp_path) as (n1, n2):
        n1.write(LOG, _lines(0, 20_000))
        assert await n1.sync() == []
        _append(n1, LOG, _lines(20_000, 40))
        await _push_unrecorded(n1, n2, LOG)
        replica = n2.path(LOG)
        ino = replica.stat().st_ino
        _append(n1, LOG, _lines(20_040, 40))  # the daemon goes on writing
        assert await n1.sync() == []
        assert replica.read_bytes() == n1.path(LOG).read_bytes()
        assert replica.stat().st_ino == ino  # appended in place, against the standby's copy
        assert not any("conflict" in m for m in n1.log)
        assert n1.node.dirty_lines() == []
        # the sender's record is right again: the next append is an ordinary one
        _append(n1, LOG, _lines(20_080, 40))
        assert await n1.sync() == []
        assert replica.read_bytes() == n1.path(LOG).read_bytes()


async def test_a_file_unchanged_since_the_unrecorded_push_is_only_recorded(
        tmp_path: Path) -> None:
    async with pair(tmp_path) as (n1, n2):
        n1.write("/etc/asterisk/sip.conf", "[general]\n")
        assert await n1.sync() == []
        n1.write("/etc/asterisk/sip.conf", "[general]\nbindport=5060\n")
        await _push_unrecorded(n1, n2, "/etc/asterisk/sip.conf")
        assert await n1.sync() == []
        assert n1.node.dirty_lines() == []


async def test_a_change_on_the_standby_after_the_unrecorded_push_is_still_a_conflict(
        tmp_path: Path) -> None:
    async with pair(tmp_path) as (n1, n2):
        n1.write(LOG, _lines(0, 2_000))
        assert await n1.sync() == []
        _append(n1, LOG, _lines(2_000, 40))
        await _push_unrecorded(n1, n2, LOG)
        _append(n2, LOG, b"written on the standby\n")
        standby = n2.path(LOG).read_bytes()
        _append(n1, LOG, _lines(2_040, 40))
        problems = await n1.sync()
        assert len(problems) == 1 and "changed on both vpbx1-1 and vpbx1-2" in problems[0]
        assert n2.path(LOG).read_bytes() == standby


async def test_an_older_standby_version_does_not_win_by_auto_after_an_unrecorded_push(
        tmp_path: Path) -> None:
    # auto older: a real conflict would keep the standby's (older) log and fetch it back over
    # the active node's, losing its newest lines.
    async with pair(tmp_path, talk_config(tmp_path, auto="older")) as (n1, n2):
        n1.write(LOG, _lines(0, 2_000))
        assert await n1.sync() == []
        _append(n1, LOG, _lines(2_000, 40))
        await _push_unrecorded(n1, n2, LOG)
        _append(n1, LOG, _lines(2_040, 40))
        newest = n1.path(LOG).read_bytes()
        assert await n1.sync() == []
        assert n1.path(LOG).read_bytes() == newest == n2.path(LOG).read_bytes()


async def test_a_deletion_pushed_unrecorded_then_the_name_made_again(tmp_path: Path) -> None:
    async with pair(tmp_path) as (n1, n2):
        n1.write("/etc/asterisk/old.conf", "v0")
        assert await n1.sync() == []
        os.unlink(n1.path("/etc/asterisk/old.conf"))
        await _push_unrecorded(n1, n2, "/etc/asterisk/old.conf")
        assert not n2.path("/etc/asterisk/old.conf").exists()
        n1.write("/etc/asterisk/old.conf", "made again")
        assert await n1.sync() == []
        assert n2.path("/etc/asterisk/old.conf").read_text() == "made again"


async def test_a_rename_after_an_unrecorded_push_leaves_no_old_name(tmp_path: Path) -> None:
    # The rename's source carries vpbx1-1's older record of it too.
    async with pair(tmp_path) as (n1, n2):
        n1.write("/var/spool/asterisk/msg0001.txt", "v0 " * 10_000)
        assert await n1.sync() == []
        n1.write("/var/spool/asterisk/msg0001.txt", "v1 " * 10_000)
        await _push_unrecorded(n1, n2, "/var/spool/asterisk/msg0001.txt")
        os.rename(n1.path("/var/spool/asterisk/msg0001.txt"),
                  n1.path("/var/spool/asterisk/msg0000.txt"))
        assert await n1.sync() == []
        assert not n2.path("/var/spool/asterisk/msg0001.txt").exists()
        assert n2.path("/var/spool/asterisk/msg0000.txt").read_text() == "v1 " * 10_000
        assert n1.node.dirty_lines() == []


# --- the pure verdict -------------------------------------------------------------------------
def _reg(content: str) -> FileState:
    return FileState("reg", 0o644, 0, 0, len(content), 1, content)


def _rejudge(base: FileState | None, new: FileState | None, current: FileState | None,
             agreed: FileState | None, auto: AutoMode = AutoMode.NONE,
             forced: bool = False) -> Action:
    v = judge("/f", base, new, current, forced=forced, auto=auto, sender="s", receiver="r",
              hosts=("s", "r"))
    return rebased(v, "/f", current, agreed, sender="s", receiver="r").action


def test_rebased_takes_the_receivers_record_when_it_holds_exactly_that() -> None:
    b0, b1, b2, mine = _reg("b0"), _reg("b0+1"), _reg("b0+1+2"), _reg("mine")
    assert _rejudge(b0, b2, b1, b1) is Action.APPLY
    assert _rejudge(b0, b2, b1, b1, AutoMode.OLDER) is Action.APPLY
    assert _rejudge(b0, b2, b1, b1, forced=True) is Action.APPLY
    assert _rejudge(b0, b2, None, None) is Action.APPLY  # our deletion came from the sender
    assert _rejudge(b0, None, b1, b1) is Action.APPLY
    # a real change here stays one: against the sender's base and against our record
    assert _rejudge(b0, b2, mine, b1) is Action.CONFLICT
    assert _rejudge(b0, b2, None, b1) is Action.CONFLICT
    assert _rejudge(b0, b2, mine, b1, AutoMode.SMALLER) is Action.LOSE
    assert _rejudge(b0, b2, mine, b1, forced=True) is Action.FORCE
    assert _rejudge(None, b2, mine, None) is Action.CONFLICT


def test_rebased_says_why_and_never_changed_on_both() -> None:
    b0, b1, b2 = _reg("b0"), _reg("b0+1"), _reg("b0+1+2")
    v = judge("/f", b0, b2, b1, forced=False, auto=AutoMode.NONE, sender="vpbx1-1",
              receiver="vpbx1-2", hosts=("vpbx1-1", "vpbx1-2"))
    assert v.action is Action.CONFLICT  # what the sender's base alone says
    v = rebased(v, "/f", b1, b1, sender="vpbx1-1", receiver="vpbx1-2")
    assert v.action is Action.APPLY and "both" not in v.reason
    assert v.reason == ("/f: unchanged on vpbx1-2 since its last sync with vpbx1-1, whose "
                        "record of that sync was older")
