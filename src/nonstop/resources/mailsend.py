"""One MailTo mail, composed and handed on in a process of its own.

    python3 -m nonstop.resources.mailsend < spec.json

The daemon runs this for each delivery attempt of a MailTo notice, so that the `email` and
`smtplib` packages (about 1.1 MB that glibc keeps once they are loaded) never enter the
daemon's own memory; Heartbeat's MailTo likewise runs mail(1) for each notice. The spec on
standard input is a JSON object: ``from``, ``to`` (a list), ``subject``, ``body``, and the
transport: ``sendmail`` (the MTA's sendmail program, or null) else ``smtp_host`` and
``smtp_port``, with ``timeout`` in seconds. Exit status 0: the MTA or the SMTP server took the
mail; 1: it did not (worth another attempt); 2: the mail cannot be composed (a header that
`email` refuses: another attempt would fail the same way). The last line on standard error
says why.
"""

from __future__ import annotations

import email.policy
import json
import smtplib
import subprocess
import sys
from email.message import EmailMessage
from typing import Any

from nonstop.errors import MachineError, MachineTimeout


def compose(sender: str, recipients: list[str], subject: str, body: str) -> EmailMessage:
    """The mail as Heartbeat's MailTo sends it."""
    # Long subjects stay on one header line (RFC 5322 allows 998 characters), so every mail
    # client shows them exactly as Heartbeat's mail(1) sent them.
    msg = EmailMessage(policy=email.policy.SMTP.clone(max_line_length=998))
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Subject"] = subject
    msg.set_content(body)
    return msg


def _sendmail(program: str, msg: EmailMessage, recipients: list[str], timeout: float) -> None:
    """Hand the mail to the local MTA (``sendmail -oi -f from -- rcpt...``, the interface
    every Debian MTA provides); it queues and delivers."""
    try:
        done = subprocess.run([program, "-oi", "-f", str(msg["From"]), "--", *recipients],
                              input=msg.as_bytes(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise MachineTimeout(f"{program} still running after {timeout} s") from None
    if done.returncode != 0:
        detail = done.stderr.decode(errors="replace").strip().splitlines()
        raise MachineError(f"{program} exited with {done.returncode}"
                           + (f": {detail[-1]}" if detail else ""))


def send(spec: dict[str, Any], msg: EmailMessage) -> None:
    """Deliver ``msg`` as ``spec`` says; raises OSError, TimeoutError or
    smtplib.SMTPException when it was not taken."""
    timeout = float(spec["timeout"])
    if spec.get("sendmail"):
        _sendmail(str(spec["sendmail"]), msg, [str(r) for r in spec["to"]], timeout)
        return
    with smtplib.SMTP(str(spec["smtp_host"]), int(spec["smtp_port"]), timeout=timeout) as smtp:
        smtp.send_message(msg)


EXIT_NOT_TAKEN = 1
EXIT_CANNOT_COMPOSE = 2


def main() -> int:
    try:
        spec = json.load(sys.stdin)
        msg = compose(str(spec["from"]), [str(r) for r in spec["to"]], str(spec["subject"]),
                      str(spec["body"]))
    except (ValueError, TypeError, KeyError) as exc:  # a header email refuses, a bad spec
        print(f"cannot compose the mail: {exc}", file=sys.stderr)
        return EXIT_CANNOT_COMPOSE
    try:
        send(spec, msg)
    except (OSError, TimeoutError, smtplib.SMTPException) as exc:
        print(str(exc) or type(exc).__name__, file=sys.stderr)
        return EXIT_NOT_TAKEN
    return 0


if __name__ == "__main__":
    sys.exit(main())
