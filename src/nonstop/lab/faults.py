"""Network faults as data, rendered to the nftables ruleset of the lab's switch.

The switch is a Linux bridge; a frame a node sends enters the bridge on that node's port
(``iifname``), a frame to a node leaves on it (``oifname``). The bridge-family ``forward`` hook
sees each forwarded frame once per output port, flooded broadcasts included, so per-port rules
give per-direction faults. This kernel has no netem, so loss is ``numgen random``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Direction = Literal["in", "out", "both"]
TABLE = "lab"


@dataclass
class FaultState:
    """The faults in force; keys are switch port names."""

    loss_out: dict[str, int] = field(default_factory=dict)
    loss_in: dict[str, int] = field(default_factory=dict)
    blackouts: set[str] = field(default_factory=set)
    isolated_pairs: set[frozenset[str]] = field(default_factory=set)

    def set_loss(self, port: str, percent: int, direction: Direction) -> None:
        """Record ``percent`` loss on ``port``; 0 removes it."""
        if not 0 <= percent <= 100:
            raise ValueError(f"loss must be 0..100 %, not {percent}")
        targets: list[dict[str, int]] = []
        if direction in ("out", "both"):
            targets.append(self.loss_out)
        if direction in ("in", "both"):
            targets.append(self.loss_in)
        if not targets:
            raise ValueError(f"direction must be 'in', 'out' or 'both', not {direction!r}")
        for table in targets:
            if percent == 0:
                table.pop(port, None)
            else:
                table[port] = percent

    def clear(self) -> None:
        """Remove every fault."""
        self.loss_out.clear()
        self.loss_in.clear()
        self.blackouts.clear()
        self.isolated_pairs.clear()


def render_ruleset(state: FaultState) -> str:
    """The complete nft script for the switch namespace, replacing whatever was there."""
    rules: list[str] = []
    for port in sorted(state.blackouts):
        rules.append(f'iifname "{port}" drop')
    for pair in sorted(sorted(p) for p in state.isolated_pairs):
        a, b = pair
        rules.append(f'iifname "{a}" oifname "{b}" drop')
        rules.append(f'iifname "{b}" oifname "{a}" drop')
    rules.extend(_loss_rules("iifname", state.loss_out))
    rules.extend(_loss_rules("oifname", state.loss_in))
    body = "".join(f"\t\t{rule}\n" for rule in rules)
    # The switch namespace holds nothing but this table, so replacing the ruleset is atomic
    # and leaves no stale rule behind.
    return (
        "flush ruleset\n"
        f"table bridge {TABLE} {{\n"
        "\tchain forward {\n"
        "\t\ttype filter hook forward priority 0; policy accept;\n"
        f"{body}"
        "\t}\n"
        "}\n"
    )


def _loss_rules(match: str, losses: Mapping[str, int]) -> list[str]:
    return [
        f'{match} "{port}" numgen random mod 100 < {percent} drop'
        for port, percent in sorted(losses.items())
    ]
