"""Turning SQLite rows into the records of core.models."""

from __future__ import annotations

import json
from typing import Any

from core.models import (
    Agent,
    AgentStatus,
    Comment,
    Company,
    Issue,
    IssueStatus,
    MessageLink,
    Priority,
    Question,
    QuestionKind,
    QuestionStatus,
    Routine,
    Run,
    RunStatus,
)

AGENT_COLUMNS = (
    "id, company_id, name, role, reports_to, status, reason, reason_code, status_changed_at, "
    "model, heartbeat_seconds, next_heartbeat_at, token_version, skills, max_turns, "
    "run_timeout_seconds, runtime, last_seen_at"
)
ISSUE_COLUMNS = (
    "id, company_id, number, title, body, status, assignee_id, created_by, model, attempts, "
    "max_attempts, lease_run_id, lease_until, not_before, reason, created_at, updated_at, "
    "priority, routine_id"
)
RUN_COLUMNS = (
    "id, agent_id, issue_id, status, reason, reason_code, started_at, deadline, ended_at, turns, "
    "max_turns, input_tokens, output_tokens, cost, model, summary, last_progress_at, external_id"
)

QUESTION_COLUMNS = (
    "id, company_id, issue_id, agent_id, run_id, kind, text, choices, status, answer, "
    "answered_by, asked_at, answered_at, answered_name"
)
LINK_COLUMNS = "chat, message_id, kind, issue_id, question_id, created_at"


def company(row: Any) -> Company:
    return Company(id=row["id"], name=row["name"], prefix=row["prefix"], chat=row["chat"])


def agent(row: Any) -> Agent:
    return Agent(
        id=row["id"],
        company_id=row["company_id"],
        name=row["name"],
        role=row["role"],
        reports_to=row["reports_to"],
        status=AgentStatus(row["status"]),
        reason=row["reason"],
        reason_code=row["reason_code"],
        status_changed_at=row["status_changed_at"],
        model=row["model"],
        heartbeat_seconds=row["heartbeat_seconds"],
        next_heartbeat_at=row["next_heartbeat_at"],
        token_version=row["token_version"],
        skills=tuple(json.loads(row["skills"])),
        max_turns=row["max_turns"],
        run_timeout_seconds=row["run_timeout_seconds"],
        runtime=json.loads(row["runtime"]),
        last_seen_at=row["last_seen_at"],
    )


def issue(row: Any) -> Issue:
    return Issue(
        id=row["id"],
        company_id=row["company_id"],
        number=row["number"],
        title=row["title"],
        body=row["body"],
        status=IssueStatus(row["status"]),
        assignee_id=row["assignee_id"],
        created_by=row["created_by"],
        model=row["model"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        lease_run_id=row["lease_run_id"],
        lease_until=row["lease_until"],
        not_before=row["not_before"],
        reason=row["reason"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        priority=Priority.of_rank(row["priority"]),
        routine_id=row["routine_id"],
    )


def comment(row: Any) -> Comment:
    return Comment(
        id=row["id"],
        issue_id=row["issue_id"],
        author=row["author"],
        body=row["body"],
        created_at=row["created_at"],
    )


def run(row: Any) -> Run:
    return Run(
        id=row["id"],
        agent_id=row["agent_id"],
        issue_id=row["issue_id"],
        status=RunStatus(row["status"]),
        reason=row["reason"],
        reason_code=row["reason_code"],
        started_at=row["started_at"],
        deadline=row["deadline"],
        ended_at=row["ended_at"],
        turns=row["turns"],
        max_turns=row["max_turns"],
        input_tokens=row["input_tokens"],
        output_tokens=row["output_tokens"],
        cost=row["cost"],
        model=row["model"],
        summary=row["summary"],
        last_progress_at=row["last_progress_at"],
        external_id=row["external_id"],
    )


def question(row: Any) -> Question:
    return Question(
        id=row["id"],
        company_id=row["company_id"],
        issue_id=row["issue_id"],
        agent_id=row["agent_id"],
        run_id=row["run_id"],
        kind=QuestionKind(row["kind"]),
        text=row["text"],
        choices=tuple(json.loads(row["choices"])),
        status=QuestionStatus(row["status"]),
        answer=row["answer"],
        answered_by=row["answered_by"],
        asked_at=row["asked_at"],
        answered_at=row["answered_at"],
        answered_name=row["answered_name"],
    )


def link(row: Any) -> MessageLink:
    return MessageLink(
        chat=row["chat"],
        message_id=row["message_id"],
        kind=row["kind"],
        issue_id=row["issue_id"],
        question_id=row["question_id"],
        created_at=row["created_at"],
    )


ROUTINE_COLUMNS = (
    "id, company_id, name, assignee, schedule, timezone, title, body, priority, source, paused, "
    "next_at, last_at, last_issue, skipped, streak, missed, late, created_by, created_at"
)


def routine(row: Any) -> Routine:
    return Routine(
        id=row["id"],
        company_id=row["company_id"],
        name=row["name"],
        assignee=row["assignee"],
        schedule=row["schedule"],
        timezone=row["timezone"],
        title=row["title"],
        body=row["body"],
        priority=Priority.of_rank(row["priority"]),
        source=row["source"],
        paused=bool(row["paused"]),
        next_at=row["next_at"],
        last_at=row["last_at"],
        last_issue=row["last_issue"],
        skipped=row["skipped"],
        streak=row["streak"],
        missed=row["missed"],
        late=row["late"],
        created_by=row["created_by"],
        created_at=row["created_at"],
    )
