"""Bodies the agent API accepts and returns. Limits here are what a 422 names."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from core.models import Comment, Issue, IssueStatus, Run, RunOutcome


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewIssue(_Body):
    title: str = Field(min_length=1, max_length=200, description="One line: what needs doing.")
    assignee: str = Field(
        min_length=1, max_length=100, description="An agent id or a role in your company."
    )
    body: str = Field(default="", max_length=20_000)
    model: str | None = Field(
        default=None, max_length=100, description="A model for runs of this issue only."
    )


class IssuePatch(_Body):
    status: IssueStatus
    reason: str = Field(default="", max_length=2_000)


class Claim(_Body):
    run_id: str = Field(min_length=1, max_length=64)


class NewComment(_Body):
    body: str = Field(min_length=1, max_length=20_000)


class Usage(_Body):
    """Cumulative totals for the run so far: sending the same report twice is harmless."""

    turns: int = Field(ge=0, le=1_000_000)
    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    cost: float = Field(default=0.0, ge=0, le=1_000_000)
    model: str | None = Field(default=None, max_length=100)


class Finish(_Body):
    outcome: RunOutcome
    summary: str = Field(default="", max_length=20_000)


class NewSummary(_Body):
    body: str = Field(min_length=1, max_length=20_000)
    issue_id: str | None = Field(default=None, max_length=32)
    run_id: str | None = Field(default=None, max_length=64)


class IssueOut(BaseModel):
    id: str
    company_id: str
    title: str
    body: str
    status: IssueStatus
    assignee_id: str | None
    created_by: str
    model: str | None
    attempts: int
    max_attempts: int
    reason: str
    created_at: float
    updated_at: float

    @classmethod
    def of(cls, issue: Issue) -> IssueOut:
        return cls(
            id=issue.id,
            company_id=issue.company_id,
            title=issue.title,
            body=issue.body,
            status=issue.status,
            assignee_id=issue.assignee_id,
            created_by=issue.created_by,
            model=issue.model,
            attempts=issue.attempts,
            max_attempts=issue.max_attempts,
            reason=issue.reason,
            created_at=issue.created_at,
            updated_at=issue.updated_at,
        )


class CommentOut(BaseModel):
    id: int
    issue_id: str
    author: str
    body: str
    created_at: float

    @classmethod
    def of(cls, c: Comment) -> CommentOut:
        return cls(
            id=c.id, issue_id=c.issue_id, author=c.author, body=c.body, created_at=c.created_at
        )


class IssueDetail(IssueOut):
    comments: list[CommentOut]


class RunOut(BaseModel):
    id: str
    agent_id: str
    issue_id: str | None
    status: str
    reason: str
    turns: int
    max_turns: int
    input_tokens: int
    output_tokens: int
    cost: float
    model: str
    deadline: float

    @classmethod
    def of(cls, r: Run) -> RunOut:
        return cls(
            id=r.id,
            agent_id=r.agent_id,
            issue_id=r.issue_id,
            status=r.status.value,
            reason=r.reason,
            turns=r.turns,
            max_turns=r.max_turns,
            input_tokens=r.input_tokens,
            output_tokens=r.output_tokens,
            cost=r.cost,
            model=r.model,
            deadline=r.deadline,
        )


class Me(BaseModel):
    agent_id: str
    name: str
    company_id: str
    role: str
    skills: list[str]
    kid: str
    expires_at: int
    run_id: str | None
    status: str


class SummaryOut(BaseModel):
    id: int


class ErrorOut(BaseModel):
    error: str = Field(description="A machine code, e.g. expired or invalid_transition.")
    detail: str = Field(description="What went wrong and what to do.")


class Health(BaseModel):
    status: Literal["ok"]
    schema_version: int
