"""The lab's one error type: something on this machine did not do what the lab asked."""

from __future__ import annotations


class LabError(RuntimeError):
    """A lab command failed, timed out, or the lab was used wrongly."""
