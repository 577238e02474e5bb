"""The one facade the bot, the agent API and the CLI all call.

Every change is one transaction that also writes its audit row; events are published only after
the commit. The reads come from core.queries.FleetQueries, which the facade extends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from core.auth.agent_auth import fix_for
from core.clock import Clock
from core.config import Config
from core.errors import Conflict, InvalidInput, InvalidTransition, TokenInvalid
from core.events import Event, EventBus, IssueAssigned, SummaryPosted, WakeRequested
from core.models import (
    ISSUE_TRANSITIONS,
    Agent,
    AgentStatus,
    Comment,
    Issue,
    IssueStatus,
    Priority,
    Question,
    Run,
    RunOutcome,
)
from core.queries import IssueFilter
from core.questions import Questions, Talk, cancel_open_in
from core.queues.facade import QueueDesk
from core.queues.routines import RoutineBook, sync_routines
from core.runs import RunBook
from core.store import (
    agents as agent_store,
    audit,
    issues as issue_store,
    links as link_store,
    summaries,
)
from core.store.db import Database
from core.store.sync import sync

__all__ = ["FleetService", "IssueFilter", "Talk", "TokenCheck"]

# Answers "would this agent's token be refused?" (core.auth.agent_auth.AgentAuth.check_file).
TokenCheck = Callable[[Agent], TokenInvalid | None]


class FleetService(QueueDesk):
    def __init__(
        self,
        db: Database,
        config: Config,
        clock: Clock,
        events: EventBus | None = None,
        token_check: TokenCheck | None = None,
    ) -> None:
        super().__init__(db, config, clock)
        self.events = events or EventBus()
        self.token_check = token_check
        self.runs = RunBook(db, clock, self.events, config.defaults, config.monitors)
        self.asked = Questions(db, clock, self.events)
        self.routine_book = RoutineBook(db, config, clock, self.events)

    async def sync_config(self) -> None:
        """Make the store's companies and agents match the config (core.store.sync). Agents
        that left the config are soft-deleted (their tokens then fail as revoked); a role set
        by an operator with /role survives restarts."""
        async with self.db.write() as conn:
            await sync(conn, self.config, self.clock.now())
            await sync_routines(conn, self.config, self.clock.now())

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
        priority: Priority = Priority.MEDIUM,
        backlog: bool = False,
    ) -> Issue:
        """A new issue in its assignee's inbox (woken at once), or in the `backlog`, which no
        heartbeat works until it is promoted (core.queues.backlog)."""
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
            issue = await issue_store.file(
                conn,
                company_id=agent.company_id,
                assignee_id=agent.id,
                title=title,
                body=body.strip(),
                created_by=actor,
                model=model,
                max_attempts=self.config.defaults.max_attempts,
                now=now,
                priority=priority,
                status=IssueStatus.BACKLOG if backlog else IssueStatus.TODO,
            )
            await audit.record(
                conn,
                now,
                actor,
                "issue.file",
                issue.id,
                {"assignee": agent.id, "priority": priority, "backlog": backlog},
            )
            # A backlog item for an agent with nothing to do is promoted by its next beat:
            # wake it now, or it would sit idle on it until then (up to its interval).
            idle = backlog and self.config.defaults.backlog_promote > 0
            idle = idle and not await issue_store.has_inbox(conn, agent.id)
        if not backlog or idle:
            self.events.publish(IssueAssigned(issue.id, agent.id))
        return issue

    async def assign(self, issue_id: str, assignee: str, actor: str) -> Issue:
        issue = await self.issue(issue_id)
        if issue.status.terminal:
            raise Conflict(f"{issue.id} is {issue.status.value}; file a new issue instead")
        agent = await self.resolve_assignee(assignee, issue.company_id)
        now = self.clock.now()
        async with self.db.write() as conn:
            await issue_store.assign(conn, issue.id, agent.id, now)
            await audit.record(conn, now, actor, "issue.assign", issue.id, {"assignee": agent.id})
            updated = await issue_store.get(conn, issue.id)
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
            comment_id = await issue_store.add_comment(conn, issue.id, author, text, now)
            await audit.record(
                conn, now, author, "issue.comment", issue.id, {"comment": comment_id}
            )
        return Comment(comment_id, issue.id, author, text, now)

    async def move(self, issue_id: str, status: IssueStatus, actor: str, reason: str = "") -> Issue:
        """Change an issue's status along the graph; anything else is InvalidTransition."""
        issue = await self.issue(issue_id)
        now = self.clock.now()
        events: list[Event] = []
        async with self.db.write() as conn:
            current = await issue_store.get(conn, issue.id)
            assert current is not None
            if status not in ISSUE_TRANSITIONS[current.status]:
                raise InvalidTransition(_transition_error(current, status))
            retry = current.status is IssueStatus.BLOCKED and status is IssueStatus.TODO
            promoted = current.status is IssueStatus.BACKLOG and status is IssueStatus.TODO
            await issue_store.move(conn, issue.id, status, reason, now, retry=retry)
            await audit.record(
                conn, now, actor, "issue.move", issue.id, {"from": current.status, "to": status}
            )
            live_run = current.lease_run_id if status.terminal else None
            if status.terminal:  # nobody is left to act on an answer
                await cancel_open_in(conn, issue.id, actor, f"{issue.id} {status}", now, events)
            updated = await issue_store.get(conn, issue.id)
        self.events.publish(*events)
        if live_run is not None:
            # The owner closed the issue under a live run: that run ends as cancelled, which
            # is not a failure and costs no attempt.
            await self.runs.cancel(live_run, f"{issue.id} was {status.value} by {actor}")
        if (retry or promoted) and current.assignee_id:
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
            await agent_store.set_role(conn, agent.id, new_role, actor, skills)
            await audit.record(
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
            await agent_store.beat_at(conn, agent.id, now)
            if audited:
                await audit.record(conn, now, actor, "agent.wake", agent.id)
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
            current = await agent_store.get(conn, agent.id)
            assert current is not None
            changed = await agent_store.set_status(conn, current, status, now, reason, code)
            if changed:
                events.append(changed)
            await audit.record(
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
            await audit.record(conn, self.clock.now(), actor, action, target, detail, result)

    # -- questions and replies (the bot) ---------------------------------------------------------

    async def answer(
        self,
        question_id: int | str,
        actor: str,
        *,
        choice: int | None = None,
        text: str | None = None,
        name: str = "",
    ) -> Question:
        """Answer a question (choice number from 0, or typed text): a comment on its issue by
        `actor`, an audit row, and its assignee woken on it. Conflict `question_closed` naming
        who answered when it is no longer open. Who may answer is the caller's rule."""
        return await self.asked.answer(question_id, actor, choice=choice, text=text, name=name)

    async def talk(self, issue_id: str, text: str, actor: str, *, name: str = "") -> Talk:
        """A reply to a message about the issue: a comment that wakes its assignee (reason
        `comment`), unless the issue is finished, blocked or waiting on a question."""
        return await self.asked.talk((await self.issue(issue_id)).id, text, actor, name=name)

    async def link_message(
        self,
        chat: str | int,
        message_id: int,
        kind: str,
        issue_id: str | None = None,
        question_id: int | None = None,
    ) -> None:
        """Remember that a sent message shows this issue (question): what a reply to it is
        about. Links older than 90 days are forgotten as new ones come."""
        now = self.clock.now()
        async with self.db.write() as conn:
            await link_store.record(conn, str(chat), message_id, kind, issue_id, question_id, now)
            if message_id % 100 == 0:  # now and then, not on every send
                await link_store.prune(conn, now - 90 * 86400)

    async def forget_message(self, chat: str | int, message_id: int) -> None:
        async with self.db.write() as conn:
            await link_store.forget(conn, str(chat), message_id)

    # -- agents' side (the API) -------------------------------------------------------------------

    async def ask(
        self,
        agent: Agent,
        issue_id: str,
        text: str,
        *,
        choices: list[str] | None = None,
        approval: bool = False,
        run_id: str | None = None,
    ) -> Question:
        """An agent asks about an issue (free text, choices, or an approval); the issue is not
        workable until it is answered. Conflict `issue_closed` for a finished issue."""
        issue = await self.issue(issue_id)
        return await self.asked.ask(
            issue=issue, agent=agent, text=text, choices=choices, approval=approval, run_id=run_id
        )

    async def wait_question(self, question_id: int | str, timeout: float) -> Question:  # noqa: ASYNC109
        """The question once it is answered or cancelled, or as it is after `timeout` s."""
        return await self.asked.wait(question_id, timeout)

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
            summary_id = await summaries.add(conn, agent.id, issue_id, run_id, "api", text, now)
            await agent_store.seen(conn, agent.id, now)
        self.events.publish(SummaryPosted(summary_id, agent.id, issue_id, "api"))
        return summary_id

    async def claim(self, issue_id: str, run_id: str, agent_id: str) -> Issue:
        """Take `issue_id` for the agent's live run; LeaseConflict if another run holds it."""
        return await self.runs.claim(issue_id, run_id, agent_id)

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
