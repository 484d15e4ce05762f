"""The shell prologue that gives a lab host its private file-system view."""

from __future__ import annotations

import pytest

from nonstop.lab.hbconfig import set_directives
from nonstop.lab.mounts import Bind, order_binds, prologue


def test_a_source_under_tmp_is_mounted_before_tmp_is_covered() -> None:
    tmp = Bind("/var/tmp/lab/n1/tmp", "/tmp")
    extra = Bind("/tmp/pytest-of-root/cfg", "/etc/ha.d")
    assert order_binds([tmp, extra]) == [extra, tmp]
    assert order_binds([extra, tmp]) == [extra, tmp]


def test_given_order_is_kept_when_nothing_hides_anything() -> None:
    binds = [Bind("/var/tmp/a", "/etc/logrotate.d"), Bind("/var/tmp/b", "/tmp"),
             Bind("/var/tmp/c", "/run")]
    assert order_binds(binds) == binds


def test_binds_hiding_each_other_are_refused() -> None:
    with pytest.raises(ValueError, match="hide each other"):
        order_binds([Bind("/run/x", "/tmp"), Bind("/tmp/y", "/run")])


def test_prologue_sets_hostname_mounts_marks_ready_and_execs() -> None:
    script = prologue([Bind("/var/tmp/it's", "/tmp")], hostname="vpbx1-1",
                      ready_marker="/run/.ready")
    assert script.splitlines() == [
        "set -e",
        "hostname vpbx1-1",
        "mount --bind '/var/tmp/it'\"'\"'s' /tmp",
        ": > /run/.ready",
        'exec "$@"',
    ]


def test_set_directives_replaces_appends_and_removes() -> None:
    ha_cf = "use_logd yes\nkeepalive 200ms\n# initdead 1\ninitdead 120\nbcast eth0\ninitdead 9\n"
    out = set_directives(ha_cf, {"initdead": "5", "use_logd": "no", "logfile": "/var/log/ha-log",
                                 "bcast": None})
    assert out.splitlines() == [
        "use_logd no", "keepalive 200ms", "# initdead 1", "initdead 5", "logfile /var/log/ha-log",
    ]
