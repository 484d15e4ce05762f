"""The single-valued ha.cf settings: one default each, shared by the table, parser and model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from nonstop.config import settings as s
from nonstop.config.hacf import DIRECTIVES, Support, check_hacf
from nonstop.config.model import AutoFailback, HaConfig, HbGenMethod, MsgFmt, UuidFrom

_FIELDS = {f.name: f for f in dataclasses.fields(HaConfig)}
_BY_SETTING = {
    f.metadata[s.SETTING].name: f for f in _FIELDS.values() if s.SETTING in f.metadata
}


def _settings() -> list[s.Setting[object]]:
    return [v for v in vars(s).values() if isinstance(v, s.Setting)]


def test_every_setting_is_a_directive_of_the_table() -> None:
    for setting in _settings():
        d = DIRECTIVES[setting.name]
        assert d.setting is setting
        assert d.support is Support.HONOURED
        assert d.default == setting.default


def test_model_fields_default_to_their_setting() -> None:
    """The model's defaults are the settings' values, not numbers written a second time."""
    not_settings = {"path", "nodes", "media", "notify_programs", "parameters", "locations",
                    "warnings", "ping_targets", "ipfail", "respawn", "respawn_env", "stonith"}
    assert {f.name for f in _BY_SETTING.values()} == _FIELDS.keys() - not_settings
    for name, f in _BY_SETTING.items():
        setting = DIRECTIVES[name].setting
        assert setting is not None
        assert f.default == setting.initial, name
        assert type(f.default) is type(setting.initial), name


def test_a_default_written_in_hacf_syntax_converts_to_the_initial_value() -> None:
    for setting in _settings():
        if setting.default is None:
            assert setting.initial is None, setting.name
        elif setting.default not in ("deadtime/2", "deadtime", "computed"):
            assert setting.convert(setting.default) == setting.initial, setting.name


def test_computed_defaults_follow_the_default_deadtime() -> None:
    assert s.WARNTIME.initial == s.warntime_for(s.DEADTIME.initial) == 15000
    assert s.INITDEAD.initial == s.initdead_for(s.DEADTIME.initial) == 30000
    assert s.USE_LOGD.initial is True
    assert [s.initdead_for(ms) for ms in (5999, 6000, 10000, 10001)] == [12000, 12000, 20000,
                                                                         10001]


def test_a_file_without_settings_gives_the_model_defaults(tmp_path: Path) -> None:
    path = tmp_path / "ha.cf"
    path.write_text("bcast eth0\nnode a b\n")
    parsed = check_hacf(str(path)).unwrap()
    bare = HaConfig(path=str(path), nodes=("a", "b"), media=parsed.media)
    skip = {"parameters", "locations", "warnings"}
    for name in _FIELDS.keys() - skip:
        assert getattr(parsed, name) == getattr(bare, name), name


@pytest.mark.parametrize(
    ("line", "field", "value"),
    [
        ("msgfmt classic", "msgfmt", MsgFmt.CLASSIC),
        ("uuidfrom nodename", "uuidfrom", UuidFrom.NODENAME),
        ("hbgenmethod time", "hbgenmethod", HbGenMethod.TIME),
        ("auto_failback yes", "auto_failback", AutoFailback.ON),
    ],
)
def test_values_of_a_set_are_enum_members(tmp_path: Path, line: str, field: str,
                                          value: object) -> None:
    path = tmp_path / "ha.cf"
    path.write_text(f"bcast eth0\nnode a b\n{line}\n")
    got = getattr(check_hacf(str(path)).unwrap(), field)
    assert got is value


def test_enum_values_keep_the_text_of_the_file() -> None:
    """Code and logs that compare or print these values as text see what ha.cf says."""
    assert [str(m) for m in MsgFmt] == ["classic", "netstring"]
    assert f"{UuidFrom.NODENAME} {HbGenMethod.TIME}" == "nodename time"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("msgfmt Classic", "'msgfmt': 'Classic' must be one of: classic, netstring"),
        ("uuidfrom uuid", "'uuidfrom': 'uuid' must be one of: file, nodename"),
        ("hbgenmethod clock", "'hbgenmethod': 'clock' must be one of: file, time"),
        ("crm minimal", "directive 'crm' with value 'minimal' is not supported by nonstop: "
         + s.CRM_REASON),
        ("use_apphbd maybe", "'use_apphbd': 'maybe' is not a boolean: use yes/no, on/off, "
         "true/false, y/n or 1/0"),
        ("nonstop_sync etc/csync2.cfg", "nonstop_sync needs an absolute path to a csync2.cfg, "
         "not 'etc/csync2.cfg'"),
    ],
)
def test_converter_errors_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "ha.cf"
    path.write_text(f"bcast eth0\nnode a b\nauto_failback off\n{line}\n")
    (err,) = check_hacf(str(path)).errors
    assert (err.loc.line, err.message) == (4, message)
