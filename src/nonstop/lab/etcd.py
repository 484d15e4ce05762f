"""A real etcd cluster (Debian's etcd-server) in a lab: one member in each node's namespace,
as a site would run it on the PBX boxes themselves, so pulling a node's cable cuts its member
off too. Client URLs are ``http://<node ip>:2379``; timings are etcd's own, made faster
(heartbeat 50 ms, election 500 ms) so a leader's death costs well under a lease TTL, and
pre-vote on, so a member that comes back from a partition does not force a new election.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from collections.abc import Sequence

from nonstop.lab.errors import LabError
from nonstop.lab.lab import CLIENT, Lab
from nonstop.lab.process import LabProcess
from nonstop.lab.wait import wait_for

CLIENT_PORT = 2379
PEER_PORT = 2380
HEARTBEAT_MS = 50
ELECTION_MS = 500


def have_etcd() -> bool:
    return bool(shutil.which("etcd") and shutil.which("etcdctl"))


class EtcdCluster:
    """``EtcdCluster(lab, members).start()``; the lab stops the members at teardown."""

    def __init__(self, lab: Lab, members: Sequence[str]) -> None:
        if not have_etcd():
            raise LabError("etcd and etcdctl are needed (apt-get install etcd-server etcd-client)")
        self.lab = lab
        self.members = tuple(members)
        self.procs: dict[str, LabProcess] = {}
        self.token = f"{lab.prefix}-etcd"

    def client_url(self, node: str) -> str:
        return f"http://{self.lab.ip(node)}:{CLIENT_PORT}"

    def peer_url(self, node: str) -> str:
        return f"http://{self.lab.ip(node)}:{PEER_PORT}"

    @property
    def endpoints(self) -> tuple[str, ...]:
        return tuple(self.client_url(n) for n in self.members)

    def start(self, timeout: float = 30.0) -> EtcdCluster:
        for node in self.members:
            self.start_member(node)
        self.wait_healthy(timeout)
        return self

    def start_member(self, node: str) -> LabProcess:
        """Start (or restart, on its existing data) the member on ``node``."""
        if node in self.procs and self.procs[node].running:
            raise LabError(f"etcd on {node} is already running")
        data = self.lab.host_dir(node) / "etcd"
        cluster = ",".join(f"{n}={self.peer_url(n)}" for n in self.members)
        proc = self.lab.spawn(node, [
            "etcd", "--name", node, "--data-dir", str(data),
            "--listen-client-urls", self.client_url(node),
            "--advertise-client-urls", self.client_url(node),
            "--listen-peer-urls", self.peer_url(node),
            "--initial-advertise-peer-urls", self.peer_url(node),
            "--initial-cluster", cluster, "--initial-cluster-token", self.token,
            "--initial-cluster-state", "new",
            "--heartbeat-interval", str(HEARTBEAT_MS), "--election-timeout", str(ELECTION_MS),
            # A member back from a partition must not depose the leader (etcd 3.4: off).
            "--pre-vote",
            "--logger", "zap", "--log-outputs", "stderr",
        ], name="etcd")
        self.procs[node] = proc
        return proc

    def kill_member(self, node: str) -> None:
        """The member dies at once (SIGKILL): no leadership hand-over."""
        proc = self.procs[node]
        proc.signal(signal.SIGKILL)
        proc.wait(10)

    def etcdctl(self, *args: str, endpoints: Sequence[str] | None = None,
                timeout: float = 5.0) -> subprocess.CompletedProcess[str]:
        eps = ",".join(endpoints or self.endpoints)
        return self.lab.run(CLIENT, ["etcdctl", "--endpoints", eps, "--dial-timeout", "1s",
                                     "--command-timeout", "2s", *args],
                            timeout=timeout, env={"ETCDCTL_API": "3"})

    def status(self) -> dict[str, dict[str, object]]:
        """Each answering member's ``endpoint status`` by node name."""
        out = self.etcdctl("endpoint", "status", "-w", "json")
        by_url = {self.client_url(n): n for n in self.members}
        result: dict[str, dict[str, object]] = {}
        try:
            docs = json.loads(out.stdout or "[]")
        except ValueError:
            return result
        for doc in docs:
            node = by_url.get(doc.get("Endpoint", ""))
            if node is not None:
                result[node] = doc.get("Status") or {}
        return result

    def leader(self) -> str | None:
        """The node whose member leads, as the answering members see it."""
        for node, st in self.status().items():
            header = st.get("header")
            if isinstance(header, dict) and st.get("leader") == header.get("member_id"):
                return node
        return None

    def move_leader(self, node: str, timeout: float = 15.0) -> None:
        """Make ``node``'s member the leader (``etcdctl move-leader``, asked of the current
        leader), and wait until every member agrees."""
        def moved() -> bool:
            status = self.status()
            header = (status.get(node) or {}).get("header")
            if not isinstance(header, dict):
                return False
            target = header.get("member_id")
            if all(st.get("leader") == target for st in status.values()):
                return len(status) == len(self.members)
            current = self.leader()
            if current is not None:
                self.etcdctl("move-leader", format(int(str(target)), "x"),
                             endpoints=[self.client_url(current)])
            return False
        wait_for(moved, timeout, what=f"etcd's leadership on {node}", interval=0.2)

    def wait_healthy(self, timeout: float) -> None:
        wait_for(lambda: self.etcdctl("endpoint", "health").returncode == 0 and self.leader(),
                 timeout, what="a healthy etcd cluster with a leader", interval=0.2)

    def get_prefix(self, prefix: str) -> dict[str, str]:
        out = self.etcdctl("get", "--prefix", prefix)
        lines = out.stdout.splitlines()
        return dict(zip(lines[::2], lines[1::2], strict=False))
