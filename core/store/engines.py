"""Which engine a target names, and the store opened on it.

A path, or `sqlite:///relative` / `sqlite:////absolute`, is one SQLite file (core.store.sqlite);
a `postgresql://` URL is a PostgreSQL database (core.store.postgres, whose asyncpg is imported
only then).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from core.config.schema import StorageConfig
from core.errors import StoreError
from core.store.db import Database

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
SQLITE_SCHEME = "sqlite:///"


def is_postgres(target: Path | str) -> bool:
    return isinstance(target, str) and target.startswith(POSTGRES_SCHEMES)


def database(
    target: Path | str,
    *,
    password: str | None = None,
    exclusive: bool = False,
    replica: bool = False,
) -> Database:
    """The store at `target`, not yet open, held from `open()` to `aclose()` as asked.
    `exclusive`: no other holder (`fleetbot migrate`). `replica`: `fleetbot run`'s hold —
    exclusive on SQLite (one process per file: a lock file beside it), shared on PostgreSQL
    (replicas side by side, one leading: core.cluster)."""
    if is_postgres(target):
        from core.store.postgres import PostgresDatabase

        return PostgresDatabase(
            str(target), password=password, exclusive=exclusive, replica=replica
        )
    from core.store.sqlite import SqliteDatabase

    text = str(target)
    path = Path(text[len(SQLITE_SCHEME) :] if text.startswith(SQLITE_SCHEME) else text)
    return SqliteDatabase(path, exclusive=exclusive or replica)


def database_for(
    storage: StorageConfig,
    env: Mapping[str, str] | None = None,
    *,
    exclusive: bool = False,
    replica: bool = False,
) -> Database:
    """The store the config's `storage` section names, its password resolved from `env`."""
    password = None
    if storage.password is not None:
        password = storage.password.resolve(os.environ if env is None else env)
        if password is None:
            raise StoreError(
                f"storage.password names {storage.password.describe()}, which is unset or "
                "empty: set it to the PostgreSQL user's password."
            )
    return database(storage.target, password=password, exclusive=exclusive, replica=replica)
