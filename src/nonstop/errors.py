"""The two roots of every error nonstop raises on purpose.

A caller can tell its own mistakes from the network's: everything the package raises derives
from exactly one of these (tests/unit/test_errors.py walks the package to check it).

* :class:`NonstopError`: local misuse, configuration or machine problems: a bad ha.cf, an
  illegal state transition asked by our own code, a resource script that failed, a daemon
  that cannot be reached over its local socket. Fix it here.
* :class:`RemoteInputError`: what arrived from another node cannot be used: a heartbeat
  packet that fails to decode or authenticate, a sync frame or delta that breaks the protocol,
  a peer that refuses us. The input is dropped and counted; the node carries on.

Subclasses keep a builtin base where callers relied on it (``RuntimeError``, ``ValueError``,
``OSError``, ``KeyError``): the general ones below are for places that need no class of their own.
The package raises no bare builtin exception (tests/unit/test_errors.py walks the source to check
it), except where a Python protocol demands one: ``NotImplementedError`` in a method a subclass
provides, ``AttributeError`` from ``__getattr__``, ``TypeError`` for a call with wrong arguments
(records.py), ``KeyboardInterrupt`` for a SIGTERM taken as Ctrl-C, and the ``OSError`` of a
failed libc call, which is the OS's error, not ours.
"""

from __future__ import annotations


class NonstopError(Exception):
    """Local misuse, configuration or machine problem (not caused by a peer's bytes)."""


class RemoteInputError(Exception):
    """Bad input from the network: dropped and counted, never a reason to stop the node."""


class InvalidValue(NonstopError, ValueError):
    """A value given to nonstop (a configuration word, a command-line option, an argument from
    our own code, a local file's contents) is not one it accepts."""


class UnknownName(NonstopError, KeyError):
    """A name looked up locally (a node, a csync2 prefix, a bundled file) is not there."""


class Misuse(NonstopError, RuntimeError):
    """Our own code used an object in a way it does not allow (e.g. before it was opened)."""


class MachineError(NonstopError, OSError):
    """This machine cannot do what was asked: a program failed, a file or a module is missing or
    unusable, a local file changed under us. An ``OSError``, so that code handling the OS's
    errors handles it too."""


class MachineTimeout(MachineError, TimeoutError):
    """A local program or operation did not finish in time."""
