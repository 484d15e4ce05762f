"""TLS channels between nodes and the group-key handshake that authenticates both ends.

Every connection is TLS (nonstop ignores csync2's ``nossl``: the link is always encrypted). The
server shows a self-signed certificate made once per node; nobody verifies it against a CA.
Instead both ends prove they hold the group key with an HMAC over both nonces, both names, the
group and the server certificate's fingerprint (see :mod:`nonstop.sync.protocol`). The key never
crosses the wire; someone in the middle must present their own certificate, which breaks both
proofs; a host outside the group or with another key is refused, and both sides say why.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib  # noqa: F401 - see below
import hmac  # noqa: F401
import json  # noqa: F401
import os
import secrets
import socket
import ssl
import subprocess
from dataclasses import dataclass
from typing import Any

from nonstop.errors import RemoteInputError
from nonstop.logs import escape
from nonstop.sync import limits
from nonstop.sync import protocol as p
from nonstop.sync.messages import Event
from nonstop.sync.protocol import AuthError, Frame, Kind, ProtocolError, RemoteError
from nonstop.sync.session import ClientSession, ServerSession

# protocol.py imports json, hashlib and hmac where frames and key proofs are made, so that the
# command line's quick modes never load them; the network code loads them here, once, so that a
# server out of file descriptors never has a module left to open in the middle of a handshake.

CERT_NAME = "sync-cert.pem"
KEY_NAME = "sync-key.pem"
HANDSHAKE_TIMEOUT = 20.0
# A client has this long, from its first byte of HELLO to its proof, to authenticate.
PREAUTH_TIMEOUT = 10.0
# An authenticated session that sends nothing for this long is closed (the client scans or
# hashes between frames, so this is generous).
SESSION_IDLE_TIMEOUT = 600.0
# A pushing client waits this long for any byte of the peer's answer (a verdict, results, a
# signature, a listing). The peer may work long before it answers: a kept session's actions
# of the last run (each up to 300 s), copies of up to 4 GiB a batch (a log rotation), the
# signature of a big file. Without a bound a push to a frozen peer (SIGSTOP, a disk hang: its
# kernel still ACKs) waited for ever, and status showed no error while nothing replicated.
CLIENT_REPLY_TIMEOUT = SESSION_IDLE_TIMEOUT
# A peer whose box died (power cut, kernel panic, cable pulled) answers nothing, not even TCP:
# both ends would wait out the timeouts above, 10 minutes in which a push to a standby that
# rebooted, or a session from an active node that crashed, holds its place. The kernel probes
# an idle connection after DEAD_PEER_IDLE seconds, and ends any connection whose peer has acked
# nothing for DEAD_PEER_TIMEOUT (data in flight or probes alike); a rebooted peer answers the
# first probe with a reset. A live peer's kernel answers the probes even while its process is
# busy or frozen, so they never end a slow session (the timeouts above still do). A link
# that loses a third of its packets can end one too (TCP backs off to long silences there):
# the push is then retried on a new connection, as after any broken session.
DEAD_PEER_IDLE = 10
DEAD_PEER_INTERVAL = 5
DEAD_PEER_TIMEOUT = 30


def detect_dead_peer(sock: Any) -> None:
    """Set the kernel's dead-peer checks (keepalive probes, TCP_USER_TIMEOUT) on a TCP
    socket; any other socket (an inetd pipe, a Unix socket in tests) is left as it is."""
    if getattr(sock, "type", None) != socket.SOCK_STREAM or sock.family not in (
            socket.AF_INET, socket.AF_INET6):
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, DEAD_PEER_IDLE)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, DEAD_PEER_INTERVAL)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, DEAD_PEER_TIMEOUT * 1000)


class PeerSilent(RemoteInputError, TimeoutError):
    """An authenticated peer sent nothing for the channel's idle timeout (a TimeoutError)."""


class PeerGone(RemoteInputError, ConnectionError):
    """The peer's machine acknowledged nothing for DEAD_PEER_TIMEOUT (the kernel ended the
    connection: the machine is down or cut off)."""

    def __init__(self) -> None:
        super().__init__(f"the peer's machine acknowledged nothing for {DEAD_PEER_TIMEOUT} s "
                         "(down, cut off, or the link loses too much)")


def ensure_certificate(directory: str) -> tuple[str, str]:
    """This node's TLS certificate and key (made with the openssl CLI on first use)."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    cert = os.path.join(directory, CERT_NAME)
    key = os.path.join(directory, KEY_NAME)
    if not (os.path.exists(cert) and os.path.exists(key)):
        tmp_cert, tmp_key = cert + ".new", key + ".new"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "36500", "-subj",
             "/CN=nonstop-sync", "-keyout", tmp_key, "-out", tmp_cert],
            check=True, capture_output=True,
        )
        os.chmod(tmp_key, 0o600)
        os.replace(tmp_key, key)
        os.replace(tmp_cert, cert)
    return cert, key


def server_context(directory: str) -> tuple[ssl.SSLContext, str]:
    """A server TLS context and the fingerprint of its certificate."""
    cert, key = ensure_certificate(directory)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    with open(cert, encoding="ascii") as fh:
        der = ssl.PEM_cert_to_DER_cert(fh.read())
    return ctx, p.cert_fingerprint(der)


def client_context() -> ssl.SSLContext:
    """No CA check: the server is authenticated by the key proof bound to its certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class Channel:
    """Frames over one asyncio stream: bytes in and out, counted; no protocol state.

    The handshake reads frames here (:meth:`recv`, :meth:`expect`); after it a session core
    (:mod:`nonstop.sync.session`) takes the undecoded bytes and everything read later
    (:meth:`read_some`, or :func:`next_event`).
    """

    READ_SIZE = 1 << 18  # per read once authenticated (a DATA frame is 256 KB)

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        detect_dead_peer(writer.get_extra_info("socket"))
        self._unflushed = 0
        self.frames_sent = 0  # replies per session show there is no per-file round trip
        self.bytes_sent = 0  # frame bytes, before TLS
        self.bytes_received = 0
        # Small until the handshake proves the key (then p.MAX_FRAME), see authenticated().
        self.decoder = p.Decoder(p.PREAUTH_MAX_FRAME)
        # Before the proof, one read is at most one small frame's worth (lesson 12).
        self._read_size = p.PREAUTH_MAX_FRAME + p.HEADER.size
        self.idle_timeout: float | None = None

    def authenticated(self, idle_timeout: float | None = None) -> None:
        """The peer proved the group key: lift the pre-authentication frame cap."""
        self.decoder.limit = p.MAX_FRAME
        self._read_size = self.READ_SIZE
        self.idle_timeout = idle_timeout

    async def read_some(self) -> bytes:
        """The next bytes from the peer (ConnectionError when it closed, TimeoutError when it
        sent nothing for ``idle_timeout``)."""
        try:
            async with asyncio.timeout(self.idle_timeout) as idle:
                data = await self.reader.read(self._read_size)
        except TimeoutError:
            if not idle.expired():  # the kernel's ETIMEDOUT: see detect_dead_peer
                raise PeerGone() from None
            raise PeerSilent(f"the peer sent nothing for {self.idle_timeout:g} s") from None
        if not data:
            raise p.PeerClosed("connection closed by peer")
        self.bytes_received += len(data)
        return data

    async def recv(self) -> Frame:
        """The next frame (errors as :meth:`read_some`; ProtocolError for a bad header)."""
        while (f := self.decoder.next()) is None:
            self.decoder.push(await self.read_some())
        return f

    async def expect(self, *kinds: Kind) -> Frame:
        """The next frame, which must be one of ``kinds`` (an ERROR frame raises its text)."""
        f = await self.recv()
        if f.kind is Kind.ERROR and Kind.ERROR not in kinds:
            raise RemoteError(escape(f.obj().get("error", "unknown error"), 300))
        if f.kind not in kinds:
            raise ProtocolError(f"expected {'/'.join(k.name for k in kinds)}, got {f.kind.name}")
        return f

    def send(self, data: bytes) -> None:
        """Queue encoded frame bytes (see :meth:`drain`). Once the connection is closing (the
        peer closed it, or it was aborted) this raises instead: asyncio would drop the bytes
        and log "SSL connection is closed" for each write past the fifth, and a push whose
        receiver closed mid-way (a reload) wrote on until its next drain, 37 such lines."""
        if self.writer.is_closing():
            why = self.reader.exception()
            if isinstance(why, TimeoutError):  # the kernel's ETIMEDOUT: see detect_dead_peer
                raise PeerGone() from None
            raise why or p.PeerClosed("connection closed by peer")
        self.writer.write(data)
        self._unflushed += len(data)
        self.frames_sent += 1
        self.bytes_sent += len(data)

    def send_obj(self, kind: Kind, obj: dict[str, Any]) -> None:
        """Queue a control frame."""
        self.send(p.encode_obj(kind, obj))

    async def drain(self, threshold: int = 0) -> None:
        """Wait for the socket buffer when more than ``threshold`` bytes were queued."""
        if self._unflushed > threshold:
            self._unflushed = 0
            try:
                await self.writer.drain()
            except TimeoutError:  # the kernel's ETIMEDOUT: see detect_dead_peer
                raise PeerGone() from None

    async def close(self) -> None:
        """Close the connection, never raising but for a cancellation.

        The waits of this module use asyncio.timeout, not wait_for: in Python 3.11 wait_for
        drops a cancellation that arrives as the awaited operation completes (gh-86296), and
        a cancelled session then went on (the next peer, the actions of a closed server)."""
        with contextlib.suppress(Exception):
            self.writer.close()
            async with asyncio.timeout(2.0):
                await self.writer.wait_closed()

    def send_all(self, frames: list[bytes]) -> None:
        """Queue several encoded frames."""
        for f in frames:
            self.send(f)

    @property
    def peer_address(self) -> str:
        info = self.writer.get_extra_info("peername")
        return str(info[0]) if info else "?"


@dataclass(frozen=True)
class Peer:
    """Who is on the other end after the handshake."""

    name: str
    group: str
    version: int = p.PROTO_VERSION  # the protocol version agreed


async def connect(host: str, port: int, timeout: float = 10.0) -> Channel:
    """Open a TLS connection (the caller runs :func:`client_handshake` next)."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port, ssl=client_context(),
                                                       server_hostname=None)
    return Channel(reader, writer)


async def client_handshake(chan: Channel, key: bytes, group: str, me: str, peer: str,
                           vmax: int = p.PROTO_LATEST) -> int:
    """Prove the key to the server and check its proof; raises AuthError with the reason.

    Returns the protocol version agreed (1 with a server that predates the negotiation)."""
    ssl_obj = chan.writer.get_extra_info("ssl_object")
    der = ssl_obj.getpeercert(binary_form=True) if ssl_obj is not None else None
    if not der:
        raise AuthError(f"{peer} showed no TLS certificate")
    fp = p.cert_fingerprint(der)
    nc = secrets.token_hex(16)
    hello: dict[str, Any] = {"v": p.PROTO_VERSION, "group": group, "node": me, "to": peer,
                             "nonce": nc}
    if vmax > p.PROTO_VERSION:
        hello["vmax"] = vmax
    chan.send_obj(Kind.HELLO, hello)
    try:
        async with asyncio.timeout(HANDSHAKE_TIMEOUT):
            ch = (await chan.expect(Kind.CHALLENGE)).obj()
    except RemoteError as e:
        raise AuthError(f"{peer} refused us: {e}") from None
    ns = p.field(ch, "nonce", str)
    version = ch.get("v", p.PROTO_VERSION)
    if type(version) is not int or not p.PROTO_VERSION <= version <= vmax:
        raise ProtocolError(f"{peer} chose protocol version {escape(version, 20)}, "
                            f"which we did not offer")
    data = p.transcript(group, me, peer, nc, ns, fp, version)
    if not p.check_proof(key, "server", data, p.field(ch, "proof", str)):
        chan.send_obj(Kind.ERROR, {"error": f"{me} could not verify your proof of the group key "
                                            f"of '{group}': the keys differ"})
        await chan.drain()
        raise AuthError(
            f"{peer} could not prove the group key of '{group}' (its key differs from ours, or "
            "someone is in the middle); nothing was sent"
        )
    chan.send_obj(Kind.AUTH, {"proof": p.proof(key, "client", data)})
    try:
        async with asyncio.timeout(HANDSHAKE_TIMEOUT):
            await chan.expect(Kind.WELCOME)
    except RemoteError as e:
        raise AuthError(f"{peer} refused us: {e}") from None
    chan.authenticated(CLIENT_REPLY_TIMEOUT)
    return version


async def server_handshake(
    chan: Channel, me: str, cert_fp: str, keys: dict[str, tuple[bytes, tuple[str, ...]]]
) -> Peer:
    """Authenticate a client. ``keys`` maps each of our groups to (key, member names).

    Before the proof every frame is capped (``p.PREAUTH_MAX_FRAME``) and the whole exchange
    has ``PREAUTH_TIMEOUT``; the refusal (AuthError) quotes the client's fields escaped.
    """
    try:
        async with asyncio.timeout(PREAUTH_TIMEOUT):
            peer = await _server_proof(chan, me, cert_fp, keys)
    except TimeoutError:
        raise AuthError(f"{chan.peer_address} did not authenticate within "
                        f"{PREAUTH_TIMEOUT:.0f} s") from None
    chan.authenticated(SESSION_IDLE_TIMEOUT)
    limits.authenticated()
    return peer


async def _server_proof(
    chan: Channel, me: str, cert_fp: str, keys: dict[str, tuple[bytes, tuple[str, ...]]]
) -> Peer:
    hello = (await chan.expect(Kind.HELLO)).obj()
    group = p.field(hello, "group", str)
    node = p.field(hello, "node", str)
    nc = p.field(hello, "nonce", str)
    to = p.field(hello, "to", str)

    async def refuse(msg: str) -> AuthError:
        chan.send_obj(Kind.ERROR, {"error": msg})
        await chan.drain()
        return AuthError(f"refused '{escape(node, 64)}' from {chan.peer_address}: {msg}")

    if p.field(hello, "v", int) != p.PROTO_VERSION:
        raise await refuse(f"protocol version {escape(hello.get('v'), 20)} not supported")
    if to != me:
        raise await refuse(f"this is {me}, not {escape(to, 64)}")
    if group not in keys:
        raise await refuse(f"{me} is not a member of group '{escape(group, 64)}'")
    key, members = keys[group]
    if node not in members or node == me:
        raise await refuse(f"host '{escape(node, 64)}' is not a member of group '{group}'")
    vmax = hello.get("vmax", p.PROTO_VERSION)
    version = min(vmax, p.PROTO_LATEST) if type(vmax) is int else p.PROTO_VERSION
    version = max(version, p.PROTO_VERSION)
    ns = secrets.token_hex(16)
    data = p.transcript(group, node, me, nc, ns, cert_fp, version)
    challenge: dict[str, Any] = {"nonce": ns, "proof": p.proof(key, "server", data)}
    if version > p.PROTO_VERSION:
        challenge["v"] = version
    chan.send_obj(Kind.CHALLENGE, challenge)
    try:
        auth = (await chan.expect(Kind.AUTH)).obj()
    except RemoteError as e:
        raise AuthError(f"refused '{escape(node, 64)}' from {chan.peer_address}: {e}") from None
    if not p.check_proof(key, "client", data, p.field(auth, "proof", str)):
        raise await refuse(f"wrong group key for '{group}' from host '{node}'")
    chan.send_obj(Kind.WELCOME, {})
    return Peer(node, group, version)


async def next_event(chan: Channel, session: ClientSession | ServerSession) -> Event:
    """The session's next event, reading from ``chan`` until one is complete."""
    while (ev := session.next_event()) is None:
        session.receive_data(await chan.read_some())
    return ev
