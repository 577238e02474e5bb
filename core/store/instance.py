"""One `fleetbot run` per database: an exclusive lock file beside it, like `postmaster.pid`.

Two processes on one database would each think the other's live runs were interrupted by a
restart, end them and redo the work. The lock is an OS file lock (`flock`) on `<db>.lock`, so
it dies with its process however the process dies: a lock file left by a dead process is
simply taken over, never trusted. The file's text names the holder for whoever is refused.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from core.errors import InstanceLocked


def lock_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".lock")


class InstanceLock:
    """Held from `acquire()` until `release()`; `with InstanceLock(db):` does both."""

    def __init__(self, db_path: Path) -> None:
        self.path = lock_path(db_path)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise InstanceLocked naming the process that holds it."""
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise InstanceLocked(_refusal(self.path, holder)) from None
        except BaseException:
            os.close(fd)
            raise
        # The previous text (if any) belonged to a process that has died: replace it whole.
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        """Let go of the lock (idempotent). The file stays: removing it would race a new holder."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing the descriptor drops the flock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _read_holder(fd: int) -> dict[str, object]:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _refusal(path: Path, holder: dict[str, object]) -> str:
    pid, host, since = holder.get("pid"), holder.get("host"), holder.get("since")
    if pid is None:
        who = "another fleetbot process (it is still starting)"
        how = f"stop that process, or wait for it to write {path}"
    else:
        who = f"fleetbot process {pid} on {host or 'this host'}, running since {since or '?'}"
        same_host = host in (None, socket.gethostname())
        how = (
            f"stop it (`kill {pid}` sends SIGTERM; it shuts down cleanly)"
            if same_host
            else f"stop it on {host}"
        )
    return (
        f"{path.with_suffix('')} is already in use by {who}. Only one `fleetbot run` may use a "
        f"database at a time: {how}, or give this one another storage.path."
    )
