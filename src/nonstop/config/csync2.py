"""Parse csync2.cfg (csync2 2.0 grammar) into a typed model.

The talk's file parses unchanged. Statements end with ``;``, blocks use ``{ }``, ``#`` starts a
comment, ``"double quotes"`` make one word of text with spaces. Every error names ``file:line``.
"""

from __future__ import annotations

import enum
import fnmatch
import os
import re
from collections.abc import Callable

from nonstop.config.csync2tokens import Token, tokenize
from nonstop.config.errors import ConfigError, Location
from nonstop.config.reading import bad_byte_message, decode_line, read_config_bytes
from nonstop.records import field, mutable_record, record

DEFAULT_PORT = 30865
DEFAULT_BACKUP_GENERATIONS = 3
MAX_INCLUDE_DEPTH = 10
KEY_MIN_LEN = 32
_KEY_RE = re.compile(r"^[A-Za-z0-9._]+$")
_PREFIX_NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")
_NOWHERE = Location("")


class AutoMode(enum.Enum):
    """``auto``: how a conflict (a file changed on both sides) is resolved without ``-f``."""

    NONE = "none"
    FIRST = "first"
    YOUNGER = "younger"
    OLDER = "older"
    BIGGER = "bigger"
    SMALLER = "smaller"
    LEFT = "left"
    RIGHT = "right"


@record
class Pattern:
    """One include/exclude/compare pattern as written, with where it was written."""

    text: str
    include: bool
    loc: Location

    @property
    def is_path(self) -> bool:
        """Path patterns start with ``/`` or ``%`` (a prefix); others match the basename."""
        return self.text.startswith(("/", "%"))


@record
class Host:
    """A ``host`` entry: ``name``, ``name@address-name`` or a slave ``(name)``."""

    name: str
    connect_as: str
    slave: bool = False


@record
class Action:
    """An ``action { }`` block: run ``execs`` after files matching ``patterns`` changed."""

    patterns: tuple[str, ...]
    execs: tuple[str, ...]
    logfile: str = "/dev/null"
    do_local: bool = False
    do_local_only: bool = False
    loc: Location = _NOWHERE


@record
class Group:
    """One ``group NAME { }`` block."""

    name: str
    hosts: tuple[Host, ...]
    key_file: str
    patterns: tuple[Pattern, ...]
    compare: tuple[Pattern, ...] = ()
    auto: AutoMode = AutoMode.NONE
    backup_directory: str | None = None
    backup_generations: int = DEFAULT_BACKUP_GENERATIONS
    actions: tuple[Action, ...] = ()
    loc: Location = _NOWHERE
    key_loc: Location = _NOWHERE

    @property
    def host_names(self) -> tuple[str, ...]:
        return tuple(h.name for h in self.hosts)

    def host(self, name: str) -> Host | None:
        """The entry for host ``name``, if it is a member."""
        for h in self.hosts:
            if h.name == name:
                return h
        return None

    def peers(self, me: str) -> tuple[Host, ...]:
        """Every member except ``me``, in the order written."""
        return tuple(h for h in self.hosts if h.name != me)


@record
class Nossl:
    """``nossl FROM TO;``: shell patterns of local and peer names that may talk without TLS."""

    local: str
    peer: str
    loc: Location

    def matches(self, local: str, peer: str) -> bool:
        return fnmatch.fnmatchcase(local, self.local) and fnmatch.fnmatchcase(peer, self.peer)


@record
class Prefix:
    """``prefix NAME { on HOSTPATTERN: /path; }``: ``%NAME%`` maps to a per-host directory."""

    name: str
    rules: tuple[tuple[str, str], ...]
    loc: Location

    def path_for(self, host: str) -> str | None:
        """The directory for ``host``: the first rule whose pattern matches, else None."""
        for pattern, path in self.rules:
            if fnmatch.fnmatchcase(host, pattern):
                return path
        return None


@record
class Csync2Config:
    """A whole csync2.cfg (with files pulled in by ``config FILE;``)."""

    path: str
    groups: tuple[Group, ...]
    nossl: tuple[Nossl, ...] = ()
    prefixes: dict[str, Prefix] = field(default_factory=dict)
    database: str | None = None
    tempdir: str | None = None
    lock_timeout: int = 12
    ignore: frozenset[str] = frozenset()

    def groups_for(self, host: str) -> tuple[Group, ...]:
        """The groups that list ``host`` (csync2 ignores the others on that host)."""
        return tuple(g for g in self.groups if g.host(host) is not None)

    def tls_required(self, local: str, peer: str) -> bool:
        """csync2's rule: TLS unless a ``nossl`` line matches (nonstop always uses TLS anyway)."""
        return not any(n.matches(local, peer) for n in self.nossl)


@mutable_record
class _GroupDraft:
    """A group block while it is read; checked and frozen into a Group at its '}'."""

    name: str
    hosts: list[Host] = field(default_factory=list)
    patterns: list[Pattern] = field(default_factory=list)
    compare: list[Pattern] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    key: Token | None = None
    auto: Token | None = None
    backup_dir: str | None = None
    generations: int = DEFAULT_BACKUP_GENERATIONS


# ---------------------------------------------------------------------------------------------
# Parser


class _Parser:
    def __init__(self, path: str, depth: int) -> None:
        self.path = path
        self.depth = depth
        self.groups: list[Group] = []
        self.nossl: list[Nossl] = []
        self.prefixes: dict[str, Prefix] = {}
        self.database: str | None = None
        self.tempdir: str | None = None
        self.lock_timeout = 12
        self.ignore: set[str] = set()
        self._toks: list[Token] = []
        self._pos = 0
        self._unnamed = 0

    # --- token helpers
    def _loc(self, tok: Token | None = None) -> Location:
        if tok is None:
            tok = self._toks[self._pos] if self._pos < len(self._toks) else self._last()
        return Location(self.path, tok.line)

    def _last(self) -> Token:
        return self._toks[-1] if self._toks else Token("", 1)

    def _peek(self) -> Token | None:
        return self._toks[self._pos] if self._pos < len(self._toks) else None

    def _next(self, what: str) -> Token:
        tok = self._peek()
        if tok is None:
            raise ConfigError(Location(self.path, self._last().line), f"unexpected end, {what}")
        self._pos += 1
        return tok

    def _expect(self, ch: str) -> Token:
        tok = self._next(f"expected '{ch}'")
        if not tok.is_punct(ch):
            raise ConfigError(self._loc(tok), f"expected '{ch}', found '{tok.text}'")
        return tok

    def _words(self, directive: Token, minimum: int = 1) -> list[Token]:
        """Words up to the closing ``;``."""
        out: list[Token] = []
        while True:
            tok = self._next(f"'{directive.text}' needs a closing ';'")
            if tok.is_punct(";"):
                break
            if tok.is_punct("{") or tok.is_punct("}"):
                raise ConfigError(self._loc(tok), f"'{directive.text}' needs a closing ';'")
            out.append(tok)
        if len(out) < minimum:
            raise ConfigError(self._loc(directive), f"'{directive.text}' needs an argument")
        return out

    def _one_word(self, directive: Token) -> Token:
        words = self._words(directive)
        if len(words) != 1:
            raise ConfigError(self._loc(directive), f"'{directive.text}' takes one argument")
        return words[0]

    def _int(self, tok: Token, directive: str) -> int:
        try:
            return int(tok.text)
        except ValueError:
            raise ConfigError(
                self._loc(tok), f"'{directive}' needs a number, not '{tok.text}'"
            ) from None

    # --- top level
    def parse(self, text: str) -> None:
        self._toks = list(tokenize(text, self.path))
        self._pos = 0
        while (tok := self._peek()) is not None:
            self._pos += 1
            if tok.quoted or tok.text in "{};":
                raise ConfigError(self._loc(tok), f"unexpected '{tok.text}'")
            read = _TOP_LEVEL.get(tok.text.lower())
            if read is None:
                raise ConfigError(self._loc(tok), f"unknown directive '{tok.text}'")
            read(self, tok)

    def _nossl(self, tok: Token) -> None:
        words = self._words(tok)
        if len(words) != 2:
            raise ConfigError(self._loc(tok), "'nossl' takes two host patterns")
        self.nossl.append(Nossl(words[0].text, words[1].text, self._loc(tok)))

    def _config(self, tok: Token) -> None:
        self._include(tok, self._one_word(tok).text)

    def _database(self, tok: Token) -> None:
        self.database = self._one_word(tok).text

    def _tempdir(self, tok: Token) -> None:
        self.tempdir = self._one_word(tok).text

    def _lock_timeout(self, tok: Token) -> None:
        self.lock_timeout = self._int(self._one_word(tok), "lock-timeout")

    def _ignore(self, tok: Token) -> None:
        for w in self._words(tok):
            if w.text not in ("uid", "gid", "mod"):
                raise ConfigError(self._loc(w), f"'ignore' takes uid, gid or mod, not '{w.text}'")
            self.ignore.add(w.text)

    def _no_cygwin_lowercase(self, tok: Token) -> None:
        self._words(tok, minimum=0)
        raise ConfigError(self._loc(tok), "'no-cygwin-lowercase' is for Cygwin only")

    def _include(self, tok: Token, name: str) -> None:
        if self.depth >= MAX_INCLUDE_DEPTH:
            raise ConfigError(self._loc(tok), "config files nested too deeply")
        path = name if os.path.isabs(name) else os.path.join(os.path.dirname(self.path), name)
        try:
            text = read_cfg_text(path)
        except ConfigError as e:
            if e.loc.line:
                raise
            # The included file as a whole is unusable: say so at the line that names it.
            raise ConfigError(self._loc(tok), f"config {path}: {e.message}") from None
        sub = _Parser(path, self.depth + 1)
        sub._unnamed = self._unnamed + len(self.groups)
        sub.parse(text)
        self.groups.extend(sub.groups)
        self.nossl.extend(sub.nossl)
        self.prefixes.update(sub.prefixes)
        self.database = sub.database or self.database
        self.tempdir = sub.tempdir or self.tempdir
        self.ignore |= sub.ignore

    def _prefix(self, tok: Token) -> None:
        name_tok = self._next("'prefix' needs a name")
        if not _PREFIX_NAME_RE.match(name_tok.text):
            raise ConfigError(self._loc(name_tok), f"bad prefix name '{name_tok.text}'")
        self._expect("{")
        rules: list[tuple[str, str]] = []
        while True:
            t = self._next("prefix block needs a closing '}'")
            if t.is_punct("}"):
                break
            if t.text.lower() != "on":
                raise ConfigError(self._loc(t), f"expected 'on' in prefix block, found '{t.text}'")
            words = [w.text for w in self._words(t)]
            joined = " ".join(words)
            host, sep, path = joined.partition(":")
            host, path = host.strip(), path.strip()
            if not sep or not host or not path:
                raise ConfigError(self._loc(t), "expected 'on HOSTPATTERN: /path;'")
            if not path.startswith("/") or any(ch in path for ch in "*?["):
                raise ConfigError(
                    self._loc(t), f"prefix path must be absolute without wildcards: '{path}'"
                )
            rules.append((host, path.rstrip("/") or "/"))
        self.prefixes[name_tok.text] = Prefix(name_tok.text, tuple(rules), self._loc(tok))

    def _group(self, tok: Token) -> None:
        nxt = self._next("'group' needs a block")
        if nxt.is_punct("{"):
            self._unnamed += 1
            name = f"group_{self._unnamed}"
        else:
            name = nxt.text
            self._expect("{")
        g = _GroupDraft(name)
        while True:
            t = self._next(f"group '{name}' needs a closing '}}'")
            if t.is_punct("}"):
                break
            if t.quoted or t.text in "{;":
                raise ConfigError(self._loc(t), f"unexpected '{t.text}' in group '{name}'")
            read = _IN_GROUP.get(t.text.lower())
            if read is None:
                raise ConfigError(self._loc(t), f"unknown directive '{t.text}' in group '{name}'")
            read(self, g, t)
        self.groups.append(self._checked_group(tok, g))

    def _checked_group(self, tok: Token, g: _GroupDraft) -> Group:
        if not g.hosts:
            raise ConfigError(self._loc(tok), f"group '{g.name}' has no hosts")
        if g.key is None:
            raise ConfigError(self._loc(tok), f"group '{g.name}' has no key")
        seen: set[str] = set()
        for h in g.hosts:
            if h.name in seen:
                raise ConfigError(self._loc(tok), f"host '{h.name}' listed twice in '{g.name}'")
            seen.add(h.name)
        key_path = g.key.text
        if not os.path.isabs(key_path):
            key_path = os.path.join(os.path.dirname(self.path), key_path)
        return Group(
            name=g.name,
            hosts=tuple(g.hosts),
            key_file=key_path,
            patterns=tuple(g.patterns),
            compare=tuple(g.compare),
            auto=AutoMode(g.auto.text.lower()) if g.auto else AutoMode.NONE,
            backup_directory=g.backup_dir,
            backup_generations=g.generations,
            actions=tuple(g.actions),
            loc=self._loc(tok),
            key_loc=self._loc(g.key),
        )

    # --- the statements of a group block
    def _g_host(self, g: _GroupDraft, t: Token) -> None:
        g.hosts.extend(self._hosts(t))

    def _g_key(self, g: _GroupDraft, t: Token) -> None:
        if g.key is not None:
            raise ConfigError(self._loc(t), f"group '{g.name}' has more than one key")
        g.key = self._one_word(t)

    def _g_patterns(self, g: _GroupDraft, t: Token) -> None:
        word = t.text.lower()  # include, exclude or compare
        for w in self._words(t):
            text = w.text.rstrip("/") if len(w.text) > 1 else w.text
            p = Pattern(text, word != "exclude", self._loc(w))
            (g.compare if word == "compare" else g.patterns).append(p)

    def _g_auto(self, g: _GroupDraft, t: Token) -> None:
        if g.auto is not None:
            raise ConfigError(self._loc(t), f"group '{g.name}' has more than one auto")
        g.auto = self._one_word(t)
        if g.auto.text.lower() not in {m.value for m in AutoMode}:
            raise ConfigError(self._loc(g.auto), f"unknown auto mode '{g.auto.text}'")

    def _g_backup_directory(self, g: _GroupDraft, t: Token) -> None:
        g.backup_dir = self._one_word(t).text
        if not g.backup_dir.startswith("/"):
            raise ConfigError(self._loc(t), "backup-directory must be an absolute path")

    def _g_backup_generations(self, g: _GroupDraft, t: Token) -> None:
        g.generations = self._int(self._one_word(t), "backup-generations")
        if g.generations < 0:
            raise ConfigError(self._loc(t), "backup-generations cannot be negative")

    def _g_action(self, g: _GroupDraft, t: Token) -> None:
        g.actions.append(self._action(t))

    def _hosts(self, directive: Token) -> list[Host]:
        out: list[Host] = []
        slave = False
        for w in self._words(directive):
            text = w.text
            if text.startswith("("):
                slave, text = True, text[1:]
            closing = text.endswith(")")
            if closing:
                text = text[:-1]
            if text:
                name, _, via = text.partition("@")
                if not name:
                    raise ConfigError(self._loc(w), f"bad host '{w.text}'")
                out.append(Host(name.lower(), (via or name).lower(), slave))
            if closing:
                slave = False
        return out

    def _action(self, tok: Token) -> Action:
        self._expect("{")
        patterns: list[str] = []
        execs: list[str] = []
        logfile = "/dev/null"
        do_local = do_local_only = False
        while True:
            t = self._next("action block needs a closing '}'")
            if t.is_punct("}"):
                break
            word = t.text.lower()
            if word == "pattern":
                patterns.extend(w.text for w in self._words(t))
            elif word == "exec":
                execs.extend(w.text for w in self._words(t))
            elif word == "logfile":
                logfile = self._one_word(t).text
            elif word == "do-local":
                self._words(t, minimum=0)
                do_local = True
            elif word == "do-local-only":
                self._words(t, minimum=0)
                do_local_only = True
            else:
                raise ConfigError(self._loc(t), f"unknown directive '{t.text}' in action")
        if not execs:
            raise ConfigError(self._loc(tok), "action has no 'exec'")
        return Action(tuple(patterns), tuple(execs), logfile, do_local, do_local_only,
                      self._loc(tok))


# What each statement does, at the top level and in a group block (keys are lowercase).
_TOP_LEVEL: dict[str, Callable[[_Parser, Token], None]] = {
    "group": _Parser._group,
    "nossl": _Parser._nossl,
    "prefix": _Parser._prefix,
    "config": _Parser._config,
    "database": _Parser._database,
    "tempdir": _Parser._tempdir,
    "lock-timeout": _Parser._lock_timeout,
    "ignore": _Parser._ignore,
    "no-cygwin-lowercase": _Parser._no_cygwin_lowercase,
}
_IN_GROUP: dict[str, Callable[[_Parser, _GroupDraft, Token], None]] = {
    "host": _Parser._g_host,
    "key": _Parser._g_key,
    "include": _Parser._g_patterns,
    "exclude": _Parser._g_patterns,
    "compare": _Parser._g_patterns,
    "auto": _Parser._g_auto,
    "backup-directory": _Parser._g_backup_directory,
    "backup-generations": _Parser._g_backup_generations,
    "action": _Parser._g_action,
}


def parse_csync2_text(text: str, path: str) -> Csync2Config:
    """Parse csync2.cfg text; ``path`` names it in errors and anchors relative paths."""
    p = _Parser(path, 0)
    p.parse(text)
    return Csync2Config(
        path=path,
        groups=tuple(p.groups),
        nossl=tuple(p.nossl),
        prefixes=dict(p.prefixes),
        database=p.database,
        tempdir=p.tempdir,
        lock_timeout=p.lock_timeout,
        ignore=frozenset(p.ignore),
    )


# A NUL byte in csync2.cfg (or a key file) is refused: text holds none, and what a C reader
# would make of the bytes after it is not something to guess.
CSYNC2_NUL = "NUL byte in the file: csync2's configuration and key files are text; remove it"


def read_cfg_text(path: str) -> str:
    """A csync2.cfg (or a file it includes) as text: a regular file of sane size without NUL
    bytes, read as bytes; as csync2 reads bytes, a comment may hold any encoding (a Latin-1
    accent in a comment is common), elsewhere a non-UTF-8 byte is an error naming file:line."""
    raw, errors = read_config_bytes(path, CSYNC2_NUL)
    if raw is None:
        raise errors[0]
    lines: list[str] = []
    for n, line in enumerate(raw.data.split(b"\n"), 1):
        text = decode_line(line)
        if text is None:
            raise ConfigError(Location(path, n), bad_byte_message(line))
        lines.append(text)
    return "\n".join(lines)


def load_csync2(path: str) -> Csync2Config:
    """Read and parse a csync2.cfg file."""
    return parse_csync2_text(read_cfg_text(path), path)


def load_key(group: Group) -> bytes:
    """The group key: the key file's first line, checked as csync2 checks it."""
    # a regular file, capped: not /dev/zero
    raw, errors = read_config_bytes(group.key_file, CSYNC2_NUL)
    if raw is None:
        raise ConfigError(group.key_loc, f"cannot read key file {group.key_file}: "
                                         f"{errors[0].message.removeprefix('cannot read: ')}")
    first = raw.data.split(b"\n", 1)[0].strip()
    text = first.decode("ascii", "replace")
    if len(first) < KEY_MIN_LEN:
        raise ConfigError(
            group.key_loc, f"key in {group.key_file} is too short (< {KEY_MIN_LEN} characters)"
        )
    if not _KEY_RE.match(text):
        raise ConfigError(
            group.key_loc, f"key in {group.key_file} has characters outside [A-Za-z0-9._]"
        )
    return first
