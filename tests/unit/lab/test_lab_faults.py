"""Fault state rendered to nftables rules, and the naming that tells our leftovers apart."""

from __future__ import annotations

import pytest

from nonstop.lab.faults import FaultState, render_ruleset
from nonstop.lab.names import LabPrefix, owner_pid


def rules(state: FaultState) -> list[str]:
    body = render_ruleset(state).split("policy accept;\n", 1)[1]
    return [line.strip() for line in body.splitlines() if line.startswith("\t\t")]


def test_no_fault_is_an_empty_accepting_chain() -> None:
    text = render_ruleset(FaultState())
    assert text.startswith("flush ruleset\ntable bridge lab {")
    assert "hook forward priority 0; policy accept;" in text
    assert rules(FaultState()) == []


def test_each_fault_becomes_its_rule() -> None:
    state = FaultState()
    state.blackouts.add("p2")
    state.isolated_pairs.add(frozenset(("p3", "p1")))
    state.set_loss("p1", 20, "out")
    state.set_loss("pc", 5, "in")
    assert rules(state) == [
        'iifname "p2" drop',
        'iifname "p1" oifname "p3" drop',
        'iifname "p3" oifname "p1" drop',
        'iifname "p1" numgen random mod 100 < 20 drop',
        'oifname "pc" numgen random mod 100 < 5 drop',
    ]


def test_loss_both_ways_and_zero_removes() -> None:
    state = FaultState()
    state.set_loss("p1", 30, "both")
    assert state.loss_in == {"p1": 30} and state.loss_out == {"p1": 30}
    state.set_loss("p1", 0, "in")
    assert state.loss_in == {} and state.loss_out == {"p1": 30}
    state.clear()
    assert rules(state) == []


def test_all_loss_is_a_plain_drop() -> None:
    # nft refuses "numgen random mod 100 < 100" (its values are 0..99): the whole lab's
    # set_loss(host, 100) failed, so a burst of total loss could not be injected.
    state = FaultState()
    state.set_loss("p1", 100, "out")
    state.set_loss("p2", 100, "in")
    assert rules(state) == ['iifname "p1" drop', 'oifname "p2" drop']


@pytest.mark.parametrize("percent", [-1, 101])
def test_loss_outside_0_to_100_is_refused(percent: int) -> None:
    with pytest.raises(ValueError):
        FaultState().set_loss("p1", percent, "out")


def test_bad_direction_is_refused() -> None:
    with pytest.raises(ValueError):
        FaultState().set_loss("p1", 10, "sideways")  # type: ignore[arg-type]


def test_names_carry_the_owner_pid_and_stay_short() -> None:
    biggest = LabPrefix(pid=4194304, serial=36 * 36 - 1)
    assert biggest.name("sw") == "nl4194304xzz-sw"
    assert LabPrefix(pid=77, serial=37).text == "nl77x11"
    assert owner_pid(LabPrefix(pid=123, serial=1).name("n1")) == 123
    assert owner_pid("nsexp3335") is None
    assert owner_pid("ns123r1-a") is None
    with pytest.raises(ValueError):
        LabPrefix(pid=4194304, serial=36 * 36).name("n1")
