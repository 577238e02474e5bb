"""The monitors: pure functions of stored state and `now` that find bad states.

Each `find_*` takes a `Snapshot` (everything read from the store at one moment) and the config
and returns `Finding`s; none reads a clock or the store, so each is tested against a table.
`evaluate` runs them all. core.alerting.watchdog reads the snapshots, runs `evaluate` every
monitors.interval and on events, and applies the findings to the AlertBook. `note_beat` is the
one store write here: the heartbeat counts beats that found a company without work.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from core.alerting.records import AlertKind, Finding, Fix, Severity
from core.clock import utc
from core.config import Config
from core.engine.runtime_check import RUNTIME_DOWN_CODES, RuntimeCheck
from core.models import (
    Agent,
    AgentStatus,
    HeartbeatOutcome,
    Issue,
    Question,
    QuestionKind,
    Routine,
    Run,
)
from core.queues.breaker import Velocity
from core.runs import LOOP_REASON
from core.store import heartbeats, issues as issue_store
from core.store.conn import Conn

log = logging.getLogger(__name__)

MONITORED = frozenset(AlertKind)
# Failure codes that mean the agent's own API calls were refused: a token problem.
UNAUTHORIZED_CODES = frozenset({"agent_unauthorized"})
# An API 401 counts for this long unless the agent authenticates again.
AUTH_SIGNAL_TTL = 15 * 60.0


@dataclass(frozen=True, slots=True)
class AuthSignal:
    code: str
    at: float


@dataclass(frozen=True, slots=True)
class Snapshot:
    now: float
    agents: tuple[Agent, ...]
    live_runs: tuple[Run, ...] = ()
    blocked: tuple[Issue, ...] = ()
    empty_queues: Mapping[str, tuple[int, float]] = field(default_factory=dict)  # beats, since
    spend: Mapping[str, float] = field(default_factory=dict)  # "agent:x"/"company:y" -> $
    escalations: Mapping[str, str] = field(default_factory=dict)  # issue -> where it went
    auto_resets: Mapping[str, tuple[int, float | None]] = field(default_factory=dict)
    auth_signals: Mapping[str, AuthSignal] = field(default_factory=dict)
    # Agent id -> its runtime's last probe, for the agents whose last probe failed.
    runtime_failures: Mapping[str, RuntimeCheck] = field(default_factory=dict)
    open_questions: tuple[Question, ...] = ()
    late_routines: tuple[Routine, ...] = ()
    runaways: tuple[Velocity, ...] = ()  # agents over the spend-velocity breaker
    # Company id -> what fleetbot did about its empty queue (core.queues.planner.PlanState).
    queue_notes: Mapping[str, str] = field(default_factory=dict)

    @property
    def waiting_issues(self) -> frozenset[str]:
        """Issues an open question holds: their runs wait on a human, not stuck or silent."""
        return frozenset(q.issue_id for q in self.open_questions)


def _hhmm(ts: float) -> str:
    return utc(ts).strftime("%H:%M UTC")


def _label(agent: Agent) -> str:
    return f"{agent.name} ({agent.role})"


def agent_status_finding(
    agent: Agent, auto_reset: tuple[int, float | None] | None = None
) -> Finding | None:
    """What an agent's own status says: error (agent_error, or agent_unauthenticated when its
    credentials were refused) or unauthenticated. A run that failed on an unreachable runtime
    is an agent_error here; find_agent_status leaves it to runtime_unreachable while the
    runtime's probe still fails."""
    reason = agent.reason or "no reason recorded"
    if agent.status is AgentStatus.UNAUTHENTICATED:
        return Finding(
            AlertKind.AGENT_UNAUTHENTICATED,
            f"agent:{agent.id}",
            agent.company_id,
            _label(agent),
            reason,
            agent.reason_code,
        )
    if agent.status is not AgentStatus.ERROR:
        return None
    fixes: tuple[Fix, ...]
    if agent.reason_code in UNAUTHORIZED_CODES:
        kind, fixes = AlertKind.AGENT_UNAUTHENTICATED, (Fix.ROTATE, Fix.RESET)
    else:
        kind, fixes = AlertKind.AGENT_ERROR, (Fix.RESET,)
    if auto_reset is not None and auto_reset[1] is not None:
        reason += f" · auto-reset #{auto_reset[0] + 1} at {_hhmm(auto_reset[1])}"
    return Finding(
        kind,
        f"agent:{agent.id}",
        agent.company_id,
        _label(agent),
        reason,
        agent.reason_code,
        fixes=fixes,
    )


def find_agent_status(s: Snapshot, cfg: Config) -> list[Finding]:
    found = (
        agent_status_finding(a, s.auto_resets.get(a.id))
        for a in s.agents
        if not runtime_says_it(a, s.runtime_failures)
    )
    return [f for f in found if f is not None]


def runtime_says_it(agent: Agent, failures: Mapping[str, RuntimeCheck]) -> bool:
    """An agent in error because its runtime is down, and the runtime's probe still fails:
    its target's runtime_unreachable alert already names it (one dead gateway, one alert)."""
    return (
        agent.status is AgentStatus.ERROR
        and agent.reason_code in RUNTIME_DOWN_CODES
        and agent.id in failures
    )


def find_runtime_unreachable(s: Snapshot, cfg: Config) -> list[Finding]:
    """One alert per failing runtime target, its agents as members.

    The cause is the target, so every agent behind one dead gateway joins one alert; each
    member's detail is its probe's problem and fix (the same for all when the gateway itself
    is down; an agent id the gateway lacks is told apart). Warning, but critical when the
    target holds every agent of a company that is not paused: that company cannot work."""
    agents = {a.id: a for a in s.agents}
    by_target: dict[str, list[RuntimeCheck]] = {}
    for check in s.runtime_failures.values():
        if check.agent_id in agents and not check.ok:
            by_target.setdefault(check.target, []).append(check)
    working: dict[str, set[str]] = {}
    for a in s.agents:
        if a.status is not AgentStatus.PAUSED:
            working.setdefault(a.company_id, set()).add(a.id)
    out = []
    for target, checks in by_target.items():
        down = {c.agent_id for c in checks}
        companies = {agents[c.agent_id].company_id for c in checks}
        whole = any(working.get(c) and working[c] <= down for c in companies)
        by_agent = {c.agent_id: c for c in checks}
        for a in (a for a in s.agents if a.id in by_agent):
            c = by_agent[a.id]
            out.append(
                Finding(
                    AlertKind.RUNTIME_UNREACHABLE,
                    f"agent:{a.id}",
                    a.company_id,
                    _label(a),
                    c.explained,
                    c.code,
                    cause_key=target,
                    severity=Severity.CRITICAL if whole else Severity.WARNING,
                )
            )
    return out


def find_auth_signals(s: Snapshot, cfg: Config) -> list[Finding]:
    """Agents whose API calls were refused lately and that have not authenticated since."""
    out = []
    for a in s.agents:
        sig = s.auth_signals.get(a.id)
        if sig is None or s.now - sig.at > AUTH_SIGNAL_TTL:
            continue
        if a.status in (AgentStatus.UNAUTHENTICATED, AgentStatus.ERROR):
            continue  # its status already says so
        if a.last_seen_at is not None and a.last_seen_at > sig.at:
            continue
        detail = f"its API calls are refused with 401 ({sig.code})"
        out.append(
            Finding(
                AlertKind.AGENT_UNAUTHENTICATED,
                f"agent:{a.id}",
                a.company_id,
                _label(a),
                detail,
                sig.code,
            )
        )
    return out


def find_stuck(s: Snapshot, cfg: Config) -> list[Finding]:
    """Live runs past their deadline, or with no progress report for monitors.stuck_after."""
    agents = {a.id: a for a in s.agents}
    waiting = s.waiting_issues
    out = []
    for run in s.live_runs:
        agent = agents.get(run.agent_id)
        if agent is None or run.issue_id in waiting:
            continue
        on = f" on {run.issue_id}" if run.issue_id else ""
        if run.deadline < s.now:
            detail, code = f"run{on} passed its deadline at {_hhmm(run.deadline)}", "deadline"
        elif s.now - run.last_progress_at > cfg.monitors.stuck_after:
            since = _hhmm(run.last_progress_at)
            detail, code = f"run{on} has reported no progress since {since}", "no_progress"
        else:
            continue
        out.append(
            Finding(
                AlertKind.AGENT_STUCK,
                f"agent:{agent.id}",
                agent.company_id,
                _label(agent),
                detail,
                code,
                cause_key="",
            )
        )
    return out


def find_silent(s: Snapshot, cfg: Config) -> list[Finding]:
    """Running agents not heard from (usage, API call) for monitors.silent_after, and idle
    agents whose heartbeats stopped. A stuck run already says the first; not repeated."""
    stuck = {f.subject for f in find_stuck(s, cfg)}
    runs = {r.agent_id: r for r in s.live_runs}
    waiting = s.waiting_issues
    limit = cfg.monitors.silent_after
    out = []
    for a in s.agents:
        if f"agent:{a.id}" in stuck:
            continue
        if a.status is AgentStatus.RUNNING:
            run = runs.get(a.id)
            if run is not None and run.issue_id in waiting:
                continue  # it waits on a human's answer, in its run
            marks = [a.last_seen_at or 0.0, a.status_changed_at]
            if run is not None:
                marks += [run.last_progress_at, run.started_at]
            last = max(marks)
            if s.now - last <= limit:
                continue
            detail = f"running, but not heard from since {_hhmm(last)}"
        elif a.status is AgentStatus.IDLE and s.now - a.next_heartbeat_at > limit:
            detail = f"missed its heartbeats since {_hhmm(a.next_heartbeat_at)}"
        else:
            continue
        out.append(
            Finding(
                AlertKind.AGENT_SILENT,
                f"agent:{a.id}",
                a.company_id,
                _label(a),
                detail,
                "silent",
                cause_key="",
            )
        )
    return out


def find_queue_empty(s: Snapshot, cfg: Config) -> list[Finding]:
    """Companies whose agents found no open work for queue_empty_heartbeats beats in a row."""
    n = cfg.monitors.queue_empty_heartbeats
    out = []
    for c in cfg.companies:
        beats, since = s.empty_queues.get(c.id, (0, s.now))
        if beats < n:
            continue
        out.append(
            Finding(
                AlertKind.QUEUE_EMPTY,
                f"company:{c.id}",
                c.id,
                c.name,
                f"no open issue since {_hhmm(since)}: its agents wake up to nothing"
                + (f"; {s.queue_notes[c.id]}" if c.id in s.queue_notes else ""),
                "empty",
                cause_key="",
            )
        )
    return out


def find_routine_missed(s: Snapshot, cfg: Config) -> list[Finding]:
    """Routines whose schedule slipped (core.queues.routines: `late`)."""
    return [
        Finding(
            AlertKind.ROUTINE_MISSED,
            f"routine:{r.id}",
            r.company_id,
            f"{r.ref} {r.name} ({r.schedule})",
            r.late,
            "late",
            cause_key="",
        )
        for r in s.late_routines
        if r.late and not r.paused
    ]


def find_spend_velocity(s: Snapshot, cfg: Config) -> list[Finding]:
    """Agents spending far above their own hourly baseline (core.queues.breaker)."""
    by_id = {a.id: a for a in s.agents}
    out = []
    for v in s.runaways:
        agent = by_id.get(v.agent_id)
        if agent is None:
            continue
        paused = agent.status is AgentStatus.PAUSED and agent.reason_code == "spend_velocity"
        out.append(
            Finding(
                AlertKind.SPEND_VELOCITY,
                f"agent:{agent.id}",
                agent.company_id,
                _label(agent),
                v.describe() + (": paused" if paused else ""),
                "spend_velocity",
                cause_key="",
            )
        )
    return out


def budget_findings(
    subject: str, company_id: str, label: str, spent: float, budget: float, warn: float
) -> Finding | None:
    if budget <= 0 and spent <= 0:
        return None
    share = spent / budget if budget > 0 else float("inf")
    if share >= 1:
        detail = f"spent its ${budget:,.2f} monthly budget: heartbeats paused"
        return Finding(
            AlertKind.BUDGET,
            subject,
            company_id,
            label,
            detail,
            "stop",
            severity=Severity.CRITICAL,
            fixes=(),
        )
    if share >= warn:
        detail = f"past {warn:.0%} of its ${budget:,.2f} monthly budget"
        return Finding(AlertKind.BUDGET, subject, company_id, label, detail, "warn")
    return None


def find_budget(s: Snapshot, cfg: Config) -> list[Finding]:
    """Monthly spend against CompanyConfig.budget and AgentConfig.monthly_budget."""
    warn = cfg.monitors.budget_warn
    names = {a.id: _label(a) for a in s.agents}
    out = []
    for c in cfg.companies:
        if c.budget is not None:
            subject = f"company:{c.id}"
            f = budget_findings(
                subject, c.id, c.name, s.spend.get(subject, 0.0), c.budget.monthly_usd, warn
            )
            out += [f] if f else []
        for a in c.agents:
            if a.monthly_budget is not None:
                subject = f"agent:{a.id}"
                label = names.get(a.id, a.id)
                spent = s.spend.get(subject, 0.0)
                f = budget_findings(subject, c.id, label, spent, a.monthly_budget, warn)
                out += [f] if f else []
    return out


def find_blocked(s: Snapshot, cfg: Config) -> list[Finding]:
    """Blocked issues: issue_blocked, or recovery_loop when the loop guard stopped them."""
    out = []
    for i in s.blocked:
        loop = i.reason.startswith(LOOP_REASON)
        detail = i.reason or "blocked without a reason"
        where = s.escalations.get(i.id)
        if where:
            detail += f" · escalated to {where}"
        out.append(
            Finding(
                AlertKind.RECOVERY_LOOP if loop else AlertKind.ISSUE_BLOCKED,
                f"issue:{i.id}",
                i.company_id,
                f"{i.id} {i.title[:60]}",
                detail,
                "loop" if loop else ("attempts" if "attempt budget" in i.reason else "blocked"),
                cause_key="",
            )
        )
    return out


def question_finding(q: Question, agents: Mapping[str, Agent]) -> Finding:
    """One alert per open question: its cause is the question, so none are grouped."""
    agent = agents.get(q.agent_id)
    who = _label(agent) if agent is not None else q.agent_id
    what = "approval" if q.kind is QuestionKind.APPROVAL else "question"
    return Finding(
        AlertKind.QUESTION,
        f"question:{q.id}",
        q.company_id,
        f"{q.ref} · {q.issue_id} · {who}",
        f"{what}: {q.text[:300]}",
        q.kind.value,
        cause_key=q.ref,
    )


def find_questions(s: Snapshot, cfg: Config) -> list[Finding]:
    """Every open question: an agent waits on a human."""
    agents = {a.id: a for a in s.agents}
    return [question_finding(q, agents) for q in s.open_questions]


FINDERS = (
    find_agent_status,
    find_runtime_unreachable,
    find_auth_signals,
    find_stuck,
    find_silent,
    find_queue_empty,
    find_routine_missed,
    find_spend_velocity,
    find_budget,
    find_blocked,
    find_questions,
)


def evaluate(s: Snapshot, cfg: Config) -> list[Finding]:
    """Every finding of every monitor; one per fingerprint (the first finder wins)."""
    seen: dict[str, Finding] = {}
    for finder in FINDERS:
        for f in finder(s, cfg):
            seen.setdefault(f.fingerprint, f)
    return list(seen.values())


async def note_beat(conn: Conn, company_id: str, outcome: HeartbeatOutcome, now: float) -> None:
    """Count heartbeats that found a company without open work (inside the beat's write)."""
    if outcome is HeartbeatOutcome.NO_WORK:
        has_work = await issue_store.company_has_work(conn, company_id)
    elif outcome in (HeartbeatOutcome.DISPATCHED, HeartbeatOutcome.OFF_HOURS):
        has_work = True
    else:
        return  # a skipped agent tells nothing about the queue
    await heartbeats.note_queue(conn, company_id, has_work, now)
