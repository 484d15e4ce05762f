"""ping, ping_group, deadping, respawn, env, apiauth, stonith and stonith_host (issue 12):
the ipfail stack of real Heartbeat v1 sites loads, refused programs say what to use instead."""

from __future__ import annotations

from pathlib import Path

from nonstop.config.hacf import check_hacf, parse_hacf
from nonstop.resources.respawn import RespawnSpec
from nonstop.resources.stonith import StonithDevice

BASE = "bcast eth0\nnode vpbx1-1 vpbx1-2\nauto_failback off\n"
N = BASE.count("\n")

# The ipfail stack as the issue quotes it from real ha.cf files.
IPFAIL_SITE = (
    "ping 192.168.1.1\n"
    "ping_group uplink 10.0.0.1 10.0.0.2\n"
    "deadping 10\n"
    "respawn hacluster /usr/lib/heartbeat/ipfail\n"
    "apiauth ipfail gid=haclient uid=hacluster\n"
)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "ha.cf"
    path.write_text(BASE + text)
    return str(path)


def errors(tmp_path: Path, text: str) -> list[str]:
    res = check_hacf(write(tmp_path, text))
    return [f"{e.loc.line}: {e.message}" for e in res.errors]


def test_the_ipfail_stack_loads_and_turns_ipfail_on(tmp_path: Path) -> None:
    cfg = parse_hacf(write(tmp_path, IPFAIL_SITE))
    assert [t.name for t in cfg.ping_targets] == ["192.168.1.1", "uplink"]
    assert [str(m) for m in cfg.ping_targets[1].members] == ["10.0.0.1", "10.0.0.2"]
    assert cfg.deadping_ms == 10000
    assert cfg.ipfail is True
    assert cfg.respawn == ()  # ipfail is built in: nothing to start
    assert not any("ipfail" in w.message for w in cfg.warnings)


def test_apiauth_ipfail_alone_turns_it_on_other_clients_warn(tmp_path: Path) -> None:
    cfg = parse_hacf(write(tmp_path, "ping 192.168.1.1\napiauth ipfail uid=hacluster\n"
                           "apiauth cl_status gid=haclient\n"))
    assert cfg.ipfail is True
    (w,) = [w for w in cfg.warnings if "apiauth" in w.message]
    assert w.loc.line == N + 3
    assert "apiauth cl_status: nonstop serves no Heartbeat client API" in w.message


def test_ping_without_ipfail_only_reports(tmp_path: Path) -> None:
    cfg = parse_hacf(write(tmp_path, "ping 192.168.1.1 192.168.1.2\n"))
    assert [t.name for t in cfg.ping_targets] == ["192.168.1.1", "192.168.1.2"]
    assert cfg.ipfail is False
    assert cfg.deadping_ms == cfg.deadtime_ms  # deadping defaults to deadtime


def test_ipfail_without_ping_nodes_warns(tmp_path: Path) -> None:
    cfg = parse_hacf(write(tmp_path, "respawn hacluster /usr/lib/heartbeat/ipfail\n"))
    assert cfg.ipfail is True
    assert any("no ping or ping_group node" in w.message for w in cfg.warnings)


def test_bad_ping_lines(tmp_path: Path) -> None:
    assert errors(tmp_path, "ping 192.168.1\n") == [
        f"{N + 1}: ping node '192.168.1' is not an IPv4 address"]
    assert errors(tmp_path, "ping\n") == [f"{N + 1}: 'ping' needs at least one IPv4 address"]
    assert errors(tmp_path, "ping_group uplink\n") == [
        f"{N + 1}: 'ping_group' needs a name and at least one IPv4 address"]
    (err,) = errors(tmp_path, "ping_group uplink 10.0.0.300\n")
    assert err.startswith(f"{N + 1}: 'ping_group': ")


def test_a_ping_node_twice_is_used_once(tmp_path: Path) -> None:
    cfg = parse_hacf(write(tmp_path, "ping 192.168.1.1\nping 192.168.1.1\n"))
    assert len(cfg.ping_targets) == 1
    assert any(w.loc.line == N + 2 and "listed twice" in w.message for w in cfg.warnings)


def test_deadping_must_exceed_twice_keepalive(tmp_path: Path) -> None:
    assert errors(tmp_path, "keepalive 2\ndeadtime 10\ndeadping 4\n") == [
        f"{N + 3}: Dead ping [4000] is too small compared to keepalive [2000]: "
        "deadping must be more than 2 x keepalive"]


def test_respawn_runs_other_programs_with_env(tmp_path: Path) -> None:
    cfg = parse_hacf(write(tmp_path, "respawn nobody /usr/local/bin/watch-uplink --quiet\n"
                           "env LOGLEVEL=debug\n"))
    assert cfg.respawn == (RespawnSpec("nobody", "/usr/local/bin/watch-uplink --quiet"),)
    assert cfg.respawn_env == (("HA_LOGLEVEL", "debug"),)
    assert cfg.ipfail is False


def test_respawn_of_an_api_client_is_refused_with_what_to_use(tmp_path: Path) -> None:
    (err,) = errors(tmp_path, "respawn hacluster /usr/lib/heartbeat/dopd\n")
    assert err.startswith(f"{N + 1}: respawn /usr/lib/heartbeat/dopd: dopd is DRBD's "
                          "outdate-peer daemon, a Heartbeat API client")
    (err,) = errors(tmp_path, "respawn hacluster ccm\n")
    assert "use Pacemaker with Corosync" in err
    assert errors(tmp_path, "respawn hacluster\n") == [
        f"{N + 1}: respawn needs a user and a program: respawn <user> <path> [args]"]
    (err,) = errors(tmp_path, "env NOEQUALS\n")
    assert err.startswith(f"{N + 1}: env wants NAME=value")


def test_stonith_lines_and_the_device_that_applies(tmp_path: Path) -> None:
    cfg = parse_hacf(write(tmp_path, "stonith_host * external/ssh hostlist=vpbx1-2\n"
                           "stonith_host vpbx1-2 external/ssh hostlist=vpbx1-1\n"))
    assert cfg.stonith_device("vpbx1-1") == StonithDevice("external/ssh",
                                                          ("hostlist=vpbx1-2",))
    assert cfg.stonith_device("vpbx1-2") == StonithDevice("external/ssh",
                                                          ("hostlist=vpbx1-1",))
    cfg = parse_hacf(write(tmp_path, "stonith baytech /etc/ha.d/conf/stonith.baytech\n"))
    device = cfg.stonith_device("vpbx1-1")
    assert device is not None and device.plugin == "baytech"
    assert parse_hacf(write(tmp_path, "")).stonith_device("vpbx1-1") is None
    assert errors(tmp_path, "stonith baytech\n") == [
        f"{N + 1}: 'stonith': stonith needs exactly: <type> <configfile>"]
    assert errors(tmp_path, "stonith_host *\n") == [
        f"{N + 1}: 'stonith_host': stonith_host needs: <fromhost|*> <type> [<params>...]"]
