"""The records of alerts: kinds, severities, fixes, states, findings, members and alerts.

core.alerting.book stores and changes them; core.alerting.monitors produces `Finding`s;
the bot renders `Alert`s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from core.alerting.mutes import Mute


class AlertKind(StrEnum):
    AGENT_ERROR = "agent_error"  # an agent entered error (its last run failed)
    AGENT_UNAUTHENTICATED = "agent_unauthenticated"  # its token does not verify (or got 401s)
    AGENT_STUCK = "agent_stuck"  # a run past its deadline or without progress
    AGENT_SILENT = "agent_silent"  # no usage report, API call or heartbeat for too long
    QUEUE_EMPTY = "queue_empty"  # a company with no open work for N heartbeats
    ISSUE_BLOCKED = "issue_blocked"  # attempt budget spent, or the agent said it is blocked
    RECOVERY_LOOP = "recovery_loop"  # an issue dispatched too often within the window
    BUDGET = "budget"  # monthly spend at the warning or the stop threshold
    # One dead runtime (gateway, endpoint, command), its agents as members: the self-test's
    # probe fails. Resolves by itself when the probe passes again.
    RUNTIME_UNREACHABLE = "runtime_unreachable"
    # An agent waits on a human: one alert per open question (its card, with the choices as
    # buttons), reminded like any alert, resolved when answered or cancelled.
    QUESTION = "question"
    # A routine whose due time slipped: fleetbot was down across it, or its last instance is
    # still open (skipped), or it could not file. Resolves when it is on schedule again.
    ROUTINE_MISSED = "routine_missed"
    # An agent spending far above its own hourly baseline (core.queues.breaker).
    SPEND_VELOCITY = "spend_velocity"
    # Before runtime_unreachable: one agent whose run failed on its runtime. No longer raised
    # (such an agent is a runtime_unreachable member, or agent_error once the runtime is
    # back); kept so alerts stored by older versions still read.
    DELIVERY = "delivery"


class Severity(StrEnum):
    CRITICAL = "critical"  # pings even in quiet hours
    WARNING = "warning"  # waits for quiet hours to end


class Fix(StrEnum):
    """The one-tap fixes an alert can offer (the bot maps each to a command)."""

    RESET = "reset"  # /reset the agents
    ROTATE = "rotate"  # /rotate their tokens
    FILE = "file"  # /issue: file work for the company
    REASSIGN = "reassign"  # /assign the issues to someone else
    PAUSE = "pause"  # /pause the agents (heartbeats off)
    RECHECK = "recheck"  # probe the agents' runtime again now (resolves the alert if it passes)


class AlertState(StrEnum):
    FIRING = "firing"
    ACKNOWLEDGED = "acknowledged"
    MUTED = "muted"  # shown, never stored: an active mute covers the alert
    RESOLVED = "resolved"


# Per kind: the title, how loud it is, and the fixes it offers unless a finding says otherwise.
KINDS: dict[AlertKind, tuple[str, Severity, tuple[Fix, ...]]] = {
    AlertKind.AGENT_ERROR: ("Agents in error", Severity.CRITICAL, (Fix.RESET,)),
    AlertKind.AGENT_UNAUTHENTICATED: ("Agents unauthenticated", Severity.CRITICAL, (Fix.ROTATE,)),
    AlertKind.AGENT_STUCK: ("Runs stuck", Severity.WARNING, (Fix.REASSIGN,)),
    AlertKind.AGENT_SILENT: ("Agents silent", Severity.WARNING, (Fix.RESET,)),
    AlertKind.QUEUE_EMPTY: ("Queue empty", Severity.WARNING, (Fix.FILE, Fix.PAUSE)),
    AlertKind.ISSUE_BLOCKED: ("Issues blocked", Severity.WARNING, (Fix.REASSIGN,)),
    AlertKind.RECOVERY_LOOP: ("Recovery loop stopped", Severity.CRITICAL, (Fix.REASSIGN,)),
    AlertKind.BUDGET: ("Budget", Severity.WARNING, (Fix.PAUSE,)),
    # Warning by default; critical when it takes down every working agent of a company
    # (core.alerting.monitors.find_runtime_unreachable).
    AlertKind.RUNTIME_UNREACHABLE: ("Runtime unreachable", Severity.WARNING, (Fix.RECHECK,)),
    AlertKind.QUESTION: ("Waiting on you", Severity.WARNING, ()),
    AlertKind.ROUTINE_MISSED: ("Routines off schedule", Severity.WARNING, ()),
    AlertKind.SPEND_VELOCITY: ("Runaway spend", Severity.CRITICAL, (Fix.PAUSE,)),
    AlertKind.DELIVERY: ("Runtime unreachable", Severity.CRITICAL, (Fix.RESET,)),
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One bad state of one subject, as a monitor or an event reports it."""

    kind: AlertKind
    subject: str  # "agent:ripley", "company:aliens", "issue:ALI-12"
    company_id: str | None
    label: str  # how a reader names the subject: "Ripley (ceo)"
    detail: str  # one stable sentence (no running durations: a change means an edit)
    reason_code: str = ""
    cause_key: str | None = None  # what groups findings; default: the reason code
    severity: Severity | None = None  # default: the kind's
    fixes: tuple[Fix, ...] | None = None  # default: the kind's

    @property
    def fingerprint(self) -> str:
        return f"{self.kind.value}:{self.subject}"

    @property
    def cause(self) -> str:
        key = self.reason_code if self.cause_key is None else self.cause_key
        return f"{self.kind.value}:{key}" if key else self.kind.value


@dataclass(frozen=True, slots=True)
class AlertMember:
    fingerprint: str
    subject: str
    company_id: str | None
    label: str
    detail: str
    reason_code: str
    first_at: float
    last_at: float
    resolved_at: float | None

    @property
    def active(self) -> bool:
        return self.resolved_at is None

    def _id(self, prefix: str) -> str | None:
        head, _, rest = self.subject.partition(":")
        return rest if head == prefix else None

    @property
    def agent_id(self) -> str | None:
        return self._id("agent")

    @property
    def issue_id(self) -> str | None:
        return self._id("issue")

    @property
    def question_id(self) -> int | None:
        found = self._id("question")
        return int(found) if found is not None and found.isdigit() else None


@dataclass(frozen=True, slots=True)
class Alert:
    id: int
    kind: AlertKind
    cause: str
    severity: Severity
    state: AlertState  # effective: MUTED while a mute covers an open alert
    title: str
    fixes: tuple[Fix, ...]
    created_at: float
    changed_at: float
    version: int
    acked_at: float | None
    acked_by: str | None
    resolved_at: float | None
    members: tuple[AlertMember, ...]
    muted_until: float | None = None
    mutes: tuple[Mute, ...] = field(default_factory=tuple)

    @property
    def active_members(self) -> tuple[AlertMember, ...]:
        return tuple(m for m in self.members if m.active)

    @property
    def open(self) -> bool:
        return self.state is not AlertState.RESOLVED

    def members_for(self, company_id: str | None) -> tuple[AlertMember, ...]:
        """The members an audience sees: all for owners (None), else one company's."""
        if company_id is None:
            return self.members
        return tuple(m for m in self.members if m.company_id == company_id)
