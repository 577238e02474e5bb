"""The leader's lease, the replicas' signs of life, and the fence on the leader's writes.

Time here is the database's clock, never a replica's: two machines whose clocks disagree still
agree on who leads. The lease row's `epoch` grows every time the lease changes hands (or is taken
again after it lapsed); a write made as the leader carries the (holder, epoch) it was started
under in FENCE, and `check_fence` refuses it inside its own transaction unless that lease is still
current — a leader paused past its lease (a long GC, a frozen VM, a network split) cannot act on
what its successor now owns. Every write is serialised (core.store.db), so the check and a
takeover cannot interleave.
"""

from __future__ import annotations

from contextvars import Context, ContextVar, copy_context
from dataclasses import dataclass

from core.errors import LeadershipLost
from core.store.conn import Conn
from core.store.db import fetch_all, fetch_one

NAME = "leader"

# The database's clock, in epoch seconds, per engine (the only dialect difference here).
_NOW = {
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
    "postgresql": "extract(epoch from clock_timestamp())::double precision",
}


@dataclass(frozen=True, slots=True)
class Fence:
    holder: str
    epoch: int


# Set around the leader's singleton work (core.cluster.leadership); None elsewhere.
FENCE: ContextVar[Fence | None] = ContextVar("fleetbot_fence", default=None)


def unfenced() -> Context:
    """The current context without a fence: for tasks a fenced job starts that are not the
    leader's work (a run's dispatch)."""
    context = copy_context()
    context.run(FENCE.set, None)
    return context


@dataclass(frozen=True, slots=True)
class Replica:
    id: str
    host: str
    pid: int
    started_at: float
    seen_at: float
    leader: bool


def now_sql(engine: str) -> str:
    return _NOW[engine]


async def claim(
    conn: Conn, engine: str, holder: str, ttl: float, *, sole: bool = False
) -> int | None:
    """Take the lease if it is free or lapsed, or renew it if `holder` has it: its epoch, or
    None if another holder's lease is current. The epoch grows whenever the lease was not
    `holder`'s current one, so a lease taken again after it lapsed fences the old writes.
    `sole`: the caller holds the database alone (SQLite's one process per file), so a lease
    another holder left is a dead process's, taken over at once."""
    now = _NOW[engine]
    anyway = " OR 1 = 1" if sole else ""
    row = await fetch_one(
        conn,
        "INSERT INTO leader_lease AS l (name, holder, epoch, expires_at)"
        f" VALUES (?, ?, 1, {now} + ?)"
        " ON CONFLICT (name) DO UPDATE SET"
        f" epoch = CASE WHEN l.holder = excluded.holder AND l.expires_at >= {now}"
        " THEN l.epoch ELSE l.epoch + 1 END,"
        " holder = excluded.holder, expires_at = excluded.expires_at"
        f" WHERE l.holder = excluded.holder OR l.expires_at < {now}{anyway}"
        " RETURNING epoch",
        (NAME, holder, ttl),
    )
    return None if row is None else int(row[0])


async def release(conn: Conn, holder: str, epoch: int) -> None:
    """Give the lease up now (a clean stop): a standby takes it at its next try."""
    await conn.execute(
        "UPDATE leader_lease SET expires_at = 0 WHERE name = ? AND holder = ? AND epoch = ?",
        (NAME, holder, epoch),
    )


async def check_fence(conn: Conn, engine: str) -> None:
    """Inside a write transaction: LeadershipLost if it runs under a fence that is no longer
    the current lease."""
    fence = FENCE.get()
    if fence is None:
        return
    row = await fetch_one(
        conn,
        "SELECT 1 FROM leader_lease WHERE name = ? AND holder = ? AND epoch = ?"
        f" AND expires_at >= {_NOW[engine]}",
        (NAME, fence.holder, fence.epoch),
    )
    if row is None:
        raise LeadershipLost(
            f"this replica's lease (epoch {fence.epoch}) is no longer current: another "
            "replica leads; the leader's work here stops."
        )


async def seen(
    conn: Conn, engine: str, replica: str, host: str, pid: int, started_at: float
) -> None:
    """Record that `replica` is alive now (on the database's clock)."""
    now = _NOW[engine]
    await conn.execute(
        "INSERT INTO replicas (id, host, pid, started_at, seen_at)"
        f" VALUES (?, ?, ?, ?, {now})"
        f" ON CONFLICT (id) DO UPDATE SET seen_at = {now}",
        (replica, host, pid, started_at),
    )


async def gone(conn: Conn, replica: str) -> None:
    """A clean stop: the replica is no longer listed, so the leader interrupts the runs its
    turns were running at its next reaping (or the next `fleetbot run`, if it was the last)."""
    await conn.execute("DELETE FROM replicas WHERE id = ?", (replica,))


async def live(conn: Conn, engine: str, within: float) -> list[Replica]:
    """Replicas seen in the last `within` seconds, the leader first, then by age."""
    now = _NOW[engine]
    rows = await fetch_all(
        conn,
        "SELECT r.id, r.host, r.pid, r.started_at, r.seen_at,"
        f" CASE WHEN l.holder IS NULL THEN 0 ELSE 1 END"
        " FROM replicas r LEFT JOIN leader_lease l"
        f" ON l.name = ? AND l.holder = r.id AND l.expires_at >= {now}"
        f" WHERE r.seen_at >= {now} - ?"
        " ORDER BY 6 DESC, r.started_at, r.id",
        (NAME, within),
    )
    return [Replica(r[0], r[1], int(r[2]), r[3], r[4], bool(r[5])) for r in rows]


async def forget_quiet(conn: Conn, engine: str, older_than: float) -> int:
    """Drop replicas not seen for `older_than` seconds (killed ones never say goodbye)."""
    cur = await conn.execute(
        f"DELETE FROM replicas WHERE seen_at < {_NOW[engine]} - ?", (older_than,)
    )
    return cur.rowcount
