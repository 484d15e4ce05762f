"""Run host commands (``ip``, ``nft``, ``nsenter`` ...) with a deadline and a clear error."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from nonstop.lab.errors import LabError


def run_checked(argv: Sequence[str], *, input_text: str | None = None,
                timeout: float = 15.0) -> str:
    """Run ``argv``, return its stdout; raise LabError with its stderr if it fails."""
    try:
        done = subprocess.run(
            list(argv), input=input_text, capture_output=True, text=True, timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{' '.join(argv)}: no answer within {timeout} s") from exc
    except OSError as exc:
        raise LabError(f"{' '.join(argv)}: {exc}") from exc
    if done.returncode != 0:
        why = done.stderr.strip() or done.stdout.strip()
        raise LabError(f"{' '.join(argv)}: exit {done.returncode}: {why}")
    return done.stdout
