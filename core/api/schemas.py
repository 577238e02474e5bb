"""Bodies the agent API accepts and returns. Limits here are what a 422 names."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from core.models import Comment, Issue, IssueStatus, Run, RunOutcome


class _Body(BaseModel):
    """A request body: unknown fields are refused (422 naming them), so a typo is never
    silently ignored."""

    model_config = ConfigDict(extra="forbid")


# Counts are strict: "3" or true for a number is a client bug worth a 422, not a guess.
_COUNT = 1_000_000_000_000  # far above any real run, far below SQLite's 64-bit limit


class NewIssue(_Body):
    """File an issue for an agent of your company (needs the skill `issues.create`)."""

    title: str = Field(min_length=1, max_length=200, description="One line: what needs doing.")
    assignee: str = Field(
        min_length=1,
        max_length=100,
        description="An agent id (`bishop`) or a role (`cto`) in your company. A role held by "
        "several agents is refused with 422 `ambiguous_assignee` listing `choices`.",
    )
    body: str = Field(
        default="", max_length=20_000, description="Details, acceptance criteria, links."
    )
    model: str | None = Field(
        default=None,
        max_length=100,
        description="A model for runs of this issue only; omit to use the agent's model.",
    )


class IssuePatch(_Body):
    """Move an issue along the status graph; a move outside it is 409 `invalid_transition`."""

    status: IssueStatus = Field(
        description="The new status. todo → in_progress → in_review → done; blocked and "
        "cancelled from any open status; blocked → todo retries; done and cancelled are final."
    )
    reason: str = Field(
        default="", max_length=2_000, description="Why, shown to the owner (e.g. what blocks it)."
    )


class Claim(_Body):
    """Take an issue for one of your live runs."""

    run_id: str = Field(
        min_length=1,
        max_length=64,
        description="Your live run (the run id the runtime gave you). 409 `lease_conflict` if "
        "another live run holds the issue.",
    )


class NewComment(_Body):
    """Comment on an issue of your company."""

    body: str = Field(min_length=1, max_length=20_000, description="The comment text.")


class Usage(_Body):
    """Cumulative totals for the run so far: sending the same report twice is harmless."""

    turns: int = Field(
        ge=0,
        le=1_000_000,
        strict=True,
        description="Turns (model calls) so far. Past the run's max_turns the run is stopped "
        "and the answer is 409 `max_turns_exceeded`: stop working.",
    )
    input_tokens: int = Field(
        default=0, ge=0, le=_COUNT, strict=True, description="Input tokens so far."
    )
    output_tokens: int = Field(
        default=0, ge=0, le=_COUNT, strict=True, description="Output tokens so far."
    )
    cost: float = Field(
        default=0.0,
        ge=0,
        le=1_000_000,
        strict=True,
        allow_inf_nan=False,
        description="Cost so far, in US dollars.",
    )
    model: str | None = Field(
        default=None, max_length=100, description="The model actually used, if it differs."
    )


class Finish(_Body):
    """End your run. Sending the same finish again returns the run unchanged."""

    outcome: RunOutcome = Field(
        description="done (the issue is done), blocked (you cannot go on: say why in summary) "
        "or failed (the issue is retried within its attempt budget)."
    )
    summary: str = Field(
        default="",
        max_length=20_000,
        description="What you did; relayed to your team chat.",
    )


class NewSummary(_Body):
    """Post a summary to your team chat (needs the skill `summaries.post`)."""

    body: str = Field(min_length=1, max_length=20_000, description="The summary text.")
    issue_id: str | None = Field(
        default=None, max_length=32, description="The issue it is about, e.g. ALI-12."
    )
    run_id: str | None = Field(
        default=None, max_length=64, description="The run it is about; must be one of yours."
    )


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


class FieldProblem(BaseModel):
    field: str = Field(description="The field, e.g. `status` or `path.issue_id`.")
    problem: str = Field(description="What is wrong with it.")


class ErrorOut(BaseModel):
    error: str = Field(description="A machine code, e.g. expired or invalid_transition.")
    detail: str = Field(description="What went wrong and what to do.")
    errors: list[FieldProblem] | None = Field(
        default=None, description="On 422 for a bad body or path: one entry per field."
    )
    choices: list[str] | None = Field(
        default=None, description="On 422 `ambiguous_assignee`: the agent ids to pick from."
    )


class Health(BaseModel):
    status: Literal["ok"]
    schema_version: int
