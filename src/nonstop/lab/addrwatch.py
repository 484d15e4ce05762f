"""Read the IPv4 addresses of a lab host from outside it, cheaply enough to do every 10 ms.

A netlink socket opened inside the host's network namespace keeps answering for that namespace
after the opening thread has switched back, and belongs to no process there: a crash of the
host (every process in its namespace killed) leaves the watcher alone, and no ``ip`` command is
forked per look. Linux only (setns(2) through libc).
"""

from __future__ import annotations

import ctypes
import os
import socket
import struct
import threading

from nonstop.lab.errors import LabError

_CLONE_NEWNET = 0x40000000
_NETLINK_ROUTE = 0
_RTM_NEWADDR = 20
_RTM_GETADDR = 22
_NLMSG_ERROR = 2
_NLMSG_DONE = 3
_NLM_F_REQUEST = 0x1
_NLM_F_DUMP = 0x300
_IFA_ADDRESS = 1
_IFA_LOCAL = 2
_HEADER = struct.Struct("=IHHII")      # nlmsghdr
_IFADDRMSG = struct.Struct("=BBBBI")   # ifaddrmsg
_RTATTR = struct.Struct("=HH")
_LOCK = threading.Lock()  # one setns dance at a time (setns is per thread, but be plain)


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def open_netlink(netns: str) -> socket.socket:
    """A NETLINK_ROUTE socket in the named network namespace (``/run/netns/NAME``)."""
    with _LOCK:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            try:
                target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            except OSError as exc:
                raise LabError(f"no network namespace {netns}: {exc}") from exc
            try:
                _setns(target)
                try:
                    return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_ROUTE)
                finally:
                    _setns(own)
            finally:
                os.close(target)
        finally:
            os.close(own)


def parse_addresses(data: bytes) -> tuple[list[str], bool]:
    """IPv4 addresses in a buffer of RTM_NEWADDR messages, and whether NLMSG_DONE came.

    LabError on a netlink error message or a malformed buffer.
    """
    found: list[str] = []
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, kind, _flags, _seq, _pid = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size or offset + length > len(data):
            raise LabError(f"malformed netlink message (length {length})")
        if kind == _NLMSG_DONE:
            return found, True
        if kind == _NLMSG_ERROR:
            (code,) = struct.unpack_from("=i", data, offset + _HEADER.size)
            raise LabError(f"netlink error {code}")
        if kind == _RTM_NEWADDR:
            family = data[offset + _HEADER.size]
            attr = offset + _HEADER.size + _IFADDRMSG.size
            local: str | None = None
            address: str | None = None
            while attr + _RTATTR.size <= offset + length:
                alen, atype = _RTATTR.unpack_from(data, attr)
                if alen < _RTATTR.size:
                    break
                value = data[attr + _RTATTR.size:attr + alen]
                if family == socket.AF_INET and len(value) == 4:
                    if atype == _IFA_LOCAL:
                        local = socket.inet_ntoa(value)
                    elif atype == _IFA_ADDRESS:
                        address = socket.inet_ntoa(value)
                attr += (alen + 3) & ~3
            chosen = local or address
            if chosen is not None:
                found.append(chosen)
        offset += (length + 3) & ~3
    return found, False


class AddressWatch:
    """The IPv4 addresses of one network namespace, read on demand over netlink."""

    def __init__(self, netns: str) -> None:
        self.netns = netns
        self._sock = open_netlink(netns)
        self._sock.settimeout(2.0)
        self._seq = 0

    def addresses(self) -> list[str]:
        """Every IPv4 address configured in the namespace (loopback included)."""
        self._seq += 1
        request = _HEADER.pack(_HEADER.size + _IFADDRMSG.size, _RTM_GETADDR,
                               _NLM_F_REQUEST | _NLM_F_DUMP, self._seq, 0)
        request += _IFADDRMSG.pack(socket.AF_INET, 0, 0, 0, 0)
        self._sock.send(request)
        found: list[str] = []
        while True:
            try:
                data = self._sock.recv(65536)
            except TimeoutError as exc:
                raise LabError(f"no netlink answer from {self.netns}") from exc
            part, done = parse_addresses(data)
            found.extend(part)
            if done:
                return found

    def close(self) -> None:
        """Close the socket."""
        self._sock.close()
