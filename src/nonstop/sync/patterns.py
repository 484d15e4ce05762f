"""csync2's include/exclude rules, and the mapping between file names and local paths.

A *name* is a file's path as the configuration writes it (``/etc/asterisk/sip.conf``, or
``%data%/x`` under a csync2 ``prefix``); names are what the state database stores and what goes on
the wire. A *local path* is where that name lives on this node: ``root`` + the name with its prefix
expanded for this host.

Rules (csync2 2.0 ``csync_match_file``): patterns starting with ``/`` or ``%`` are path patterns,
matched like ``fnmatch(FNM_PATHNAME | FNM_LEADING_DIR)`` (``*`` stays inside one component unless
the pattern contains ``**``; a pattern also matches everything below it). Other patterns match the
basename. The last matching pattern of each kind decides; a name is synced iff its path decision is
"include" (default: exclude) and its basename decision is "include" (default: include).
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable, Iterable, Sequence

from nonstop.config.csync2 import Pattern, Prefix
from nonstop.errors import UnknownName
from nonstop.records import record
from nonstop.sync.state import is_utf8

# Receive temp files carry this prefix; they are never scanned, synced or left behind.
TMP_PREFIX = ".nonstop-tmp-"


def _translate(pattern: str) -> re.Pattern[str]:
    """fnmatch(FNM_PATHNAME unless ``**``, FNM_LEADING_DIR) as a regular expression."""
    crosses = "**" in pattern
    star = ".*" if crosses else "[^/]*"
    one = "." if crosses else "[^/]"
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            while i < n and pattern[i] == "*":
                i += 1
            out.append(star)
            continue
        if c == "?":
            out.append(one)
        elif c == "[":
            j = i + 1
            if j < n and pattern[j] in "!^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : j]
                if body[:1] in ("!", "^"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + "(?:/.*)?", re.DOTALL)


def path_pattern_matches(pattern: str, name: str) -> bool:
    """One path pattern against one name (fnmatch with csync2's flags)."""
    return _translate(pattern).fullmatch(name) is not None


@record
class _Compiled:
    include: bool
    is_path: bool
    text: str
    regex: re.Pattern[str]
    literal: bool  # a path pattern without wildcards: plain string tests are enough

    def matches(self, name: str, base: str) -> bool:
        if not self.is_path:
            return self.regex.fullmatch(base) is not None
        if self.literal:
            t = self.text
            return name == t or (name.startswith(t) and name[len(t) : len(t) + 1] == "/")
        return self.regex.fullmatch(name) is not None


def _compile(p: Pattern) -> _Compiled:
    if p.is_path:
        literal = not any(ch in p.text for ch in "*?[\\")
        return _Compiled(p.include, True, p.text, _translate(p.text), literal)
    return _Compiled(p.include, False, p.text, re.compile(fnmatch.translate(p.text)), False)


class Matcher:
    """Decides which names a group syncs, and where a scan has to walk."""

    def __init__(self, patterns: Sequence[Pattern]) -> None:
        self._rules = tuple(_compile(p) for p in patterns)
        self._includes = tuple(r.text for r in self._rules if r.is_path and r.include)

    def included(self, name: str) -> bool:
        """Whether ``name`` belongs to the group (csync2's two-category rule)."""
        base = name.rsplit("/", 1)[-1]
        if base.startswith(TMP_PREFIX):
            return False
        path_ok, base_ok = False, True
        for r in self._rules:
            if r.matches(name, base):
                if r.is_path:
                    path_ok = r.include
                else:
                    base_ok = r.include
        return path_ok and base_ok

    def child_filter(self, dir_name: str) -> Callable[[str, str], bool]:
        """A faster ``included(name)`` for the entries of one directory (``name``, ``base``).

        When every path rule that can match below ``dir_name`` is a literal at or above it, the
        path decision is the same for all entries and only the basename rules remain to test.
        """
        prefix = dir_name.rstrip("/") + "/"
        const = False
        for r in self._rules:
            if not r.is_path:
                continue
            t = r.text
            if r.literal and (t == "/" or dir_name == t or dir_name.startswith(t + "/")):
                const = r.include
            elif not r.literal or t.startswith(prefix):
                return lambda name, _base: self.included(name)
        if not const:
            return lambda _name, _base: False
        runs = _last_match_runs([r for r in self._rules if not r.is_path])

        def check(_name: str, base: str) -> bool:
            if base.startswith(TMP_PREFIX):
                return False
            for include, regex in runs:
                if regex.fullmatch(base) is not None:
                    return include
            return True

        return check

    def basename_excluded(self, name: str) -> bool:
        """Whether the basename rules alone exclude ``name`` (then nothing below it syncs)."""
        base = name.rsplit("/", 1)[-1]
        ok = True
        for r in self._rules:
            if not r.is_path and r.matches(name, base):
                ok = r.include
        return not ok or base.startswith(TMP_PREFIX)

    def roots(self) -> tuple[str, ...]:
        """Where walks start: each include's literal leading directories, nested ones merged."""
        out: set[str] = set()
        for text in self._includes:
            parts = text.split("/")
            lit: list[str] = []
            for part in parts:
                if any(ch in part for ch in "*?[\\"):
                    break
                lit.append(part)
            root = "/".join(lit) or "/"
            out.add(root)
        ordered = sorted(out)
        merged: list[str] = []
        for r in ordered:
            if not any(r == m or r.startswith(m.rstrip("/") + "/") for m in merged):
                merged.append(r)
        return tuple(merged)

    def descend(self, name: str) -> bool:
        """Whether a walk should look inside directory ``name``."""
        if self.basename_excluded(name):
            return False
        if self.included(name):
            return True
        parts = name.split("/")
        for text in self._includes:
            if "**" in text:
                lit = text.split("**", 1)[0].rstrip("/")
                if name.startswith(lit) or lit.startswith(name):
                    return True
                continue
            pparts = text.split("/")
            if len(pparts) > len(parts) and all(
                fnmatch.fnmatchcase(a, b) for a, b in zip(parts, pparts, strict=False)
            ):
                return True
        return False

    def holds(self, path: str, recursive: bool) -> bool:
        """Whether the scope ``path`` (``recursive``: and below) holds anything the group
        replicates: the name itself, or a directory with some of it below."""
        return self.included(path) or (recursive and (path == "/" or self.descend(path)))

    def wanted(self, name: str, is_dir: bool) -> bool:
        """Whether a walk takes ``name`` or, a directory, looks inside it."""
        return self.included(name) or (is_dir and self.descend(name))

    def within(self, name: str, scopes: Iterable[tuple[str, bool]]) -> bool:
        """Whether ``name`` lies in one of ``scopes`` (path, recursive)."""
        return any(in_scope(name, p, r) for p, r in scopes)


def _last_match_runs(rules: list[_Compiled]) -> list[tuple[bool, re.Pattern[str]]]:
    """Basename rules (the last match decides) as one regex per run of rules with the same
    effect, the last run first: the first run that matches decides. The talk's five excludes
    are one ``fullmatch`` per file instead of five."""
    runs: list[tuple[bool, list[str]]] = []
    for r in reversed(rules):
        if runs and runs[-1][0] == r.include:
            runs[-1][1].append(r.regex.pattern)
        else:
            runs.append((r.include, [r.regex.pattern]))
    return [(inc, re.compile("|".join(f"(?:{p})" for p in pats))) for inc, pats in runs]


# A path name and whether it covers what lies below it.
Scope = tuple[str, bool]


def in_scope(name: str, path: str, recursive: bool) -> bool:
    """``name`` is ``path`` itself, or (recursive) below it."""
    if name == path:
        return True
    return recursive and (path == "/" or name.startswith(path.rstrip("/") + "/"))


def shown(text: str) -> str:
    """``text`` as one log or status line can show it: bytes that are not UTF-8 as ``\\xNN``,
    control characters (a newline, an escape sequence) as Python escapes."""
    out = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if out.isprintable():
        return out
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in out)


def valid_name(name: str) -> bool:
    """An absolute, normalised UTF-8 name without NUL, ``.`` or ``..`` components (remote
    input)."""
    if not name.startswith(("/", "%")) or "\x00" in name or (name.endswith("/") and name != "/"):
        return False
    if not is_utf8(name):
        return False
    return all(part not in (".", "..") for part in name.split("/")[1:]) and "//" not in name


class PathMap:
    """Names to local paths and back, for one node: its ``root`` and its csync2 prefixes."""

    def __init__(self, root: str, prefixes: dict[str, Prefix], host: str) -> None:
        self.root = os.path.abspath(root) if root not in ("", "/") else ""
        self._pref: dict[str, str] = {}
        for name, pref in prefixes.items():
            path = pref.path_for(host)
            if path is not None:
                self._pref[name] = path

    def local(self, name: str) -> str:
        """The local path of a name."""
        if name.startswith("%"):
            pname, _, rest = name[1:].partition("%")
            base = self._pref.get(pname)
            if base is None:
                raise UnknownName(f"prefix %{pname}% has no path for this host")
            name = base.rstrip("/") + rest
        return self.root + name

    def knows(self, name: str) -> bool:
        """Whether :meth:`local` gives a path for ``name`` on this host (a ``%PREFIX%`` with
        no path here has none)."""
        return not name.startswith("%") or name[1:].partition("%")[0] in self._pref

    def encode(self, path: str) -> str:
        """csync2's ``prefixencode``: a local path at or below a prefix's directory on this
        node becomes ``%NAME%`` + the rest (the deepest directory wins); other paths (and names
        already written with ``%NAME%``) are returned unchanged."""
        best = ""
        out = path
        for pname, base in self._pref.items():
            local = self.root + base.rstrip("/")
            if local and (path == local or path.startswith(local + "/")) and len(local) > len(best):
                best, out = local, f"%{pname}%" + path[len(local):]
        return out

    def name(self, local: str, template: str) -> str:
        """The name of a local path found while walking from the root named ``template``."""
        base = self.local(template)
        return template + local[len(base) :]


# The talk's master script forces these, in this order, before its -xv.
MASTER_SCRIPT_PATHS = ("/var/log/asterisk", "/etc/asterisk")


def force_paths(matchers: Sequence[Matcher]) -> tuple[str, ...]:
    """What a takeover or a release forces onto the peers, from the groups' include patterns.

    When the groups replicate both of the talk's paths (its csync2.cfg does), exactly what its
    master script forces, in its order. Otherwise every include's fixed leading directories
    (``/srv/data/*.db`` gives ``/srv/data``), nested ones merged, so a site replicating anything
    else has all of it made equal, and nothing it does not replicate is touched.
    """
    if all(any(m.included(p) for m in matchers) for p in MASTER_SCRIPT_PATHS):
        return MASTER_SCRIPT_PATHS
    roots = sorted({r for m in matchers for r in m.roots()})
    return tuple(r for r in roots
                 if not any(r != o and r.startswith(o.rstrip("/") + "/") for o in roots))


class Owner:
    """Which names one group's scan speaks for (call it), and which names any group of this
    node includes (``kept``). A name that no group includes any more (an ``include`` taken out
    of csync2.cfg, an ``exclude`` added) is no longer this node's business: a check forgets
    its rows, as ``-R`` does, instead of taking it for a deletion to push."""

    __slots__ = ("kept", "mine")

    def __init__(self, mine: Callable[[str], bool], kept: Callable[[str], bool]) -> None:
        self.mine = mine
        self.kept = kept

    def __call__(self, name: str) -> bool:
        return self.mine(name)
