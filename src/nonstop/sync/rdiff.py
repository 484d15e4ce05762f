"""The rsync algorithm through Debian's librsync2 (the library csync2 itself uses): signatures of
the receiver's old file, deltas of the sender's new file against them, and patching.

A thin ctypes adapter over librsync's streaming job API (``rs_job_iter``): bytes go in, bytes
come out, no temp files; the C calls release the GIL, so the event loop's threads keep running.
Everything a peer sends (a signature, a delta) is parsed by librsync and any error it reports is
:class:`RdiffError`; sizes are bounded by the caller.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Iterator

from nonstop.errors import RemoteInputError

RS_DONE = 0
RS_BLOCKED = 1
_OUT = 256 * 1024


class RdiffError(RemoteInputError):
    """librsync refused the input or failed (the message names its result code)."""


class _Buffers(ctypes.Structure):
    _fields_ = [
        ("next_in", ctypes.c_void_p),
        ("avail_in", ctypes.c_size_t),
        ("eof_in", ctypes.c_int),
        ("next_out", ctypes.c_void_p),
        ("avail_out", ctypes.c_size_t),
    ]


_COPY_CB = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.c_longlong, ctypes.POINTER(ctypes.c_size_t),
    ctypes.POINTER(ctypes.c_void_p),
)


def _load() -> ctypes.CDLL | None:
    # Debian's soname first: ctypes.util.find_library runs `ldconfig -p` in a child process.
    try:
        lib = ctypes.CDLL("librsync.so.2")
    except OSError:
        from ctypes.util import find_library

        name = find_library("rsync")
        if name is None:
            return None
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            return None
    lib.rs_sig_args.argtypes = [ctypes.c_longlong, ctypes.POINTER(ctypes.c_int),
                                ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_size_t)]
    lib.rs_sig_args.restype = ctypes.c_int
    lib.rs_sig_begin.argtypes = [ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int]
    lib.rs_sig_begin.restype = ctypes.c_void_p
    lib.rs_loadsig_begin.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
    lib.rs_loadsig_begin.restype = ctypes.c_void_p
    lib.rs_build_hash_table.argtypes = [ctypes.c_void_p]
    lib.rs_build_hash_table.restype = ctypes.c_int
    lib.rs_delta_begin.argtypes = [ctypes.c_void_p]
    lib.rs_delta_begin.restype = ctypes.c_void_p
    lib.rs_patch_begin.argtypes = [_COPY_CB, ctypes.c_void_p]
    lib.rs_patch_begin.restype = ctypes.c_void_p
    lib.rs_job_iter.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Buffers)]
    lib.rs_job_iter.restype = ctypes.c_int
    lib.rs_job_free.argtypes = [ctypes.c_void_p]
    lib.rs_job_free.restype = ctypes.c_int
    lib.rs_free_sumset.argtypes = [ctypes.c_void_p]
    lib.rs_free_sumset.restype = None
    return lib


_lib = _load()


def available() -> bool:
    """Whether librsync2 could be loaded (without it every change is sent whole)."""
    return _lib is not None


def _need() -> ctypes.CDLL:
    if _lib is None:
        raise RdiffError("librsync2 is not installed (Debian package librsync2)")
    return _lib


class _Job:
    """One librsync job: feed input, collect output."""

    def __init__(self, job: int | None, what: str) -> None:
        if not job:
            raise RdiffError(f"librsync could not start the {what} job")
        self._job: int | None = job
        self._what = what
        self._out = ctypes.create_string_buffer(_OUT)
        self._pending = b""
        self.done = False

    def feed(self, data: bytes, eof: bool = False) -> bytes:
        """Give the job more input (``eof`` with the last); returns the output produced."""
        lib = _need()
        src = self._pending + data if self._pending else data
        keep = ctypes.create_string_buffer(src, len(src)) if src else None
        bufs = _Buffers(ctypes.addressof(keep) if keep is not None else None, len(src), int(eof),
                        None, 0)
        out: list[bytes] = []
        stalls = 0
        while True:
            bufs.next_out = ctypes.addressof(self._out)
            bufs.avail_out = _OUT
            rc = lib.rs_job_iter(self._job, ctypes.byref(bufs))
            made = _OUT - bufs.avail_out
            if made:
                out.append(ctypes.string_at(self._out, made))
            if rc == RS_DONE:
                self.done = True
                break
            if rc != RS_BLOCKED:
                raise RdiffError(f"librsync {self._what} failed (result {rc})")
            if made:
                stalls = 0
                continue
            # Blocked without output: it wants more input (or, at the end, cannot finish).
            stalls += 1
            if not eof or stalls > 3:
                break
        left = bufs.avail_in
        self._pending = src[len(src) - left:] if left else b""
        if eof and not self.done:
            raise RdiffError(f"librsync {self._what}: input ended early")
        return b"".join(out)

    def close(self) -> None:
        if self._job is not None:
            _need().rs_job_free(self._job)
            self._job = None


def signature_args(size: int) -> tuple[int, int, int]:
    """librsync's recommended (magic, block length, strong sum length) for an old file of
    ``size`` bytes: blocks of about sqrt(size), as rsync chooses them."""
    lib = _need()
    magic = ctypes.c_int(0)
    block = ctypes.c_size_t(0)
    strong = ctypes.c_size_t(ctypes.c_size_t(-1).value)  # -1: smallest safe strong sum
    rc = lib.rs_sig_args(size, ctypes.byref(magic), ctypes.byref(block), ctypes.byref(strong))
    if rc != RS_DONE:
        raise RdiffError(f"librsync signature arguments failed (result {rc})")
    return magic.value, block.value, strong.value


def max_signature_size(size: int) -> int:
    """An upper bound on the signature of a file of ``size`` bytes (to cap what a peer sends)."""
    _magic, block, strong = signature_args(size)
    return 12 + (size // block + 1) * (4 + strong)


def signature(fd: int, size: int) -> Iterator[bytes]:
    """The signature of the first ``size`` bytes of an open file, in pieces."""
    magic, block, strong = signature_args(size)
    job = _Job(_need().rs_sig_begin(block, strong, magic), "signature")
    try:
        pos = 0
        while True:
            chunk = os.pread(fd, min(1 << 20, size - pos), pos) if pos < size else b""
            pos += len(chunk)
            last = not chunk
            out = job.feed(chunk, eof=last)
            if out:
                yield out
            if last:
                return
    finally:
        job.close()


class _Guarded:
    """librsync state that worker threads use and the event loop may close meanwhile.

    Its calls run in worker threads (``asyncio.to_thread``), and a cancelled await does not
    stop the thread: the task's clean-up closed the state while ``rs_job_iter`` still ran on
    it, and the daemon died of the use after free (a push cut short by a takeover). Now a
    close while a call runs only marks it closed, and the call frees it when it returns."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._busy = 0
        self._closed = False

    def _enter(self) -> None:
        with self._mutex:
            if self._closed:
                raise RdiffError("closed")
            self._busy += 1

    def _leave(self) -> None:
        with self._mutex:
            self._busy -= 1
            free = self._closed and not self._busy
        if free:
            self._release()

    def close(self) -> None:
        """Free the state now, or when the call running on it returns."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            free = not self._busy
        if free:
            self._release()

    def _release(self) -> None:
        raise NotImplementedError


class Delta(_Guarded):
    """The sender's side: load the receiver's signature, then turn new content into a delta."""

    def __init__(self) -> None:
        super().__init__()
        lib = _need()
        self._sig = ctypes.c_void_p()
        self._load: _Job | None = _Job(lib.rs_loadsig_begin(ctypes.byref(self._sig)),
                                       "signature load")
        self._delta: _Job | None = None

    def signature(self, data: bytes, eof: bool = False) -> None:
        """Feed the receiver's signature (``eof`` with the last piece)."""
        self._enter()
        try:
            if self._load is None:
                raise RdiffError("signature already loaded")
            self._load.feed(data, eof)
            if eof:
                self._load.close()
                self._load = None
                lib = _need()
                if lib.rs_build_hash_table(self._sig) != RS_DONE:
                    raise RdiffError("librsync could not index the signature")
                self._delta = _Job(lib.rs_delta_begin(self._sig), "delta")
        finally:
            self._leave()

    def feed(self, data: bytes, eof: bool = False) -> bytes:
        """New content in order; returns delta bytes."""
        self._enter()
        try:
            if self._delta is None:
                raise RdiffError("the signature is not loaded")
            return self._delta.feed(data, eof)
        finally:
            self._leave()

    def _release(self) -> None:
        for job in (self._load, self._delta):
            if job is not None:
                job.close()
        self._load = self._delta = None
        if self._sig:
            _need().rs_free_sumset(self._sig)
            self._sig = ctypes.c_void_p()


class Patch(_Guarded):
    """The receiver's side: apply a delta to the old file (read by offset) to make the new one."""

    def __init__(self, basis_fd: int) -> None:
        super().__init__()
        self._fd = basis_fd
        self._error: OSError | None = None

        def copy(_opaque: int | None, pos: int, length: ctypes._Pointer[ctypes.c_size_t],
                 buf: ctypes._Pointer[ctypes.c_void_p]) -> int:
            try:
                data = os.pread(self._fd, length[0], pos)
            except OSError as e:
                self._error = e
                return 100  # RS_IO_ERROR
            ctypes.memmove(buf[0], data, len(data))
            length[0] = len(data)
            return RS_DONE

        self._cb = _COPY_CB(copy)  # kept alive as long as the job
        self._job: _Job | None = _Job(_need().rs_patch_begin(self._cb, None), "patch")

    def feed(self, data: bytes, eof: bool = False) -> bytes:
        """Delta bytes in order; returns new content."""
        self._enter()
        try:
            if self._job is None:
                raise RdiffError("patch already finished")
            return self._job.feed(data, eof)
        except RdiffError:
            if self._error is not None:
                raise RdiffError(f"reading the old file failed: {self._error}") from None
            raise
        finally:
            self._leave()

    def _release(self) -> None:
        if self._job is not None:
            self._job.close()
            self._job = None
