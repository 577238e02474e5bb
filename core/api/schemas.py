"""Bodies the agent API accepts and returns. Limits here are what a 422 names."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from core.models import Comment, Issue, IssueStatus, Priority, Question, Run, RunOutcome


class _Body(BaseModel):
    """A request body: unknown fields are refused (422 naming them), so a typo is never
    silently ignored."""

    model_config = ConfigDict(extra="forbid")


# Counts are strict: "3" or true for a number is a client bug worth a 422, not a guess.
_COUNT = 1_000_000_000_000  # far above any real run, far below SQLite's 64-bit limit


def _integral(value: object) -> object:
    """3.0 is the integer 3 (JSON Schema's `integer` includes it, and clients that keep counts
    as doubles send it); 3.5, "3" and true are still refused by the strict check after this."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Count = Annotated[int, BeforeValidator(_integral)]

# What Python's str.strip() and str.split() treat as whitespace, spelled out as one character
# class: the OpenAPI document (ECMA-262 regex), pydantic and Python then agree on what "only
# whitespace" is (their own `\s` each differ, e.g. on \x1c-\x1f and \ufeff).
WHITESPACE = r"\t-\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# At least one character that is not whitespace (the `+` means the same to a search, and lets
# schema-driven generators such as schemathesis build matching strings twenty times faster).
HAS_TEXT = f"[^{WHITESPACE}]+"
HAS_NAME = f"[^@{WHITESPACE}]+"  # and not only `@`s either (an assignee like `@cto`)
_TEXT, _NAME = re.compile(HAS_TEXT), re.compile(HAS_NAME)


def _has_text(value: str) -> str:
    if not _TEXT.search(value):
        raise ValueError("write some text, not only whitespace")
    return value


def _has_name(value: str) -> str:
    if not _NAME.search(value):
        raise ValueError("name an agent id or a role, e.g. cto")
    return value


# The pattern goes into the OpenAPI document through json_schema_extra (pydantic's own
# `pattern=` would refuse with "String should match pattern '[^\t-\r …]'"); the validator
# checks the very same expression and says what to write.
Text = Annotated[str, AfterValidator(_has_text)]
Name = Annotated[str, AfterValidator(_has_name)]
TEXT_SCHEMA: dict[str, Any] = {"pattern": HAS_TEXT}
NAME_SCHEMA: dict[str, Any] = {"pattern": HAS_NAME}


class NewIssue(_Body):
    """File an issue for an agent of your company (needs the skill `issues.create`)."""

    title: Text = Field(
        min_length=1,
        max_length=200,
        json_schema_extra=TEXT_SCHEMA,
        description="One line: what needs doing.",
    )
    assignee: Name = Field(
        min_length=1,
        max_length=100,
        json_schema_extra=NAME_SCHEMA,
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
    priority: Priority = Field(
        default=Priority.MEDIUM,
        description="Inboxes are worked by priority, then age. `critical` also runs outside "
        "the assignee's active hours.",
    )
    backlog: bool = Field(
        default=False,
        description="File it to the backlog: no heartbeat works it until it is promoted (by "
        "the owner, or automatically when the assignee's company runs out of work).",
    )


class IssuePatch(_Body):
    """Move an issue along the status graph; a move outside it is 409 `invalid_transition`."""

    status: IssueStatus = Field(
        description="The new status. todo → in_progress → in_review → done; blocked and "
        "cancelled from any open status; blocked → todo retries; todo ⇄ backlog parks or "
        "promotes; done and cancelled are final."
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

    body: Text = Field(
        min_length=1,
        max_length=20_000,
        json_schema_extra=TEXT_SCHEMA,
        description="The comment text.",
    )


class Usage(_Body):
    """Cumulative totals for the run so far: sending the same report twice is harmless."""

    turns: Count = Field(
        ge=0,
        le=1_000_000,
        strict=True,
        description="Turns (model calls) so far. Past the run's max_turns the run is stopped "
        "and the answer is 409 `max_turns_exceeded`: stop working.",
    )
    input_tokens: Count = Field(
        default=0, ge=0, le=_COUNT, strict=True, description="Input tokens so far."
    )
    output_tokens: Count = Field(
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
        description="done (the issue is done), blocked (you cannot go on: say why in summary), "
        "failed (the issue is retried within its attempt budget) or waiting (you asked a "
        "question and stop until it is answered: the run succeeds, the issue keeps its status, "
        "no attempt is spent, and the answer wakes you; 409 `no_open_question` when the issue "
        "has none). done, failed and blocked cancel the issue's open questions."
    )
    summary: str = Field(
        default="",
        max_length=20_000,
        description="What you did; relayed to your team chat.",
    )


class NewSummary(_Body):
    """Post a summary to your team chat (needs the skill `summaries.post`)."""

    body: Text = Field(
        min_length=1,
        max_length=20_000,
        json_schema_extra=TEXT_SCHEMA,
        description="The summary text.",
    )
    issue_id: str | None = Field(
        default=None, max_length=32, description="The issue it is about, e.g. ALI-12."
    )
    run_id: str | None = Field(
        default=None, max_length=64, description="The run it is about; must be one of yours."
    )


class NewQuestion(_Body):
    """Ask the owner about an issue of your company; the answer arrives in your next wake
    (reason `answer`, or `approval`) and at GET /api/v1/questions/{id}. While it is open the
    issue is not worked: finish your run with outcome `waiting`."""

    # An approval takes no choices: said in the document too, so a client generated from it
    # (or a fuzzer) knows.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "if": {"properties": {"approval": {"const": True}}, "required": ["approval"]},
            "then": {"properties": {"choices": {"maxItems": 0}}},
        },
    )

    text: Text = Field(
        min_length=1,
        max_length=2000,
        json_schema_extra=TEXT_SCHEMA,
        description="The question, as the owner will read it on the phone.",
    )
    approval: bool = Field(
        default=False,
        description="An approval: the owner taps Approve or Reject (give no choices).",
    )
    choices: list[
        Annotated[Text, Field(min_length=1, max_length=40, json_schema_extra=TEXT_SCHEMA)]
    ] = Field(
        default_factory=list,
        max_length=6,
        description="Up to 6 answers to pick from, shown as buttons; none: a free-text answer.",
    )
    run_id: str | None = Field(
        default=None,
        max_length=64,
        description="Your run; omitted, the run of your run token. A run that ends well with "
        "its question still open is treated as waiting.",
    )

    @field_validator("choices")
    @classmethod
    def _no_choices_with_approval(cls, v: list[str], info: ValidationInfo) -> list[str]:
        if v and info.data.get("approval"):
            raise ValueError("an approval's choices are Approve and Reject; give no choices")
        return v


class QuestionOut(BaseModel):
    id: int = Field(description="Shown to people as Q<id>.")
    company_id: str
    issue_id: str
    agent_id: str = Field(description="Who asked.")
    run_id: str | None
    kind: Literal["question", "approval"]
    text: str
    choices: list[str] = Field(description="Approve and Reject for an approval; [] for free text.")
    status: Literal["open", "answered", "cancelled"]
    answer: str | None = Field(description="The choice or text given (why, when cancelled).")
    answered_by: str | None = Field(description="Who answered, e.g. tg:123.")
    asked_at: float
    answered_at: float | None

    @classmethod
    def of(cls, q: Question) -> QuestionOut:
        return cls(
            id=q.id,
            company_id=q.company_id,
            issue_id=q.issue_id,
            agent_id=q.agent_id,
            run_id=q.run_id,
            kind=q.kind.value,
            text=q.text,
            choices=list(q.choices),
            status=q.status.value,
            answer=q.answer,
            answered_by=q.answered_by,
            asked_at=q.asked_at,
            answered_at=q.answered_at,
        )


class IssueOut(BaseModel):
    id: str
    company_id: str
    title: str
    body: str
    status: IssueStatus
    priority: Priority
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
            priority=issue.priority,
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
    questions: list[QuestionOut] = Field(description="Questions asked about it, oldest first.")


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
    """Liveness: the process answers. Never the store's state: restarting cures neither a full
    disk nor another process's lock (that is /readyz)."""

    status: Literal["ok"]
    schema_version: int


class Ready(BaseModel):
    """Readiness: the store takes writes (a write transaction can start, and no write failed
    on a full or failing disk in the last 30 s)."""

    status: Literal["ready"]
    schema_version: int
