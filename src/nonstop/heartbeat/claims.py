"""Whose identity an unauthenticated status message claims: for the log line only.

A datagram that fails authentication is dropped before any field is parsed (codec.decode),
and nothing about it reaches membership. But a *status* message that names a configured node
as its sender while failing authentication is a different event from line noise or a
neighbour's cluster: someone is speaking as one of our nodes with the wrong key (a
misconfigured node, or a forger). The operator must always be told, so the daemon logs it
outside the bad-packet burst limits (rate-limited per source and node, never hidden).

:func:`claimed_sender` looks for ``t=status`` and ``src=<name>`` in the first
:data:`SCAN_LIMIT` bytes of either wire form with two fixed regular expressions: bounded work,
no decoding, and the result is only compared with the configured node names (never logged as
sent, never used for any decision).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

SCAN_LIMIT = 2048  # a status message's t and src come first; nothing beyond is looked at

# A type-0 field starting a classic line ("\nsrc=...\n") or a netstring ("12:(0)src=...,").
_STATUS = re.compile(rb"(?:\n|:\(0\))t=status[\n,]")
_SRC = re.compile(rb"(?:\n|:\(0\))src=([!-+\--~]{1,64})[\n,]")


def claimed_sender(data: bytes, nodes: Iterable[str]) -> str | None:
    """The configured node (as configured) that an unauthenticated status message claims to
    come from; None if it is not a status message or names no configured node."""
    head = bytes(data[:SCAN_LIMIT])
    if _STATUS.search(head) is None:
        return None
    found = _SRC.search(head)
    if found is None:
        return None
    name = found.group(1).decode("ascii").lower()
    return next((n for n in nodes if n.lower() == name), None)
