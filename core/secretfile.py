"""Writing and checking files that hold secrets: atomic, mode 0600, never half-written."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path


def write_secret(path: Path, data: bytes | str, *, fsync: bool = True) -> None:
    """Replace `path` atomically with `data`, readable by the owner only.

    The temporary file is created 0600 in the same folder (so the rename cannot cross a file
    system) and renamed over the target: a reader sees the old file or the new one, never a
    partial one, and the secret is never world-readable even for an instant.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    payload = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
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
