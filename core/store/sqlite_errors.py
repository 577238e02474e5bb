"""SQLite's errors that mean "the store cannot do this now" (a lock, a full or failing disk, a
read-only file), as StoreUnavailable naming the cause and the fix; any other sqlite3 error is a
bug and leaves as it is. Apart from core.store.sqlite so that core.store.db's reads can use it.
"""

from __future__ import annotations

import sqlite3

from core.errors import StoreUnavailable

# SQLite's primary result codes that mean "the store cannot do this now" rather than "this
# statement is wrong": (cause, what the owner can do).
_UNAVAILABLE: dict[int, tuple[str, str]] = {
    sqlite3.SQLITE_BUSY: (
        "the database is locked by another process",
        "find and stop whatever holds its write lock (a second fleetbot, a backup tool, an "
        "open sqlite3 shell)",
    ),
    sqlite3.SQLITE_READONLY: (
        "the database file is read-only",
        "make the database file, its -wal and -shm files and their folder writable by fleetbot",
    ),
    sqlite3.SQLITE_FULL: ("the disk is full", "free disk space where the database lives"),
    sqlite3.SQLITE_IOERR: (
        "the disk failed a read or a write",
        "check the disk and the file system (dmesg, df)",
    ),
    sqlite3.SQLITE_CANTOPEN: (
        "the database file cannot be opened",
        "check that the database's folder exists and is writable",
    ),
}


# What BEGIN IMMEDIATE cannot see coming (it writes nothing), so readiness remembers it.
ONLY_WRITES_SHOW = {sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR}


def primary(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None  # the extended code's low byte


def unavailable(exc: sqlite3.Error) -> StoreUnavailable | None:
    """The StoreUnavailable an sqlite3 error stands for, or None if it is not store trouble."""
    found = _UNAVAILABLE.get(primary(exc) or 0)
    if found is None:
        return None
    cause, fix = found
    return StoreUnavailable(
        f"the store cannot serve this now: {cause} ({exc}). Nothing was changed; retry in a "
        "few seconds.",
        cause=cause,
        fix=fix,
    )
