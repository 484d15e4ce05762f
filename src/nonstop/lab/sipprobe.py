"""SIP OPTIONS prober: what a phone sees of the cluster's virtual IP.

Runs as its own process in the lab's client namespace::

    python3 -m nonstop.lab.sipprobe --target 198.18.0.10 --interval 0.02 --out probes.jsonl

Every ``interval`` seconds it sends one OPTIONS request and, once the probe is settled, writes a
JSON line ``{"seq", "sent", "answered", "node", "status"}``: ``sent``/``answered`` are
``time.monotonic()`` values (CLOCK_MONOTONIC, the same clock in every process on the machine, so a
test can compare them with the moment it injected a fault); ``node`` is who answered (the
``X-Lab-Node`` header kamailio adds), or null with ``answered`` null when no answer came within
``--timeout``. SIGTERM or SIGINT end it cleanly; probes still open then are written unanswered.
:mod:`nonstop.lab.outage` reads the file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from nonstop.lab.kamailio import NODE_HEADER, SIP_PORT


@dataclass(frozen=True)
class Reply:
    """What the prober needs of a SIP response."""

    seq: int
    status: int
    node: str | None


def options_request(*, seq: int, target: str, port: int, local_ip: str, local_port: int,
                    tag: str) -> bytes:
    """One OPTIONS request; the Call-ID carries ``seq`` so the answer can be matched."""
    lines = [
        f"OPTIONS sip:{target}:{port} SIP/2.0",
        f"Via: SIP/2.0/UDP {local_ip}:{local_port};branch=z9hG4bK-{tag}-{seq};rport",
        "Max-Forwards: 70",
        f"From: <sip:probe@{local_ip}>;tag={tag}",
        f"To: <sip:{target}:{port}>",
        f"Call-ID: {tag}-{seq}@lab",
        f"CSeq: {seq} OPTIONS",
        "Accept: application/sdp",
        "Content-Length: 0",
        "",
        "",
    ]
    return "\r\n".join(lines).encode()


def _is_number(text: str) -> bool:
    # str.isdigit alone accepts digits int() refuses, such as "²".
    return text.isascii() and text.isdigit()


def parse_reply(data: bytes, tag: str) -> Reply | None:
    """The probe a response answers, or None for anything that is not one of our answers."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    head = text.split("\r\n\r\n", 1)[0].split("\r\n")
    status_line = head[0].split(" ", 2)
    if len(status_line) < 2 or status_line[0] != "SIP/2.0" or not _is_number(status_line[1]):
        return None
    headers: dict[str, str] = {}
    for line in head[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers.setdefault(name.strip().lower(), value.strip())
    call_id = headers.get("call-id", headers.get("i", ""))
    prefix = f"{tag}-"
    number = call_id.removeprefix(prefix).removesuffix("@lab")
    if not call_id.startswith(prefix) or not _is_number(number):
        return None
    node = headers.get(NODE_HEADER.lower())
    return Reply(seq=int(number), status=int(status_line[1]), node=node or None)


class _Recorder(asyncio.DatagramProtocol):
    def __init__(self, out: TextIO, tag: str) -> None:
        self.out = out
        self.tag = tag
        self.pending: dict[int, float] = {}

    def write(self, seq: int, sent: float, answered: float | None, reply: Reply | None) -> None:
        record = {
            "seq": seq, "sent": sent, "answered": answered,
            "node": reply.node if reply else None, "status": reply.status if reply else None,
        }
        self.out.write(json.dumps(record) + "\n")
        self.out.flush()

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        now = time.monotonic()
        reply = parse_reply(data, self.tag)
        if reply is None:
            return
        sent = self.pending.pop(reply.seq, None)
        if sent is not None:  # not a late answer to a probe already written off
            self.write(reply.seq, sent, now, reply)

    def error_received(self, exc: Exception) -> None:
        # ICMP unreachable while the address moves: the probe simply stays unanswered.
        return

    def expire(self, older_than: float) -> None:
        for seq, sent in sorted(self.pending.items()):
            if sent < older_than:
                del self.pending[seq]
                self.write(seq, sent, None, None)


async def probe(target: str, port: int, interval: float, timeout: float, out: TextIO, *,
                count: int | None = None, duration: float | None = None) -> int:
    """Send OPTIONS every ``interval`` s until stopped; return the number of probes sent."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    tag = f"labprobe{os.getpid()}"
    recorder = _Recorder(out, tag)
    transport, _ = await loop.create_datagram_endpoint(lambda: recorder,
                                                       remote_addr=(target, port))
    local_ip, local_port = transport.get_extra_info("sockname")[:2]
    start = time.monotonic()
    seq = 0
    try:
        while not stop.is_set():
            now = time.monotonic()
            if (count is not None and seq >= count) or (
                    duration is not None and now - start >= duration):
                break
            recorder.expire(now - timeout)
            seq += 1
            recorder.pending[seq] = time.monotonic()
            transport.sendto(options_request(seq=seq, target=target, port=port,
                                             local_ip=local_ip, local_port=local_port, tag=tag))
            # Fixed schedule: a late tick does not shift the probes after it.
            delay = start + seq * interval - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        if not stop.is_set() and recorder.pending:
            # Natural end: give the last probes their full timeout.
            deadline = max(recorder.pending.values()) + timeout
            while recorder.pending and time.monotonic() < deadline and not stop.is_set():
                await asyncio.sleep(0.01)
        recorder.expire(float("inf"))
    finally:
        transport.close()
    return seq


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python3 -m nonstop.lab.sipprobe",
                                     description="Probe a SIP server with OPTIONS.")
    parser.add_argument("--target", required=True, help="IP address to probe (the VIP)")
    parser.add_argument("--port", type=int, default=SIP_PORT)
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between probes")
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds to wait for answers")
    parser.add_argument("--count", type=int, default=None, help="stop after this many probes")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many s")
    parser.add_argument("--out", type=Path, required=True, help="JSON-lines record to append to")
    ns = parser.parse_args(argv)
    if ns.interval <= 0 or ns.timeout <= 0:
        parser.error("--interval and --timeout must be positive")
    with ns.out.open("a") as out:
        sent = asyncio.run(probe(ns.target, ns.port, ns.interval, ns.timeout, out,
                                 count=ns.count, duration=ns.duration))
    print(f"sipprobe: sent {sent} probes to {ns.target}:{ns.port}", file=sys.stderr)
    return 0


def probe_command(target: str, out: Path, *, interval: float = 0.02, timeout: float = 1.0,
                  port: int = SIP_PORT, count: int | None = None) -> list[str]:
    """The argv that runs this prober (for ``lab.spawn(CLIENT, ...)``)."""
    argv = [sys.executable, "-m", "nonstop.lab.sipprobe", "--target", target, "--port", str(port),
            "--interval", str(interval), "--timeout", str(timeout), "--out", str(out)]
    if count is not None:
        argv += ["--count", str(count)]
    return argv


if __name__ == "__main__":
    sys.exit(main())
