"""Which peers ran a group's services while this node held the group, and have stopped them.

A healed split brain leaves two nodes running one group until the loser has released it: the
loser's services go on writing (Asterisk's log, its CDRs) until its release stops them, which
is after the keeper's push at the heal. What they wrote then is changed on both sides, and
would stay in conflict. The keeper learns from the loser's status when its services have
stopped (its group state no longer one that may run them); that is the moment the keeper can
force its tree onto it again, the loser's versions kept in its backup directory.

Pure: the daemon passes the groups it holds and the peers' ads it hears, and gets back the
new state and, for each peer that has just stopped, the reason, which it logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from nonstop.failover.state import NodeAd


@dataclass(frozen=True)
class Rivals:
    """The (peer, group) pairs seen able to run the group's services while this node held it."""

    running: frozenset[tuple[str, int]] = frozenset()

    def after(self, held: Mapping[int, str], ads: Mapping[str, NodeAd | None],
              ) -> tuple[Rivals, dict[str, str]]:
        """``held``: the groups this node holds (index to key); ``ads``: what each live peer
        says (None: nothing known, its holdings unknown). Returns the new state and, per peer
        whose services of a group held here have just stopped, why it counts as such.

        A peer that dies or is unheard is forgotten: nothing can be pushed to it, and a group
        this node no longer holds is no longer its to force."""
        running: set[tuple[str, int]] = set()
        stopped: dict[str, str] = {}
        for peer, ad in ads.items():
            if ad is None:
                continue
            for g, key in held.items():
                mine = ad.groups.get(g)
                if mine is not None and mine.state.may_run:
                    running.add((peer, g))
                elif (peer, g) in self.running and peer not in stopped:
                    now = mine.state.name if mine is not None else "NONE"
                    stopped[peer] = (f"{peer} ran group {key} while this node held it and has "
                                     f"stopped its services (now {now})")
        return Rivals(frozenset(running)), stopped
