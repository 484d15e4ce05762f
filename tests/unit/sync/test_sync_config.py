"""csync2.cfg parsing: the talk's file unchanged, csync2's extras, file:line errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nonstop.config.csync2 import (
    AutoMode,
    load_csync2,
    load_key,
    parse_csync2_text,
)
from nonstop.config.errors import ConfigError
from nonstop.talk import talk_path

TALK = talk_path("csync2.cfg")


def test_talk_file_parses_unchanged() -> None:
    cfg = load_csync2(str(TALK))
    assert len(cfg.groups) == 1
    g = cfg.groups[0]
    assert g.name == "vpbx1"
    assert g.host_names == ("vpbx1-1", "vpbx1-2")
    assert g.key_file == "/etc/csync2.key_vpbx1"
    assert g.auto is AutoMode.NONE
    assert g.backup_directory == "/var/backups/csync2"
    assert g.backup_generations == 5
    excludes = [p.text for p in g.patterns if not p.include]
    assert excludes == ["*~", ".*", "ok", "lock", "control"]
    includes = [p.text for p in g.patterns if p.include]
    assert "/etc/asterisk" in includes and "/etc/aliases.db" in includes and len(includes) == 13
    assert cfg.nossl[0].matches("vpbx1-1", "vpbx1-2")
    assert not cfg.tls_required("vpbx1-1", "vpbx1-2")
    assert cfg.groups_for("vpbx1-2") == (g,)
    assert cfg.groups_for("other") == ()
    # line numbers are kept for patterns
    assert g.patterns[0].loc.line == 13


def test_actions_prefix_and_extras(tmp_path: Path) -> None:
    extra = tmp_path / "more.cfg"
    extra.write_text("group g2 { host a c; key k2; include /srv; }\n")
    text = """
# comment
prefix data {
    on node-a: /srv/a;
    on node-*: /srv/other;
}
config more.cfg;
tempdir /var/tmp;
lock-timeout 30;
ignore uid gid;
group g1 {
  host a b@b-link (s1 s2);
  key keys/g1.key;
  include %data%/x /etc/asterisk/;
  exclude *.tmp;
  auto younger;
  action {
     pattern /etc/asterisk/*.conf;
     exec "asterisk -rx 'core reload'";
     logfile "/var/log/csync2_action.log";
     do-local;
  }
}
"""
    path = tmp_path / "csync2.cfg"
    cfg = parse_csync2_text(text, str(path))
    g1 = next(g for g in cfg.groups if g.name == "g1")
    assert [h.name for h in g1.hosts] == ["a", "b", "s1", "s2"]
    assert g1.host("b") is not None and g1.host("b").connect_as == "b-link"  # type: ignore[union-attr]
    assert [h.slave for h in g1.hosts] == [False, False, True, True]
    assert g1.key_file == str(tmp_path / "keys/g1.key")
    assert g1.auto is AutoMode.YOUNGER
    assert g1.patterns[1].text == "/etc/asterisk"  # trailing slash stripped
    (act,) = g1.actions
    assert act.patterns == ("/etc/asterisk/*.conf",)
    assert act.execs == ("asterisk -rx 'core reload'",)
    assert act.logfile == "/var/log/csync2_action.log"
    assert act.do_local and not act.do_local_only
    assert cfg.prefixes["data"].path_for("node-a") == "/srv/a"
    assert cfg.prefixes["data"].path_for("node-b") == "/srv/other"
    assert cfg.prefixes["data"].path_for("x") is None
    assert any(g.name == "g2" for g in cfg.groups)
    assert cfg.tempdir == "/var/tmp" and cfg.lock_timeout == 30
    assert cfg.ignore == frozenset({"uid", "gid"})


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("group g {\n host a;\n key k;\n auto sometimes;\n}\n", 4, "unknown auto mode"),
        ("group g {\n host a;\n}\n", 1, "has no key"),
        ("group g {\n host a;\n key k;\n bogus x;\n}\n", 4, "unknown directive"),
        ("group g {\n host a;\n key k;\n key j;\n}\n", 4, "more than one key"),
        ("nossl a;\n", 1, "two host patterns"),
        ("group g {\n host a\n}\n", 3, "closing ';'"),
        ("group g {\n host a;\n key k;\n backup-generations many;\n}\n", 4, "needs a number"),
        ('group g { host a; key "k;\n', 1, "unterminated"),
        ("group g {\n host a;\n key k;\n action { pattern x; }\n}\n", 4, "no 'exec'"),
        ("group g {\n host a;\n key k;\n", 3, "closing '}'"),
    ],
)
def test_errors_name_file_and_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(ConfigError) as ei:
        parse_csync2_text(text, "/x/csync2.cfg")
    assert ei.value.loc.file == "/x/csync2.cfg"
    assert ei.value.loc.line == line
    assert fragment in ei.value.message
    assert str(ei.value).startswith(f"/x/csync2.cfg:{line}:")


def test_key_rules(tmp_path: Path) -> None:
    key = tmp_path / "k"
    cfg = parse_csync2_text(f"group g {{\n host a;\n key {key};\n}}\n", str(tmp_path / "c.cfg"))
    g = cfg.groups[0]
    with pytest.raises(ConfigError, match="cannot read key file") as ei:
        load_key(g)
    assert ei.value.loc.line == 3
    key.write_text("short\n")
    with pytest.raises(ConfigError, match="too short"):
        load_key(g)
    key.write_text("a" * 31 + "!" + "\n")
    with pytest.raises(ConfigError, match="outside"):
        load_key(g)
    key.write_text("A" * 64 + "\nsecond line ignored\n")
    assert load_key(g) == b"A" * 64


TOKENS = ["group", "g", "{", "}", ";", "host", "a", "b", "(s)", "key", "k", "include", "/etc",
          "exclude", "*~", "auto", "younger", "bogus", "action", "pattern", "exec", '"x y"',
          "logfile", "do-local", "prefix", "p", "on", "a:", "/srv", "nossl", "*", "config",
          "backup-generations", "3", "-1", "backup-directory", "#c\n", "\n", '"', "ignore",
          "uid", "lock-timeout", "x"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=40) | st.text(max_size=80))
def test_any_input_gives_a_config_or_a_located_error(parts: list[str] | str) -> None:
    text = parts if isinstance(parts, str) else " ".join(parts)
    try:
        cfg = parse_csync2_text(text, "/nonexistent/dir/csync2.cfg")
    except ConfigError as e:
        assert e.loc.file.startswith("/nonexistent/dir/") and e.loc.line >= 1
    else:
        for g in cfg.groups:
            assert g.hosts and g.key_file


def test_csync2_cfg_is_read_as_bytes_with_caps(tmp_path: Path) -> None:
    from nonstop.config.csync2 import Group, load_csync2, load_key

    key = tmp_path / "key"
    key.write_text("k" * 64 + "\n")
    body = f"group g {{ host a b; key {key}; include /etc/x; }}\n".encode()
    latin = tmp_path / "latin.cfg"
    latin.write_bytes(b"# caf\xe9: a Latin-1 accent in a comment, as csync2 accepts\n" + body)
    assert load_csync2(str(latin)).groups[0].name == "g"
    bad = tmp_path / "bad.cfg"
    bad.write_bytes(body + b"group h { host a b; key /k; include /etc/caf\xe9; }\n")
    with pytest.raises(ConfigError, match=r"bad.cfg:2: byte 0xe9"):
        load_csync2(str(bad))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for target in ("/dev/zero", str(fifo)):  # read without bound / hang before
        inc = tmp_path / "inc.cfg"
        inc.write_bytes(f"config {target};\n".encode() + body)
        with pytest.raises(ConfigError, match="not a regular file"):
            load_csync2(str(inc))
    g = load_csync2(str(latin)).groups[0]
    zero = Group(**{**g.__dict__, "key_file": "/dev/zero"})
    with pytest.raises(ConfigError, match="not a regular file"):
        load_key(zero)


def test_an_unreadable_included_file_is_named_at_the_line_that_includes_it(
        tmp_path: Path) -> None:
    from nonstop.config.csync2 import load_csync2

    top = tmp_path / "csync2.cfg"
    top.write_text("# site config\nconfig missing.cfg;\n")
    with pytest.raises(ConfigError) as ei:
        load_csync2(str(top))
    assert (ei.value.loc.file, ei.value.loc.line) == (str(top), 2)
    assert f"config {tmp_path / 'missing.cfg'}: cannot read" in ei.value.message
