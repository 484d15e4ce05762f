"""Issue 12 item 5 with real daemons: no hijack of the virtual IP by a misconfigured node.

1. A third node configured with a WRONG key, on the same LAN as a working two-node cluster:
   it hears the real nodes' packets fail authentication, concludes its own key is wrong and
   does not take the VIP (as Heartbeat 3.0.6 and nonstop before this did, after initdead);
   the client is never answered by its MAC, the real holder keeps the VIP.
2. A host already answering for the VIP: a node that takes the group over from a peer it
   never heard probes the address first, finds the other host, does not add it and says why.

Short on purpose (initdead 3 s, keepalive 200 ms): the CI budget is tight.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence

import pytest
from nodes import NonstopCluster, talk_config

from nonstop.lab import CLIENT, VIP, Lab, wait_for

pytestmark = pytest.mark.netns

N1, N2, ROGUE = "vpbx1-1", "vpbx1-2", "rogue"
GROUP = f"{N1} {VIP}/24/eth0\n"


def mac_of(lab: Lab, host: str) -> str:
    return lab.run(host, ["cat", "/sys/class/net/eth0/address"], check=True).stdout.strip()


def arp_answers(lab: Lab) -> set[str]:
    """The MACs that answer the client's ARP requests for the VIP (3 requests)."""
    out = lab.run(CLIENT, ["arping", "-c", "3", "-w", "3", "-I", "eth0", VIP], timeout=10).stdout
    return {m.lower() for m in re.findall(r"\[([0-9A-Fa-f:]{17})\]", out)}


def client_entry(lab: Lab) -> str:
    """The client's ARP entry for the VIP (lower case)."""
    return lab.run(CLIENT, ["ip", "neigh", "show", VIP, "dev", "eth0"], check=True).stdout.lower()


class Holders:
    """Which hosts have the VIP, sampled every 50 ms from start to stop."""

    def __init__(self, lab: Lab, hosts: Sequence[str]) -> None:
        self.lab, self.hosts = lab, hosts
        self.seen: list[list[str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.seen.append([h for h in self.hosts if self.lab.has_address(h, VIP)])

    def stop(self) -> list[list[str]]:
        self._stop.set()
        self._thread.join(10)
        return self.seen


def test_a_rogue_with_a_wrong_key_does_not_take_the_vip(
        make_lab: Callable[[Sequence[str]], Lab]) -> None:
    lab = make_lab((N1, N2, ROGUE))
    real = talk_config(lab.workdir / "real", initdead="3", haresources=GROUP)
    # The rogue knows the cluster's nodes (ha.cf copied from them) but not its key.
    rogue_cfg = talk_config(lab.workdir / "rogue", initdead="3", haresources=GROUP,
                            authkey="not-the-clusters-key",
                            directives={"node": f"{N1} {N2} {ROGUE}"})
    cluster = NonstopCluster(lab, real)
    cluster.start(N1)
    cluster.start(N2)
    wait_for(lambda: lab.has_address(N1, VIP), 20, what=f"{N1} to hold the VIP")
    holders = Holders(lab, (N1, N2, ROGUE))
    try:
        cluster.start(ROGUE, config_dir=rogue_cfg)
        # Its initdead runs out: the real nodes are "dead" to it, yet it must not take over.
        cluster.wait_for_log(ROGUE, rf"node {N1}: is dead", 15)
        cluster.wait_for(lambda: "my own key is probably wrong" in str(
            ((cluster.query(ROGUE) or {}).get("groups") or [{}])[0].get("reason")), 10,
            what="the rogue to refuse the takeover for its key")
        time.sleep(1.5)  # well past its takeover, had there been one (no probe wait: refused)
        answers = arp_answers(lab)
    finally:
        seen = holders.stop()
    assert seen and all(h == [N1] for h in seen), [h for h in seen if h != [N1]][:5]
    assert answers == {mac_of(lab, N1)}, answers
    st = cluster.status(ROGUE)
    assert st["own_key_suspect"] is True, st
    assert sorted(st["auth_failure_sources"]) == sorted([lab.ip(N1), lab.ip(N2)])
    assert "failed authentication" in st["own_key_reason"]
    log = cluster.log(ROGUE)
    assert re.search(r"ERROR: own key: \d+ packets from peers' addresses .* my own key is "
                     r"probably wrong \(check authkeys\); refusing to take over", log), log[-2000:]
    assert "Acquiring resource group" not in log
    # The real cluster is undisturbed: the rogue's packets are dropped, nobody died.
    assert cluster.dropped(N1, "bad_auth") > 0
    assert cluster.peer_status(N1, N2) == "active"
    assert (cluster.query(N1) or {})["own_key_suspect"] is False


def test_a_host_answering_for_the_vip_stops_the_takeover(
        make_lab: Callable[[Sequence[str]], Lab]) -> None:
    lab = make_lab((N1, N2))
    lab.add_address(N2, VIP)  # not nonstop: a box that already has the address
    squatter = mac_of(lab, N2)
    cluster = NonstopCluster(lab, talk_config(lab.workdir / "cfg", initdead="3",
                                              haresources=GROUP))
    cluster.start(N1)  # alone: vpbx1-2 is never heard, so it is lost after initdead
    line = cluster.wait_for_log(
        N1, rf"address conflict: {re.escape(VIP)} on eth0 is in use by {squatter} \(reply\)",
        20)
    assert "ERROR" in line.text
    cluster.wait_for(lambda: "another host answers for its address" in str(
        ((cluster.query(N1) or {}).get("groups") or [{}])[0].get("reason")), 10,
        what="the group's reason to name the failed start")
    assert not lab.has_address(N1, VIP)
    group = cluster.status(N1)["groups"][0]
    assert group["local_state"] == "start_failed", group
    assert "another host answers for its address" in group["reason"], group
    assert (f"not started here (IPaddr::{VIP}/24/eth0: start failed: address conflict: {VIP} "
            f"on eth0 is in use by {squatter} (reply))") in group["reason"], group
    log = cluster.log(N1)
    assert "probing its addresses first" in log
    assert f"added {VIP}" not in log


def test_the_holder_reports_a_second_claimant_and_wins_the_client_back(
        make_lab: Callable[[Sequence[str]], Lab]) -> None:
    lab = make_lab((N1, N2))
    cluster = NonstopCluster(lab, talk_config(lab.workdir / "cfg", initdead="3",
                                              haresources=GROUP))
    cluster.start(N1, args=["-v"])  # -v: debug lines say when its announcements are done
    cluster.start(N2)
    wait_for(lambda: lab.has_address(N1, VIP), 20, what=f"{N1} to hold the VIP")
    cluster.wait_for(lambda: len((cluster.query(N1) or {}).get("address_conflicts") or []) == 1,
                     10, what="the holder to watch its address")
    # The takeover's own gratuitous ARPs (10, 0.5 s apart) would undo the rogue's at once.
    cluster.wait_for_log(N1, rf"sent \d+ gratuitous ARP frames for {re.escape(VIP)}", 15)
    lab.run(CLIENT, ["ping", "-c", "1", "-W", "2", VIP], timeout=10, check=True)
    assert mac_of(lab, N1) in client_entry(lab)
    # A rogue box takes the address and announces it: the client follows it.
    lab.add_address(N2, VIP)
    lab.run(N2, ["arping", "-q", "-U", "-c", "2", "-w", "2", "-I", "eth0", VIP], timeout=10)
    rogue = mac_of(lab, N2)
    assert rogue in client_entry(lab)  # stranded there until told otherwise
    line = cluster.wait_for_log(
        N1, rf"address conflict: {re.escape(VIP)}, which we hold, is also claimed by {rogue}", 10)
    assert "ERROR" in line.text
    (watch,) = cluster.status(N1)["address_conflicts"]
    assert watch["conflict"] is True and watch["claimants"][0]["mac"] == rogue, watch
    # The rogue leaves: the holder finds the address free and announces it again.
    lab.del_address(N2, VIP)
    cluster.wait_for_log(N1, rf"address conflict on {re.escape(VIP)} ended: .* no longer "
                         "answers; announcing the address again", 10, after=line.at)
    cluster.wait_for(lambda: not ((cluster.query(N1) or {}).get("address_conflicts")
                                  or [{}])[0].get("conflict"), 5, what="the conflict to end")
    holder = mac_of(lab, N1)
    wait_for(lambda: holder in client_entry(lab), 5, what="the client back on the holder's MAC")
    assert lab.has_address(N1, VIP)


def test_a_wrong_key_reloaded_on_the_standby_takes_nothing_over(
        make_lab: Callable[[Sequence[str]], Lab]) -> None:
    """An authkeys edit gone wrong on the standby, then `nonstop reload`: it declared the
    active node dead after deadtime and took its address (bcast, no /etc/hosts names: no
    configured peer address; the last good packet, under the old key, held the verdict off).
    Now the sources of accepted packets are peers' addresses, and new keys start afresh."""
    lab = make_lab((N1, N2))
    (lab.workdir / "hosts").write_text("127.0.0.1 localhost\n")  # no node names anywhere
    no_probe = {"nonstop_address_probe": "0"}  # the key guard alone must hold
    cfg1 = talk_config(lab.workdir / "n1", initdead="3", haresources=GROUP, directives=no_probe)
    cfg2 = talk_config(lab.workdir / "n2", initdead="3", haresources=GROUP, directives=no_probe)
    cluster = NonstopCluster(lab, cfg1)
    cluster.start(N1)
    cluster.start(N2, config_dir=cfg2)
    wait_for(lambda: lab.has_address(N1, VIP), 20, what=f"{N1} to hold the VIP")
    cluster.wait_peer_status(N2, N1, "active", 15)
    keys = cfg2 / "authkeys"
    good = keys.read_text()
    holders = Holders(lab, (N1, N2))
    try:
        keys.write_text("auth 1\n1 sha1 somethingElse\n")
        assert cluster.cli(N2, "reload").returncode == 0
        t0 = time.monotonic()
        cluster.wait_for_log(N2, rf"node {N1}: is dead", 10)
        time.sleep(1.5)  # past its takeover, had there been one
        st = cluster.status(N2)
        assert st["own_key_suspect"] is True, st
        assert st["auth_failure_sources"] == [lab.ip(N1)]
        assert "either may be the wrong one" in str(st["groups"][0]["reason"])  # two nodes
        keys.write_text(good)  # the admin puts the right key back
        assert cluster.cli(N2, "reload").returncode == 0
        cluster.wait_peer_status(N2, N1, "active", 10)
    finally:
        seen = holders.stop()
    assert seen and all(h == [N1] for h in seen), [h for h in seen if h != [N1]][:5]
    assert time.monotonic() - t0 > 2.0  # the window covered deadtime and more
    assert (cluster.query(N2) or {})["own_key_suspect"] is False
