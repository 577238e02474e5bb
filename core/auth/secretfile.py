"""Writing and checking files that hold secrets: atomic, mode 0600, never half-written."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path


def write_secret(path: Path, data: bytes | str, *, fsync: bool = True) -> None:
    """Replace `path` atomically with `data`, readable by the owner only.

    The temporary file is created 0600 in the same folder (so the rename cannot cross a file
    system) and renamed over the target: a reader sees the old file or the new one, never a
    partial one, and the secret is never world-readable even for an instant.
    """
    payload = data.encode() if isinstance(data, str) else data
    try:
        # mkstemp creates the file 0600 (owner only) before a byte is written.
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def fsync_dir(path: Path) -> None:
    """Make renames inside `path` durable (one call after many write_secret(fsync=False))."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def loose_permissions(path: Path) -> bool:
    """True when group or others can read or write `path`."""
    mode = stat.S_IMODE(path.stat().st_mode)
    return bool(mode & 0o077)


def writable_by_others(folder: Path) -> bool:
    """True when group or others may create, replace or delete files in `folder`."""
    return bool(stat.S_IMODE(folder.stat().st_mode) & 0o022)


def link_target(path: Path) -> Path | None:
    """Where `path` points when it is a symbolic link itself (not one of its parents)."""
    if not path.is_symlink():
        return None
    return path.resolve()


def _open_lock(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return os.open(path.parent / f".{path.name}.lock", os.O_RDWR | os.O_CREAT, 0o600)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock beside `path` (`.<name>.lock`) for a read-modify-write.

    Two processes rotating the same key ring (`fleetbot tokens rotate` in a shell while
    `fleetbot run` retires keys on its schedule) would otherwise each write their own copy
    and one change would be lost. The lock is the kernel's (flock): it dies with its process.
    """
    fd = _open_lock(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@contextlib.asynccontextmanager
async def locked_async(path: Path, *, poll: float = 0.05) -> AsyncIterator[None]:
    """`locked` for a coroutine that holds the lock across awaits (a whole rotation).

    Waits without blocking the event loop (a scheduled job in this very process may hold the
    lock meanwhile) and without a thread that could outlive a cancellation.
    """
    fd = _open_lock(path)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(poll)
        yield
    finally:
        os.close(fd)
