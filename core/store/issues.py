"""Issues in the store, and the one rule of when an issue is workable.

`WORKABLE` is the only definition of "an agent may start on this issue now": its status is one
of core.models.WORKABLE_ISSUE_STATUSES (todo, in_progress), no live lease holds it (none, or its
`lease_until` has passed), its retry backoff (`not_before`) is over, and no question about it
waits on an answer (core.store.questions): an issue waiting on the owner wakes nobody. Every
query that dispatches, wakes for or re-queues work goes through it: the heartbeat's pick
(`next_workable`), the dispatch compare-and-set (`lease`), the scheduler's "is there work now"
(`has_workable`), recovery's retry pick and re-queue (`retry_candidates`, `end_backoff`) and the
loop guard's block (`block_loop`). `IN_INBOX` is its first part alone: what an inbox shows.

The rule binds `:now`, so the statements that use it take named parameters. Every statement
runs on the connection it is given: the writer inside `Database.write()` (then it is part of the
caller's transaction) or the reader.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.models import WORKABLE_ISSUE_STATUSES, Comment, Issue, IssueStatus, Priority
from core.store import rows
from core.store.conn import Conn
from core.store.db import fetch_all, fetch_one, inserted_id

_STATUSES = ", ".join(f"'{s.value}'" for s in sorted(WORKABLE_ISSUE_STATUSES))


def in_inbox(alias: str = "") -> str:
    """SQL: the issue is in its agent's inbox (todo or in_progress)."""
    p = f"{alias}." if alias else ""
    return f"{p}status IN ({_STATUSES})"


def workable(alias: str = "") -> str:
    """SQL: an agent may start on the issue now (see the module docstring); binds `:now`."""
    p = f"{alias}." if alias else ""
    # Qualified even without an alias: inside the subquery a bare `id` would be the question's.
    me = f"{alias or 'issues'}.id"
    return (
        f"{in_inbox(alias)} AND ({p}lease_run_id IS NULL OR {p}lease_until < :now) "
        f"AND ({p}not_before IS NULL OR {p}not_before <= :now) "
        "AND NOT EXISTS (SELECT 1 FROM questions q WHERE q.issue_id = "
        f"{me} AND q.status = 'open')"
    )


IN_INBOX = in_inbox()
WORKABLE = workable()

_SELECT = f"SELECT {rows.ISSUE_COLUMNS} FROM issues"
# Inboxes are worked by priority (0 critical … 3 low), then oldest first; backlogs are promoted
# in the same order.
_OLDEST_FIRST = "ORDER BY priority, created_at, number"
URGENT = Priority.CRITICAL.rank  # worked outside active hours too


async def get(conn: Conn, issue_id: str) -> Issue | None:
    row = await fetch_one(conn, f"{_SELECT} WHERE id = ?", (issue_id,))
    return None if row is None else rows.issue(row)


async def find(
    conn: Conn,
    *,
    company_id: str | None = None,
    assignee_id: str | None = None,
    statuses: Sequence[IssueStatus] = (),
    limit: int = 50,
) -> list[Issue]:
    """Issues matching every given filter, newest first."""
    where: list[str] = []
    args: list[Any] = []
    if company_id:
        where.append("company_id = ?")
        args.append(company_id)
    if assignee_id:
        where.append("assignee_id = ?")
        args.append(assignee_id)
    if statuses:
        where.append(f"status IN ({','.join('?' for _ in statuses)})")
        args.extend(s.value for s in statuses)
    sql = _SELECT
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created_at DESC, number DESC LIMIT ?"
    return [rows.issue(r) for r in await fetch_all(conn, sql, (*args, limit))]


async def inbox(conn: Conn, agent_id: str, limit: int = 100) -> list[Issue]:
    found = await fetch_all(
        conn,
        f"{_SELECT} WHERE assignee_id = :agent AND {IN_INBOX} {_OLDEST_FIRST} LIMIT :limit",
        {"agent": agent_id, "limit": limit},
    )
    return [rows.issue(r) for r in found]


async def next_workable(
    conn: Conn, agent_id: str, now: float, *, urgent_only: bool = False
) -> Issue | None:
    """The agent's first workable issue by priority, then age (what its heartbeat dispatches);
    `urgent_only`: critical ones alone (outside the agent's active hours)."""
    urgent = f"AND priority <= {URGENT} " if urgent_only else ""
    row = await fetch_one(
        conn,
        f"{_SELECT} WHERE assignee_id = :agent AND {WORKABLE} {urgent}{_OLDEST_FIRST} LIMIT 1",
        {"agent": agent_id, "now": now},
    )
    return None if row is None else rows.issue(row)


async def workable_one(conn: Conn, issue_id: str, agent_id: str, now: float) -> Issue | None:
    """The issue, if it is `agent_id`'s and workable now (a wake that names its issue)."""
    row = await fetch_one(
        conn,
        f"{_SELECT} WHERE id = :issue AND assignee_id = :agent AND {WORKABLE}",
        {"issue": issue_id, "agent": agent_id, "now": now},
    )
    return None if row is None else rows.issue(row)


async def has_workable(conn: Conn, agent_id: str, now: float) -> bool:
    row = await fetch_one(
        conn,
        f"SELECT 1 FROM issues WHERE assignee_id = :agent AND {WORKABLE} LIMIT 1",
        {"agent": agent_id, "now": now},
    )
    return row is not None


async def has_inbox(conn: Conn, agent_id: str) -> bool:
    """Does the agent's inbox hold anything (leased, backing off or waiting on a question too)?"""
    row = await fetch_one(
        conn,
        f"SELECT 1 FROM issues WHERE assignee_id = :agent AND {IN_INBOX} LIMIT 1",
        {"agent": agent_id},
    )
    return row is not None


async def backlog(
    conn: Conn,
    *,
    company_id: str | None = None,
    assignee_id: str | None = None,
    limit: int = 50,
) -> list[Issue]:
    """Backlog issues in promotion order (priority, then age)."""
    where, args = ["status = 'backlog'"], dict[str, Any]()
    if company_id:
        where.append("company_id = :company")
        args["company"] = company_id
    if assignee_id:
        where.append("assignee_id = :agent")
        args["agent"] = assignee_id
    found = await fetch_all(
        conn,
        f"{_SELECT} WHERE {' AND '.join(where)} {_OLDEST_FIRST} LIMIT :limit",
        {**args, "limit": limit},
    )
    return [rows.issue(r) for r in found]


async def backlog_count(conn: Conn, company_id: str) -> int:
    """Issues in the company's backlog (an index range on issues_company_status)."""
    row = await fetch_one(
        conn,
        "SELECT count(*) FROM issues WHERE company_id = ? AND status = 'backlog'",
        (company_id,),
    )
    return int(row[0]) if row else 0


async def promote(conn: Conn, issue_id: str, now: float) -> bool:
    """backlog -> todo, if it is still in the backlog (compare-and-set)."""
    cur = await conn.execute(
        "UPDATE issues SET status = 'todo', reason = 'promoted from the backlog', updated_at = ? "
        "WHERE id = ? AND status = 'backlog'",
        (now, issue_id),
    )
    return cur.rowcount == 1


async def set_priority(conn: Conn, issue_id: str, priority: Priority, now: float) -> None:
    await conn.execute(
        "UPDATE issues SET priority = ?, updated_at = ? WHERE id = ?",
        (priority.rank, now, issue_id),
    )


async def open_by(conn: Conn, company_id: str, created_by: str) -> Issue | None:
    """The newest open issue of the company filed by `created_by` (e.g. the planner)."""
    row = await fetch_one(
        conn,
        f"{_SELECT} WHERE company_id = ? AND created_by = ? AND status NOT IN "
        "('done', 'cancelled') ORDER BY created_at DESC LIMIT 1",
        (company_id, created_by),
    )
    return None if row is None else rows.issue(row)


async def last_filed_by(conn: Conn, company_id: str, created_by: str) -> float | None:
    """When `created_by` last filed an issue in the company (the planner's period)."""
    row = await fetch_one(
        conn,
        "SELECT max(created_at) FROM issues WHERE company_id = ? AND created_by = ?",
        (company_id, created_by),
    )
    return None if row is None else row[0]


async def open_of_routine(conn: Conn, routine_id: int) -> Issue | None:
    """The routine's instance still open, if any (at most one: core.queues.routines)."""
    row = await fetch_one(
        conn,
        f"{_SELECT} WHERE routine_id = ? AND status NOT IN ('done', 'cancelled') "
        "ORDER BY created_at DESC LIMIT 1",
        (routine_id,),
    )
    return None if row is None else rows.issue(row)


async def recently_done(conn: Conn, company_id: str, limit: int) -> list[Issue]:
    found = await fetch_all(
        conn,
        f"{_SELECT} WHERE company_id = ? AND status = 'done' ORDER BY updated_at DESC LIMIT ?",
        (company_id, limit),
    )
    return [rows.issue(r) for r in found]


async def company_has_work(conn: Conn, company_id: str) -> bool:
    """Does any of the company's inboxes hold an issue (leased or waiting out a backoff too)?"""
    row = await fetch_one(
        conn,
        f"SELECT 1 FROM issues WHERE company_id = :company AND {IN_INBOX} LIMIT 1",
        {"company": company_id},
    )
    return row is not None


async def blocked(conn: Conn) -> list[Issue]:
    """Every blocked issue, longest blocked first."""
    found = await fetch_all(conn, f"{_SELECT} WHERE status = 'blocked' ORDER BY updated_at")
    return [rows.issue(r) for r in found]


async def comments(conn: Conn, issue_id: str) -> list[Comment]:
    found = await fetch_all(
        conn,
        "SELECT id, issue_id, author, body, created_at FROM comments WHERE issue_id = ? "
        "ORDER BY id",
        (issue_id,),
    )
    return [rows.comment(r) for r in found]


async def file(
    conn: Conn,
    *,
    company_id: str,
    assignee_id: str,
    title: str,
    body: str,
    created_by: str,
    model: str | None,
    max_attempts: int,
    now: float,
    priority: Priority = Priority.MEDIUM,
    status: IssueStatus = IssueStatus.TODO,
    routine_id: int | None = None,
) -> Issue:
    """A new `todo` (or `backlog`) issue, numbered by its company (ALI-12)."""
    row = await fetch_one(
        conn,
        "UPDATE companies SET next_issue_number = next_issue_number + 1 WHERE id = ? "
        "RETURNING prefix, next_issue_number - 1",
        (company_id,),
    )
    assert row is not None
    issue_id = f"{row[0]}-{row[1]}"
    await conn.execute(
        "INSERT INTO issues (id, company_id, number, title, body, status, assignee_id, "
        "created_by, model, max_attempts, created_at, updated_at, priority, routine_id) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            *(issue_id, company_id, row[1], title, body, status.value, assignee_id),
            *(created_by, model, max_attempts, now, now, priority.rank, routine_id),
        ),
    )
    issue = await get(conn, issue_id)
    assert issue is not None
    return issue


async def assign(conn: Conn, issue_id: str, agent_id: str, now: float) -> None:
    """A fresh assignee gets a fresh attempt budget and no backoff."""
    await conn.execute(
        "UPDATE issues SET assignee_id = ?, attempts = 0, not_before = NULL, updated_at = ? "
        "WHERE id = ?",
        (agent_id, now, issue_id),
    )


async def add_comment(conn: Conn, issue_id: str, author: str, body: str, now: float) -> int:
    comment_id = await inserted_id(
        conn,
        "INSERT INTO comments (issue_id, author, body, created_at) VALUES (?, ?, ?, ?) "
        "RETURNING id",
        (issue_id, author, body, now),
    )
    await conn.execute("UPDATE issues SET updated_at = ? WHERE id = ?", (now, issue_id))
    return comment_id


async def move(
    conn: Conn,
    issue_id: str,
    status: IssueStatus,
    reason: str,
    now: float,
    *,
    retry: bool,
) -> None:
    """Set the status (the caller checked the graph); a `retry` resets budget and backoff."""
    await conn.execute(
        "UPDATE issues SET status = ?, reason = ?, updated_at = ?, "
        "attempts = CASE WHEN ? THEN 0 ELSE attempts END, "
        "not_before = CASE WHEN ? THEN NULL ELSE not_before END WHERE id = ?",
        (status.value, reason, now, retry, retry, issue_id),
    )


async def lease(conn: Conn, issue_id: str, run_id: str, until: float, now: float) -> bool:
    """Take the issue for `run_id` and count an attempt, if it is workable now: the
    compare-and-set that makes a stale read unable to dispatch finished work."""
    cur = await conn.execute(
        "UPDATE issues SET status = 'in_progress', lease_run_id = :run, lease_until = :until, "
        f"attempts = attempts + 1, updated_at = :now WHERE id = :issue AND {WORKABLE}",
        {"run": run_id, "until": until, "now": now, "issue": issue_id},
    )
    return cur.rowcount == 1


async def claim(
    conn: Conn,
    issue_id: str,
    run_id: str,
    until: float,
    agent_id: str,
    status: IssueStatus,
    now: float,
) -> None:
    """Hand the issue to `run_id` of `agent_id` (core.runs.RunBook.claim checked that it may)."""
    await conn.execute(
        "UPDATE issues SET lease_run_id = ?, lease_until = ?, assignee_id = ?, status = ?, "
        "updated_at = ? WHERE id = ?",
        (run_id, until, agent_id, status.value, now, issue_id),
    )


async def settle(
    conn: Conn,
    issue_id: str,
    run_id: str,
    status: IssueStatus,
    reason: str,
    allowed: Sequence[IssueStatus],
    now: float,
) -> None:
    """The run holding the lease ends: move the issue to `status` if it is in one of
    `allowed`, and drop the lease either way."""
    marks = ", ".join("?" for _ in allowed)
    await conn.execute(
        "UPDATE issues SET status = ?, reason = ?, lease_run_id = NULL, lease_until = NULL, "
        f"updated_at = ? WHERE id = ? AND lease_run_id = ? AND status IN ({marks})",
        (status.value, reason, now, issue_id, run_id, *(s.value for s in allowed)),
    )
    await conn.execute(
        "UPDATE issues SET lease_run_id = NULL, lease_until = NULL WHERE id = ? AND "
        "lease_run_id = ?",
        (issue_id, run_id),
    )


async def give_back(conn: Conn, issue_id: str, run_id: str, now: float) -> None:
    """Drop `run_id`'s lease and return the attempt it cost (a run that did not fail)."""
    await conn.execute(
        "UPDATE issues SET lease_run_id = NULL, lease_until = NULL, "
        "attempts = GREATEST(0, attempts - 1), updated_at = ? WHERE id = ? AND lease_run_id = ?",
        (now, issue_id, run_id),
    )


async def block(conn: Conn, issue_id: str, run_id: str, reason: str, now: float) -> None:
    """Drop `run_id`'s lease and block the issue (its attempt budget is spent)."""
    await conn.execute(
        "UPDATE issues SET status = 'blocked', reason = ?, lease_run_id = NULL, "
        "lease_until = NULL, updated_at = ? WHERE id = ? AND lease_run_id = ?",
        (reason, now, issue_id, run_id),
    )


async def back_off(conn: Conn, issue_id: str, run_id: str, until: float, now: float) -> None:
    """Drop `run_id`'s lease; the issue is workable again from `until`."""
    await conn.execute(
        "UPDATE issues SET lease_run_id = NULL, lease_until = NULL, not_before = ?, "
        "updated_at = ? WHERE id = ? AND lease_run_id = ?",
        (until, now, issue_id, run_id),
    )


async def block_loop(conn: Conn, issue_id: str, reason: str, now: float) -> bool:
    """Block a workable issue instead of dispatching it again (the loop guard)."""
    cur = await conn.execute(
        "UPDATE issues SET status = 'blocked', reason = :reason, lease_run_id = NULL, "
        f"lease_until = NULL, updated_at = :now WHERE id = :issue AND {WORKABLE}",
        {"reason": reason, "now": now, "issue": issue_id},
    )
    return cur.rowcount == 1


async def clear_stale_leases(conn: Conn, now: float) -> int:
    """Drop leases past their time whose run is not live; the status is left as it is."""
    cur = await conn.execute(
        "UPDATE issues SET lease_run_id = NULL, lease_until = NULL WHERE "
        "lease_run_id IS NOT NULL AND lease_until < ? AND NOT EXISTS (SELECT 1 FROM "
        "runs r WHERE r.id = issues.lease_run_id AND r.status = 'running')",
        (now,),
    )
    return cur.rowcount


async def retry_candidates(
    conn: Conn, now: float, limit: int = 500
) -> list[tuple[str, str, float]]:
    """(issue id, assignee id, not_before) of unleased workable issues whose backoff after a
    failed run is over and whose agent is idle, longest waiting first."""
    found = await fetch_all(
        conn,
        "SELECT i.id, i.assignee_id, i.not_before FROM issues i JOIN agents a ON "
        f"a.id = i.assignee_id WHERE {workable('i')} AND i.not_before IS NOT NULL "
        "AND i.lease_run_id IS NULL AND a.status = 'idle' AND a.deleted_at IS NULL "
        "ORDER BY i.not_before LIMIT :limit",
        {"now": now, "limit": limit},
    )
    return [(r[0], r[1], r[2]) for r in found]


async def end_backoff(
    conn: Conn, issue_id: str, agent_id: str, not_before: float, now: float
) -> bool:
    """Clear the backoff if the issue is still `agent_id`'s, workable, and waiting on exactly
    `not_before` (compare-and-set: a change after recovery read it wins)."""
    cur = await conn.execute(
        "UPDATE issues SET not_before = NULL WHERE id = :issue AND assignee_id = :agent "
        f"AND not_before = :not_before AND {WORKABLE}",
        {"issue": issue_id, "agent": agent_id, "not_before": not_before, "now": now},
    )
    return cur.rowcount == 1
