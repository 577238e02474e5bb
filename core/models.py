"""The nouns of the fleet: statuses as string enums, and the records the store hands out."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class AgentStatus(StrEnum):
    IDLE = "idle"  # ready for its next heartbeat
    RUNNING = "running"  # has a live run
    PAUSED = "paused"  # heartbeats off, by the owner or by budget
    ERROR = "error"  # last run failed; not woken until reset (or auto-reset)
    UNAUTHENTICATED = "unauthenticated"  # its token does not verify; not woken until fixed


class IssueStatus(StrEnum):
    BACKLOG = "backlog"  # filed for later: no heartbeat works it until it is promoted to todo
    TODO = "todo"  # filed, waiting for its agent
    IN_PROGRESS = "in_progress"  # an agent has started on it
    IN_REVIEW = "in_review"  # the agent is done; a human or reviewer checks it
    DONE = "done"  # terminal
    BLOCKED = "blocked"  # cannot go on: budget spent, or the agent said so
    CANCELLED = "cancelled"  # terminal

    @property
    def terminal(self) -> bool:
        return self in (IssueStatus.DONE, IssueStatus.CANCELLED)


TERMINAL_ISSUE_STATUSES = frozenset({IssueStatus.DONE, IssueStatus.CANCELLED})
OPEN_ISSUE_STATUSES = frozenset(set(IssueStatus) - TERMINAL_ISSUE_STATUSES)
# Statuses an agent still has work in: what its inbox shows and a heartbeat may dispatch.
WORKABLE_ISSUE_STATUSES = frozenset({IssueStatus.TODO, IssueStatus.IN_PROGRESS})

# The issue status graph. `blocked` and `cancelled` are reachable from every open state;
# backlog <-> todo is promoting and deferring; in_progress -> done is allowed because most
# agents finish without a review step; in_review -> in_progress sends work back; blocked ->
# todo is "retry".
ISSUE_TRANSITIONS: dict[IssueStatus, frozenset[IssueStatus]] = {
    IssueStatus.BACKLOG: frozenset({IssueStatus.TODO, IssueStatus.BLOCKED, IssueStatus.CANCELLED}),
    IssueStatus.TODO: frozenset(
        {IssueStatus.IN_PROGRESS, IssueStatus.BACKLOG, IssueStatus.BLOCKED, IssueStatus.CANCELLED}
    ),
    IssueStatus.IN_PROGRESS: frozenset(
        {IssueStatus.IN_REVIEW, IssueStatus.DONE, IssueStatus.BLOCKED, IssueStatus.CANCELLED}
    ),
    IssueStatus.IN_REVIEW: frozenset(
        {IssueStatus.DONE, IssueStatus.IN_PROGRESS, IssueStatus.BLOCKED, IssueStatus.CANCELLED}
    ),
    IssueStatus.BLOCKED: frozenset({IssueStatus.TODO, IssueStatus.CANCELLED}),
    IssueStatus.DONE: frozenset(),
    IssueStatus.CANCELLED: frozenset(),
}


class Priority(StrEnum):
    """How soon an issue should be worked: inboxes are worked by priority, then age. A
    critical issue is also urgent: it is worked outside an agent's active hours."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        """0 for critical … 3 for low: what the store keeps and sorts on."""
        return _PRIORITY_ORDER.index(self)

    @classmethod
    def of_rank(cls, rank: int) -> Priority:
        return _PRIORITY_ORDER[rank]


_PRIORITY_ORDER = (Priority.CRITICAL, Priority.HIGH, Priority.MEDIUM, Priority.LOW)


def transition_allowed(current: IssueStatus, new: IssueStatus) -> bool:
    return new in ISSUE_TRANSITIONS[current]


class RunStatus(StrEnum):
    RUNNING = "running"  # dispatched, not finished
    SUCCEEDED = "succeeded"  # the agent finished it
    FAILED = "failed"  # the runtime or the agent failed
    TIMED_OUT = "timed_out"  # past its deadline
    CANCELLED = "cancelled"  # stopped by an operator
    INTERRUPTED = "interrupted"  # fleetbot restarted under it


class RunOutcome(StrEnum):
    """What an agent reports when it finishes a run."""

    DONE = "done"
    FAILED = "failed"
    BLOCKED = "blocked"
    # The agent asked a question about its issue and ends its run until it is answered: the run
    # succeeds, the issue keeps its status, no attempt is spent (core.questions).
    WAITING = "waiting"


class QuestionKind(StrEnum):
    QUESTION = "question"  # free text, or one of the choices; owners and operators answer
    APPROVAL = "approval"  # Approve or Reject; owners answer (operators if configured)


class QuestionStatus(StrEnum):
    OPEN = "open"  # the issue waits on it: not workable, its alert reminds
    ANSWERED = "answered"  # answered from the phone; the agent was woken with the answer
    CANCELLED = "cancelled"  # the issue was finished or closed before anyone answered


APPROVAL_CHOICES = ("Approve", "Reject")


class HeartbeatOutcome(StrEnum):
    DISPATCHED = "dispatched"  # work found, a run opened: one LLM call
    NO_WORK = "no_work"  # empty inbox: no runtime called, one LLM call saved
    PAUSED = "paused"  # skipped: agent paused
    ERROR = "error"  # skipped: agent in error
    UNAUTHENTICATED = "unauthenticated"  # skipped: token does not verify
    BUSY = "busy"  # skipped: agent already has a live run
    OFF_HOURS = "off_hours"  # skipped: work waits, but it is outside the agent's active hours


class AuthReason(StrEnum):
    """Why a token did not verify: the machine code in 401 bodies and agent statuses."""

    MISSING_TOKEN = "missing_token"
    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KEY = "unknown_key"
    EXPIRED = "expired"
    REVOKED = "revoked"
    WRONG_AUDIENCE = "wrong_audience"
    MISSING_FILE = "missing_file"
    RUN_ENDED = "run_ended"  # a run-scoped token whose run is over


@dataclass(frozen=True, slots=True)
class Company:
    id: str
    name: str
    prefix: str
    chat: str | None = None


@dataclass(frozen=True, slots=True)
class Agent:
    id: str
    company_id: str
    name: str
    role: str
    reports_to: str | None
    status: AgentStatus
    reason: str
    reason_code: str
    status_changed_at: float
    model: str
    heartbeat_seconds: float
    next_heartbeat_at: float
    token_version: int
    skills: tuple[str, ...]
    max_turns: int
    run_timeout_seconds: float
    runtime: dict[str, Any] = field(default_factory=dict)
    last_seen_at: float | None = None


# created_by of planning issues (core.queues.planner): their runs are the deliberate LLM calls
# fleetbot makes when a queue runs empty, which /costs and the ROI report count apart.
PLANNER = "fleetbot:planner"


@dataclass(frozen=True, slots=True)
class Issue:
    id: str
    company_id: str
    number: int
    title: str
    body: str
    status: IssueStatus
    assignee_id: str | None
    created_by: str
    model: str | None
    attempts: int
    max_attempts: int
    lease_run_id: str | None
    lease_until: float | None
    not_before: float | None
    reason: str
    created_at: float
    updated_at: float
    priority: Priority = Priority.MEDIUM
    routine_id: int | None = None  # the routine that filed it (core.queues.routines)


@dataclass(frozen=True, slots=True)
class Comment:
    id: int
    issue_id: str
    author: str
    body: str
    created_at: float


@dataclass(frozen=True, slots=True)
class Run:
    id: str
    agent_id: str
    issue_id: str | None
    status: RunStatus
    reason: str
    reason_code: str
    started_at: float
    deadline: float
    ended_at: float | None
    turns: int
    max_turns: int
    input_tokens: int
    output_tokens: int
    cost: float
    model: str
    summary: str
    last_progress_at: float
    external_id: str = ""  # the runtime's own id for the turn (OpenClaw's runId)


@dataclass(frozen=True, slots=True)
class Question:
    """An agent's question about its issue (shown as `Q7`), answered from the phone."""

    id: int
    company_id: str
    issue_id: str
    agent_id: str
    run_id: str | None
    kind: QuestionKind
    text: str
    choices: tuple[str, ...]  # approval: ("Approve", "Reject"); free text: ()
    status: QuestionStatus
    answer: str | None
    answered_by: str | None  # the actor, e.g. tg:123
    asked_at: float
    answered_at: float | None
    answered_name: str = ""  # how the answerer is called (their Telegram name), for cards

    @property
    def ref(self) -> str:
        return f"Q{self.id}"

    @property
    def open(self) -> bool:
        return self.status is QuestionStatus.OPEN

    @property
    def answerer(self) -> str:
        """`Ann (tg:123)`, or the actor alone when no name is known."""
        who = self.answered_by or "someone"
        return f"{self.answered_name} ({who})" if self.answered_name else who


@dataclass(frozen=True, slots=True)
class MessageLink:
    """Which issue (and question) a message the bot sent shows: what a reply to it is about."""

    chat: str
    message_id: int
    kind: str  # summary, run, issue, question, pin
    issue_id: str | None
    question_id: int | None
    created_at: float


@dataclass(frozen=True, slots=True)
class Routine:
    """Recurring work: an issue filed on a schedule (shown as `R3`; core.queues.routines)."""

    id: int
    company_id: str
    name: str  # unique in its company
    assignee: str  # an agent id or a role, resolved when an instance is filed
    schedule: str  # as written: `every 4h`, `daily 09:00`, `cron 0 9 * * mon-fri`
    timezone: str
    title: str  # templates: {date} {time} {weekday} {week} {month} {year} {company} {routine}
    body: str
    priority: Priority
    source: str  # config (from config.yaml; removed there only) or chat (/routines add)
    paused: bool
    next_at: float  # the next due time
    last_at: float | None  # when it last came due (filed or skipped)
    last_issue: str | None  # its newest instance
    skipped: int  # due times skipped because the last instance was still open
    streak: int  # of those, in a row up to now
    missed: int  # due times that passed while fleetbot was down
    late: str  # why its schedule slipped now ("" when it is on time): the routine_missed alert
    created_by: str
    created_at: float

    @property
    def ref(self) -> str:
        return f"R{self.id}"
