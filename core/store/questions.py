"""Questions in the store: asked by an agent about its issue, answered or cancelled once.

Every change is a compare-and-set on `status = 'open'`: two taps racing on the same card, or an
answer racing the issue's end, leave the first one in place and change nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from core.models import Question, QuestionKind
from core.store import rows
from core.store.conn import Conn
from core.store.db import fetch_all, fetch_one, inserted_id

_SELECT = f"SELECT {rows.QUESTION_COLUMNS} FROM questions"


async def get(conn: Conn, question_id: int) -> Question | None:
    row = await fetch_one(conn, f"{_SELECT} WHERE id = ?", (question_id,))
    return None if row is None else rows.question(row)


async def for_issue(conn: Conn, issue_id: str) -> list[Question]:
    """The issue's questions, oldest first."""
    found = await fetch_all(conn, f"{_SELECT} WHERE issue_id = ? ORDER BY id", (issue_id,))
    return [rows.question(r) for r in found]


async def open_ones(conn: Conn, company_id: str | None = None, limit: int = 200) -> list[Question]:
    """Open questions (of one company), oldest first: what is waiting on the owner."""
    where, args = "status = 'open'", tuple[str, ...]()
    if company_id is not None:
        where, args = where + " AND company_id = ?", (company_id,)
    found = await fetch_all(conn, f"{_SELECT} WHERE {where} ORDER BY id LIMIT ?", (*args, limit))
    return [rows.question(r) for r in found]


async def has_open(conn: Conn, issue_id: str) -> bool:
    row = await fetch_one(
        conn, "SELECT 1 FROM questions WHERE issue_id = ? AND status = 'open' LIMIT 1", (issue_id,)
    )
    return row is not None


async def open_for_run(
    conn: Conn, issue_id: str, run_id: str, agent_id: str, since: float
) -> list[int]:
    """Open questions on the issue that this run asked: by its run id, or by its agent while
    it ran (a question asked without naming a run)."""
    found = await fetch_all(
        conn,
        "SELECT id FROM questions WHERE issue_id = ? AND status = 'open' AND (run_id = ? OR "
        "(run_id IS NULL AND agent_id = ? AND asked_at >= ?)) ORDER BY id",
        (issue_id, run_id, agent_id, since),
    )
    return [int(r[0]) for r in found]


async def insert(
    conn: Conn,
    *,
    company_id: str,
    issue_id: str,
    agent_id: str,
    run_id: str | None,
    kind: QuestionKind,
    text: str,
    choices: Sequence[str],
    now: float,
) -> Question:
    question_id = await inserted_id(
        conn,
        "INSERT INTO questions (company_id, issue_id, agent_id, run_id, kind, text, choices, "
        "asked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (company_id, issue_id, agent_id, run_id, kind.value, text, json.dumps(list(choices)), now),
    )
    found = await get(conn, question_id)
    assert found is not None
    return found


async def answer(
    conn: Conn,
    question_id: int,
    answer: str,
    actor: str,
    name: str,
    now: float,
) -> bool:
    """Record the answer if the question is still open; False if someone was first."""
    cur = await conn.execute(
        "UPDATE questions SET status = 'answered', answer = ?, answered_by = ?, "
        "answered_name = ?, answered_at = ? WHERE id = ? AND status = 'open'",
        (answer, actor, name, now, question_id),
    )
    return cur.rowcount == 1


async def cancel_open(conn: Conn, issue_id: str, actor: str, why: str, now: float) -> list[int]:
    """Cancel every open question of the issue (it ended or was closed); their ids."""
    found = await fetch_all(
        conn,
        "UPDATE questions SET status = 'cancelled', answer = ?, answered_by = ?, "
        "answered_at = ? WHERE issue_id = ? AND status = 'open' RETURNING id",
        (why, actor, now, issue_id),
    )
    return sorted(int(r[0]) for r in found)
