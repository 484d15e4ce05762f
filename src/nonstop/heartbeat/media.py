"""UDP heartbeat media: ``bcast``, ``ucast`` and ``mcast`` (adapter: sockets).

Each medium has a send socket bound to its device; receive sockets are shared per
(device, port, group). Datagrams are handed to a callback with the medium's link name (the
device name, as Heartbeat names links). Sends never block: a socket that cannot take a datagram
right now counts an error instead of waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import logging
import socket
import struct
import termios
from collections.abc import Callable
from dataclasses import dataclass

from nonstop.config.model import Bcast, Mcast, Medium, Ucast
from nonstop.errors import MachineError

log = logging.getLogger("nonstop.media")

Receiver = Callable[[bytes, str, tuple[str, int]], None]

SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
# Linux: each datagram carries the socket's count of datagrams the kernel dropped for want of
# buffer space, so a flood that overruns us is still counted.
SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
_OVFL = struct.Struct("=I")
# Datagrams read per socket and loop turn: the timers (our own heartbeats, deadtime) get their
# turn between batches whatever arrives, and a bad datagram costs one digest (codec).
BATCH = 64
MAX_DATAGRAM = 65536
_ANC_SPACE = socket.CMSG_SPACE(_OVFL.size)
# FIONREAD (SIOCINQ) on a datagram socket: the size of the next queued datagram, 0 if none
# (termios has the number for this architecture: it is not 0x541B everywhere).
_FIONREAD = termios.FIONREAD
_NONE_QUEUED = bytes(4)

SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)
_SKF_NET_OFF = -0x100000  # classic BPF: offsets from the IP header
_BPF_INSN = struct.Struct("=HBBI")  # struct sock_filter: code, jt, jf, k


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


def not_from_program(address: str) -> bytes:
    """A classic BPF socket filter that drops IPv4 datagrams whose source is ``address``.

    Linux hands a node every broadcast it sends back to its own receive socket; those echoes
    tell nothing the send did not (the watchdog is tickled on sending), yet each cost a loop
    turn, two receive calls and a full decode and HMAC check: a third of an idle node's work.
    """
    own = struct.unpack("!I", socket.inet_aton(address))[0]
    insns = (
        (0x20, 0, 0, (_SKF_NET_OFF + 12) & 0xFFFFFFFF),  # ld [net + 12]: the source address
        (0x15, 0, 1, own),  # jeq own: next (drop), else skip one (accept)
        (0x06, 0, 0, 0),  # ret 0: drop
        (0x06, 0, 0, 0xFFFFFFFF),  # ret all: accept the whole datagram
    )
    return b"".join(_BPF_INSN.pack(*i) for i in insns)


def drop_from(sock: socket.socket, address: str) -> bool:
    """Attach :func:`not_from_program` to ``sock``; False (and nothing changes) if refused."""
    program = not_from_program(address)
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // _BPF_INSN.size, ctypes.addressof(buf))
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))
    except OSError as e:
        log.debug("cannot filter our own broadcasts on %s: %s", sock.getsockname(), e)
        return False
    return True


def interface_ipv4(iface: str) -> tuple[str | None, str | None]:
    """(address, broadcast) of an interface's first IPv4 address, via rtnetlink.

    Blocking: call it from a worker thread when an event loop is running."""
    from nonstop.rtnetlink import addresses

    try:
        index = socket.if_nametoindex(iface)
    except OSError:
        return None, None
    for a in addresses():
        if a.index == index:
            return a.local or a.address, a.broadcast
    return None, None


@dataclass
class _Sender:
    medium: Medium
    sock: socket.socket
    dest: tuple[str, int]
    # The receiver whose filter drops this sender's echoes (our own broadcasts, sent back to
    # us by the kernel), None where none come back filtered.
    echo_fd: int | None = None


class MediaSet:
    """All heartbeat media of one node."""

    def __init__(self, media: tuple[Medium, ...], receiver: Receiver) -> None:
        self.media = media
        self.receiver = receiver
        self.senders: list[_Sender] = []
        self.receivers: dict[tuple[str, int, str], socket.socket] = {}
        self.send_errors = 0
        self.kernel_drops = 0
        self._ovfl: dict[int, int] = {}
        # Per receiver: own broadcasts sent whose filtered echo the kernel has not counted yet
        # (as many as were sent while no datagram brought the kernel's count: a dead peer's).
        self._echoes: dict[int, int] = {}
        self._filtered: set[int] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ifaddr: dict[str, tuple[str | None, str | None]] = {}

    async def open(self) -> None:
        """Resolve the devices' addresses (netlink, in a thread), then open every socket."""
        self._loop = asyncio.get_running_loop()
        for iface in {m.iface for m in self.media}:
            self._ifaddr[iface] = await asyncio.to_thread(interface_ipv4, iface)
        for m in self.media:
            try:
                self._open_medium(m)
            except OSError as e:  # a port in use, a device gone: say which medium
                kind = type(m).__name__.lower()
                raise MachineError(f"{kind} {m.iface} (UDP port {m.port}): "
                                   f"{e.strerror or e}") from e

    def _open_medium(self, m: Medium) -> None:
        assert self._loop is not None
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx.setblocking(False)
        tx.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, m.iface.encode())
        tx.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x10)  # IPTOS_LOWDELAY, as Heartbeat
        if isinstance(m, Bcast):
            tx.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            _addr, bcast = self._ifaddr[m.iface]
            dest = (bcast or "255.255.255.255", m.port)
            rx_key = (m.iface, m.port, "")
        elif isinstance(m, Ucast):
            dest = (socket.gethostbyname(m.peer), m.port)
            rx_key = (m.iface, m.port, "")
        else:
            assert isinstance(m, Mcast)
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, m.ttl)
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1 if m.loop else 0)
            addr, _ = self._ifaddr[m.iface]
            if addr:
                tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(addr))
            dest = (m.group, m.port)
            rx_key = (m.iface, m.port, m.group)
        if rx_key not in self.receivers:
            rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            rx.setblocking(False)
            rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            rx.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, m.iface.encode())
            # 1 MB of room for a burst: as root past net.core.rmem_max (212 KB by default,
            # three 64 KB junk datagrams), which SO_RCVBUF alone cannot exceed.
            try:
                rx.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 1 << 20)
            except OSError:
                rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            with contextlib.suppress(OSError):
                rx.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
            if isinstance(m, Mcast):
                addr, _ = self._ifaddr[m.iface]
                mreq = struct.pack(
                    "4s4s", socket.inet_aton(m.group), socket.inet_aton(addr or "0.0.0.0")
                )
                rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
                rx.bind((m.group, m.port))
            else:
                rx.bind(("", m.port))
            own, _ = self._ifaddr[m.iface]
            # The kernel sends our own broadcasts back to us: drop them there (a source
            # address that changes later only lets echoes through to the full check).
            if isinstance(m, Bcast) and own and drop_from(rx, own):
                self._filtered.add(rx.fileno())
            self.receivers[rx_key] = rx
            self._loop.add_reader(rx.fileno(), self._readable, rx, m.iface)
        rx_fd = self.receivers[rx_key].fileno()
        echo = isinstance(m, Bcast) and rx_fd in self._filtered
        self.senders.append(_Sender(m, tx, dest, rx_fd if echo else None))

    def _readable(self, rx: socket.socket, link: str) -> None:
        # A batch per loop turn: a burst need not wait for the next turn, a flood cannot keep
        # the loop here (the reader fires again on the next turn while data is queued).
        # Whether more is queued is asked with FIONREAD rather than with another recvmsg: an
        # idle node gets one datagram per wakeup, and the second recvmsg only raised
        # BlockingIOError (an exception per heartbeat). A queued empty datagram reads as
        # "nothing": the reader fires again for it on the next turn.
        fd = rx.fileno()
        for _ in range(BATCH):
            try:
                data, anc, _flags, addr = rx.recvmsg(MAX_DATAGRAM, _ANC_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.debug("receive error on %s: %s", link, e)
                return
            for level, kind, raw in anc:
                if level == socket.SOL_SOCKET and kind == SO_RXQ_OVFL and len(raw) >= 4:
                    self._count_overflow(fd, _OVFL.unpack_from(raw)[0])
            self.receiver(data, link, addr)
            if rx.fileno() != fd or fcntl.ioctl(fd, _FIONREAD, _NONE_QUEUED) == _NONE_QUEUED:
                return  # nothing more queued (or the receiver closed the socket)

    def read_queued(self) -> None:
        """Read now what is queued on every receiver. The timer's turn can come before the
        sockets': a process stopped past a deadline (SIGSTOP, a VM paused) wakes from its
        poll with the timer due and no socket reported, and would declare a peer dead whose
        statuses sit unread in its socket (then take its groups, one millisecond before
        reading them)."""
        for (link, _port, _group), rx in list(self.receivers.items()):
            if fcntl.ioctl(rx.fileno(), _FIONREAD, _NONE_QUEUED) != _NONE_QUEUED:
                self._readable(rx, link)

    def _count_overflow(self, fd: int, total: int) -> None:
        """The kernel's running count of datagrams dropped on ``fd``: add what is new, less
        our own broadcasts' echoes. The kernel counts a datagram its socket filter refused as
        a drop too, so an idle node reported every broadcast it sent as "dropped by the
        kernel" (receive buffer full), about 5 a second (a user trial)."""
        before = self._ovfl.get(fd, 0)
        self._ovfl[fd] = total
        new = (total - before) & 0xFFFFFFFF
        echoes = min(new, self._echoes.get(fd, 0))
        self._echoes[fd] = self._echoes.get(fd, 0) - echoes
        self.kernel_drops += new - echoes

    def send(self, data: bytes) -> int:
        """Send one datagram on every medium; returns how many media took it."""
        ok = 0
        for s in self.senders:
            try:
                s.sock.sendto(data, s.dest)
                ok += 1
                if s.echo_fd is not None:  # its echo is a filtered drop, counted later
                    self._echoes[s.echo_fd] = self._echoes.get(s.echo_fd, 0) + 1
            except OSError as e:
                self.send_errors += 1
                kind = type(s.medium).__name__.lower()
                log.debug("Unable to send %s [%s] packet: %s", kind, s.medium.iface, e)
        return ok

    def close(self) -> None:
        for rx in self.receivers.values():
            if self._loop is not None:
                self._loop.remove_reader(rx.fileno())
            rx.close()
        for s in self.senders:
            s.sock.close()
        self.receivers.clear()
        self.senders.clear()
