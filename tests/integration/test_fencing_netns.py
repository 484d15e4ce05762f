"""Fencing a real lab box: cluster-glue's stonith command with the lab's external plugin."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from nonstop.lab import Lab, wait_for
from nonstop.lab.fence import EXTERNAL_PLUGIN_DIR, PLUGIN_NAME
from nonstop.lab.lab import netns_pids

pytestmark = pytest.mark.netns

# The real fencer, run inside a lab node the way the daemon will run it.
FENCE = """
import asyncio, sys
from nonstop.resources.stonith import StonithDevice, StonithFencer
device = StonithDevice(sys.argv[1], tuple(sys.argv[2:-1]))
result = asyncio.run(StonithFencer(device, timeout_s=30).fence(sys.argv[-1]))
print(result.reason)
sys.exit(0 if result.ok else 1)
"""


def test_stonith_powers_the_peer_box_off(make_lab: Callable[[Sequence[str]], Lab]) -> None:
    lab = make_lab(("n1", "n2"))
    box = lab.start_box("n2", ["sh", "-c", "sleep 300 & while :; do sleep 0.1; done"])
    wait_for(lambda: len(netns_pids(lab.netns("n2"))) >= 3, 10, what="n2's box to run")
    plugin, params, binds = lab.stonith_device(["n2"])
    # The plugin is seen only by the programs the lab gives it to, never by the machine.
    assert not (Path(EXTERNAL_PLUGIN_DIR) / PLUGIN_NAME).exists()
    listed = lab.run("n1", ["stonith", "-t", plugin, *params, "-l"], binds=binds, check=True)
    assert listed.stdout.split() == ["n2"]

    refused = lab.run("n1", [sys.executable, "-c", FENCE, plugin, *params, "n1"], binds=binds,
                      timeout=60)
    assert refused.returncode == 1
    assert "STONITH reset of n1 with external/nonstop-lab failed (exit" in refused.stdout

    done = lab.run("n1", [sys.executable, "-c", FENCE, plugin, *params, "n2"], binds=binds,
                   timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "STONITH reset of n2 with external/nonstop-lab succeeded"
    wait_for(lambda: not box.running, 10, what="n2's box to be off")
    assert netns_pids(lab.netns("n2")) == []  # every process of the machine is gone

    # Fencing a machine that is already off succeeds, as with a real power switch.
    again = lab.run("n1", [sys.executable, "-c", FENCE, plugin, *params, "n2"], binds=binds,
                    timeout=60)
    assert again.returncode == 0, again.stdout + again.stderr
