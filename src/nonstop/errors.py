"""The two roots of every error nonstop raises on purpose.

A caller can tell its own mistakes from the network's: everything the package raises derives
from exactly one of these (tests/unit/test_errors.py walks the package to check it).

* :class:`NonstopError`: local misuse, configuration or machine problems: a bad ha.cf, an
  illegal state transition asked by our own code, a resource script that failed, a daemon
  that cannot be reached over its local socket. Fix it here.
* :class:`RemoteInputError`: what arrived from another node cannot be used: a heartbeat
  packet that fails to decode or authenticate, a sync frame or delta that breaks the protocol,
  a peer that refuses us. The input is dropped and counted; the node carries on.

Subclasses keep a builtin base where callers relied on it (``RuntimeError``, ``ValueError``).
"""

from __future__ import annotations


class NonstopError(Exception):
    """Local misuse, configuration or machine problem (not caused by a peer's bytes)."""


class RemoteInputError(Exception):
    """Bad input from the network: dropped and counted, never a reason to stop the node."""
