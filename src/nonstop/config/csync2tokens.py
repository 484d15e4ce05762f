"""The words of csync2.cfg: the tokenizer :mod:`nonstop.config.csync2` parses from.

``#`` starts a comment up to the end of the line, ``{ } ;`` are tokens of their own, and
``"double quotes"`` make one word of text with spaces (a backslash escapes the next character).
"""

from __future__ import annotations

from collections.abc import Iterator

from nonstop.config.errors import ConfigError, Location
from nonstop.records import record


@record
class Token:
    """A word (quoted or not) or one of ``{ } ;``, with the line it starts on."""

    text: str
    line: int
    quoted: bool = False

    def is_punct(self, ch: str) -> bool:
        return not self.quoted and self.text == ch


def tokenize(text: str, file: str) -> Iterator[Token]:
    """The tokens of ``text`` (the file ``file``), comments and whitespace skipped."""
    i, line, n = 0, 1, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif c in " \t\r\f\v":
            i += 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c in "{};":
            yield Token(c, line)
            i += 1
        elif c == '"':
            tok, i, line = _quoted(text, i, line, file)
            yield tok
        else:
            j = i
            while j < n and text[j] not in ' \t\r\n\f\v{};#"':
                j += 1
            yield Token(text[i:j], line)
            i = j


def _quoted(text: str, i: int, line: int, file: str) -> tuple[Token, int, int]:
    """The quoted word whose opening quote is ``text[i]`` (a backslash escapes the next
    character): its token, the index after its closing quote, and the line there."""
    start_line, n = line, len(text)
    j = i + 1
    buf: list[str] = []
    while j < n and text[j] != '"':
        if text[j] == "\\" and j + 1 < n:
            j += 1
        if text[j] == "\n":
            line += 1
        buf.append(text[j])
        j += 1
    if j >= n:
        raise ConfigError(Location(file, start_line), "unterminated quoted string")
    return Token("".join(buf), start_line, quoted=True), j + 1, line
