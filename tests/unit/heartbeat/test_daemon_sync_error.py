"""Replication that ha.cf asks for but that could not start shows in status."""

from __future__ import annotations

from pathlib import Path

from daemon_harness import talk_daemon

from nonstop.quick import render_status


async def test_a_csync2_cfg_that_fails_at_start_shows_in_status_not_as_no_replication(
        tmp_path: Path) -> None:
    """run starts without replication when csync2.cfg is broken; status showed no replication
    line at all, the same as a cluster without nonstop_sync, and only the log said why."""
    daemon, _ = talk_daemon(tmp_path)
    broken = tmp_path / "csync2.cfg"
    broken.write_text("group g\n{\n    host vpbx1-1 vpbx1-2\n}\n")  # no ';'
    await daemon._start_replication(str(broken))
    st = daemon.status()
    assert st["sync"] is None
    assert st["sync_error"] and "csync2.cfg" in st["sync_error"]
    assert "replication: OFF: " in render_status(st)


async def test_the_text_status_tells_drops_from_duplicates_and_losses(tmp_path: Path) -> None:
    """After a clean stop of the peer (its notice sent three times) the text ended with
    "dropped packets: duplicate 2", as if something had gone wrong (a user trial): copies are
    not drops. Packets lost on the way are said as such; real drops as before."""
    daemon, _ = talk_daemon(tmp_path)
    st = daemon.status()
    st["packets"]["dropped"] = {"duplicate": 2}
    assert "packets" not in render_status(st).split("\n")[-1]
    st["packets"]["dropped"] = {"bad_auth": 3, "duplicate": 2, "lost": 4}
    text = render_status(st)
    assert "dropped packets: bad_auth 3\n" in text and "duplicate" not in text
    assert text.endswith("lost packets (sent by peers, never arrived): 4")


async def test_the_text_status_says_replication_does_not_reach_a_dead_peer(
        tmp_path: Path) -> None:
    """A split brain's holder read "replication: active (pushing), dirty 2, lag 6.67 s, last
    sync ok" while its peer was dead: pushes skip a dead peer, so "ok" said nothing of it (a
    user trial). The text now says that nothing reaches that peer until it is back."""
    daemon, _ = talk_daemon(tmp_path)
    st = daemon.status()
    st["sync"] = {"active": True, "dirty": 2, "lag_s": 6.67, "last_sync": 1.0,
                  "last_sync_ok": True}
    assert "not replicating" not in render_status(st)  # vpbx1-2 not dead
    peer = next(n for n in st["nodes"] if not n["local"])
    peer["status"] = "dead"
    text = render_status(st)
    assert "last sync ok\n    not replicating to vpbx1-2 (dead): changes wait until it is " \
           "back" in text, text
    st["sync"]["active"] = False  # a standby pushes nothing anyway
    assert "not replicating" not in render_status(st)


async def test_a_takeover_s_force_marks_are_not_called_changes_never_sent(
        tmp_path: Path) -> None:
    """While the new holder starts the group its master script's force-sync marks names to
    push: the standby's line "changed here, never sent (a standby does not push)" was shown
    for them during the takeover (a user trial), though they go out once the group is up."""
    daemon, _ = talk_daemon(tmp_path)
    st = daemon.status()
    st["sync"] = {"active": False, "dirty": 2, "lag_s": 0.0, "last_sync": None,
                  "last_sync_ok": None}
    st["groups"] = [{"key": "g", "preferred_node": "vpbx1-1", "holder": "vpbx1-1",
                     "local_state": "starting", "epoch": 2, "resources": []}]
    assert "never sent" not in render_status(st)
    st["groups"][0]["local_state"] = "none"
    assert "changed here, never sent" in render_status(st)
