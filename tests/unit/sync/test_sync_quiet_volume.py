"""A replica file system that stays full: one warning per window in the log, not one per file."""

from __future__ import annotations

from nonstop.sync.context import QuietRepeats

INBOX = "/var/spool/asterisk/voicemail/default/1000/INBOX"


def _full(head: str, i: int) -> str:
    return (f"{head}: error: {INBOX}/msg{i:04d}.wav: write failed on vpbx1-2: "
            "No space left on device")


def test_a_full_replica_disk_is_one_line_per_window_on_either_node() -> None:
    """Measured in a lab: the standby's spool full for 26 s while a voicemail came every
    second gave 20 warnings on each node, one per file, and a line a file (capped at 20 a
    minute) for as long as the disk stays full."""
    for head in ("vpbx1-2", "vpbx1-1 -> vpbx1-2"):  # the pusher's words, the receiver's
        said = _ten_minutes_full(head)
        assert len(said) == 2, said
        assert said[0].startswith(_full(head, 0))
        assert "counted, not logged, for 300 s" in said[0]
        assert said[1] == (f"{_full(head, 300)} (and 299 more file(s) failed the same way "
                           "after it was last logged, 300 s ago)")


def _ten_minutes_full(head: str) -> list[str]:
    said: list[str] = []
    now = [0.0]
    out = QuietRepeats(lambda _lvl, m: said.append(m), clock=lambda: now[0])
    for i in range(600):  # a file a second
        out(0, _full(head, i))
        now[0] += 1.0
    return said


def test_only_whole_file_system_errors_are_grouped() -> None:
    said: list[str] = []
    out = QuietRepeats(lambda _lvl, m: said.append(m), clock=lambda: 0.0)
    out(0, "vpbx1-2: error: /etc/asterisk/a.conf: write failed on vpbx1-2: Permission denied")
    out(0, "vpbx1-2: error: /etc/asterisk/b.conf: write failed on vpbx1-2: Permission denied")
    out(0, "vpbx1-2: conflict: /etc/asterisk/a.conf changed on both")
    out(0, "vpbx1-2: conflict: /etc/asterisk/b.conf changed on both")
    assert len(said) == 4  # each file named: each needs its own fix
    # another peer's full disk, or a read-only one, is its own line
    out(0, _full("vpbx1-3", 1))
    out(0, "vpbx1-2: error: /etc/asterisk/a.conf: write failed on vpbx1-2: "
           "Read-only file system")
    assert len(said) == 6


def test_volume_cause() -> None:
    from nonstop.sync.context import volume_cause

    assert volume_cause(_full("vpbx1-2", 7)) == "vpbx1-2: error: files: No space left on device"
    assert volume_cause("vpbx1-2: error: /x: write failed on vpbx1-2: Permission denied") is None
    assert volume_cause("replication failed: No space left on device") is None
