"""What happened in the core, told to whoever listens (scheduler, monitors, notifier).

Events are published after the transaction that caused them commits, so a listener never acts
on a change that was rolled back. Listeners are plain callables and must not block; one that
needs to do I/O schedules a task.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from core.models import AgentStatus, RunStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IssueAssigned:
    issue_id: str
    agent_id: str
    reason: str = "assigned"  # the wake reason: assigned, routine or planner


@dataclass(frozen=True, slots=True)
class AgentStatusChanged:
    agent_id: str
    company_id: str
    old: AgentStatus
    new: AgentStatus
    reason: str
    reason_code: str


@dataclass(frozen=True, slots=True)
class RunEnded:
    run_id: str
    agent_id: str
    issue_id: str | None
    status: RunStatus
    reason: str
    reason_code: str
    summary: str
    # Ended by the agent's own finish call: its turn may still be wrapping up (a CLI's last
    # reply and its usage report come after the call), so its runtime gets a moment to end.
    by_agent: bool = False


@dataclass(frozen=True, slots=True)
class SummaryPosted:
    summary_id: int
    agent_id: str
    issue_id: str | None
    source: str  # "api" or "run"


@dataclass(frozen=True, slots=True)
class WakeRequested:
    """Beat the agent now. With `issue_id` the run should be on that issue if it is workable
    (an answer, a comment), and `note` says why in one line (core.runtimes.base.Dispatch)."""

    agent_id: str
    reason: str = "heartbeat"  # the wake reason: heartbeat, answer, approval, comment, …
    issue_id: str | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class QuestionAsked:
    question_id: int
    issue_id: str
    company_id: str


@dataclass(frozen=True, slots=True)
class QuestionAnswered:
    question_id: int
    issue_id: str
    answered_by: str


@dataclass(frozen=True, slots=True)
class QuestionCancelled:
    question_id: int
    issue_id: str


QuestionEvent = QuestionAsked | QuestionAnswered | QuestionCancelled
Event = (
    IssueAssigned
    | AgentStatusChanged
    | RunEnded
    | SummaryPosted
    | WakeRequested
    | QuestionAsked
    | QuestionAnswered
    | QuestionCancelled
)
Listener = Callable[[Event], None]


class EventBus:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def publish(self, *events: Event) -> None:
        for event in events:
            for listener in list(self._listeners):
                try:
                    listener(event)
                except Exception:  # one broken listener must not stop the others
                    log.exception("event listener failed on %s", type(event).__name__)
