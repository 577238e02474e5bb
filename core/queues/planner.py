"""The planner: when a company's queue stays empty after its backlog is drained, one planning
issue to the company's planner ("the queue is empty; file the next work").

Opt-in per company (`companies[].planner`). The planner is the configured agent or role, else
the top of the `reports_to` chain (the root most agents report up to). Bounded twice: at most
one open planning issue per company, and at most one per `planner.every`. "Stays empty" is the
queue_empty alert's own condition (monitors.queue_empty_heartbeats beats in a row that found
no work), so fleetbot acts exactly when it would otherwise only tell the owner. The planning
issue's run is the one deliberate LLM call; /costs shows it apart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from core.clock import Clock, utc
from core.config import Config
from core.config.schema import CompanyConfig
from core.events import EventBus, IssueAssigned
from core.models import PLANNER, Issue, IssueStatus
from core.queries import FleetQueries
from core.store import audit, heartbeats, issues as issue_store
from core.store.db import Database

log = logging.getLogger(__name__)

_STALLED = (IssueStatus.BLOCKED, IssueStatus.IN_REVIEW)


def planner_spec(company: CompanyConfig) -> str | None:
    """Who plans for the company: the configured assignee, else the root of the reports_to
    chain that most agents report up to (the first such root in the config on a tie)."""
    if company.planner is None:
        return None
    if company.planner.assignee:
        return company.planner.assignee
    boss = {a.id: a.reports_to for a in company.agents}
    below: dict[str, int] = {}
    for a in company.agents:
        seen, at = set(), a.id
        while boss.get(at) and at not in seen:
            seen.add(at)
            at = boss[at] or at
        below[at] = below.get(at, 0) + 1
    roots = [a.id for a in company.agents if not a.reports_to]
    return max(roots, key=lambda r: below.get(r, 0)) if roots else None


@dataclass(frozen=True, slots=True)
class PlanState:
    """What fleetbot did about a company's empty queue: the queue_empty alert's words."""

    backlog: int  # items still in the backlog
    planning: Issue | None  # the open planning issue
    last_planned: float | None
    enabled: bool
    every: float

    def note(self) -> str:
        if self.backlog:
            return (
                f"{self.backlog} backlog item(s) wait on agents that are not idle (paused, in "
                "error, or outside active hours)"
            )
        if not self.enabled:
            return "backlog empty; no planner (set companies[].planner to have one file work)"
        if self.planning is not None:
            return (
                f"backlog empty; planning issue {self.planning.id} filed to "
                f"{self.planning.assignee_id} at {utc(self.planning.created_at):%d %b %H:%M} UTC"
            )
        if self.last_planned is not None:
            nxt = utc(self.last_planned + self.every)
            return f"backlog empty; planned this period already: next at {nxt:%d %b %H:%M} UTC"
        return "backlog empty; the planner is woken within the minute"


class Planner:
    def __init__(
        self, queries: FleetQueries, db: Database, config: Config, clock: Clock, events: EventBus
    ) -> None:
        self.queries = queries
        self.db = db
        self.config = config
        self.clock = clock
        self.events = events

    async def state(self, company: CompanyConfig) -> PlanState:
        reader = self.db.reader
        return PlanState(
            backlog=await issue_store.backlog_count(reader, company.id),
            planning=await issue_store.open_by(reader, company.id, PLANNER),
            last_planned=await issue_store.last_filed_by(reader, company.id, PLANNER),
            enabled=company.planner is not None,
            every=company.planner.every if company.planner else 0.0,
        )

    async def tick(self) -> list[Issue]:
        """File a planning issue for each opted-in company whose queue stayed empty, its
        backlog drained, with none open and none filed within its period."""
        filed: list[Issue] = []
        empty = await heartbeats.empty_queues(self.db.reader)
        for company in self.config.companies:
            if company.planner is None:
                continue
            beats, _since = empty.get(company.id, (0, None))
            if beats < self.config.monitors.queue_empty_heartbeats:
                continue
            try:
                issue = await self._plan(company)
            except Exception:
                log.exception("planning for %s failed; the next pass retries", company.id)
                continue
            if issue is not None:
                filed.append(issue)
        return filed

    async def _plan(self, company: CompanyConfig) -> Issue | None:
        assert company.planner is not None
        now = self.clock.now()
        state = await self.state(company)
        if state.backlog or state.planning is not None:
            return None
        if state.last_planned is not None and now - state.last_planned < company.planner.every:
            return None
        spec = planner_spec(company)
        if spec is None:
            return None
        agent = await self.queries.resolve_assignee(spec, company.id)
        body = await self._body(company)
        async with self.db.write() as conn:
            if await issue_store.company_has_work(conn, company.id):
                return None  # work arrived since the beats were counted
            issue = await issue_store.file(
                conn,
                company_id=company.id,
                assignee_id=agent.id,
                title=f"The queue of {company.name} is empty: file the next work",
                body=body,
                created_by=PLANNER,
                model=None,
                max_attempts=self.config.defaults.max_attempts,
                now=now,
            )
            await audit.record(
                conn,
                now,
                "fleetbot",
                "issue.file",
                issue.id,
                {"assignee": agent.id, "why": "queue empty, backlog drained: planner"},
            )
        log.info(
            "%s: queue empty and backlog drained; filed %s to %s", company.id, issue.id, agent.id
        )
        self.events.publish(IssueAssigned(issue.id, agent.id, "planner"))
        return issue

    async def _body(self, company: CompanyConfig) -> str:
        assert company.planner is not None
        reader = self.db.reader
        lines = [
            f"The queue of {company.name} is empty and its backlog is drained: every agent "
            "wakes up to nothing. Decide what comes next and file it.",
        ]
        if company.planner.goals:
            lines += ["", "Goals:", *(f"- {g}" for g in company.planner.goals)]
        done = await issue_store.recently_done(reader, company.id, company.planner.recent)
        if done:
            lines += ["", "Recently done:", *(f"- {i.id} {i.title}" for i in done)]
        stalled = await issue_store.find(reader, company_id=company.id, statuses=_STALLED, limit=10)
        if stalled:
            lines += [
                "",
                "Open but not in an inbox:",
                *(f"- {i.id} ({i.status.value}) {i.title}" for i in stalled),
            ]
        roles = sorted({a.role for a in company.agents})
        lines += [
            "",
            "File each piece of work with `fleetbot agent file --to ROLE --title TITLE "
            "[--body TEXT] [--priority high] [--backlog]` (roles here: "
            f"{', '.join(roles)}); work for later goes to the backlog, which is promoted as "
            "agents run out of work. Then finish this issue as done, with a one-line summary "
            "of what you filed.",
        ]
        return "\n".join(lines)
