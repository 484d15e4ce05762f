"""MailTo, native: a notification pseudo-resource (spec §4.2).

start and stop each send one mail and return at once: the mail goes out in the background
with a per-attempt timeout and a few retries, so a dead or slow mail server never delays or
fails a takeover. Its state ("running" after start) is kept in memory and, when the context
has a state directory, in a file there, one per MailTo entry (Heartbeat shared one file
between all MailTo entries, so two of them could not have separate states).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from nonstop.config.model import HaConfig
from nonstop.errors import InvalidValue, MachineError, MachineTimeout
from nonstop.resources.base import Agent, AgentContext, ResourceError, ResourceState

DEFAULT_SUBJECT = "Resource Group"
RETRY_BACKOFF_S = 2.0
EXIT_CANNOT_COMPOSE = 2  # nonstop.resources.mailsend's (not imported: it loads email)
# What an attempt may take beyond the mail server's own timeout: the child's Python start.
CHILD_START_S = 10.0


def effective_subject(subject: str | None) -> str:
    """Heartbeat's rule: a subject shorter than two characters becomes "Resource Group"."""
    if subject is None or len(subject) < 2:
        return DEFAULT_SUBJECT
    return subject


def format_date(when: datetime.datetime) -> str:
    """Like date(1) in the C locale: ``Wed Nov 25 02:13:23 UTC 2026``."""
    return when.strftime("%a %b %e %H:%M:%S %Z %Y")


def render_subject(action: str, subject: str | None, node: str, when: datetime.datetime) -> str:
    """The subject line MailTo sends for ``start`` or ``stop``."""
    s = effective_subject(subject)
    date = format_date(when)
    if action == "start":
        return f"{s} Takeover in progress at {date} on {node}"
    if action == "stop":
        return f"{s} Migrating resource away at {date} from {node}"
    raise InvalidValue(f"MailTo sends no mail for {action!r}")


def render_body(subject_line: str, command_line: str) -> str:
    """The body, with Heartbeat's 8-space indent and its one-blank separator line."""
    pad = " " * 8
    return f"{pad}{subject_line}\n \n{pad}Command line was:\n{pad}{command_line}\n"


# Where Debian's MTAs (nullmailer, msmtp-mta, ssmtp, exim4, postfix) put their sendmail.
SENDMAIL_PATHS = (Path("/usr/sbin/sendmail"), Path("/usr/lib/sendmail"))


def find_sendmail(paths: tuple[Path, ...] = SENDMAIL_PATHS) -> Path | None:
    """The local MTA's sendmail interface, if one is installed."""
    for path in paths:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    return None


def mail_transport(ha: HaConfig) -> dict[str, Any]:
    """AgentContext settings for MailTo from ha.cf: the relay ``nonstop_mailrelay`` names,
    else the local MTA's sendmail when there is one, else SMTP to localhost:25."""
    if ha.mail_relay is not None:
        host, port = ha.mail_relay
        return {"smtp_host": host, "smtp_port": port, "sendmail": None}
    return {"sendmail": find_sendmail()}


def parse_recipients(text: str) -> tuple[str, ...]:
    """Comma-separated addresses; empty entries are dropped."""
    return tuple(a.strip() for a in text.split(",") if a.strip())


class MailToAgent(Agent):
    """``MailTo::addr[,addr...][::subject]``."""

    def __init__(self, raw: str, args: tuple[str, ...], ctx: AgentContext) -> None:
        if not args or not parse_recipients(args[0]):
            raise ResourceError(raw, "configure", "At least 1 Email address has to be given!")
        if len(args) > 2:
            raise ResourceError(
                raw,
                "configure",
                f"Additional parameters found: {len(args) + 1} but max. 3 are allowed!",
            )
        self._raw = raw
        self.recipients = parse_recipients(args[0])
        self.subject = args[1] if len(args) > 1 else None
        self._ctx = ctx
        self._running = False
        self._tasks: set[asyncio.Task[bool]] = set()
        # Mails leave in the order of the events (a takeover notice before the release notice).
        self._send_lock = asyncio.Lock()
        self._draining = False  # set by drain(): a failed attempt is not retried
        self.delivered = 0  # mails the server accepted
        self.given_up = 0  # mails dropped after the last retry
        self._state_file: Path | None = None
        if ctx.state_dir is not None:
            digest = hashlib.sha1(raw.encode()).hexdigest()[:12]
            self._state_file = ctx.state_dir / f"MailTo-{digest}"

    def describe(self) -> str:
        return self._raw

    @property
    def pending(self) -> frozenset[asyncio.Task[bool]]:
        """Mails still being sent (each task returns True once delivered)."""
        return frozenset(self._tasks)

    async def drain(self) -> None:
        """Wait until every mail queued so far was delivered or given up, one attempt each
        from now on (for shutdown). A deferred mail still waits out its deferral: composing it
        earlier would compete with the peer taking the group over."""
        self._draining = True
        while self._tasks:
            await asyncio.gather(*self._tasks)

    async def start(self) -> None:
        self._set_state(True)
        self._send_in_background("start")

    async def stop(self) -> None:
        self._set_state(False)
        self._send_in_background("stop")

    async def status(self) -> ResourceState:
        if self._state_file is not None:
            return ResourceState.RUNNING if self._state_file.exists() else ResourceState.STOPPED
        return ResourceState.RUNNING if self._running else ResourceState.STOPPED

    def _set_state(self, running: bool) -> None:
        self._running = running
        if self._state_file is None:
            return
        try:
            if running:
                self._state_file.parent.mkdir(parents=True, exist_ok=True)
                self._state_file.touch()
            else:
                self._state_file.unlink(missing_ok=True)
        except OSError as exc:
            raise ResourceError(self._raw, "start" if running else "stop", str(exc)) from None

    def mail_spec(self, action: str, when: datetime.datetime) -> dict[str, Any]:
        """What the mail for ``action`` at wall-clock time ``when`` says, and how it leaves:
        the input of ``python3 -m nonstop.resources.mailsend``."""
        subject_line = render_subject(action, self.subject, self._ctx.node, when)
        ctx = self._ctx
        return {"from": ctx.mail_from or f"root@{ctx.node}", "to": list(self.recipients),
                "subject": subject_line,
                "body": render_body(subject_line, f"nonstop {self._raw} {action}"),
                "sendmail": str(ctx.sendmail) if ctx.sendmail is not None else None,
                "smtp_host": ctx.smtp_host, "smtp_port": ctx.smtp_port,
                "timeout": ctx.smtp_timeout}

    def _send_in_background(self, action: str) -> None:
        # The mail's date is when the event happened, not when it was composed or when a
        # retry finally got through.
        when = datetime.datetime.now().astimezone()
        task = asyncio.create_task(self._deliver(action, when), name=f"mailto-{action}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, action: str, when: datetime.datetime) -> bool:
        async with self._send_lock:
            if self._ctx.mail_defer_s > 0:
                # Even starting the sending process is work: after the hand-off.
                await asyncio.sleep(self._ctx.mail_defer_s)
            return await self._deliver_now(self.mail_spec(action, when))

    @property
    def transport(self) -> str:
        """How mail leaves: ``sendmail /usr/sbin/sendmail`` or ``SMTP host:port``."""
        ctx = self._ctx
        if ctx.sendmail is not None:
            return f"sendmail {ctx.sendmail}"
        return f"SMTP {ctx.smtp_host}:{ctx.smtp_port}"

    async def _deliver_now(self, spec: dict[str, Any]) -> bool:
        ctx = self._ctx
        attempts = max(1, ctx.smtp_attempts)
        for attempt in range(1, attempts + 1):
            try:
                await self._attempt(spec)
                ctx.logger.info("MailTo: sent %r to %s through %s", spec["subject"],
                                ", ".join(spec["to"]), self.transport)
                self.delivered += 1
                return True
            except InvalidValue as exc:  # a header email refuses: never fatal, never retried
                ctx.logger.error("MailTo: %s", exc)
                self.given_up += 1
                return False
            except OSError as exc:
                ctx.logger.warning(
                    "MailTo: attempt %d/%d through %s failed: %s",
                    attempt,
                    attempts,
                    self.transport,
                    exc or type(exc).__name__,
                )
            if self._draining:
                break
            if attempt < attempts:
                await asyncio.sleep(RETRY_BACKOFF_S * attempt)
        ctx.logger.error("MailTo: gave up sending %r to %s", spec["subject"],
                         ", ".join(spec["to"]))
        self.given_up += 1
        return False

    async def _attempt(self, spec: dict[str, Any]) -> None:
        """One delivery attempt, in a process of its own (nonstop.resources.mailsend).
        Raises OSError (MachineError, MachineTimeout) with the reason when the mail was not
        taken, InvalidValue when it cannot be composed (no other attempt would do better)."""
        limit = self._ctx.smtp_timeout + CHILD_START_S
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "nonstop.resources.mailsend",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, start_new_session=True)
        try:
            _out, err = await asyncio.wait_for(proc.communicate(json.dumps(spec).encode()),
                                               limit)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise MachineTimeout(f"no answer after {limit:g} s") from None
        lines = err.decode(errors="replace").strip().splitlines()
        reason = lines[-1] if lines else f"exited with {proc.returncode}"
        if proc.returncode == EXIT_CANNOT_COMPOSE:
            raise InvalidValue(reason)
        if proc.returncode != 0:
            raise MachineError(reason)
