"""The work directories a run keeps in the temporary directory, and the cleaning of those
a dead run left behind.

A run's deployments (their study journal, data, models) and, under pytest-xdist, its
register of running scenarios live in one directory ``$TMPDIR/basht-run-*``. Every process
that uses it holds a lock file in it (``<pid>-<token>.lock``, an exclusive ``flock`` held
while the process lives): the kernel lets go of a lock when its process ends, SIGKILL
included, so a directory none of whose locks is held belongs to no living process. The
next run removes such directories (``sweep``) — and only those: one with a lock held, or
with no lock file at all (being made, or made by something else), is left alone.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

PREFIX = "basht-run-"
LOCK = ".lock"


def _hold(directory: Path) -> tuple[int, Path]:
    """A lock file of this process's in ``directory``, locked. It is locked under another
    name first and then renamed, so that no sweep ever sees it unlocked."""
    name = f"{os.getpid()}-{secrets.token_hex(4)}"
    making = directory / f"{name}.locking"
    fd = os.open(making, os.O_CREAT | os.O_EXCL | os.O_RDWR | getattr(os, "O_CLOEXEC", 0),
                 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, f"{os.getpid()}\n".encode())
        final = directory / f"{name}{LOCK}"
        os.rename(making, final)
    except BaseException:
        os.close(fd)
        making.unlink(missing_ok=True)
        raise
    return fd, final


@dataclass
class WorkDir:
    """A work directory this process holds (its lock file in it, locked)."""

    path: Path
    lock_fd: int
    lock_path: Path
    owner: bool  # made by this process: removed when it lets go

    @classmethod
    def create(cls, root: Path | None = None) -> WorkDir:
        """A new work directory under ``root`` (the temporary directory), held."""
        path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=root))
        fd, lock = _hold(path)
        return cls(path, fd, lock, owner=True)

    @classmethod
    def join(cls, path: Path) -> WorkDir:
        """``path`` (made if missing), held by this process too — the work directory that
        the xdist controller named for its workers."""
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, lock = _hold(path)
        return cls(path, fd, lock, owner=False)

    def release(self) -> None:
        """Let go of the directory; remove it when this process made it. Safe to call twice."""
        if self.lock_fd < 0:
            return
        self.lock_path.unlink(missing_ok=True)
        os.close(self.lock_fd)
        self.lock_fd = -1
        if self.owner:
            shutil.rmtree(self.path, ignore_errors=True)


@dataclass
class RunWork:
    """This process's share of the run's work directory: made and held on first use (a
    first use also sweeps what killed runs left); under xdist the one the controller named
    (``run_dir``), else a new one."""

    run_dir: Path | None = None
    holding: WorkDir | None = None

    def path(self) -> Path:
        if self.holding is None:
            sweep()
            self.holding = WorkDir.join(self.run_dir) if self.run_dir is not None \
                else WorkDir.create()
        return self.holding.path

    def release(self) -> None:
        """Let go of it (removed when this process made it)."""
        if self.holding is not None:
            self.holding.release()


def held(lock: Path) -> bool:
    """Whether a process holds ``lock`` (an flock on it). A lock file that cannot be opened
    counts as held: nothing is removed on a guess."""
    try:
        fd = os.open(lock, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return False
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops the lock this probe may have taken
    return False


def dead(directory: Path) -> bool:
    """A run directory no living process holds: lock files in it, none of them held."""
    locks = list(directory.glob(f"*{LOCK}"))
    return bool(locks) and not any(held(lock) for lock in locks)


def sweep(root: Path | None = None) -> list[Path]:
    """Remove the run directories under ``root`` (the temporary directory) that are
    provably dead, and only those of this user; returns what was removed."""
    base = Path(root) if root is not None else Path(tempfile.gettempdir())
    removed = []
    for entry in sorted(base.glob(f"{PREFIX}*")):
        try:
            info = entry.lstat()
        except OSError:
            continue
        if not entry.is_dir() or entry.is_symlink() or info.st_uid != os.getuid():
            continue
        if dead(entry):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed
