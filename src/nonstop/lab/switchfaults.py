"""The faults a lab injects at its switch: links down, loss, isolated pairs, blackouts.

:class:`SwitchFaults` is the part of :class:`nonstop.lab.lab.Lab` that keeps the
:class:`~nonstop.lab.faults.FaultState` and loads it into the switch's nftables.
"""

from __future__ import annotations

from nonstop.lab.commands import run_checked
from nonstop.lab.errors import LabError
from nonstop.lab.faults import Direction, FaultState, render_ruleset


class SwitchFaults:
    """Fault injection for a lab; the lab provides its names (below) and ``_faults``."""

    _faults: FaultState

    @property
    def switch_netns(self) -> str:
        raise NotImplementedError

    @property
    def hosts(self) -> tuple[str, ...]:
        raise NotImplementedError

    def port(self, host: str) -> str:
        raise NotImplementedError

    def _ip(self, *args: str) -> str:
        raise NotImplementedError

    def _apply_faults(self) -> None:
        run_checked(["ip", "netns", "exec", self.switch_netns, "nft", "-f", "-"],
                    input_text=render_ruleset(self._faults))

    def link_down(self, host: str) -> None:
        """Pull the host's cable: its switch port goes down, its eth0 loses carrier."""
        self._ip("-n", self.switch_netns, "link", "set", self.port(host), "down")

    def link_up(self, host: str) -> None:
        """Plug the host's cable back in."""
        self._ip("-n", self.switch_netns, "link", "set", self.port(host), "up")

    def set_loss(self, host: str, percent: int, direction: Direction = "both") -> None:
        """Drop ``percent`` % of frames from (``out``), to (``in``) or both ways at the host's
        switch port; 0 removes the loss."""
        self._faults.set_loss(self.port(host), percent, direction)
        self._apply_faults()

    def isolate(self, a: str, b: str) -> None:
        """Hosts ``a`` and ``b`` no longer hear each other; both still reach everyone else."""
        if a == b:
            raise LabError("cannot isolate a host from itself")
        self._faults.isolated_pairs.add(frozenset((self.port(a), self.port(b))))
        self._apply_faults()

    def unisolate(self, a: str, b: str) -> None:
        """Undo one :meth:`isolate` (the other isolated pairs stay)."""
        self._faults.isolated_pairs.discard(frozenset((self.port(a), self.port(b))))
        self._apply_faults()

    def heal(self) -> None:
        """Undo every :meth:`isolate` (loss and blackouts stay)."""
        self._faults.isolated_pairs.clear()
        self._apply_faults()

    def blackout(self, host: str) -> None:
        """Drop everything the host sends; it still receives and its link stays up."""
        self._faults.blackouts.add(self.port(host))
        self._apply_faults()

    def unblackout(self, host: str) -> None:
        """End a :meth:`blackout`."""
        self._faults.blackouts.discard(self.port(host))
        self._apply_faults()

    def clear_faults(self) -> None:
        """Remove every fault: loss, isolation, blackouts, and bring every link up."""
        self._faults.clear()
        self._apply_faults()
        for host in self.hosts:
            self.link_up(host)
