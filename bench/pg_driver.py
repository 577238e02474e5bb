"""Which PostgreSQL driver for the store: raw asyncpg or SQLAlchemy Core, against today's SQLite.

The store's hot paths, N times each, one at a time, in one process, on the same schema and data
(the issues table as schema migration 6 leaves it, with its indexes, and the questions its
workable rule looks at; 10,000 issues over 100 agents, about 55 in each inbox):

  insert   file an issue: take the company's next number and insert, in one transaction
           (core.store.issues.file: UPDATE … RETURNING, INSERT, SELECT by id)
  inbox    one agent's inbox by priority, then age, LIMIT 50 (core.store.issues.inbox)
  claim    lease a workable issue: the conditional UPDATE … RETURNING, in a transaction
           (core.store.issues.lease)
  conc     N/2 inbox reads from 50 coroutines at once through the pool (10 connections;
           today's store: its one reader), per-read latency and reads/s

Variants, each on its own copy of the seed (a PostgreSQL schema, an SQLite file), run
interleaved in blocks of 100 ops so that the machine's drifting load falls on all alike:

  sqlite         today's store: core.store.db.Database (aiosqlite, WAL, one writer behind a
                 lock, one reader), the full schema from its migrations
  asyncpg        raw asyncpg, a pool; statements prepared once per connection by asyncpg's
                 statement cache ($1 placeholders)
  sa-text        SQLAlchemy Core over asyncpg, text() with :name parameters (the store's SQL
                 as it is written today); reads on an AUTOCOMMIT connection
  sa-core        SQLAlchemy Core table constructs (one definition for both engines); reads
                 AUTOCOMMIT
  sa-sqlite      (--sa-sqlite) sa-text over aiosqlite: what SQLite would cost if the store
                 went through SQLAlchemy for both engines; ~15 s more
  inbox/autobegin  (sa-*) the inbox read on SQLAlchemy's default connection, which wraps even a
                 read in BEGIN … ROLLBACK

Each variant also checks that it sees the same inboxes and claims as the others (exit 1 if not).

    pip install asyncpg 'sqlalchemy[asyncio]'     # not fleetbot's dependencies (yet)
    python bench/pg_driver.py [--url postgresql://…] [--passfile F] [-n 2000] [--sa-sqlite]

Without --url (or FLEETBOT_PG_URL) it starts a throwaway server with scripts/pg.sh and removes
it after. A measurement, not a target: it exits non-zero only on an error.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import asyncpg
    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
except ImportError as exc:  # not fleetbot's dependencies: say how to get them
    raise SystemExit(f"{exc}: pip install asyncpg 'sqlalchemy[asyncio]' first.") from exc

from core.store.db import Database, fetch_all, fetch_one
from core.store.sqlite import SqliteDatabase

ROOT = Path(__file__).resolve().parent.parent
COMPANIES = 10
AGENTS = 100  # 10 per company
SEED_ISSUES = 10_000
POOL = 10
CONCURRENCY = 50
BLOCK = 100  # ops a variant runs before the next one takes over
T0 = 1_790_000_000.0  # a fixed clock: every variant writes the same rows
SEED_MIX = [("todo", 45), ("in_progress", 10), ("done", 35), ("blocked", 5), ("backlog", 5)]

COLUMNS = (
    "id, company_id, number, title, body, status, assignee_id, created_by, model, attempts, "
    "max_attempts, lease_run_id, lease_until, not_before, reason, created_at, updated_at, "
    "priority, routine_id"
)
# The store's SQL, written once with :name parameters (as core.store.issues binds :now).
NUMBER = (
    "UPDATE companies SET next_issue_number = next_issue_number + 1 WHERE id = :company "
    "RETURNING prefix, next_issue_number - 1"
)
INSERT = (
    "INSERT INTO issues (id, company_id, number, title, body, status, assignee_id, created_by, "
    "model, max_attempts, created_at, updated_at, priority, routine_id) VALUES (:id, :company, "
    ":number, :title, :body, 'todo', :agent, :by, NULL, 3, :now, :now, :priority, NULL)"
)
GET = f"SELECT {COLUMNS} FROM issues WHERE id = :id"
INBOX = (
    f"SELECT {COLUMNS} FROM issues WHERE assignee_id = :agent AND status IN "
    "('in_progress', 'todo') ORDER BY priority, created_at, number LIMIT 50"
)
WORKABLE = (
    "status IN ('in_progress', 'todo') AND (lease_run_id IS NULL OR lease_until < :now) "
    "AND (not_before IS NULL OR not_before <= :now) AND NOT EXISTS (SELECT 1 FROM questions q "
    "WHERE q.issue_id = issues.id AND q.status = 'open')"
)
CLAIM = (
    "UPDATE issues SET status = 'in_progress', lease_run_id = :run, lease_until = :until, "
    f"attempts = attempts + 1, updated_at = :now WHERE id = :issue AND {WORKABLE} "
    "RETURNING id, attempts, lease_until"
)

# Schema migration 6's issues table in PostgreSQL's words: REAL (8 bytes in SQLite) is double
# precision (PostgreSQL's real has 4: an epoch would round to 128 s), INTEGER (64-bit in SQLite)
# is bigint. Agents and questions keep only what the hot paths touch.
PG_SCHEMA = """
CREATE TABLE companies (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL UNIQUE,
    chat TEXT,
    next_issue_number BIGINT NOT NULL DEFAULT 1
);
CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    company_id TEXT NOT NULL REFERENCES companies(id),
    name TEXT NOT NULL
);
CREATE TABLE issues (
    id TEXT PRIMARY KEY,
    company_id TEXT NOT NULL REFERENCES companies(id),
    number BIGINT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL CHECK (status IN
        ('backlog','todo','in_progress','in_review','done','blocked','cancelled')),
    assignee_id TEXT REFERENCES agents(id),
    created_by TEXT NOT NULL,
    model TEXT,
    attempts BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL,
    lease_run_id TEXT,
    lease_until DOUBLE PRECISION,
    not_before DOUBLE PRECISION,
    reason TEXT NOT NULL DEFAULT '',
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    priority BIGINT NOT NULL DEFAULT 2 CHECK (priority BETWEEN 0 AND 3),
    routine_id BIGINT,
    UNIQUE (company_id, number)
);
CREATE INDEX issues_inbox ON issues(assignee_id, status, priority, created_at);
CREATE INDEX issues_company_status ON issues(company_id, status, priority, created_at);
CREATE INDEX issues_routine ON issues(routine_id) WHERE routine_id IS NOT NULL;
CREATE TABLE questions (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    issue_id TEXT NOT NULL REFERENCES issues(id),
    status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open','answered','cancelled'))
);
CREATE INDEX questions_open ON questions(issue_id) WHERE status = 'open';
"""


def dollar(sql: str) -> tuple[str, list[str]]:
    """`:name` parameters as asyncpg's `$n`, and the names in order (a repeated name is one $n)."""
    names: list[str] = []

    def number(m: re.Match[str]) -> str:
        if m.group(1) not in names:
            names.append(m.group(1))
        return f"${names.index(m.group(1)) + 1}"

    return re.sub(r"(?<!:):([a-z_]+)", number, sql), names


@dataclass
class Data:
    """The seed and the operations, the same for every variant."""

    companies: list[tuple[str, str, str, int]]
    agents: list[tuple[str, str]]
    issues: list[tuple[Any, ...]]  # in COLUMNS order
    questions: list[str]  # issue ids with an open question
    inserts: list[dict[str, Any]]
    inboxes: list[str]
    claims: list[dict[str, Any]]


def make_data(n: int) -> Data:
    rng = random.Random(14)
    companies = [(f"co{c}", f"Company {c}", f"C{c}", 1) for c in range(COMPANIES)]
    agents = [(f"co{a % COMPANIES}-a{a}", f"co{a % COMPANIES}") for a in range(AGENTS)]
    statuses = [s for s, weight in SEED_MIX for _ in range(weight)]
    issues: list[tuple[Any, ...]] = []
    numbers = {c[0]: 1 for c in companies}
    for i in range(SEED_ISSUES):
        agent, company = agents[i % AGENTS]
        number = numbers[company]
        numbers[company] += 1
        at = T0 - SEED_ISSUES + i + rng.random()
        issues.append(
            (
                *(f"C{company[2:]}-{number}", company, number, f"issue {i}", ""),
                *(rng.choice(statuses), agent, "owner", None, 0, 3, None, None, None, ""),
                *(at, at, rng.randrange(4), None),
            )
        )
    companies = [(cid, name, prefix, numbers[cid]) for cid, name, prefix, _ in companies]
    todo = [row[0] for row in issues if row[5] == "todo"]
    rng.shuffle(todo)
    questions = todo[: len(todo) // 50]  # 2% of todo issues wait on an answer
    asked = set(questions)
    claims = [
        {"issue": issue, "run": f"run-{k}", "until": T0 + 3600, "now": T0 + k * 0.001}
        for k, issue in enumerate(i for i in todo if i not in asked)
    ][:n]
    inserts = []
    for k in range(n):
        agent, company = agents[rng.randrange(AGENTS)]
        inserts.append(
            {"company": company, "agent": agent, "title": f"new {k}", "body": "x" * 200}
            | {"by": "owner", "now": T0 + 10 + k * 0.001, "priority": rng.randrange(4)}
        )
    inboxes = [agents[rng.randrange(AGENTS)][0] for _ in range(n)]
    return Data(companies, agents, issues, questions, inserts, inboxes, claims)


@dataclass
class Variant:
    """One way to run the hot paths, on its own copy of the seed."""

    name: str
    file: Callable[[dict[str, Any]], Awaitable[Any]]
    inbox: Callable[[str], Awaitable[Any]]
    claim: Callable[[dict[str, Any]], Awaitable[Any]]
    autobegin: Callable[[str], Awaitable[Any]] | None = None  # SQLAlchemy's default read
    conc_share: int = 2  # the concurrent run reads N / conc_share times
    times: dict[str, list[int]] = field(default_factory=dict)  # op -> ns per op
    seen: dict[str, list[Any]] = field(default_factory=dict)  # op -> what each op returned
    rate: float = 0.0  # reads/s of the concurrent run

    @property
    def digest(self) -> str:
        """What the variant saw: the same for every variant, or one of them is wrong."""
        h = hashlib.sha256()
        for rows in self.seen["inbox"]:
            h.update(repr([(r[0], r[12], r[15]) for r in rows]).encode())
        h.update(repr([(r[0], r[1]) for r in self.seen["claim"]]).encode())
        h.update(repr([(r[0], r[2]) for r in self.seen["insert"]]).encode())
        return h.hexdigest()[:12]

    async def concurrent(self, agents: list[str]) -> None:
        times = self.times.setdefault("conc", [])

        async def worker(share: list[str]) -> None:
            for agent in share:
                t = time.perf_counter_ns()
                await self.inbox(agent)
                times.append(time.perf_counter_ns() - t)

        t = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            for k in range(CONCURRENCY):
                tg.create_task(worker(agents[k::CONCURRENCY]))
        self.rate = len(agents) / (time.perf_counter() - t)


async def interleaved(variants: list[Variant], op: str, args: list[Any]) -> None:
    """Every variant runs block k of the ops before any runs block k + 1, starting with a
    different one each time: the machine's load drifts over a run (other jobs share its two
    cores), and this spreads the drift evenly. Blocks, not single ops, so each variant's code
    and server backend stay warm in the CPU's caches as they would in a real process."""
    for start in range(0, len(args), BLOCK):
        block = args[start : start + BLOCK]
        for n in range(len(variants)):
            v = variants[(start // BLOCK + n) % len(variants)]
            call = (
                v.autobegin if op == "inbox/autobegin" else getattr(v, op.replace("insert", "file"))
            )
            assert call is not None
            times, seen = v.times.setdefault(op, []), v.seen.setdefault(op, [])
            for arg in block:
                t = time.perf_counter_ns()
                seen.append(await call(arg))
                times.append(time.perf_counter_ns() - t)


async def run(variants: list[Variant], data: Data) -> None:
    for v in variants:
        for agent in data.inboxes[:50]:  # prepared statements, caches, pools warm
            await v.inbox(agent)
    await interleaved(variants, "insert", data.inserts)
    await interleaved(variants, "inbox", data.inboxes)
    await interleaved(variants, "claim", data.claims)
    for v in variants:
        if None in v.seen["claim"]:
            raise RuntimeError(f"{v.name}: a claim found nothing to claim")
        v.seen.pop("inbox/autobegin", None)
    # N/4 of these: a side question, and the wall time stays under a minute.
    sa_only = [v for v in variants if v.autobegin is not None]
    await interleaved(sa_only, "inbox/autobegin", data.inboxes[: len(data.inboxes) // 4])
    for v in variants:
        await v.concurrent(data.inboxes[: len(data.inboxes) // v.conc_share])


def new_number(row: Any, params: dict[str, Any]) -> dict[str, Any]:
    return params | {"id": f"{row[0]}-{row[1]}", "number": row[1]}


async def seed_sqlite(data: Data, path: Path) -> Database:
    """Today's store on a new file (its migrations), with the seed."""
    db = await SqliteDatabase(path).open()
    async with db.write() as conn:
        await conn.executemany(
            "INSERT INTO companies (id, name, prefix, next_issue_number) VALUES (?, ?, ?, ?)",
            data.companies,
        )
        await conn.executemany(
            "INSERT INTO agents (id, company_id, name, role, status_changed_at, model, "
            "heartbeat_seconds, next_heartbeat_at, max_turns, run_timeout_seconds) "
            "VALUES (?, ?, ?, 'dev', 0, 'm', 14400, 0, 10, 600)",
            [(a, c, a) for a, c in data.agents],
        )
        marks = ", ".join("?" for _ in COLUMNS.split(","))
        await conn.executemany(f"INSERT INTO issues ({COLUMNS}) VALUES ({marks})", data.issues)
        await conn.executemany(
            "INSERT INTO questions (company_id, issue_id, agent_id, kind, text, asked_at) "
            "SELECT company_id, id, assignee_id, 'question', '?', 0 FROM issues WHERE id = ?",
            [(i,) for i in data.questions],
        )
    return db


@asynccontextmanager
async def sqlite_variant(data: Data, path: Path) -> AsyncIterator[Variant]:
    """Today's store: Database's writer (BEGIN IMMEDIATE under its lock) and its reader."""
    async with await seed_sqlite(data, path) as db:

        async def file(p: dict[str, Any]) -> Any:
            async with db.write() as conn:
                row = await fetch_one(conn, NUMBER, p)
                p = new_number(row, p)
                await conn.execute(INSERT, p)
                return await fetch_one(conn, GET, p)

        async def inbox(agent: str) -> Any:
            # As core.store.issues.inbox reads (Database.fetchall takes positional args only).
            return await fetch_all(db.reader, INBOX, {"agent": agent})

        async def claim(p: dict[str, Any]) -> Any:
            async with db.write() as conn:
                return await fetch_one(conn, CLAIM, p)

        yield Variant("sqlite", file, inbox, claim)


@asynccontextmanager
async def pg_conn(
    url: str, passfile: str | None, schema: str = "public"
) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(url, passfile=passfile, server_settings={"search_path": schema})
    try:
        yield conn
    finally:
        await conn.close()


async def seed_pg(url: str, passfile: str | None, schema: str, data: Data) -> None:
    """A schema of its own for one variant, with the seed."""
    async with pg_conn(url, passfile) as conn:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")
    async with pg_conn(url, passfile, schema) as conn:
        await conn.execute(PG_SCHEMA)
        columns = ["id", "name", "prefix", "next_issue_number"]
        await conn.copy_records_to_table("companies", records=data.companies, columns=columns)
        agents = [(a, c, a) for a, c in data.agents]
        columns = ["id", "company_id", "name"]
        await conn.copy_records_to_table("agents", records=agents, columns=columns)
        columns = [c.strip() for c in COLUMNS.split(",")]
        await conn.copy_records_to_table("issues", records=data.issues, columns=columns)
        questions = [(i,) for i in data.questions]
        await conn.copy_records_to_table("questions", records=questions, columns=["issue_id"])
        await conn.execute("VACUUM ANALYZE")


@asynccontextmanager
async def asyncpg_variant(data: Data, url: str, passfile: str | None) -> AsyncIterator[Variant]:
    """Raw asyncpg: a pool, $n placeholders, statements prepared by asyncpg's cache."""
    await seed_pg(url, passfile, "v_asyncpg", data)
    number, number_args = dollar(NUMBER)
    insert, insert_args = dollar(INSERT)
    get, get_args = dollar(GET)
    read, read_args = dollar(INBOX)
    lease, lease_args = dollar(CLAIM)
    assert read_args == ["agent"]
    pool = await asyncpg.create_pool(
        url,
        passfile=passfile,
        min_size=POOL,
        max_size=POOL,
        server_settings={"search_path": "v_asyncpg"},
    )
    try:

        async def file(p: dict[str, Any]) -> Any:
            async with pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(number, *(p[a] for a in number_args))
                p = new_number(row, p)
                await conn.execute(insert, *(p[a] for a in insert_args))
                return await conn.fetchrow(get, *(p[a] for a in get_args))

        async def inbox(agent: str) -> Any:
            return await pool.fetch(read, agent)

        async def claim(p: dict[str, Any]) -> Any:
            async with pool.acquire() as conn, conn.transaction():
                return await conn.fetchrow(lease, *(p[a] for a in lease_args))

        yield Variant("asyncpg", file, inbox, claim)
    finally:
        await pool.close()


def sa_tables() -> tuple[sa.Table, sa.Table, sa.Table]:
    meta = sa.MetaData()
    companies = sa.Table(
        "companies",
        meta,
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("prefix", sa.Text),
        sa.Column("next_issue_number", sa.BigInteger),
    )
    issues = sa.Table(
        "issues",
        meta,
        *(sa.Column(c.strip()) for c in COLUMNS.split(",")),
    )
    questions = sa.Table("questions", meta, sa.Column("issue_id"), sa.Column("status"))
    return companies, issues, questions


def sa_constructs() -> dict[str, Any]:
    """The hot paths as SQLAlchemy Core constructs (what one definition for both engines is)."""
    companies, issues, questions = sa_tables()
    c, i, q, bp = companies.c, issues.c, questions.c, sa.bindparam
    inbox_where = (i.assignee_id == bp("agent"), i.status.in_(["in_progress", "todo"]))
    open_question = sa.exists().where(q.issue_id == i.id, q.status == "open")
    now: sa.BindParameter[float] = bp("now", type_=sa.Double)
    return {
        "number": sa.update(companies)
        .where(c.id == bp("company"))
        .values(next_issue_number=c.next_issue_number + 1)
        .returning(c.prefix, c.next_issue_number - 1),
        "insert": sa.insert(issues).values(
            id=bp("id"),
            company_id=bp("company"),
            number=bp("number"),
            title=bp("title"),
            body=bp("body"),
            status="todo",
            assignee_id=bp("agent"),
            created_by=bp("by"),
            model=None,
            max_attempts=3,
            created_at=now,
            updated_at=now,
            priority=bp("priority"),
            routine_id=None,
        ),
        "get": sa.select(issues).where(i.id == bp("id")),
        "inbox": sa.select(issues)
        .where(*inbox_where)
        .order_by(i.priority, i.created_at, i.number)
        .limit(50),
        "claim": sa.update(issues)
        .where(
            i.id == bp("issue"),
            i.status.in_(["in_progress", "todo"]),
            sa.or_(i.lease_run_id.is_(None), i.lease_until < now),
            sa.or_(i.not_before.is_(None), i.not_before <= now),
            ~open_question,
        )
        .values(
            status="in_progress",
            lease_run_id=bp("run"),
            lease_until=bp("until"),
            attempts=i.attempts + 1,
            updated_at=now,
        )
        .returning(i.id, i.attempts, i.lease_until),
    }


def sa_texts() -> dict[str, Any]:
    return {
        "number": sa.text(NUMBER),
        "insert": sa.text(INSERT),
        "get": sa.text(GET),
        "inbox": sa.text(INBOX),
        "claim": sa.text(CLAIM),
    }


def sa_variant(name: str, engine: AsyncEngine, sql: dict[str, Any], conc_share: int) -> Variant:
    """The hot paths through SQLAlchemy: writes in engine.begin(), reads AUTOCOMMIT."""
    reader = engine.execution_options(isolation_level="AUTOCOMMIT")

    async def file(p: dict[str, Any]) -> Any:
        async with engine.begin() as conn:
            row = (await conn.execute(sql["number"], {"company": p["company"]})).one()
            p = new_number(row, p)
            await conn.execute(sql["insert"], p)
            return (await conn.execute(sql["get"], {"id": p["id"]})).one()

    async def inbox(agent: str) -> Any:
        async with reader.connect() as conn:
            return (await conn.execute(sql["inbox"], {"agent": agent})).all()

    async def autobegin(agent: str) -> Any:
        async with engine.connect() as conn:
            return (await conn.execute(sql["inbox"], {"agent": agent})).all()

    async def claim(p: dict[str, Any]) -> Any:
        async with engine.begin() as conn:
            return (await conn.execute(sql["claim"], p)).one_or_none()

    return Variant(name, file, inbox, claim, autobegin, conc_share)


@asynccontextmanager
async def sa_pg_variant(
    name: str, data: Data, url: str, passfile: str | None
) -> AsyncIterator[Variant]:
    schema = "v_" + name.replace("-", "_")
    await seed_pg(url, passfile, schema, data)
    connect_args: dict[str, Any] = {"server_settings": {"search_path": schema}}
    if passfile:
        connect_args["passfile"] = passfile
    engine = create_async_engine(
        url.replace("postgresql://", "postgresql+asyncpg://", 1),
        connect_args=connect_args,
        pool_size=POOL,
        max_overflow=0,
    )
    try:
        sql = sa_constructs() if name == "sa-core" else sa_texts()
        yield sa_variant(name, engine, sql, 2)
    finally:
        await engine.dispose()


@asynccontextmanager
async def sa_sqlite_variant(data: Data, path: Path) -> AsyncIterator[Variant]:
    """sa-text on a file as today's store leaves it, with the store's PRAGMAs."""
    await (await seed_sqlite(data, path)).aclose()
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}", pool_size=POOL, max_overflow=0)

    @sa.event.listens_for(engine.sync_engine, "connect")
    def pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        for pragma in ("foreign_keys = ON", "busy_timeout = 5000", "synchronous = NORMAL"):
            cur.execute(f"PRAGMA {pragma}")
        cur.close()

    try:
        # Its concurrent run reads N/4 times: at ~400 reads/s it would take most of the minute.
        yield sa_variant("sa-sqlite", engine, sa_texts(), 4)
    finally:
        await engine.dispose()


def pct(times: list[int], q: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000


def report(results: list[Variant], n: int) -> None:
    ops = ["insert", "inbox", "claim", "conc", "inbox/autobegin"]
    width = 17
    print(
        f"\nmedian / p99 in µs, N={n} per op, interleaved (conc: {CONCURRENCY} coroutines, "
        f"pool {POOL}, N/2 reads; inbox/autobegin: N/4"
        + (", sa-sqlite's conc: N/4)" if any(r.name == "sa-sqlite" for r in results) else ")")
    )
    print(f"{'op':<16}" + "".join(f"{r.name:>{width}}" for r in results))
    for op in ops:
        cells = []
        for r in results:
            t = r.times.get(op)
            cells.append(f"{pct(t, 0.5):.0f} / {pct(t, 0.99):.0f}" if t else "-")
        print(f"{op:<16}" + "".join(f"{c:>{width}}" for c in cells))
    print(f"{'conc reads/s':<16}" + "".join(f"{r.rate:>{width},.0f}" for r in results))
    by = {r.name: r for r in results}
    base = by.get("asyncpg")
    if base:
        print("\nratio to asyncpg (median, p99)")
        for name in ("sa-text", "sa-core", "sqlite"):
            if name not in by:
                continue
            cells = []
            for op in ops[:4]:
                a, b = base.times[op], by[name].times[op]
                cells.append(
                    f"{op} {pct(b, 0.5) / pct(a, 0.5):.2f}x/{pct(b, 0.99) / pct(a, 0.99):.2f}x"
                )
            print(f"  {name:<10} " + "  ".join(cells))
    if "sa-sqlite" in by and "sqlite" in by:
        cells = []
        for op in ops[:4]:
            a, b = by["sqlite"].times[op], by["sa-sqlite"].times[op]
            cells.append(f"{op} {pct(b, 0.5) / pct(a, 0.5):.2f}x")
        print("  sa-sqlite/sqlite " + "  ".join(cells))


@contextmanager
def server(url: str | None, passfile: str | None) -> Iterator[tuple[str, str | None]]:
    """The server to measure: the one given, or a throwaway one from scripts/pg.sh."""
    if url:
        yield url, passfile
        return
    folder = tempfile.mkdtemp(prefix="fleetbot-pg-")
    pg = ["bash", str(ROOT / "scripts" / "pg.sh")]
    t = time.perf_counter()
    try:
        started = subprocess.run([*pg, "start", folder], check=True, capture_output=True, text=True)
        print(f"scripts/pg.sh start: {time.perf_counter() - t:.2f} s; {started.stderr.strip()}")
        yield started.stdout.strip(), f"{folder}/pgpass"
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"scripts/pg.sh start failed:\n{exc.stderr}") from exc
    finally:
        subprocess.run([*pg, "stop", folder], check=False)


async def measure(data: Data, url: str, passfile: str | None, sa_sqlite: bool) -> list[Variant]:
    async with pg_conn(url, passfile) as conn:
        version = await conn.fetchval("SHOW server_version")
    print(f"PostgreSQL {version}, asyncpg {asyncpg.__version__}, SQLAlchemy {sa.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        async with AsyncExitStack() as stack:
            t = time.perf_counter()
            variants = [
                await stack.enter_async_context(sqlite_variant(data, Path(tmp) / "store.db")),
                await stack.enter_async_context(asyncpg_variant(data, url, passfile)),
                await stack.enter_async_context(sa_pg_variant("sa-text", data, url, passfile)),
                await stack.enter_async_context(sa_pg_variant("sa-core", data, url, passfile)),
            ]
            if sa_sqlite:
                path = Path(tmp) / "sa.db"
                variants.append(await stack.enter_async_context(sa_sqlite_variant(data, path)))
            print(f"seeded {len(variants)} copies in {time.perf_counter() - t:.1f} s")
            t = time.perf_counter()
            await run(variants, data)
            print(f"measured in {time.perf_counter() - t:.1f} s")
    return variants


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default=os.environ.get("FLEETBOT_PG_URL"))
    ap.add_argument("--passfile", default=os.environ.get("PGPASSFILE"))
    ap.add_argument("-n", type=int, default=2000, help="operations of each kind")
    ap.add_argument("--sa-sqlite", action="store_true", help="also SQLAlchemy over aiosqlite")
    args = ap.parse_args()
    data = make_data(args.n)
    if len(data.claims) < args.n:
        raise SystemExit(f"-n {args.n}: the seed has only {len(data.claims)} claimable issues")
    started = time.perf_counter()
    with server(args.url, args.passfile) as (url, passfile):
        results = asyncio.run(measure(data, url, passfile, args.sa_sqlite))
    report(results, args.n)
    digests = {r.name: r.digest for r in results}
    same = len(set(digests.values())) == 1
    print(f"\nsame rows seen by every variant: {same} {digests}")
    print(f"wall {time.perf_counter() - started:.1f} s")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
