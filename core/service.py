"""The one facade the bot, the agent API and the CLI all call.

Every change is one transaction that also writes its audit row; events are published only after
the commit. Reads go through the store's reader connection.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import aiosqlite

from core.clock import Clock
from core.config import Config
from core.errors import (
    AgentNotFound,
    AmbiguousAssignee,
    CompanyNotFound,
    Conflict,
    InvalidInput,
    InvalidTransition,
    IssueNotFound,
    TokenInvalid,
)
from core.events import Event, EventBus, IssueAssigned, SummaryPosted, WakeRequested
from core.models import (
    ISSUE_TRANSITIONS,
    Agent,
    AgentStatus,
    Comment,
    Company,
    Issue,
    IssueStatus,
    Run,
    RunOutcome,
)
from core.runs import RunBook
from core.store import ops, rows
from core.store.db import Database

# Answers "would this agent's token be refused?" (core.auth.agent_auth.AgentAuth.check_file).
TokenCheck = Callable[[Agent], TokenInvalid | None]
_ISSUE_ID_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")


@dataclass(frozen=True, slots=True)
class IssueFilter:
    company_id: str | None = None
    assignee_id: str | None = None
    statuses: tuple[IssueStatus, ...] = ()
    limit: int = 50


class FleetService:
    def __init__(
        self,
        db: Database,
        config: Config,
        clock: Clock,
        events: EventBus | None = None,
        token_check: TokenCheck | None = None,
    ) -> None:
        self.db = db
        self.config = config
        self.clock = clock
        self.events = events or EventBus()
        self.token_check = token_check
        self.runs = RunBook(db, clock, self.events, config.defaults, config.monitors)

    # -- setup ------------------------------------------------------------------------------

    async def sync_config(self) -> None:
        """Make the store's companies and agents match the config. Agents that left the config
        are soft-deleted (their tokens then fail as revoked); a role set by an operator with
        /role survives restarts."""
        now = self.clock.now()
        d = self.config.defaults
        async with self.db.write() as conn:
            # Roles set with /role win over the config, and so do the skills of that role.
            async with conn.execute(
                "SELECT id, role FROM agents WHERE role_set_by IS NOT NULL"
            ) as cur:
                set_roles = {r[0]: r[1] for r in await cur.fetchall()}
            keep: list[str] = []
            for c in self.config.companies:
                await conn.execute(
                    "INSERT INTO companies (id, name, prefix, chat) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (id) DO UPDATE SET name = excluded.name, "
                    "prefix = excluded.prefix, chat = excluded.chat",
                    (c.id, c.name, c.prefix, None if c.chat is None else str(c.chat)),
                )
                for a in c.agents:
                    keep.append(a.id)
                    heartbeat = a.heartbeat or d.heartbeat
                    await conn.execute(
                        "INSERT INTO agents (id, company_id, name, role, reports_to, "
                        "status_changed_at, model, heartbeat_seconds, next_heartbeat_at, skills, "
                        "max_turns, run_timeout_seconds, runtime) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT (id) DO UPDATE SET company_id = excluded.company_id, "
                        "name = excluded.name, "
                        "role = CASE WHEN agents.role_set_by IS NULL THEN excluded.role "
                        "ELSE agents.role END, "
                        "reports_to = excluded.reports_to, model = excluded.model, "
                        "next_heartbeat_at = MIN(agents.next_heartbeat_at, ? + excluded."
                        "heartbeat_seconds), heartbeat_seconds = excluded.heartbeat_seconds, "
                        "skills = excluded.skills, max_turns = excluded.max_turns, "
                        "run_timeout_seconds = excluded.run_timeout_seconds, "
                        "runtime = excluded.runtime, deleted_at = NULL",
                        (
                            a.id,
                            c.id,
                            a.name or a.id.title(),
                            a.role,
                            a.reports_to,
                            now,
                            a.model or d.model,
                            heartbeat,
                            now + heartbeat,
                            json.dumps(
                                self.config.skills_for(
                                    a.model_copy(update={"role": set_roles.get(a.id, a.role)})
                                )
                            ),
                            a.max_turns_per_run or d.max_turns_per_run,
                            a.run_timeout or d.run_timeout,
                            a.runtime.model_dump_json(),
                            now,
                        ),
                    )
            # One JSON parameter, not one per agent: SQLite caps parameters at 32,766.
            await conn.execute(
                "UPDATE agents SET deleted_at = ? WHERE deleted_at IS NULL "
                "AND id NOT IN (SELECT value FROM json_each(?))",
                (now, json.dumps(keep)),
            )

    # -- reads --------------------------------------------------------------------------------

    async def companies(self) -> list[Company]:
        found = await self.db.fetchall("SELECT id, name, prefix, chat FROM companies ORDER BY id")
        return [rows.company(r) for r in found]

    async def company(self, company_id: str) -> Company:
        key = company_id.strip().lower()
        row = await self.db.fetchone(
            "SELECT id, name, prefix, chat FROM companies WHERE id = ? OR lower(prefix) = ?",
            (key, key),
        )
        if row is None:
            known = ", ".join(c.id for c in await self.companies()) or "(none configured)"
            raise CompanyNotFound(f"no company {company_id!r}; companies: {known}")
        return rows.company(row)

    async def agents(self, company_id: str | None = None) -> list[Agent]:
        sql = f"SELECT {rows.AGENT_COLUMNS} FROM agents WHERE deleted_at IS NULL"
        args: tuple[str, ...] = ()
        if company_id is not None:
            sql += " AND company_id = ?"
            args = ((await self.company(company_id)).id,)
        found = await self.db.fetchall(sql + " ORDER BY company_id, id", args)
        return [rows.agent(r) for r in found]

    async def agent(self, agent_id: str) -> Agent:
        key = agent_id.strip().lower().lstrip("@")
        row = await self.db.fetchone(
            f"SELECT {rows.AGENT_COLUMNS} FROM agents WHERE deleted_at IS NULL AND id = ?", (key,)
        )
        if row is None:
            raise AgentNotFound(f"no agent {agent_id!r}; /agents lists them")
        return rows.agent(row)

    async def maybe_agent(self, agent_id: str) -> Agent | None:
        """The agent, or None if it does not exist (or was removed from the config)."""
        row = await self.db.fetchone(
            f"SELECT {rows.AGENT_COLUMNS} FROM agents WHERE deleted_at IS NULL AND id = ?",
            (agent_id,),
        )
        return None if row is None else rows.agent(row)

    async def issue(self, issue_id: str) -> Issue:
        key = issue_id.strip().upper()
        row = None
        if key and set(key) <= _ISSUE_ID_CHARS:
            row = await self.db.fetchone(
                f"SELECT {rows.ISSUE_COLUMNS} FROM issues WHERE id = ?", (key,)
            )
        if row is None:
            raise IssueNotFound(f"no issue {issue_id!r}; issue ids look like ALI-12")
        return rows.issue(row)

    async def issues(self, flt: IssueFilter | None = None) -> list[Issue]:
        flt = flt or IssueFilter()
        where, args = [], []
        if flt.company_id:
            where.append("company_id = ?")
            args.append((await self.company(flt.company_id)).id)
        if flt.assignee_id:
            where.append("assignee_id = ?")
            args.append(flt.assignee_id)
        if flt.statuses:
            where.append(f"status IN ({','.join('?' for _ in flt.statuses)})")
            args.extend(s.value for s in flt.statuses)
        sql = f"SELECT {rows.ISSUE_COLUMNS} FROM issues"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, number DESC LIMIT ?"
        found = await self.db.fetchall(sql, (*args, max(1, min(flt.limit, 500))))
        return [rows.issue(r) for r in found]

    async def inbox(self, agent_id: str) -> list[Issue]:
        """The agent's open work, oldest first (what a heartbeat would dispatch)."""
        found = await self.db.fetchall(
            f"SELECT {rows.ISSUE_COLUMNS} FROM issues WHERE assignee_id = ? "
            "AND status IN ('todo', 'in_progress') ORDER BY created_at, number LIMIT 100",
            (agent_id,),
        )
        return [rows.issue(r) for r in found]

    async def comments(self, issue_id: str) -> list[Comment]:
        found = await self.db.fetchall(
            "SELECT id, issue_id, author, body, created_at FROM comments WHERE issue_id = ? "
            "ORDER BY id",
            (issue_id,),
        )
        return [rows.comment(r) for r in found]

    async def recent_runs(self, agent_id: str | None = None, limit: int = 10) -> list[Run]:
        sql = f"SELECT {rows.RUN_COLUMNS} FROM runs"
        args: tuple[object, ...] = ()
        if agent_id is not None:
            sql += " WHERE agent_id = ?"
            args = (agent_id,)
        found = await self.db.fetchall(sql + " ORDER BY started_at DESC LIMIT ?", (*args, limit))
        return [rows.run(r) for r in found]

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
        sql = f"SELECT {rows.AGENT_COLUMNS} FROM agents WHERE deleted_at IS NULL AND role = ?"
        args: tuple[str, ...] = (text,)
        if company_id is not None:
            sql += " AND company_id = ?"
            args = (text, company_id)
        matches = [rows.agent(r) for r in await self.db.fetchall(sql + " ORDER BY id", args)]
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

    # -- operator actions -----------------------------------------------------------------------

    async def file_issue(
        self,
        *,
        title: str,
        assignee: str,
        actor: str,
        company: str | None = None,
        body: str = "",
        model: str | None = None,
    ) -> Issue:
        title = " ".join(title.split())
        if not title:
            raise InvalidInput("an issue needs a title")
        if len(title) > 200:
            raise InvalidInput(f"keep the title under 200 characters (it has {len(title)})")
        if len(body) > 20_000:
            raise InvalidInput("keep the body under 20,000 characters")
        agent = await self.resolve_assignee(assignee, company)
        now = self.clock.now()
        async with self.db.write() as conn:
            async with conn.execute(
                "UPDATE companies SET next_issue_number = next_issue_number + 1 WHERE id = ? "
                "RETURNING prefix, next_issue_number - 1",
                (agent.company_id,),
            ) as cur:
                row = await cur.fetchone()
            assert row is not None
            issue_id = f"{row[0]}-{row[1]}"
            await conn.execute(
                "INSERT INTO issues (id, company_id, number, title, body, status, assignee_id, "
                "created_by, model, max_attempts, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, 'todo', ?, ?, ?, ?, ?, ?)",
                (
                    issue_id,
                    agent.company_id,
                    row[1],
                    title,
                    body.strip(),
                    agent.id,
                    actor,
                    model,
                    self.config.defaults.max_attempts,
                    now,
                    now,
                ),
            )
            await ops.audit(conn, now, actor, "issue.file", issue_id, {"assignee": agent.id})
            issue = await ops.fetch_issue(conn, issue_id)
        assert issue is not None
        self.events.publish(IssueAssigned(issue.id, agent.id))
        return issue

    async def assign(self, issue_id: str, assignee: str, actor: str) -> Issue:
        issue = await self.issue(issue_id)
        if issue.status.terminal:
            raise Conflict(f"{issue.id} is {issue.status.value}; file a new issue instead")
        agent = await self.resolve_assignee(assignee, issue.company_id)
        now = self.clock.now()
        async with self.db.write() as conn:
            # A fresh assignee gets a fresh attempt budget and no backoff.
            await conn.execute(
                "UPDATE issues SET assignee_id = ?, attempts = 0, not_before = NULL, "
                "updated_at = ? WHERE id = ?",
                (agent.id, now, issue.id),
            )
            await ops.audit(conn, now, actor, "issue.assign", issue.id, {"assignee": agent.id})
            updated = await ops.fetch_issue(conn, issue.id)
        assert updated is not None
        self.events.publish(IssueAssigned(issue.id, agent.id))
        return updated

    async def comment(self, issue_id: str, body: str, author: str) -> Comment:
        issue = await self.issue(issue_id)
        text = body.strip()
        if not text:
            raise InvalidInput("a comment needs some text")
        if len(text) > 20_000:
            raise InvalidInput("keep comments under 20,000 characters")
        now = self.clock.now()
        async with self.db.write() as conn:
            cur = await conn.execute(
                "INSERT INTO comments (issue_id, author, body, created_at) VALUES (?, ?, ?, ?)",
                (issue.id, author, text, now),
            )
            await conn.execute("UPDATE issues SET updated_at = ? WHERE id = ?", (now, issue.id))
            comment_id = cur.lastrowid
            await ops.audit(conn, now, author, "issue.comment", issue.id, {"comment": comment_id})
        assert comment_id is not None
        return Comment(comment_id, issue.id, author, text, now)

    async def move(self, issue_id: str, status: IssueStatus, actor: str, reason: str = "") -> Issue:
        """Change an issue's status along the graph; anything else is InvalidTransition."""
        issue = await self.issue(issue_id)
        now = self.clock.now()
        async with self.db.write() as conn:
            current = await ops.fetch_issue(conn, issue.id)
            assert current is not None
            if status not in ISSUE_TRANSITIONS[current.status]:
                raise InvalidTransition(_transition_error(current, status))
            retry = current.status is IssueStatus.BLOCKED and status is IssueStatus.TODO
            await conn.execute(
                "UPDATE issues SET status = ?, reason = ?, updated_at = ?, "
                "attempts = CASE WHEN ? THEN 0 ELSE attempts END, "
                "not_before = CASE WHEN ? THEN NULL ELSE not_before END WHERE id = ?",
                (status.value, reason, now, retry, retry, issue.id),
            )
            await ops.audit(
                conn, now, actor, "issue.move", issue.id, {"from": current.status, "to": status}
            )
            live_run = current.lease_run_id if status.terminal else None
            updated = await ops.fetch_issue(conn, issue.id)
        if live_run is not None:
            # The owner closed the issue under a live run: that run ends as cancelled, which
            # is not a failure and costs no attempt.
            await self.runs.cancel(live_run, f"{issue.id} was {status.value} by {actor}")
        if retry and current.assignee_id:
            self.events.publish(IssueAssigned(issue.id, current.assignee_id))
        assert updated is not None
        return updated

    async def set_role(self, agent_id: str, role: str, actor: str) -> Agent:
        agent = await self.agent(agent_id)
        new_role = role.strip().lower()
        if not new_role or len(new_role) > 64 or not new_role.replace("_", "").isalnum():
            raise InvalidInput("a role is one word of letters, digits or _, e.g. cto")
        configured = self.config.agent(agent.id)
        skills = (
            configured.skills
            if configured is not None and configured.skills is not None
            else self.config.defaults.skills.get(new_role, self.config.defaults.skills.get("*", []))
        )
        now = self.clock.now()
        async with self.db.write() as conn:
            await conn.execute(
                "UPDATE agents SET role = ?, role_set_by = ?, skills = ? WHERE id = ?",
                (new_role, actor, json.dumps(list(skills)), agent.id),
            )
            await ops.audit(
                conn, now, actor, "agent.role", agent.id, {"from": agent.role, "to": new_role}
            )
        return await self.agent(agent.id)

    async def pause(
        self, agent_id: str, actor: str, reason: str = "", code: str = "paused_by_operator"
    ) -> Agent:
        """Heartbeats off; `code` says who paused it (the budget monitor uses "budget")."""
        return await self._set_status(
            agent_id,
            AgentStatus.PAUSED,
            actor,
            "agent.pause",
            reason or f"paused by {actor}",
            code,
        )

    async def resume(self, agent_id: str, actor: str) -> Agent:
        agent = await self.agent(agent_id)
        if agent.status is not AgentStatus.PAUSED:
            raise Conflict(f"{agent.id} is {agent.status.value}, not paused; nothing to resume")
        return await self._set_status(agent_id, AgentStatus.IDLE, actor, "agent.resume", "", "")

    async def reset(self, agent_id: str, actor: str) -> Agent:
        """Back to idle and woken. An unauthenticated agent is reset only once its token
        verifies; otherwise the error says what to do."""
        agent = await self.agent(agent_id)
        if agent.status is AgentStatus.RUNNING:
            raise Conflict(f"{agent.id} is running; wait for its run to end, or pause it")
        if self.token_check is not None:
            problem = self.token_check(agent)
            if problem is not None:
                await self._set_status(
                    agent_id,
                    AgentStatus.UNAUTHENTICATED,
                    actor,
                    "agent.reset",
                    problem.message,
                    problem.code,
                    result="refused",
                )
                from core.auth.agent_auth import fix_for

                raise Conflict(
                    f"{agent.id}'s token still fails ({problem.code}): {problem.message}. "
                    f"Fix: {fix_for(problem.code, agent.id)}; it is back to idle at its next "
                    "heartbeat once its token verifies (or reset it again)."
                )
        updated = await self._set_status(agent_id, AgentStatus.IDLE, actor, "agent.reset", "", "")
        await self.wake(agent_id, actor, audited=False)
        return updated

    async def wake(self, agent_id: str, actor: str, *, audited: bool = True) -> Agent:
        """Run the agent's heartbeat now instead of at its next interval."""
        agent = await self.agent(agent_id)
        now = self.clock.now()
        async with self.db.write() as conn:
            await conn.execute(
                "UPDATE agents SET next_heartbeat_at = ? WHERE id = ?", (now, agent.id)
            )
            if audited:
                await ops.audit(conn, now, actor, "agent.wake", agent.id)
        self.events.publish(WakeRequested(agent.id))
        return agent

    async def _set_status(
        self,
        agent_id: str,
        status: AgentStatus,
        actor: str,
        action: str,
        reason: str,
        code: str,
        *,
        result: str = "ok",
    ) -> Agent:
        agent = await self.agent(agent_id)
        now = self.clock.now()
        events: list[Event] = []
        async with self.db.write() as conn:
            current = await ops.fetch_agent(conn, agent.id)
            assert current is not None
            changed = await ops.set_agent_status(conn, current, status, now, reason, code)
            if changed:
                events.append(changed)
            await ops.audit(
                conn, now, actor, action, agent.id, {"from": current.status}, result=result
            )
        self.events.publish(*events)
        return await self.agent(agent.id)

    async def set_auth_status(self, agent: Agent, problem: TokenInvalid | None) -> Agent:
        """Record the outcome of a token check: unauthenticated with its reason, or back to
        idle when an unauthenticated agent's token verifies again."""
        if problem is not None:
            return await self._set_status(
                agent.id,
                AgentStatus.UNAUTHENTICATED,
                "fleetbot",
                "agent.auth",
                problem.message,
                problem.code,
            )
        if agent.status is AgentStatus.UNAUTHENTICATED:
            return await self._set_status(
                agent.id, AgentStatus.IDLE, "fleetbot", "agent.auth", "", ""
            )
        return agent

    async def audit(
        self, actor: str, action: str, target: str = "", detail: object = "", result: str = "ok"
    ) -> None:
        """Record an adapter-level action (a command, a button press, a refusal)."""
        async with self.db.write() as conn:
            await ops.audit(conn, self.clock.now(), actor, action, target, detail, result)

    async def audit_log(self, limit: int = 50) -> list[aiosqlite.Row]:
        return await self.db.fetchall(
            "SELECT at, actor, action, target, detail, result FROM audit ORDER BY id DESC LIMIT ?",
            (limit,),
        )

    # -- agents' side (the API) -------------------------------------------------------------------

    async def post_summary(
        self, agent: Agent, body: str, issue_id: str | None = None, run_id: str | None = None
    ) -> int:
        text = body.strip()
        if not text:
            raise InvalidInput("a summary needs some text")
        if issue_id is not None:
            issue_id = (await self.issue(issue_id)).id
        now = self.clock.now()
        async with self.db.write() as conn:
            cur = await conn.execute(
                "INSERT INTO summaries (agent_id, issue_id, run_id, source, body, created_at) "
                "VALUES (?, ?, ?, 'api', ?, ?)",
                (agent.id, issue_id, run_id, text, now),
            )
            await conn.execute("UPDATE agents SET last_seen_at = ? WHERE id = ?", (now, agent.id))
            summary_id = cur.lastrowid
        assert summary_id is not None
        self.events.publish(SummaryPosted(summary_id, agent.id, issue_id, "api"))
        return summary_id

    async def finish_run(
        self, run_id: str, agent_id: str, outcome: RunOutcome, summary: str = ""
    ) -> Run:
        return await self.runs.finish(run_id, agent_id, outcome, summary)

    async def report_usage(
        self,
        run_id: str,
        agent_id: str,
        *,
        turns: int,
        input_tokens: int,
        output_tokens: int,
        cost: float,
        model: str | None = None,
    ) -> Run:
        return await self.runs.report_usage(
            run_id,
            agent_id,
            turns=turns,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost=cost,
            model=model,
        )


def _transition_error(issue: Issue, status: IssueStatus) -> str:
    allowed: Iterable[IssueStatus] = ISSUE_TRANSITIONS[issue.status]
    if issue.status.terminal:
        return f"{issue.id} is {issue.status.value}, which is final; file a new issue instead"
    if status is issue.status:
        return (
            f"{issue.id} is already {status.value}; from {status.value} it can go to: "
            f"{', '.join(sorted(s.value for s in allowed))}"
        )
    return (
        f"{issue.id} cannot go from {issue.status.value} to {status.value}; from "
        f"{issue.status.value} it can go to: {', '.join(sorted(s.value for s in allowed))}"
    )
