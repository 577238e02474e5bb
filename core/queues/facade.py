"""The service facade's queue actions: routines, priorities and the backlog.

A base of core.service.FleetService (which supplies the store, the events and the routine
book), so the bot and the API reach all of it through the one facade; every change is one
transaction with its audit row, as everywhere in the facade.
"""

from __future__ import annotations

from core.errors import InvalidInput
from core.events import EventBus
from core.models import Issue, Priority, Routine
from core.queries import FleetQueries
from core.queues.routines import Fired, RoutineBook
from core.store import audit, issues as issue_store

PRIORITY_USAGE = "critical, high, medium or low"


def parse_priority(word: str) -> Priority:
    """A priority from its name (or its first letter); InvalidInput naming the four."""
    text = word.strip().lower().lstrip("!")
    for p in Priority:
        if text in (p.value, p.value[0]):
            return p
    raise InvalidInput(f"{word!r} is not a priority; use {PRIORITY_USAGE}")


class QueueDesk(FleetQueries):
    events: EventBus
    routine_book: RoutineBook

    # -- routines ------------------------------------------------------------------------------

    async def routines(self, company: str | None = None) -> list[Routine]:
        company_id = (await self.company(company)).id if company else None
        return await self.routine_book.every(company_id)

    async def routine(self, ref: str) -> Routine:
        """A routine by `R7` or name (`name@company` when two companies use the name)."""
        return await self.routine_book.find(ref)

    async def add_routine(
        self,
        *,
        name: str,
        schedule: str,
        assignee: str,
        title: str,
        actor: str,
        body: str = "",
        priority: Priority = Priority.MEDIUM,
        timezone: str | None = None,
        company: str | None = None,
    ) -> Routine:
        """A routine from the phone: its company is its assignee's."""
        agent = await self.resolve_assignee(assignee, company)
        spec = assignee.strip().lower().lstrip("@").partition("@")[0]
        return await self.routine_book.add(
            name=name,
            schedule=schedule,
            agent=agent,
            assignee=spec,
            title=title,
            body=body,
            priority=priority,
            timezone=timezone,
            actor=actor,
        )

    async def pause_routine(self, ref: str, actor: str) -> Routine:
        return await self.routine_book.pause(await self.routine(ref), actor)

    async def resume_routine(self, ref: str, actor: str) -> Routine:
        return await self.routine_book.resume(await self.routine(ref), actor)

    async def remove_routine(self, ref: str, actor: str) -> Routine:
        routine = await self.routine(ref)
        await self.routine_book.remove(routine, actor)
        return routine

    async def run_routine(self, ref: str, actor: str) -> Issue:
        """File the routine's next instance now (Conflict while one is open)."""
        routine = await self.routine(ref)
        agent = await self.resolve_assignee(routine.assignee, routine.company_id)
        return await self.routine_book.run_now(routine, agent, actor)

    async def run_routines(self) -> list[Fired]:
        """Handle every routine that came due (core.fleet runs this every minute)."""
        return await self.routine_book.tick(self.resolve_assignee)

    # -- priorities ------------------------------------------------------------------------------

    async def set_priority(self, issue_id: str, priority: Priority, actor: str) -> Issue:
        issue = await self.issue(issue_id)
        if issue.status.terminal:
            raise InvalidInput(
                f"{issue.id} is {issue.status.value}; its priority no longer matters"
            )
        now = self.clock.now()
        async with self.db.write() as conn:
            await issue_store.set_priority(conn, issue.id, priority, now)
            await audit.record(
                conn,
                now,
                actor,
                "issue.priority",
                issue.id,
                {"from": issue.priority, "to": priority},
            )
        return await self.issue(issue.id)

    async def backlog(self, company: str | None = None, limit: int = 50) -> list[Issue]:
        """Backlog issues in the order they would be promoted (priority, then age)."""
        company_id = (await self.company(company)).id if company else None
        return await issue_store.backlog(self.db.reader, company_id=company_id, limit=limit)
