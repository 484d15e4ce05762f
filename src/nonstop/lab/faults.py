"""Network faults as data, rendered to the nftables ruleset of the lab's switch.

The switch is a Linux bridge; a frame a node sends enters the bridge on that node's port
(``iifname``), a frame to a node leaves on it (``oifname``). The bridge-family ``forward`` hook
sees each forwarded frame once per output port, flooded broadcasts included, so per-port rules
give per-direction faults. This kernel has no netem, so loss is ``numgen random``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from nonstop.errors import InvalidValue

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
            raise InvalidValue(f"loss must be 0..100 %, not {percent}")
        targets: list[dict[str, int]] = []
        if direction in ("out", "both"):
            targets.append(self.loss_out)
        if direction in ("in", "both"):
            targets.append(self.loss_in)
        if not targets:
            raise InvalidValue(f"direction must be 'in', 'out' or 'both', not {direction!r}")
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
    # ``numgen random mod 100`` is 0..99, and nft refuses a comparison with 100 ("Value 100
    # exceeds valid range 0-99"): all of it is a plain drop.
    return [
        f'{match} "{port}" drop' if percent >= 100
        else f'{match} "{port}" numgen random mod 100 < {percent} drop'
        for port, percent in sorted(losses.items())
    ]


# -- chaos schedules (issue 12, item 6) ----------------------------------------------------------

ChaosKind = Literal["kill", "stop", "crash", "cable", "uplink", "loss", "cpuhog"]
CHAOS_KINDS: tuple[ChaosKind, ...] = ("kill", "stop", "crash", "cable", "uplink", "loss",
                                      "cpuhog")
CHAOS_TITLES: Mapping[ChaosKind, str] = {
    "kill": "daemon SIGKILLed, restarted",
    "stop": "daemon SIGSTOPped 1-4 s, SIGCONT",
    "crash": "active box crashed, rebooted",
    "cable": "cable pulled, plugged back",
    "uplink": "uplink to the ping node (and client) cut",
    "loss": "30-50 % loss on a node's link",
    "cpuhog": "CPU hog on a node",
}
# Which node a fault hits: the VIP holder, the other node, or either (drawn at random).
Role = Literal["active", "standby"]


@dataclass(frozen=True)
class ChaosFault:
    """One fault of a chaos schedule, in seconds after the run's start.

    ``role`` names the node by what it does when the fault comes (resolved then, so one
    schedule fits every system); ``pick`` is the node taken when no single node holds the VIP
    (0 or 1, drawn with the schedule: same schedule, same choice). ``duration`` is how long the
    fault lasts (for kill and crash: until the restart). ``percent`` and ``direction`` are for
    loss only.
    """

    at: float
    kind: ChaosKind
    role: Role
    duration: float
    pick: int = 0
    percent: int = 0
    direction: Direction = "both"

    @property
    def end(self) -> float:
        """When the fault is lifted (the node restarted, the cable plugged back...)."""
        return self.at + self.duration

    def describe(self) -> str:
        """A short human description, e.g. 'loss 40 % in on the standby for 7.2 s'."""
        what = (f"loss {self.percent} % {self.direction}" if self.kind == "loss"
                else self.kind)
        return f"{what} on the {self.role} for {self.duration:.1f} s"


# (shortest, longest) duration of each kind in seconds; quick mode uses the shortest.
_DURATIONS: Mapping[ChaosKind, tuple[float, float]] = {
    "kill": (1.0, 3.0),       # until the daemon is started again
    "stop": (1.0, 4.0),       # as the issue says
    "crash": (3.0, 8.0),      # until the box boots again
    "cable": (3.0, 10.0),
    "uplink": (4.0, 15.0),
    "loss": (4.0, 15.0),
    "cpuhog": (4.0, 15.0),
}
_QUICK_DURATIONS: Mapping[ChaosKind, float] = {
    "kill": 1.0, "stop": 1.5, "crash": 2.0, "cable": 2.5, "uplink": 2.5, "loss": 2.0,
    "cpuhog": 2.0,
}
# Quiet time after a fault is lifted before the next one: long enough for a rebooted node to
# come back (initdead) in the full run; the quick run only proves that every path works.
GAP_S = (8.0, 15.0)
QUICK_GAP_S = 2.0


def chaos_schedule(seed: int, duration: float, *, quick: bool = False,
                   start: float = 0.0) -> list[ChaosFault]:
    """The faults of a chaos run: seeded and reproducible, one after the other, never
    overlapping, filling ``duration`` seconds from ``start``.

    Kinds come in rounds, each a random order of every kind, so that every kind is injected
    as evenly as the time allows (quick mode: one round, every kind exactly once, shortest
    durations; ``duration`` is then only an upper bound checked by the caller).
    """
    if duration <= 0:
        raise InvalidValue(f"duration must be positive, not {duration}")
    rng = random.Random(seed)
    faults: list[ChaosFault] = []
    at = start
    while True:
        order = list(CHAOS_KINDS)
        rng.shuffle(order)
        for kind in order:
            low, high = _DURATIONS[kind]
            length = _QUICK_DURATIONS[kind] if quick else round(rng.uniform(low, high), 1)
            # The crash always hits the active box (the issue's wording); others either node.
            role: Role = "active" if kind == "crash" else rng.choice(("active", "standby"))
            percent = rng.randint(30, 50) if kind == "loss" else 0
            direction: Direction = rng.choice(("in", "out", "both")) if kind == "loss" else "both"
            fault = ChaosFault(at=round(at, 1), kind=kind, role=role, duration=length,
                               pick=rng.randint(0, 1), percent=percent, direction=direction)
            if not quick and fault.end > start + duration:
                return faults
            faults.append(fault)
            at = fault.end + (QUICK_GAP_S if quick else rng.uniform(*GAP_S))
        if quick:
            return faults
