"""Recovery that never re-runs finished work, escalation of blocked issues, auto-reset.

Three lines of defence against the field notes' loop (84 re-runs of closed issues):
1. Every re-dispatch is a compare-and-set on the issue's status and lease in the very
   transaction that opens the run (core.runs.RunBook.open); recovery's own writes are
   compare-and-sets too, never decisions taken on an earlier read.
2. Each issue has an attempt budget (core.store.ops.release_issue); a spent budget blocks it,
   and `escalate` files the blocker with the nearest working manager up the reports_to chain
   (the owners always get the issue_blocked alert).
3. `guard_dispatch`: an issue dispatched `recovery_loop_dispatches` times within
   `recovery_loop_window` is blocked instead of dispatched again, and recorded so the monitors
   raise recovery_loop.

Auto-reset (alerts.auto_reset_after, off by default) retries an agent stuck in error after a
delay that doubles with each attempt up to alerts.auto_reset_max; a successful run starts the
count again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiosqlite

from core.config import Config, MonitorsConfig
from core.errors import FleetbotError
from core.models import Agent, AgentStatus, Issue, IssueStatus
from core.store import ops, rows

if TYPE_CHECKING:
    from core.service import FleetService

log = logging.getLogger(__name__)

ESCALATION_ACTOR = "fleetbot:escalation"
AUTO_RESET_ACTOR = "fleetbot:auto-reset"
# How an issue blocked by the loop guard starts its reason (the monitors tell the kinds apart).
LOOP_REASON = "recovery loop stopped:"


async def guard_dispatch(
    conn: aiosqlite.Connection, issue_id: str, now: float, cfg: MonitorsConfig
) -> bool:
    """May `issue_id` be dispatched once more? If it already was `recovery_loop_dispatches`
    times within the window, block it (compare-and-set on its open status), record the loop,
    and answer False. Runs inside the dispatching transaction."""
    since = now - cfg.recovery_loop_window
    async with conn.execute(
        "SELECT count(*) FROM runs WHERE issue_id = ? AND started_at > ?", (issue_id, since)
    ) as cur:
        (count,) = await cur.fetchone() or (0,)
    if count < cfg.recovery_loop_dispatches:
        return True
    minutes = cfg.recovery_loop_window / 60
    reason = (
        f"{LOOP_REASON} dispatched {count} times within {minutes:.0f} min; "
        "find out why it keeps coming back before moving it to todo"
    )
    cur = await conn.execute(
        "UPDATE issues SET status = 'blocked', reason = ?, lease_run_id = NULL, "
        "lease_until = NULL, updated_at = ? WHERE id = ? AND status IN ('todo', 'in_progress') "
        "AND (lease_run_id IS NULL OR lease_until < ?)",
        (reason, now, issue_id, now),
    )
    if cur.rowcount == 1:
        await conn.execute(
            "INSERT INTO recovery_loops (issue_id, dispatches, window_seconds, at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (issue_id) DO UPDATE SET "
            "dispatches = excluded.dispatches, window_seconds = excluded.window_seconds, "
            "at = excluded.at",
            (issue_id, count, cfg.recovery_loop_window, now),
        )
        await ops.audit(conn, now, "fleetbot", "issue.recovery_loop", issue_id, reason)
    return False


def reports_chain(agent_id: str | None, agents: Mapping[str, Agent]) -> list[Agent]:
    """The managers above `agent_id`, nearest first; a reports_to cycle ends the chain."""
    chain: list[Agent] = []
    seen = {agent_id}
    current = agents.get(agent_id) if agent_id else None
    while current is not None and current.reports_to and current.reports_to not in seen:
        seen.add(current.reports_to)
        current = agents.get(current.reports_to)
        if current is not None:
            chain.append(current)
    return chain


def auto_reset_delay(attempts: int, after: float, cap: float) -> float:
    """Wait before auto-reset number `attempts + 1`: `after`, doubled per attempt, capped."""
    return float(min(cap, after * (2 ** min(attempts, 30))))


@dataclass(frozen=True, slots=True)
class SweepReport:
    leases_cleared: int
    woken: tuple[str, ...]  # issue ids whose agent was woken for a retry
    reset: tuple[str, ...]  # agents auto-reset


@dataclass(frozen=True, slots=True)
class RetryCandidate:
    issue_id: str
    agent_id: str
    not_before: float


class Recovery:
    def __init__(self, service: FleetService, config: Config) -> None:
        self.service = service
        self.db = service.db
        self.clock = service.clock
        self.config = config

    async def sweep(self) -> SweepReport:
        """Clear leases no live run holds, wake agents whose retry backoff is over, and
        auto-reset agents whose turn has come."""
        now = self.clock.now()
        cleared = await self.clear_stale_leases(now)
        woken = await self.requeue(await self.retry_candidates(now))
        reset = await self.auto_reset_due()
        return SweepReport(cleared, tuple(woken), tuple(reset))

    async def clear_stale_leases(self, now: float) -> int:
        """Leases past their time whose run is not live. Only the lease is dropped: a done or
        cancelled issue stays done or cancelled."""
        async with self.db.write() as conn:
            cur = await conn.execute(
                "UPDATE issues SET lease_run_id = NULL, lease_until = NULL WHERE "
                "lease_run_id IS NOT NULL AND lease_until < ? AND NOT EXISTS (SELECT 1 FROM "
                "runs r WHERE r.id = issues.lease_run_id AND r.status = 'running')",
                (now,),
            )
            return cur.rowcount

    async def retry_candidates(self, now: float) -> list[RetryCandidate]:
        """Open issues whose backoff after a failed run is over (a read; `requeue` re-checks)."""
        found = await self.db.fetchall(
            "SELECT i.id, i.assignee_id, i.not_before FROM issues i JOIN agents a ON "
            "a.id = i.assignee_id WHERE i.status IN ('todo', 'in_progress') AND "
            "i.not_before IS NOT NULL AND i.not_before <= ? AND i.lease_run_id IS NULL "
            "AND a.status = 'idle' AND a.deleted_at IS NULL ORDER BY i.not_before LIMIT 500",
            (now,),
        )
        return [RetryCandidate(r[0], r[1], r[2]) for r in found]

    async def requeue(self, candidates: list[RetryCandidate]) -> list[str]:
        """Wake each candidate's agent, if the issue is *still* open, unleased and due: the
        check and the write are one compare-and-set, so a status change after the read wins."""
        now = self.clock.now()
        woken: list[str] = []
        for c in candidates:
            async with self.db.write() as conn:
                cur = await conn.execute(
                    "UPDATE issues SET not_before = NULL WHERE id = ? AND assignee_id = ? AND "
                    "status IN ('todo', 'in_progress') AND not_before = ? AND not_before <= ? "
                    "AND (lease_run_id IS NULL OR lease_until < ?)",
                    (c.issue_id, c.agent_id, c.not_before, now, now),
                )
            if cur.rowcount == 1:
                woken.append(c.issue_id)
                await self.service.wake(c.agent_id, "fleetbot:recovery", audited=False)
        return woken

    # -- escalation -----------------------------------------------------------------------------

    async def escalate(self, issue_id: str) -> str | None:
        """File a blocked issue with the nearest working manager above its assignee, once.
        Returns the escalation issue id, or None (already escalated, not blocked, or nobody
        above: then the owners' issue_blocked alert is the escalation)."""
        issue = await self.service.issue(issue_id)
        if issue.status is not IssueStatus.BLOCKED:
            return None
        agents = {a.id: a for a in await self.service.agents()}
        chain = reports_chain(issue.assignee_id, agents)
        target = next(
            (a for a in chain if a.status in (AgentStatus.IDLE, AgentStatus.RUNNING)), None
        )
        now = self.clock.now()
        async with self.db.write() as conn:
            cur = await conn.execute(
                "INSERT INTO escalations (issue_id, chain, escalated_to, at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (issue_id) DO NOTHING",
                (
                    issue.id,
                    json.dumps([a.id for a in chain]),
                    target.id if target else "owner",
                    now,
                ),
            )
            if cur.rowcount != 1:
                return None
        if target is None:
            return None
        filed = await self.service.file_issue(
            title=f"Blocked: {issue.id} {issue.title}"[:200],
            assignee=target.id,
            actor=ESCALATION_ACTOR,
            company=issue.company_id,
            body=_escalation_body(issue, chain, agents),
        )
        async with self.db.write() as conn:
            await conn.execute(
                "UPDATE escalations SET escalation_issue = ? WHERE issue_id = ?",
                (filed.id, issue.id),
            )
        log.info("%s is blocked; escalated to %s as %s", issue.id, target.id, filed.id)
        return filed.id

    # -- auto-reset -----------------------------------------------------------------------------

    async def note_error(self, agent_id: str) -> float | None:
        """An agent entered error: when will it be auto-reset (None: auto-reset is off)."""
        after = self.config.alerts.auto_reset_after
        if not after:
            return None
        now = self.clock.now()
        async with self.db.write() as conn:
            async with conn.execute(
                "SELECT attempts FROM auto_resets WHERE agent_id = ?", (agent_id,)
            ) as cur:
                row = await cur.fetchone()
            attempts = row[0] if row else 0
            at = now + auto_reset_delay(attempts, after, self.config.alerts.auto_reset_max)
            await conn.execute(
                "INSERT INTO auto_resets (agent_id, attempts, next_at) VALUES (?, ?, ?) "
                "ON CONFLICT (agent_id) DO UPDATE SET next_at = excluded.next_at",
                (agent_id, attempts, at),
            )
        return at

    async def note_success(self, agent_id: str) -> None:
        """A run succeeded: the next error starts the backoff from the beginning."""
        async with self.db.write() as conn:
            await conn.execute("DELETE FROM auto_resets WHERE agent_id = ?", (agent_id,))

    async def auto_reset_due(self) -> list[str]:
        if not self.config.alerts.auto_reset_after:
            return []
        now = self.clock.now()
        found = await self.db.fetchall(
            "SELECT r.agent_id FROM auto_resets r JOIN agents a ON a.id = r.agent_id "
            "WHERE r.next_at <= ? AND a.status = 'error' AND a.deleted_at IS NULL",
            (now,),
        )
        done = []
        for (agent_id,) in found:
            async with self.db.write() as conn:
                cur = await conn.execute(
                    "UPDATE auto_resets SET attempts = attempts + 1, next_at = NULL, last_at = ? "
                    "WHERE agent_id = ? AND next_at <= ?",
                    (now, agent_id, now),
                )
            if cur.rowcount != 1:
                continue
            try:
                await self.service.reset(agent_id, AUTO_RESET_ACTOR)
            except FleetbotError as exc:  # e.g. its token fails now: the alert says so
                log.warning("auto-reset of %s refused: %s", agent_id, exc.message)
                continue
            done.append(agent_id)
        return done

    async def schedule(self) -> dict[str, tuple[int, float | None]]:
        """agent id -> (auto-resets so far, next one at), for the alerts' text."""
        found = await self.db.fetchall("SELECT agent_id, attempts, next_at FROM auto_resets")
        return {r[0]: (r[1], r[2]) for r in found}


def _escalation_body(issue: Issue, chain: list[Agent], agents: Mapping[str, Agent]) -> str:
    who = agents.get(issue.assignee_id or "")
    assignee = f"{who.name} ({who.role})" if who else (issue.assignee_id or "nobody")
    path = " → ".join([assignee, *(f"{a.name} ({a.role})" for a in chain), "owner"])
    return (
        f"{issue.id} “{issue.title}” is blocked: {issue.reason or 'no reason given'}.\n"
        f"Assigned to {assignee}. Escalation path: {path}.\n"
        f"Decide: reassign it (/assign {issue.id} …), split it into smaller issues, or cancel "
        "it. Moving it back to todo gives it a fresh attempt budget."
    )


async def blocked_issues(conn: aiosqlite.Connection) -> list[Issue]:
    async with conn.execute(
        f"SELECT {rows.ISSUE_COLUMNS} FROM issues WHERE status = 'blocked' ORDER BY updated_at"
    ) as cur:
        return [rows.issue(r) for r in await cur.fetchall()]
