"""Parse and validate ``ha.cf`` (Heartbeat v1 syntax) into :class:`HaConfig`.

Every directive of Heartbeat's reference is in :data:`DIRECTIVES` (nonstop.config.directives):
either honoured (it changes the model) or rejected with the reason, so nothing in a file is
silently ignored. Each single-valued directive's type, default and converter is its setting
(nonstop.config.settings); the model is built from those settings, then Heartbeat's startup
rules are checked. All errors of a file are collected; each names ``file:line``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from typing import Any

from nonstop.config import settings as s
from nonstop.config.builder import Builder
from nonstop.config.directives import (
    DIRECTIVES,
    NONSTOP_DIRECTIVES,
    SPEC_DIRECTIVES,
    Directive,
    Kind,
    Support,
    node,
)
from nonstop.config.errors import Location
from nonstop.config.model import AutoFailback, HaConfig, Parsed
from nonstop.config.reading import read_config_lines
from nonstop.config.settings import BadValue
from nonstop.config.units import format_msec

__all__ = [
    "DIRECTIVES",
    "MAXLINE",
    "NONSTOP_DIRECTIVES",
    "SPEC_DIRECTIVES",
    "Directive",
    "Kind",
    "Support",
    "check_hacf",
    "declared_nodes",
    "parse_hacf",
]

MAXLINE = 5120  # Heartbeat's line buffer; longer lines were split there, an error here
# Heartbeat's option-list directives split their values on commas as well as whitespace.
_DELIMS = re.compile(r"[,\s]+")
_BLANKS = re.compile(r"\s+")

# The HaConfig field each setting fills, from the model's own declarations (S.field()).
_FIELDS: dict[str, s.Setting[Any]] = {
    f.name: f.metadata[s.SETTING] for f in dataclasses.fields(HaConfig) if s.SETTING in f.metadata
}


def _unknown(name: str) -> str:
    msg = f"directive '{name}' is unknown"
    if name.lower() in DIRECTIVES:
        return f"{msg} (directive names are case-sensitive: did you mean '{name.lower()}'?)"
    if "=" in name:
        return f"{msg}: write 'directive value' (e.g. 'keepalive 2'), not 'directive=value'"
    import difflib  # only for a misspelt directive: not a cost of every start

    close = difflib.get_close_matches(name, list(DIRECTIVES), n=1, cutoff=0.75)
    if close:
        return f"{msg} (did you mean '{close[0]}'?)"
    return msg


def _read_line(b: Builder, loc: Location, line: str) -> None:
    """Apply one line of ha.cf to the builder, recording its error if it has one."""
    if len(line) > MAXLINE:
        b.error(loc, f"line is longer than {MAXLINE} characters")
        return
    text = line.split("#", 1)[0].strip()
    if not text:
        return
    parts = text.split(None, 1)
    name, rest = parts[0], (parts[1] if len(parts) > 1 else "")
    d = DIRECTIVES.get(name)
    if d is None:
        b.error(loc, _unknown(name))
        return
    if d.handler is None:
        b.error(loc, f"directive '{name}' is not supported by nonstop: {d.text}")
        return
    args = (_DELIMS if d.kind is Kind.OPTIONS else _BLANKS).split(rest)
    try:
        d.handler(b, name, [a for a in args if a], loc)
    except BadValue as e:
        b.error(loc, str(e))


def check_hacf(path: str) -> Parsed[HaConfig]:
    """Read and validate ha.cf: the HaConfig (None if any error), every error and warning."""
    lines, read_errors = read_config_lines(path)
    b = Builder(path)
    b.errors.extend(read_errors)
    if lines is None:
        return Parsed(None, tuple(b.errors), ())
    for n, line in enumerate(lines, start=1):
        _read_line(b, Location(path, n), line)
    return _finish(b)


def declared_nodes(path: str) -> tuple[str, ...] | None:
    """The ``node`` names of an ha.cf that has errors elsewhere, so that haresources can still
    be checked against them in the same pass; None if there are none or it cannot be read."""
    lines, _errors = read_config_lines(path)
    if lines is None:
        return None
    b = Builder(path)
    for n, line in enumerate(lines, start=1):
        parts = line.split("#", 1)[0].split()
        if len(parts) > 1 and parts[0] == "node":
            with contextlib.suppress(BadValue):
                node(b, "node", parts[1:], Location(path, n))
    return tuple(b.nodes) or None


def parse_hacf(path: str) -> HaConfig:
    """Read and validate ha.cf; raise ConfigErrors naming every problem as ``file:line``.

    Warnings (deprecated or doubtful settings) are in the result's ``warnings``.
    """
    return check_hacf(path).unwrap()


# ---------------------------------------------------------------------------------------------
# computed defaults and Heartbeat's startup rules


def _where(b: Builder, *names: str) -> Location:
    """The line of the first of ``names`` given in the file, else the file itself."""
    for name in names:
        if name in b.locations:
            return b.locations[name]
    return Location(b.path)


def _timing(b: Builder) -> dict[str, Any]:
    """keepalive, deadtime, warntime and initdead, computed ones filled, their rules checked."""
    keepalive, deadtime = b.get(s.KEEPALIVE), b.get(s.DEADTIME)
    deadping = b.get(s.DEADPING) if b.given("deadping") else deadtime
    if b.given("deadping") and deadping <= 2 * keepalive:
        b.error(
            _where(b, "deadping", "keepalive"),
            f"Dead ping [{deadping}] is too small compared to keepalive [{keepalive}]: "
            "deadping must be more than 2 x keepalive",
        )
    warntime = b.get(s.WARNTIME) if b.given("warntime") else s.warntime_for(deadtime)
    initdead = b.get(s.INITDEAD) if b.given("initdead") else s.initdead_for(deadtime)
    if deadtime <= 2 * keepalive:
        b.error(
            _where(b, "deadtime", "keepalive"),
            f"Dead time [{deadtime}] is too small compared to keepalive [{keepalive}]: "
            "deadtime must be more than 2 x keepalive",
        )
    if warntime >= deadtime:
        b.error(
            _where(b, "warntime", "deadtime"),
            f"warntime [{warntime}] must be less than deadtime [{deadtime}] "
            "(a heartbeat that late would already have declared the node dead)",
        )
    if initdead < deadtime:
        b.error(
            _where(b, "initdead", "deadtime"),
            f"Initial dead time [{initdead}] is smaller than deadtime [{deadtime}]",
        )
    elif initdead < 10000 and b.given("initdead"):
        b.warn(b.locations["initdead"], f"Initial dead time [{initdead} ms] may be too small!")
    return {"warntime_ms": warntime, "initdead_ms": initdead, "deadping_ms": deadping}


def _use_logd(b: Builder) -> bool:
    """use_logd as given or computed; an error when nothing would be logged anywhere."""
    log_given = b.given("logfile", "debugfile", "logfacility")
    use_logd = b.get(s.USE_LOGD) if b.given("use_logd") else s.use_logd_for(log_given)
    if not use_logd and not log_given:
        b.error(
            _where(b, "use_logd"),
            "use_logd is off and no logfile, debugfile or logfacility is given: nonstop "
            "would log nowhere",
        )
    return use_logd


def _check_media_and_nodes(b: Builder) -> None:
    whole = Location(b.path)
    if not b.media:
        b.error(whole, "No heartbeat media defined (add e.g. 'bcast eth0')")
    if not b.nodes:
        b.error(whole, "no nodes defined (add a 'node' line for each cluster node)")


def _warn_legacy(b: Builder) -> None:
    if b.get(s.AUTO_FAILBACK) is AutoFailback.LEGACY:
        b.warn(
            _where(b, "auto_failback"),
            "Deprecated 'legacy' auto_failback option selected"
            + ("" if b.given("auto_failback") else " (the default)")
            + ". Please convert to 'auto_failback on' or 'auto_failback off'.",
        )


def _ipfail(b: Builder) -> None:
    if b.ipfail and not b.ping_targets:
        b.warn(
            _where(b, "respawn", "apiauth"),
            "ipfail is on but no ping or ping_group node is configured: it has nothing to "
            "compare, so it never moves a group",
        )


def _parameters(b: Builder, computed: dict[str, str]) -> dict[str, str]:
    """The string of every honoured directive, as given, computed, or its default."""
    parameters = dict(b.parameters)
    for d in DIRECTIVES.values():
        if d.support is Support.HONOURED and d.name not in parameters:
            if d.name in computed:
                parameters[d.name] = computed[d.name]
            elif d.default is not None:
                parameters[d.name] = d.default
    return parameters


def _finish(b: Builder) -> Parsed[HaConfig]:
    """Fill computed defaults, apply Heartbeat's startup rules, build HaConfig."""
    _check_media_and_nodes(b)
    fields: dict[str, Any] = {name: b.get(setting) for name, setting in _FIELDS.items()}
    fields.update(_timing(b))
    fields["use_logd"] = _use_logd(b)
    _warn_legacy(b)
    _ipfail(b)
    fields.update(
        ping_targets=tuple(b.ping_targets),
        ipfail=b.ipfail,
        respawn=tuple(b.respawn),
        respawn_env=tuple(b.respawn_env.items()),
        stonith=tuple(b.stonith),
    )
    computed = {
        "deadping": format_msec(fields["deadping_ms"]),
        "warntime": format_msec(fields["warntime_ms"]),
        "initdead": format_msec(fields["initdead_ms"]),
        "use_logd": "yes" if fields["use_logd"] else "no",
    }
    if b.errors:
        return Parsed(None, tuple(b.errors), tuple(b.warnings))
    cfg = HaConfig(
        path=b.path,
        nodes=tuple(b.nodes),
        media=tuple(b.media),
        notify_programs=tuple(b.notify),
        parameters=_parameters(b, computed),
        locations=dict(b.locations),
        warnings=tuple(b.warnings),
        **fields,
    )
    return Parsed(cfg, (), tuple(b.warnings))
