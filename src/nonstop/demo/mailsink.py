"""The demo nodes' mail server: an aiosmtpd handler that records each message it is given.

Each demo node runs ``python3 -m aiosmtpd -n -l 127.0.0.1:25 -c nonstop.demo.mailsink.MailLog
FILE`` in its own network namespace, so the MailTo resource of the talk's haresources delivers
its takeover mail over real SMTP. Nothing is relayed: every message becomes one JSON line in
FILE, ``{"received", "mail_from", "rcpt_tos", "subject"}``, with ``received`` a
``time.monotonic()`` value (the clock the demo measures everything with).
"""

from __future__ import annotations

import json
import time
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path
from typing import Any


class MailLog:
    """aiosmtpd handler: append every accepted message to a JSON-lines file."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Record the message (aiosmtpd calls this once the DATA phase is complete)."""
        content = envelope.content
        raw = content if isinstance(content, bytes) else str(content).encode()
        message = message_from_bytes(raw, policy=default_policy)
        record = {
            "received": time.monotonic(),
            "mail_from": str(envelope.mail_from),
            "rcpt_tos": [str(r) for r in envelope.rcpt_tos],
            "subject": str(message.get("Subject", "")),
        }
        with self.path.open("a") as out:
            out.write(json.dumps(record) + "\n")
        return "250 Message accepted for delivery"

    @classmethod
    def from_cli(cls, parser: Any, *args: str) -> MailLog:
        """aiosmtpd's ``-c CLASS ARGS`` hook: the one argument is the record file."""
        if len(args) != 1:
            parser.error("MailLog takes one argument: the file to record messages in")
        return cls(args[0])


def read_mail(path: Path) -> list[dict[str, Any]]:
    """The messages recorded in ``path`` (none when it does not exist yet)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    out: list[dict[str, Any]] = []
    for line in text.splitlines():
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line still being written
        if isinstance(item, dict):
            out.append(item)
    return out
