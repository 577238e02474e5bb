"""Every error fleetbot raises on purpose, as one tree.

Messages are sentences that tell the reader what to do next; adapters (bot, API, CLI) show them
as they are and map the class to a status code, a reply or an exit code.

FleetbotError
├── ConfigError                    the config file (or env override) is wrong; says file, key, fix
├── StoreError
│   ├── SchemaTooNew               the database was written by a newer fleetbot
│   ├── InstanceLocked             another `fleetbot run` holds the database; names it
│   └── StoreUnavailable           locked, full, read-only or failing disk; retry (HTTP 503)
├── NotFound                       (HTTP 404)
│   ├── CompanyNotFound
│   ├── AgentNotFound
│   ├── IssueNotFound
│   ├── RunNotFound
│   └── AlertNotFound
├── InvalidInput                   an argument is well-formed but unusable (HTTP 422)
│   └── AmbiguousAssignee          a role matches several agents; lists the choices
├── Conflict                       the request clashes with current state (HTTP 409)
│   ├── InvalidTransition          a status change outside the graph
│   ├── LeaseConflict              the issue is held by another run
│   ├── RunNotActive               the run already ended
│   └── TurnCapExceeded            the run went past max_turns_per_run and was stopped
├── Forbidden                      (HTTP 403)
│   ├── SkillDenied                the agent's allowlist lacks the skill
│   └── NotYourRun                 a token of one agent used on another agent's run
├── AuthError
│   ├── KeyRingError               the key ring file is missing, unreadable or too open
│   └── TokenInvalid               a token failed verification; `.code` is the machine reason
└── AgentFailure                   waking an agent failed; `.code` is the machine reason
    ├── AgentTimeout               no answer before the deadline
    ├── AgentUnreachable           connection refused, DNS, TLS …
    ├── AgentBadStatus             a non-2xx answer
    ├── AgentBadReply              a 2xx answer we cannot read
    └── ProcessFailed              a process runtime exited non-zero or could not start
"""

from __future__ import annotations


class FleetbotError(Exception):
    """Base of every error fleetbot raises on purpose."""

    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class ConfigError(FleetbotError):
    code = "bad_config"


class StoreError(FleetbotError):
    code = "store"


class SchemaTooNew(StoreError):
    code = "schema_too_new"


class InstanceLocked(StoreError):
    code = "instance_locked"


class StoreUnavailable(StoreError):
    """The store cannot serve the request now, through no fault of the request: the database
    is locked by another process, the disk is full or failing, the file is read-only. `cause`
    says which in a few words and `fix` what the owner can do; retrying later may succeed."""

    code = "store_unavailable"

    def __init__(self, message: str, *, cause: str, fix: str) -> None:
        super().__init__(message)
        self.cause = cause
        self.fix = fix


class NotFound(FleetbotError):
    code = "not_found"


class CompanyNotFound(NotFound):
    code = "company_not_found"


class AgentNotFound(NotFound):
    code = "agent_not_found"


class IssueNotFound(NotFound):
    code = "issue_not_found"


class RunNotFound(NotFound):
    code = "run_not_found"


class AlertNotFound(NotFound):
    code = "alert_not_found"


class RoutineNotFound(NotFound):
    code = "routine_not_found"


class InvalidInput(FleetbotError):
    code = "invalid_input"


class AmbiguousAssignee(InvalidInput):
    code = "ambiguous_assignee"

    def __init__(self, message: str, choices: list[str]) -> None:
        super().__init__(message)
        self.choices = choices


class Conflict(FleetbotError):
    code = "conflict"


class InvalidTransition(Conflict):
    code = "invalid_transition"


class LeaseConflict(Conflict):
    code = "lease_conflict"


class LeadershipLost(Conflict):
    """A write the leader alone may make, from a replica whose lease another now holds."""

    code = "leadership_lost"


class RunNotActive(Conflict):
    code = "run_not_active"


class TurnCapExceeded(Conflict):
    code = "max_turns_exceeded"


class Forbidden(FleetbotError):
    code = "forbidden"


class SkillDenied(Forbidden):
    code = "skill_denied"


class NotYourRun(Forbidden):
    code = "not_your_run"


class AuthError(FleetbotError):
    code = "auth"


class KeyRingError(AuthError):
    code = "keyring"


class TokenInvalid(AuthError):
    """A token did not verify. `code` is one of core.models.AuthReason."""


class AgentFailure(FleetbotError):
    code = "runtime_failed"


class AgentTimeout(AgentFailure):
    code = "runtime_timeout"


class AgentUnreachable(AgentFailure):
    code = "runtime_unreachable"


class AgentBadStatus(AgentFailure):
    code = "runtime_bad_status"


class AgentBadReply(AgentFailure):
    code = "runtime_bad_reply"


class ProcessFailed(AgentFailure):
    code = "process_failed"
