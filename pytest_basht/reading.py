"""Reading a file a run depends on: its kind and size checked before a byte is read, and
the read itself bounded.

Every file pytest-basht reads goes through here — workload files, carbon series, compare
baselines, trial tables and their cards, the history store's header, worker logs, sysfs
and procfs counters. A path may name anything: a symlink to ``/dev/zero`` (endless), a
FIFO (a read blocks forever), a socket, a device, a directory. Only a regular file is read
(symlinks resolved), it is opened without blocking, its kind is checked again on the open
descriptor (the path may have been swapped in between), and at most ``limit + 1`` bytes
are read — a file that grows past its ``stat`` size, or a procfs file that reports size 0,
still cannot exhaust memory.

Refusals are ``OSError`` subclasses whose ``strerror`` says what the file is, so a caller's
``except OSError`` already turns them into its clear error.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

CHUNK = 1 << 16


class RefusedFile(OSError):
    """A file that is not read: not a regular file, or larger than its limit."""

    def __init__(self, path: str | Path, code: int, reason: str) -> None:
        super().__init__(code, reason, str(path))


def kind(mode: int) -> str:
    """What a ``st_mode`` names, in words."""
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    return "not a regular file"


def _refuse_kind(path: str | Path, mode: int) -> RefusedFile:
    code = errno.EISDIR if stat.S_ISDIR(mode) else errno.EINVAL
    return RefusedFile(path, code, f"{kind(mode)}, not a regular file")


def _too_large(path: str | Path, limit: int) -> RefusedFile:
    return RefusedFile(path, errno.EFBIG, f"larger than {limit:,} bytes")


def check(path: str | Path, limit: int | None = None) -> os.stat_result:
    """The file's ``stat`` (symlinks followed) when it is a regular file within ``limit``
    bytes; a ``RefusedFile`` otherwise (``OSError`` when it cannot be reached)."""
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise _refuse_kind(path, info.st_mode)
    if limit is not None and info.st_size > limit:
        raise _too_large(path, limit)
    return info


def _open_regular(path: str | Path) -> int:
    """A read-only descriptor of a regular file, opened without blocking: a FIFO swapped
    in after ``check`` opens at once, and is refused on the descriptor's own ``fstat``."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)
    fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise _refuse_kind(path, mode)
    return fd


def read_bytes(path: str | Path, limit: int) -> bytes:
    """The whole file, at most ``limit`` bytes of it: a regular file only."""
    check(path, limit)
    fd = _open_regular(path)
    chunks: list[bytes] = []
    size = 0
    try:
        while size <= limit:  # a procfs file says size 0; a growing one passed its check
            chunk = os.read(fd, min(CHUNK, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > limit:
        raise _too_large(path, limit)
    return b"".join(chunks)


def read_text(path: str | Path, limit: int, encoding: str = "utf-8",
              errors: str = "strict") -> str:
    """``read_bytes`` decoded (``UnicodeDecodeError`` when it is not ``encoding``)."""
    return read_bytes(path, limit).decode(encoding, errors)


def read_tail(path: str | Path, size: int) -> bytes:
    """The last ``size`` bytes of a regular file of any length (a log's end)."""
    info = check(path)
    fd = _open_regular(path)
    try:
        return os.pread(fd, size, max(0, info.st_size - size))
    finally:
        os.close(fd)


def read_head(path: str | Path, size: int) -> bytes:
    """The first ``size`` bytes of a regular file of any length (a header)."""
    check(path)
    fd = _open_regular(path)
    try:
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)
