"""Issue 16 over TLS: ``nonstop_etcd https://... cacert= cert= key=`` (the form of the shipped
three-node example) against a real etcd (Debian's etcd-server) that demands a client
certificate (``--client-cert-auth``). The other etcd tests use plain http, so without this one
the TLS files of the directive were never used against etcd itself.

One etcd member on a third box; the talk's two nodes hold the group under its lease over TLS,
and the standby takes it over that way when the holder's box dies. The same gateway without a
client certificate, or trusting another CA, gets no answer: the files are what lets it in.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from talkcluster import N1, N2, TalkCluster

from nonstop.lab import Lab, wait_for
from nonstop.lab.etcd import CLIENT_PORT, PEER_PORT, have_etcd
from nonstop.lab.lab import CLIENT

pytestmark = [pytest.mark.netns, pytest.mark.slow]

BOX = "vpbx1-3"  # the etcd member's box: no nonstop node, so a node's crash leaves etcd up
PREFIX = "/nonstop/tls"


@pytest.fixture
def lab(make_lab: object) -> Iterator[Lab]:
    if not have_etcd() or shutil.which("openssl") is None:
        pytest.skip("needs etcd-server, etcd-client and openssl")
    yield make_lab((N1, N2, BOX))  # type: ignore[operator]


def openssl(pki: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=pki, check=True, capture_output=True, timeout=60)


def issue(pki: Path, name: str, ca: str, ext: str) -> None:
    """``name``.key and ``name``.pem, signed by the CA ``ca``.pem/.key, with extensions."""
    (pki / f"{name}.ext").write_text(ext)
    openssl(pki, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
    openssl(pki, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey",
            f"{ca}.key", "-CAcreateserial", "-days", "2", "-out", f"{name}.pem",
            "-extfile", f"{name}.ext")


def make_ca(pki: Path, name: str) -> None:
    openssl(pki, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
            "-subj", f"/CN={name}")


def make_pki(pki: Path, etcd_ip: str) -> None:
    pki.mkdir()
    make_ca(pki, "ca")
    make_ca(pki, "other-ca")  # trusted by nobody here
    issue(pki, "server", "ca", f"subjectAltName=IP:{etcd_ip}\n"
          "extendedKeyUsage=serverAuth,clientAuth\n")
    issue(pki, "client", "ca", "extendedKeyUsage=clientAuth\n")


def etcdctl(lab: Lab, pki: Path, url: str, *args: str,
            client_cert: bool = True) -> subprocess.CompletedProcess[str]:
    tls = ["--cacert", str(pki / "ca.pem")]
    if client_cert:
        tls += ["--cert", str(pki / "client.pem"), "--key", str(pki / "client.key")]
    # Generous limits where an answer is expected: at the start of a CI run both test workers
    # start clusters at once, and a TLS handshake can take seconds then. A client refused at
    # the handshake is retried until the dial timeout, so that one stays short.
    dial, command = ("5s", "10s") if client_cert else ("2s", "3s")
    return lab.run(CLIENT, ["etcdctl", "--endpoints", url, *tls, "--dial-timeout", dial,
                            "--command-timeout", command, *args],
                   timeout=30, env={"ETCDCTL_API": "3"})


GATEWAY = """
import asyncio, sys
from nonstop.config.etcd import parse_etcd
from nonstop.coord.etcd import EtcdGateway
from nonstop.coord.port import CoordError

async def main() -> None:
    gw = EtcdGateway(parse_etcd(sys.argv[2:]), float(sys.argv[1]))
    try:
        lease, ttl = await gw.grant(5)
        print("granted", ttl)
    except CoordError as e:
        print("refused", e)
    finally:
        await gw.close()

asyncio.run(main())
"""


def gateway_grant(lab: Lab, *args: str, timeout: float = 10.0) -> str:
    """A lease grant by nonstop's own gateway from the client box, with these directive words
    (``timeout``: the gateway's own, per request)."""
    done = lab.run(CLIENT, [sys.executable, "-c", GATEWAY, str(timeout), *args], timeout=60,
                   check=True)
    return done.stdout.strip()


def owns(c: TalkCluster, node: str) -> bool:
    st = c.status(node).get("etcd") or {}
    return bool(st.get("owned")) and not st.get("error")


def test_leases_over_tls_with_a_client_certificate(lab: Lab) -> None:
    pki = lab.workdir / "pki"
    ip = lab.ip(BOX)
    make_pki(pki, ip)
    url = f"https://{ip}:{CLIENT_PORT}"
    peer = f"http://{ip}:{PEER_PORT}"
    lab.spawn(BOX, [
        "etcd", "--name", BOX, "--data-dir", str(lab.host_dir(BOX) / "etcd"),
        "--listen-client-urls", url, "--advertise-client-urls", url,
        "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
        "--initial-cluster", f"{BOX}={peer}", "--initial-cluster-state", "new",
        "--cert-file", str(pki / "server.pem"), "--key-file", str(pki / "server.key"),
        "--trusted-ca-file", str(pki / "ca.pem"), "--client-cert-auth",
        "--logger", "zap", "--log-outputs", "stderr",
    ], name="etcd")
    wait_for(lambda: etcdctl(lab, pki, url, "endpoint", "health").returncode == 0, 30,
             what="etcd to answer over TLS", interval=0.2)
    # etcd itself refuses a client without a certificate: the check below is not vacuous.
    assert etcdctl(lab, pki, url, "get", "x", client_cert=False).returncode != 0

    files = [f"cacert={pki / 'ca.pem'}", f"cert={pki / 'client.pem'}",
             f"key={pki / 'client.key'}"]
    assert gateway_grant(lab, url, *files) == "granted 5"
    # no client certificate; etcd's certificate not trusted
    assert gateway_grant(lab, url, files[0], timeout=3.0).startswith("refused")
    assert gateway_grant(lab, url, f"cacert={pki / 'other-ca.pem'}", *files[1:],
                         timeout=3.0).startswith("refused")

    c = TalkCluster(lab, directives={"nonstop_etcd": " ".join([url, f"prefix={PREFIX}",
                                                               *files])})
    c.start(N1)
    c.start(N2)
    c.wait_vip_on(N1, 30)
    wait_for(lambda: owns(c, N1), 15, what="vpbx1-1 to own its lease over TLS")
    keys = etcdctl(lab, pki, url, "get", "--prefix", f"{PREFIX}/groups/")
    assert keys.returncode == 0 and keys.stdout.splitlines()[1::2] == [N1], keys.stdout
    assert not owns(c, N2) and (c.status(N2).get("etcd") or {}).get("error") is None

    c.crash(N1)
    c.wait_vip_on(N2, 20)
    wait_for(lambda: owns(c, N2), 15, what="vpbx1-2 to own the lease over TLS")
    keys = etcdctl(lab, pki, url, "get", "--prefix", f"{PREFIX}/groups/")
    assert keys.stdout.splitlines()[1::2] == [N2], keys.stdout
