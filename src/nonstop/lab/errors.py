"""The lab's one error type: something on this machine did not do what the lab asked."""

from __future__ import annotations

from nonstop.errors import NonstopError


class LabError(NonstopError, RuntimeError):
    """A lab command failed, timed out, or the lab was used wrongly."""
