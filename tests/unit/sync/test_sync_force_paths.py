"""What a takeover or a release forces onto the peers comes from csync2.cfg, not from the talk."""

from __future__ import annotations

from pathlib import Path

from sync_harness import KEY, free_port, make_node, pair, talk_config

from nonstop.config.csync2 import Csync2Config, parse_csync2_text
from nonstop.sync.patterns import MASTER_SCRIPT_PATHS, Matcher, force_paths
from nonstop.sync.replicator import Replicator


def _config(tmp: Path, *groups: str) -> Csync2Config:
    key = tmp / "key"
    key.write_text(KEY + "\n")
    text = "".join(
        f"group g{i} {{ host vpbx1-1 vpbx1-2; key {key}; {body} }}\n"
        for i, body in enumerate(groups)
    )
    return parse_csync2_text(text, str(tmp / "csync2.cfg"))


def _paths(cfg: Csync2Config) -> tuple[str, ...]:
    return force_paths([Matcher(g.patterns) for g in cfg.groups_for("vpbx1-1")])


def test_the_talks_config_forces_what_its_master_script_forces(tmp_path: Path) -> None:
    assert _paths(talk_config(tmp_path)) == ("/var/log/asterisk", "/etc/asterisk")
    assert MASTER_SCRIPT_PATHS == ("/var/log/asterisk", "/etc/asterisk")


def test_a_site_replicating_something_else_forces_that(tmp_path: Path) -> None:
    assert _paths(_config(tmp_path, "include /srv/data;")) == ("/srv/data",)


def test_fixed_prefixes_of_patterns_nested_ones_merged_over_all_groups(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "include /srv/data/*.db; include /srv/data/sub; exclude *.tmp;",
                  "include /opt/pbx/conf; include /etc/pbx-[ab];")
    assert _paths(cfg) == ("/etc", "/opt/pbx/conf", "/srv/data")


def test_one_of_the_talks_paths_alone_is_not_the_talks_behaviour(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "include /etc/asterisk; include /srv/data;")
    assert _paths(cfg) == ("/etc/asterisk", "/srv/data")


async def test_takeover_force_sync_of_a_srv_data_site_makes_the_peer_equal_there(
        tmp_path: Path) -> None:
    cfg = _config(tmp_path, "include /srv/data;")
    for host in ("vpbx1-1", "vpbx1-2"):
        (tmp_path / host / "srv" / "data").mkdir(parents=True)
    async with pair(tmp_path, cfg) as (n1, n2):
        rep = Replicator(n1.node, serve=False, watch=False)
        assert rep.force_paths == ("/srv/data",)
        n1.write("/srv/data/a.db", "ours")
        n2.write("/srv/data/a.db", "the peer's edit")  # never synced: a conflict without force
        n2.write("/srv/data/only-there", "x")
        report = await rep.force_sync()
        assert report.problems == []
        assert n2.path("/srv/data/a.db").read_text() == "ours"
        assert not n2.path("/srv/data/only-there").exists()


def test_the_replicator_takes_the_talks_paths_from_the_talks_config(tmp_path: Path) -> None:
    cfg = talk_config(tmp_path)
    port = free_port()
    n = make_node(tmp_path, "vpbx1-1", cfg, port, {"vpbx1-1": "127.0.0.1"})
    try:
        assert Replicator(n.node, serve=False, watch=False).force_paths == MASTER_SCRIPT_PATHS
    finally:
        n.node.close()


async def test_a_takeover_force_sync_to_a_peer_in_step_rewrites_no_record(tmp_path: Path) -> None:
    """A forced push finds the peer in step (the usual takeover): the push writes no row of
    its record of the peer again; one file the peer lost is sent and recorded."""
    async with pair(tmp_path) as (n1, n2):
        for i in range(300):
            n1.write(f"/etc/asterisk/f{i:03d}.conf", f"line {i}\n")
        n1.node.check()
        assert (await n1.node.update()).problems == []
        rep = Replicator(n1.node, serve=False, watch=False)
        n1.node.check()
        db = n1.node.db._db  # the node's own connection: its total_changes counts its writes
        before = db.total_changes
        assert (await rep.force_sync()).problems == []
        assert db.total_changes - before < 30  # 306 before: the 300 rows written again
        n2.path("/etc/asterisk/f007.conf").unlink()
        before = db.total_changes
        assert (await rep.force_sync()).problems == []
        assert n2.path("/etc/asterisk/f007.conf").read_text() == "line 7\n"
        assert db.total_changes - before < 30
