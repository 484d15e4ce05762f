"""Fencing real lab boxes: cluster-glue's stonith command with the lab's external plugin."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from nonstop.lab import VIP, Lab, wait_for
from nonstop.lab.box import HEARTBEAT_BINARY
from nonstop.lab.fence import EXTERNAL_PLUGIN_DIR, PLUGIN_NAME
from nonstop.lab.nsprocs import netns_pids

pytestmark = pytest.mark.netns

# The real fencer, run inside a lab node the way the daemon will run it.
FENCE = """
import asyncio, logging, sys
from nonstop.resources.stonith import StonithDevice, StonithFencer
logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(levelname)s: %(message)s")
device = StonithDevice(sys.argv[1], tuple(sys.argv[2:-1]))
fencer = StonithFencer(device, timeout_s=30, logger=logging.getLogger("fence"))
result = asyncio.run(fencer.fence(sys.argv[-1]))
sys.exit(0 if result.ok else 1)
"""


def test_stonith_powers_the_peer_box_off(make_lab: Callable[[Sequence[str]], Lab]) -> None:
    lab = make_lab(("n1", "n2"))
    box = lab.start_box("n2", ["sh", "-c", "sleep 300 & while :; do sleep 0.1; done"])
    wait_for(lambda: len(netns_pids(lab.netns("n2"))) >= 3, 10, what="n2's box to run")
    device = lab.stonith_device(["n2"])
    # The plugin is seen only by the programs the lab gives it to, never by the machine.
    assert not (Path(EXTERNAL_PLUGIN_DIR) / PLUGIN_NAME).exists()
    listed = lab.run("n1", ["stonith", "-t", device.plugin, *device.named_params, "-l"],
                     binds=device.binds, check=True)
    assert listed.stdout.split() == ["n2"]

    def fence(node: str) -> tuple[int, str]:
        done = lab.run("n1", [sys.executable, "-c", FENCE, device.plugin, *device.named_params,
                              node], binds=device.binds, timeout=60)
        return done.returncode, done.stdout + done.stderr

    rc, out = fence("n1")
    assert rc == 1
    assert "ERROR: STONITH reset of n1 with external/nonstop-lab failed (exit" in out

    rc, out = fence("n2")
    assert rc == 0, out
    assert out.splitlines() == ["INFO: Resetting node n2 with [external/nonstop-lab]",
                                "INFO: node n2 now reset."]
    assert not box.running
    assert netns_pids(lab.netns("n2")) == []  # every process of the machine is gone

    # Fencing a machine that is already off succeeds, as with a real power switch.
    rc, out = fence("n2")
    assert rc == 0, out


@pytest.mark.skipif(not Path(HEARTBEAT_BINARY).exists(), reason="heartbeat 3.0.6 not installed")
def test_heartbeat_fences_a_cut_off_peer_with_the_lab_plugin(
        make_lab: Callable[[Sequence[str]], Lab], tmp_path: Path) -> None:
    # The plugin works in cluster-glue's framework as Heartbeat 3.0.6 drives it, from inside a
    # box: n1 loses n2's heartbeats, resets n2 (the box is powered off), then takes its address.
    lab = make_lab(("n1", "n2"))
    device = lab.stonith_device(["n2"])
    boxes = {}
    for node in ("n1", "n2"):
        config = tmp_path / node
        config.mkdir()
        (config / "ha.cf").write_text(
            "keepalive 200ms\ndeadtime 2\ninitdead 4\nbcast eth0\nnode n1 n2\n"
            f"stonith_host n1 {device.plugin} {device.positional_params}\n"
            "use_logd no\nlogfile /var/log/ha-log\ncrm off\nauto_failback off\n")
        (config / "authkeys").write_text("auth 1\n1 crc\n")
        (config / "haresources").write_text(f"n2 IPaddr::{VIP}/24/eth0\n")
        boxes[node] = lab.start_heartbeat(node, config, binds=device.binds)
    wait_for(lambda: lab.has_address("n2", VIP), 60, what="n2 to hold the address")
    lab.isolate("n1", "n2")
    wait_for(lambda: lab.has_address("n1", VIP), 60, what="n1 to take the address over")
    assert not boxes["n2"].running  # fenced before the takeover, not merely partitioned
    log = lab.host_path("n1", "/var/log/ha-log").read_text()
    reset = re.search(r"info: Resetting node n2 with \[nonstop lab box power\s*\]", log)
    done = re.search(r"info: node n2 now reset\.", log)
    taken = re.search(r"info: Resources being acquired from n2\.", log)
    assert reset and done and taken, log[-3000:]
    assert reset.start() < done.start() < taken.start()
