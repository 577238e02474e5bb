"""PostgreSQL, for operators past one machine: the same store over asyncpg.

The model is SQLite's, kept on purpose so that every statement means the same on both engines:
one writer connection behind an asyncio lock, and every write transaction takes one
transaction-level advisory lock first, so writes are serialised across processes as SQLite's
BEGIN IMMEDIATE serialises them (a lock released by COMMIT or by a dead connection, so it
survives pools and crashes alike); reads go to a pool of read-only sessions and see committed
data. Statements arrive in SQLite's placeholder style (`?`, `:name`) and are rewritten to `$n`
once per distinct statement.

asyncpg rather than SQLAlchemy: bench/pg_driver.py measured SQLAlchemy Core at 1.5–2.2× asyncpg's
time per statement (2.5–4.8× at the 50-concurrent p99), and the dialect work (DDL, triggers,
errors) would remain either way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from core.errors import InstanceLocked, SchemaTooNew, StoreError, StoreUnavailable
from core.store.conn import Args, Row
from core.store.db import Database, closed
from core.store.lease import check_fence
from core.store.pg_schema import BASELINE, BASELINE_VERSION, MIGRATIONS
from core.store.schema import SCHEMA_VERSION

# Advisory lock keys (any bigint; these spell "fleetbot" and two suffixes in ASCII).
WRITE_LOCK = 0x666C656574626F74  # every write transaction, like SQLite's one writer
MIGRATE_LOCK = WRITE_LOCK + 1  # one process migrates; the others wait and find it done
INSTANCE_LOCK = WRITE_LOCK + 2  # replicas share it; `fleetbot migrate` holds it alone

WRITE_WAIT_MS = 5000  # how long a write waits for another process's lock (SQLite: the same)
CONNECT_TIMEOUT = 5.0  # seconds to reach the server before the store is "unavailable"
READERS = 8  # read-only sessions; the API's reads run side by side up to this many
STATEMENT_CACHE = 512  # prepared statements per connection: the store has about 200
FAILURE_MEMORY = 30.0  # seconds a failed write keeps the store unready, unless a commit succeeds

# SQLSTATEs (or their class, the first two characters) that mean "the store cannot do this
# now" rather than "this statement is wrong": (cause, what the owner can do).
_UNAVAILABLE: dict[str, tuple[str, str]] = {
    "08": (
        "the connection to PostgreSQL failed",
        "check that the server runs and is reachable at storage.url",
    ),
    "53": (
        "PostgreSQL is out of resources (disk, memory or connections)",
        "free disk space on the server, or raise max_connections",
    ),
    "57P01": ("PostgreSQL is shutting down", "wait for the server to restart"),
    "57P02": ("PostgreSQL crashed and is restarting", "wait for the server to recover"),
    "57P03": ("PostgreSQL is starting and not yet accepting connections", "wait a few seconds"),
    "25006": (
        "the PostgreSQL server is read-only (a standby, or default_transaction_read_only)",
        "point storage.url at the primary",
    ),
    "55P03": (
        "a lock is held by another session",
        "find the session holding it (pg_stat_activity) and end it",
    ),
}
_UNREACHABLE = (
    "PostgreSQL cannot be reached",
    "check that the server runs and that storage.url names its host and port",
)
_ONLY_WRITES_SHOW = ("53", "25006")


def _trouble_of(exc: BaseException) -> tuple[str, str] | None:
    if isinstance(exc, asyncpg.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        return _UNAVAILABLE.get(state) or _UNAVAILABLE.get(state[:2])
    if isinstance(exc, OSError | asyncio.TimeoutError | asyncpg.InterfaceError):
        # InterfaceError: the connection was closed under us (the server went away).
        return _UNREACHABLE
    return None


def unavailable(exc: BaseException) -> StoreUnavailable | None:
    """The StoreUnavailable an asyncpg or socket error stands for, or None if it is a bug."""
    found = _trouble_of(exc)
    if found is None:
        return None
    cause, fix = found
    return StoreUnavailable(
        f"the store cannot serve this now: {cause} ({type(exc).__name__}: {exc}). Nothing was "
        "changed; retry in a few seconds.",
        cause=cause,
        fix=fix,
    )


@lru_cache(maxsize=2048)
def placeholders(sql: str) -> tuple[str, tuple[str, ...] | None]:
    """`?` → `$1, $2, …` and `:name` → `$n` (one number per name), outside quotes and comments.
    Returns the statement and, for named style, the names in number order."""
    out: list[str] = []
    names: list[str] = []
    count = 0
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"":
            end = sql.find(ch, i + 1)
            while end != -1 and sql[end + 1 : end + 2] == ch:  # a doubled quote inside
                end = sql.find(ch, end + 2)
            end = n if end == -1 else end + 1
            out.append(sql[i:end])
            i = end
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end == -1 else end
            out.append(sql[i:end])
            i = end
        elif ch == "?":
            count += 1
            out.append(f"${count}")
            i += 1
        elif ch == ":" and sql[i + 1 : i + 2].isidentifier() and sql[i - 1 : i] != ":":
            j = i + 1
            while j < n and (sql[j].isalnum() or sql[j] == "_"):
                j += 1
            name = sql[i + 1 : j]
            if name not in names:
                names.append(name)
            out.append(f"${names.index(name) + 1}")
            i = j
        else:
            out.append(ch)
            i += 1
    if count and names:
        raise ValueError(f"a statement mixes ? and :name placeholders: {sql!r}")
    return "".join(out), (tuple(names) if names else None)


def _bind(sql: str, args: Args) -> tuple[str, Sequence[Any]]:
    query, names = placeholders(sql)
    if names is None:
        values = tuple(args)
    else:
        assert isinstance(args, Mapping), f"named placeholders need a mapping: {sql!r}"
        values = tuple(args[name] for name in names)
    return query, tuple(_text(v) for v in values)


def _text(value: Any) -> Any:
    """PostgreSQL's text cannot hold NUL (SQLite's can): it is kept as U+FFFD, the Unicode
    replacement character, so a title with one is stored rather than a 500, and a lookup by an
    id with one finds nothing, as on SQLite."""
    if isinstance(value, str) and "\x00" in value:
        return value.replace("\x00", "\ufffd")
    return value


def _rowcount(status: str) -> int:
    """asyncpg's command tag ("UPDATE 3", "INSERT 0 1") as a cursor's rowcount."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else -1


@dataclass(frozen=True, slots=True)
class PgCursor:
    rowcount: int


class PgConn:
    """A Conn over one asyncpg connection (the writer's, inside its transaction) or over the
    reader pool (each statement on whichever read-only session is free)."""

    def __init__(self, target: asyncpg.Connection | asyncpg.Pool, *, reader: bool = False) -> None:
        self._target = target
        self._reader = reader

    def _unavailable(self, exc: BaseException) -> StoreUnavailable | None:
        # A write sent to the read-only reader is a bug, as on SQLite, not a read-only server.
        if self._reader and isinstance(exc, asyncpg.ReadOnlySQLTransactionError):
            return None
        return unavailable(exc)

    async def execute(self, sql: str, parameters: Args = (), /) -> PgCursor:
        query, args = _bind(sql, parameters)
        try:
            return PgCursor(_rowcount(await self._target.execute(query, *args)))
        except Exception as exc:
            if trouble := self._unavailable(exc):
                raise trouble from exc
            raise

    async def execute_fetchall(self, sql: str, parameters: Args = (), /) -> list[Row]:
        query, args = _bind(sql, parameters)
        try:
            return list(await self._target.fetch(query, *args))
        except Exception as exc:
            if trouble := self._unavailable(exc):
                raise trouble from exc
            raise

    async def copy_records(
        self, table: str, columns: Sequence[str], records: Sequence[Sequence[Any]]
    ) -> int:
        """Rows into `table` by COPY, inside the write transaction (core.store.copy, for
        `fleetbot migrate`): one round trip per batch instead of one per row."""
        assert isinstance(self._target, asyncpg.Connection), "COPY runs on the writer"
        try:
            status = await self._target.copy_records_to_table(
                table, columns=list(columns), records=records
            )
        except Exception as exc:
            if trouble := self._unavailable(exc):
                raise trouble from exc
            raise
        return _rowcount(status)


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Reader sessions keep no state between statements (no transactions, no SET), so the
    pool's default reset, one more round trip per read, buys nothing."""


def redact(url: str) -> str:
    """The URL without a password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class PostgresDatabase(Database):
    """One PostgreSQL database: a writer connection and a pool of read-only sessions."""

    engine = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        exclusive: bool = False,
        replica: bool = False,
    ) -> None:
        self.url = url
        self._password = password
        self._exclusive = exclusive
        self._replica = replica
        self.shared = not exclusive  # a replica's hold is shared
        self._writer: asyncpg.Connection | None = None
        self._readers: asyncpg.Pool | None = None
        self._reader_conn: PgConn | None = None
        self._instance: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()
        self._failure: tuple[float, StoreUnavailable] | None = None

    @property
    def where(self) -> str:
        return redact(self.url)

    async def _connect(self, **settings: str) -> asyncpg.Connection:
        try:
            return await asyncpg.connect(
                self.url,
                password=self._password,
                timeout=CONNECT_TIMEOUT,
                statement_cache_size=STATEMENT_CACHE,
                server_settings=settings or None,
            )
        except (
            asyncpg.InvalidAuthorizationSpecificationError,
            asyncpg.InvalidPasswordError,
        ) as exc:
            raise StoreError(
                f"{self.where}: PostgreSQL refused the login ({exc}). Check the user in "
                "storage.url and the password that storage.password names (its file or env "
                "var), or PGPASSWORD / ~/.pgpass without it."
            ) from exc
        except asyncpg.InvalidCatalogNameError as exc:
            raise StoreError(
                f"{self.where}: {exc}. Create it first (createdb, or CREATE DATABASE) and give "
                "fleetbot's user the right to create tables in it."
            ) from exc
        except Exception as exc:
            if trouble := unavailable(exc):
                raise trouble from exc
            raise

    async def open(self) -> PostgresDatabase:
        if self._writer is not None:
            return self
        try:
            if self._exclusive or self._replica:
                await self._claim_instance()
            self._writer = await self._connect()
            await self._migrate(self._writer)
            self._readers = await asyncpg.create_pool(
                self.url,
                password=self._password,
                min_size=1,
                max_size=READERS,
                timeout=CONNECT_TIMEOUT,
                statement_cache_size=STATEMENT_CACHE,
                server_settings={"default_transaction_read_only": "on"},
                reset=_no_reset,
            )
            self._reader_conn = PgConn(self._readers, reader=True)
        except BaseException:
            await self.aclose()
            raise
        return self

    async def aclose(self) -> None:
        if self._readers is not None:
            await self._readers.close()
        for conn in (self._writer, self._instance):
            if conn is not None and not conn.is_closed():
                await conn.close()
        self._writer = self._instance = None
        self._readers = self._reader_conn = None

    async def _claim_instance(self) -> None:
        """Hold the database (a session lock on a connection of its own, so it dies with the
        process) or raise InstanceLocked: shared by replicas of `fleetbot run`, which lead and
        follow by core.cluster's lease; exclusive for `fleetbot migrate`, which no replica may
        run beside."""
        if self._instance is not None:
            return
        name = "fleetbot run" if self._replica else "fleetbot (exclusive)"
        conn = await self._connect(application_name=name)
        how = "pg_try_advisory_lock_shared" if self._replica else "pg_try_advisory_lock"
        if not await conn.fetchval(f"SELECT {how}($1)", INSTANCE_LOCK):
            # A bigint key shows in pg_locks as its high and low 32 bits.
            holder = await conn.fetchval(
                "SELECT string_agg(COALESCE(host(a.client_addr), 'local socket') || ' pid '"
                " || a.pid, ', ') FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1"
                " AND l.objid = $2 AND l.database ="
                " (SELECT oid FROM pg_database WHERE datname = current_database())",
                INSTANCE_LOCK >> 32,
                INSTANCE_LOCK & 0xFFFFFFFF,
            )
            await conn.close()
            if self._replica:
                raise InstanceLocked(
                    f"{self.where} is held exclusively (by `fleetbot migrate`, server session "
                    f"{holder or 'unknown'}): start `fleetbot run` when it has finished."
                )
            raise InstanceLocked(
                f"{self.where} is in use by `fleetbot run` or another `fleetbot migrate` "
                f"(server session {holder or 'unknown'}): stop every replica first, or "
                "choose another database."
            )
        self._instance = conn

    async def _migrate(self, conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATE_LOCK)
            version = 0
            if await conn.fetchval("SELECT to_regclass('fleetbot_schema') IS NOT NULL"):
                version = int(await conn.fetchval("SELECT version FROM fleetbot_schema"))
            if version > SCHEMA_VERSION:
                raise SchemaTooNew(
                    f"{self.where}: the database has schema version {version}, but this "
                    f"fleetbot knows only up to {SCHEMA_VERSION}. Upgrade fleetbot, or point "
                    "storage.url at another database; the database was left untouched."
                )
            if version == SCHEMA_VERSION:
                return
            try:
                if version == 0:
                    if await conn.fetchval("SELECT to_regclass('issues') IS NOT NULL"):
                        raise StoreError(
                            f"{self.where}: the database has fleetbot-like tables but no "
                            "fleetbot_schema version; point storage.url at an empty database."
                        )
                    await conn.execute(BASELINE)
                    await conn.execute(
                        "CREATE TABLE fleetbot_schema (version bigint NOT NULL);"
                        f"INSERT INTO fleetbot_schema VALUES ({BASELINE_VERSION})"
                    )
                    version = BASELINE_VERSION
                for number in range(version, SCHEMA_VERSION):
                    await conn.execute(MIGRATIONS[number - BASELINE_VERSION])
                    await conn.execute("UPDATE fleetbot_schema SET version = $1", number + 1)
            except asyncpg.PostgresError as exc:
                raise StoreError(
                    f"{self.where}: migration to schema version {SCHEMA_VERSION} failed ({exc}) "
                    f"and was rolled back; the database stays at version {version}. Report "
                    "this as a bug."
                ) from exc

    async def _writer_conn(self) -> asyncpg.Connection:
        """The writer, reconnected if the server dropped it (a restart, a failover)."""
        if self._writer is None:
            raise closed()
        if self._writer.is_closed():
            self._writer = await self._connect()
        return self._writer

    async def _begin(self, sql: str) -> asyncpg.Connection:
        """The writer inside a new transaction, `sql` run after BEGIN in the same round trip. If
        that fails or is cancelled (waiting for the writer lock, say), the session may be left
        inside the transaction, aborted or holding the lock for no one: it is dropped, the
        server rolls it back, and the next write reconnects."""
        raw = await self._writer_conn()
        try:
            await raw.execute(f"BEGIN; {sql}")
        except BaseException:
            raw.terminate()
            raise
        return raw

    @asynccontextmanager
    async def write(self) -> AsyncIterator[PgConn]:
        async with self._lock:
            try:
                # One round trip: the transaction and the database-wide writer lock.
                # As SQLite's busy_timeout: a write waits this long for another process's
                # lock, then is "unavailable" (55P03) rather than hanging its caller.
                raw = await self._begin(
                    f"SET LOCAL lock_timeout = '{WRITE_WAIT_MS}ms'; "
                    f"SELECT pg_advisory_xact_lock({WRITE_LOCK})"
                )
            except Exception as exc:
                if trouble := unavailable(exc):
                    raise trouble from exc
                raise
            try:
                conn = PgConn(raw)
                await check_fence(conn, self.engine)
                yield conn
                await raw.execute("COMMIT")
            except BaseException as exc:
                if not raw.is_closed():
                    try:
                        await raw.execute("ROLLBACK")
                    except Exception:
                        # The connection is unusable (its server went away mid-transaction):
                        # drop it; the next write reconnects, and the server rolled back.
                        raw.terminate()
                self._remember(exc)
                if not isinstance(exc, StoreUnavailable) and (trouble := unavailable(exc)):
                    raise trouble from exc
                raise
            self._failure = None

    def _remember(self, exc: BaseException) -> None:
        cause = exc.__cause__ if isinstance(exc, StoreUnavailable) else exc
        state = str(getattr(cause, "sqlstate", "") or "")
        if state.startswith(_ONLY_WRITES_SHOW) and cause is not None:
            trouble = unavailable(cause)
            assert trouble is not None
            self._failure = (time.monotonic(), trouble)

    async def probe_write(self) -> None:
        """StoreUnavailable unless a write could start now (the server is reachable, a primary,
        and gives the writer lock within half a second) and the last write did not fail for
        lack of resources in the last FAILURE_MEMORY seconds."""
        async with self._lock:
            try:
                raw = await self._begin("SET LOCAL lock_timeout = '500ms'")
                try:
                    standby = await raw.fetchval(
                        "SELECT pg_is_in_recovery() FROM (SELECT pg_advisory_xact_lock($1)) l",
                        WRITE_LOCK,
                    )
                finally:
                    await raw.execute("ROLLBACK")
            except Exception as exc:
                if trouble := unavailable(exc):
                    raise trouble from exc
                raise
            if standby:
                cause, fix = _UNAVAILABLE["25006"]
                raise StoreUnavailable(
                    f"the store cannot take writes: {cause}.", cause=cause, fix=fix
                )
        if self._failure is not None:
            when, trouble = self._failure
            if time.monotonic() - when < FAILURE_MEMORY:
                raise StoreUnavailable(trouble.message, cause=trouble.cause, fix=trouble.fix)
            self._failure = None

    @property
    def reader(self) -> PgConn:
        if self._reader_conn is None:
            raise closed()
        return self._reader_conn
