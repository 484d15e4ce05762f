"""Is an incoming change a fast-forward, a no-op or a conflict, and who wins (pure).

The receiver compares what it holds now with the sender's ``base`` (what the sender believes the
receiver held after their last sync). Equal: nobody else touched it, apply. Different: the file
changed on both sides since the last sync: a conflict, which ``-f`` overrides and the ``auto``
modes resolve as csync2 does. Every verdict carries a reason a person can read at ``-v0``.

The sender's ``base`` can be older than the last sync: a session that ended after the receiver
committed a batch but before the sender read its results leaves the sender with the state before
it. ``rebased`` judges such a change again against the receiver's own record of that sync.
"""

from __future__ import annotations

import enum

from nonstop.config.csync2 import AutoMode
from nonstop.records import record
from nonstop.sync.state import FileState


class Action(enum.Enum):
    """What the receiver does with one incoming change."""

    SAME = "same"  # already identical here: only record it
    APPLY = "apply"  # fast-forward
    FORCE = "force"  # conflict overridden by -f: overwrite, keep a backup
    AUTO_WIN = "auto-win"  # conflict resolved by `auto` in the sender's favour
    CONFLICT = "conflict"  # left alone
    LOSE = "lose"  # conflict resolved by `auto` in the receiver's favour


@record
class Verdict:
    """An action and the reason people read."""

    action: Action
    reason: str = ""


# The verdicts that take the receiver's file for changed since the last sync.
DISAGREE = frozenset({Action.CONFLICT, Action.FORCE, Action.AUTO_WIN, Action.LOSE})


def holds(state: FileState | None, other: FileState | None,
          ignore: frozenset[str] = frozenset()) -> bool:
    """Whether ``state`` is ``other`` as far as syncing is concerned (both absent included)."""
    return other is None if state is None else state.same(other, ignore)


def _what(base: FileState | None, state: FileState | None, ignore: frozenset[str]) -> str:
    if state is None:
        return "deleted" if base is not None else "absent"
    if base is None:
        return f"created ({state.describe()})"
    if base.kind != state.kind:
        return f"replaced by a {state.kind}"
    parts = []
    if state.digest != base.digest or state.size != base.size or state.target != base.target:
        parts.append("content")
    if state.mode != base.mode and "mod" not in ignore:
        parts.append("mode")
    if (state.uid, state.gid) != (base.uid, base.gid):
        parts.append("owner")
    if state.mtime_ns != base.mtime_ns:
        parts.append("mtime")
    return "changed " + "/".join(parts or ["metadata"])


def judge(
    name: str,
    base: FileState | None,
    new: FileState | None,
    current: FileState | None,
    *,
    forced: bool,
    auto: AutoMode,
    sender: str,
    receiver: str,
    hosts: tuple[str, ...],
    ignore: frozenset[str] = frozenset(),
) -> Verdict:
    """The receiver's decision for one incoming change of ``name``."""
    if (new is None and current is None) or (new is not None and new.same(current, ignore)):
        return Verdict(Action.SAME)
    if holds(current, base, ignore):
        return Verdict(Action.APPLY)
    if (
        new is not None
        and current is not None
        and new.same_content(current)
        and (new.mode == current.mode or "mod" in ignore)
        and ((new.uid, new.gid) == (current.uid, current.gid) or {"uid", "gid"} <= ignore)
    ):
        # The same bytes on both sides (e.g. one file installed on both nodes of a new
        # cluster): only the mtime differs, which csync2 also just sets (SETIME is not
        # checked for dirtiness). Not a conflict.
        return Verdict(Action.APPLY, f"{name}: same content on {sender} and {receiver}; "
                       "only the modification time differed")
    here = _what(base, current, ignore)
    if new.same(base, ignore) if new is not None else base is None:
        # -f, or a mark by hand (-m), of a name unchanged here since the last sync: only the
        # receiver changed it
        both = f"{name} changed on {receiver} since the last sync ({here})"
    else:
        both = (
            f"{name} changed on both {sender} and {receiver} since the last sync "
            f"({receiver}: {here}; {sender}: {_what(base, new, ignore)})"
        )
    if forced:
        return Verdict(Action.FORCE, f"overwrote {receiver}'s unsynced change: {both}")
    winner = _auto_winner(auto, new, current, sender, receiver, hosts)
    if winner == sender:
        return Verdict(Action.AUTO_WIN, f"auto {auto.value}: {sender} wins: {both}")
    if winner == receiver:
        return Verdict(Action.LOSE, f"auto {auto.value}: {receiver} wins: {both}")
    # Under the daemon only the group's holder pushes (a standby's push is refused): the
    # version to keep must be on the holder, copied there first if the other node has it.
    hint = (f"resolve with: nonstop sync -f {name} on the node whose version should win (with "
            f"the daemon, the node holding the group: copy the other node's version to it "
            f"first to keep that one)")
    return Verdict(Action.CONFLICT, f"{both}; left alone (auto {auto.value}); {hint}")


def rebased(verdict: Verdict, name: str, current: FileState | None, agreed: FileState | None,
            *, sender: str, receiver: str, ignore: frozenset[str] = frozenset()) -> Verdict:
    """``verdict`` judged again against ``agreed``, the receiver's own record of what it and the
    sender held after their last sync (None: nothing).

    A receiver that holds exactly that has changed nothing since: the change is a fast-forward,
    whatever older ``base`` the sender offered (it did not record the results of its last push).
    Any other verdict stands, a real change on both sides too."""
    if verdict.action not in DISAGREE or not holds(current, agreed, ignore):
        return verdict
    return Verdict(Action.APPLY, f"{name}: unchanged on {receiver} since its last sync with "
                                 f"{sender}, whose record of that sync was older")


def _auto_winner(
    auto: AutoMode,
    new: FileState | None,
    current: FileState | None,
    sender: str,
    receiver: str,
    hosts: tuple[str, ...],
) -> str | None:
    if auto is AutoMode.NONE:
        return None
    if auto is AutoMode.FIRST:
        return sender
    if auto in (AutoMode.LEFT, AutoMode.RIGHT):
        order = [h for h in hosts if h in (sender, receiver)]
        if len(order) != 2:
            return None
        return order[0] if auto is AutoMode.LEFT else order[1]
    # younger/older/bigger/smaller: a deletion never wins; the side that has the file does.
    if new is None:
        return receiver
    if current is None:
        return sender
    if auto in (AutoMode.YOUNGER, AutoMode.OLDER):
        a, b = new.mtime_ns, current.mtime_ns
    else:
        a, b = new.size, current.size
    if a == b:
        return None
    sender_bigger = a > b
    want_bigger = auto in (AutoMode.YOUNGER, AutoMode.BIGGER)
    return sender if sender_bigger == want_bigger else receiver
