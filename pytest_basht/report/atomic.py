"""Atomic file writes: readers see a file's old content or its new, never part of one.

Every file pytest-basht writes for a person or a tool (report.json, report.md, the plots,
trial tables) goes through here, so that a crash or a full disk mid-write leaves the old
file in place.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _new_file_mode() -> int:
    """The mode ``open`` gives a new file (0666 less the umask); mkstemp's 0600 would hide
    reports from the rest of a team or a CI artifact upload."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def replace_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Have ``write`` fill a temporary file beside ``path``, then rename it over ``path``:
    readers see the old file or the new, never part of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _new_file_mode())
        os.close(fd)
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # the rename itself survives a power cut only once the directory is on disk
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass  # some file systems cannot sync a directory; the rename is done all the same
    finally:
        os.close(dir_fd)


def write_atomic(path: Path, text: str) -> None:
    """Write a text file so that readers see the old content or the new, never half of it."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    replace_atomic(path, write)
