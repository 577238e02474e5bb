"""The read side of the service facade: lists, and lookups of what a person or an agent typed.

core.service.FleetService extends `FleetQueries` with every change; callers use the facade.
Reads go through the store's reader connection and see only committed data.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.clock import Clock
from core.config import Config
from core.errors import (
    AgentNotFound,
    AmbiguousAssignee,
    CompanyNotFound,
    InvalidInput,
    IssueNotFound,
)
from core.models import Agent, Comment, Company, Issue, IssueStatus, MessageLink, Question, Run
from core.questions import Questions
from core.reports.activity import CompanyActivity, fleet_activity
from core.reports.board import CompanyBoard, fleet_board
from core.reports.costs import CostBook
from core.reports.roi import Roi, fleet_roi
from core.runs import RunBook
from core.store import (
    agents as agent_store,
    audit,
    companies as company_store,
    issues as issue_store,
    links as link_store,
    questions as question_store,
    runs as run_store,
)
from core.store.conn import Row
from core.store.db import Database

_ISSUE_ID_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")


@dataclass(frozen=True, slots=True)
class IssueFilter:
    company_id: str | None = None
    assignee_id: str | None = None
    statuses: tuple[IssueStatus, ...] = ()
    limit: int = 50


class FleetQueries:
    runs: RunBook  # set by FleetService, which owns the runs' write side
    asked: Questions  # likewise, the questions' write side

    def __init__(self, db: Database, config: Config, clock: Clock) -> None:
        self.db = db
        self.config = config
        self.clock = clock

    async def companies(self) -> list[Company]:
        return await company_store.every(self.db.reader)

    async def company(self, company_id: str) -> Company:
        """By id or prefix, in any case; CompanyNotFound lists the companies there are."""
        found = await company_store.lookup(self.db.reader, company_id.strip().lower())
        if found is None:
            known = ", ".join(c.id for c in await self.companies()) or "(none configured)"
            raise CompanyNotFound(f"no company {company_id!r}; companies: {known}")
        return found

    async def agents(self, company_id: str | None = None) -> list[Agent]:
        if company_id is not None:
            company_id = (await self.company(company_id)).id
        return await agent_store.roster(self.db.reader, company_id)

    async def agent(self, agent_id: str) -> Agent:
        found = await agent_store.get(self.db.reader, agent_id.strip().lower().lstrip("@"))
        if found is None:
            raise AgentNotFound(f"no agent {agent_id!r}; /agents lists them")
        return found

    async def maybe_agent(self, agent_id: str) -> Agent | None:
        """The agent, or None if it does not exist (or was removed from the config)."""
        return await agent_store.get(self.db.reader, agent_id)

    async def issue(self, issue_id: str) -> Issue:
        key = issue_id.strip().upper()
        found = None
        if key and set(key) <= _ISSUE_ID_CHARS:
            found = await issue_store.get(self.db.reader, key)
        if found is None:
            raise IssueNotFound(f"no issue {issue_id!r}; issue ids look like ALI-12")
        return found

    async def issues(self, flt: IssueFilter | None = None) -> list[Issue]:
        flt = flt or IssueFilter()
        company_id = (await self.company(flt.company_id)).id if flt.company_id else None
        return await issue_store.find(
            self.db.reader,
            company_id=company_id,
            assignee_id=flt.assignee_id,
            statuses=flt.statuses,
            limit=max(1, min(flt.limit, 500)),
        )

    async def inbox(self, agent_id: str) -> list[Issue]:
        """The agent's open work, oldest first (what a heartbeat would dispatch)."""
        return await issue_store.inbox(self.db.reader, agent_id)

    async def comments(self, issue_id: str) -> list[Comment]:
        return await issue_store.comments(self.db.reader, issue_id)

    async def question(self, question_id: int | str) -> Question:
        """One question by id (`Q7` or 7); NotFound `question_not_found` if there is none."""
        return await self.asked.get(question_id)

    async def questions(self, issue_id: str) -> list[Question]:
        """The issue's questions, oldest first."""
        return await question_store.for_issue(self.db.reader, issue_id)

    async def open_questions(self, company_id: str | None = None) -> list[Question]:
        """What is waiting on a human: open questions (of one company), oldest first."""
        if company_id is not None:
            company_id = (await self.company(company_id)).id
        return await question_store.open_ones(self.db.reader, company_id)

    async def message_link(self, chat: str | int, message_id: int) -> MessageLink | None:
        """Which issue (question) the bot's message `message_id` in `chat` shows, if known."""
        return await link_store.get(self.db.reader, str(chat), message_id)

    async def pinned_card(self, chat: str | int) -> MessageLink | None:
        """The chat's "waiting on you" card, if the bot pinned one."""
        return await link_store.latest(self.db.reader, str(chat), "pin")

    async def recent_runs(self, agent_id: str | None = None, limit: int = 10) -> list[Run]:
        return await run_store.recent(self.db.reader, agent_id, limit)

    async def audit_log(self, limit: int = 50) -> list[Row]:
        return await audit.recent(self.db.reader, limit)

    async def run(self, run_id: str) -> Run:
        """One run by id; RunNotFound if there is none."""
        return await self.runs.get(run_id)

    async def board(self, now: float) -> list[CompanyBoard]:
        """The read model behind /status: per company, agents by status, work and spend."""
        return await fleet_board(self.db, now)

    async def roi(self, company_id: str | None = None, at: float | None = None) -> list[Roi]:
        """Heartbeat ROI this month (core.reports.roi): every agent's calls, cost and issues
        closed, flagged agents first, each flag with a suggestion."""
        month = await CostBook(self.db, self.clock).month(company_id, at, closed=True)
        agents = await self.agents(company_id)
        return fleet_roi(month, agents)

    async def activity(self, since: float, *, summaries: int = 0) -> list[CompanyActivity]:
        """The read model behind the digest: what happened per company since `since`, and the
        agents whose month so far the ROI report flags."""
        found = await fleet_activity(self.db, since, summaries=summaries)
        by_id = {a.company.id: a for a in found}
        for r in await self.roi():
            if r.flags and r.agent.company_id in by_id:
                by_id[r.agent.company_id].flagged.append(r)
        return found

    @property
    def schema_version(self) -> int:
        return self.db.schema_version

    async def ready(self) -> int:
        """The schema version if the store takes writes now; StoreUnavailable saying why if not."""
        await self.db.probe_write()
        return self.db.schema_version

    async def resolve_assignee(self, spec: str, company_id: str | None = None) -> Agent:
        """An agent id, a role, or `role@company`; a role matching several agents is an
        AmbiguousAssignee listing the choices."""
        text = spec.strip().lower().lstrip("@")
        if not text:
            raise InvalidInput("name an assignee: an agent id or a role (e.g. cto or cto@aliens)")
        if "@" in text:
            text, _, scope = text.partition("@")
            company_id = (await self.company(scope)).id
        elif company_id is not None:
            company_id = (await self.company(company_id)).id
        agent = await self.maybe_agent(text)
        if agent is not None:
            if company_id is not None and agent.company_id != company_id:
                raise InvalidInput(
                    f"{agent.id} works for {agent.company_id}, not {company_id}; assign within "
                    "the issue's company"
                )
            return agent
        matches = await agent_store.with_role(self.db.reader, text, company_id)
        if len(matches) == 1:
            return matches[0]
        if not matches:
            where = f" in {company_id}" if company_id else ""
            raise AgentNotFound(f"no agent or role {spec!r}{where}; /agents lists them")
        choices = [f"{a.id} ({a.role}@{a.company_id})" for a in matches]
        raise AmbiguousAssignee(
            f"{spec!r} matches {len(matches)} agents: {', '.join(choices)}. "
            f"Name one agent id, or write {text}@COMPANY.",
            choices=[a.id for a in matches],
        )
