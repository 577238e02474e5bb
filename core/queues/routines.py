"""Routines: recurring issues filed on a schedule, at most one instance open at a time.

`tick()` (every minute, core.fleet) files an instance for each routine that came due. A routine
whose last instance is still open is skipped and counted, never piled up; one that came due
while fleetbot was down (handled more than GRACE late) counts the due times it missed and files
a single catch-up instance. Either way `late` says what slipped, which the monitors raise as a
`routine_missed` alert; it clears when the stuck instance closes or the next due time is on
time. A due time is handled in one transaction with its instance: a crash between them is
impossible, and a restart finds either both or neither.

Routines come from the config (`companies[].routines`, kept in step at startup; paused from the
phone survives restarts) or from the phone (`/routines add`, stored only in the database).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from core.clock import Clock
from core.config import Config
from core.config.queues import ROUTINE_NAME, check_template
from core.errors import Conflict, FleetbotError, InvalidInput, RoutineNotFound
from core.events import EventBus, IssueAssigned
from core.models import Agent, Issue, IssueStatus, Priority, Routine
from core.queues.schedule import Schedule, parse_schedule, zone
from core.store import audit, issues as issue_store, routines as store
from core.store.conn import Conn
from core.store.db import Database

log = logging.getLogger(__name__)

# The facade's resolve_assignee, as a routine's due time calls it: (spec, company id) -> agent.
Resolver = Callable[[str, str | None], Awaitable[Agent]]
GRACE = 600.0  # a due time handled later than this was missed (fleetbot was down or stuck)
ACTOR = "fleetbot"
MAX_TITLE = 200


@dataclass(frozen=True, slots=True)
class Fired:
    routine: Routine
    issue: Issue | None  # None: skipped (its last instance is open) or it could not file
    due_times: int  # due times this handled (more than one after a downtime)


def created_by(routine: Routine) -> str:
    return f"routine:{routine.ref}"


def fill(template: str, routine: Routine, company: str, at: float) -> str:
    """The template with its fields filled for the due time `at`, in the routine's zone."""
    local = datetime.fromtimestamp(at, UTC).astimezone(zone(routine.timezone))
    year, week, _ = local.isocalendar()
    return template.format_map(
        {
            "date": local.strftime("%Y-%m-%d"),
            "time": local.strftime("%H:%M"),
            "weekday": local.strftime("%A"),
            "week": f"{year}-W{week:02d}",
            "month": local.strftime("%Y-%m"),
            "year": str(local.year),
            "company": company,
            "routine": routine.name,
        }
    )


def _when(t: float, timezone: str) -> str:
    return datetime.fromtimestamp(t, UTC).astimezone(zone(timezone)).strftime("%a %d %b %H:%M")


class RoutineBook:
    """Routines' lifecycle; `resolve` turns an assignee spec into an agent (the facade's)."""

    def __init__(self, db: Database, config: Config, clock: Clock, events: EventBus) -> None:
        self.db = db
        self.config = config
        self.clock = clock
        self.events = events
        self._names = {c.id: c.name for c in config.companies}

    # -- reading ----------------------------------------------------------------------------

    async def every(self, company_id: str | None = None) -> list[Routine]:
        return await store.every(self.db.reader, company_id)

    async def find(self, ref: str, company_id: str | None = None) -> Routine:
        """A routine by `R7`, `7` or its name (`name@company` when two companies use it)."""
        text = ref.strip().lower()
        if "@" in text:
            text, _, company_id = text.partition("@")
        number = text[1:] if text[:1] == "r" and text[1:].isdigit() else text
        if number.isdigit():
            found = await store.get(self.db.reader, int(number))
            if found is not None and company_id in (None, found.company_id):
                return found
            raise RoutineNotFound(f"no routine {ref!r}; /routines lists them")
        matches = await store.named(self.db.reader, text, company_id)
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise RoutineNotFound(f"no routine {ref!r}; /routines lists them")
        where = ", ".join(f"{text}@{r.company_id} ({r.ref})" for r in matches)
        raise InvalidInput(f"{ref!r} names {len(matches)} routines: {where}; name one")

    # -- changes ----------------------------------------------------------------------------

    async def add(
        self,
        *,
        name: str,
        schedule: str,
        agent: Agent,
        assignee: str,
        title: str,
        body: str,
        priority: Priority,
        timezone: str | None,
        actor: str,
    ) -> Routine:
        name = name.strip().lower()
        if not re.fullmatch(ROUTINE_NAME, name):
            raise InvalidInput(
                "a routine's name is 1–32 lowercase letters, digits, _ or -, e.g. standup"
            )
        title = " ".join(title.split())
        if not title:
            raise InvalidInput("a routine needs a title for the issues it files")
        if len(title) > MAX_TITLE or len(body) > 20_000:
            raise InvalidInput("keep the title under 200 and the body under 20,000 characters")
        company = self.config.company_of(agent.id)
        tz = timezone or (company.timezone if company else "UTC")
        try:
            check_template(title)
            check_template(body)
            parsed = parse_schedule(schedule, tz)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        if await store.named(self.db.reader, name, agent.company_id):
            raise Conflict(f"{agent.company_id} already has a routine {name!r}; pick another name")
        now = self.clock.now()
        async with self.db.write() as conn:
            routine_id = await store.add(
                conn,
                company_id=agent.company_id,
                name=name,
                assignee=assignee,
                schedule=parsed.text,
                timezone=tz,
                title=title,
                body=body.strip(),
                priority=priority,
                source="chat",
                next_at=parsed.next_after(now, now),
                created_by=actor,
                now=now,
            )
            await audit.record(
                conn,
                now,
                actor,
                "routine.add",
                f"R{routine_id}",
                {"name": name, "schedule": parsed.text, "assignee": assignee},
            )
        return await self._get(routine_id)

    async def pause(self, routine: Routine, actor: str) -> Routine:
        if routine.paused:
            raise Conflict(f"{routine.ref} ({routine.name}) is already paused")
        now = self.clock.now()
        async with self.db.write() as conn:
            await store.set_paused(conn, routine.id, True)
            await audit.record(conn, now, actor, "routine.pause", routine.ref)
        return await self._get(routine.id)

    async def resume(self, routine: Routine, actor: str) -> Routine:
        """Back on schedule from now: due times that passed while paused are not made up."""
        if not routine.paused:
            raise Conflict(f"{routine.ref} ({routine.name}) is not paused; nothing to resume")
        now = self.clock.now()
        next_at = self.schedule(routine).next_after(now, routine.created_at)
        async with self.db.write() as conn:
            await store.set_paused(conn, routine.id, False, next_at)
            await audit.record(conn, now, actor, "routine.resume", routine.ref)
        return await self._get(routine.id)

    async def remove(self, routine: Routine, actor: str) -> None:
        """Its instances stay; a routine from the config is removed there, not here."""
        if routine.source == "config":
            raise Conflict(
                f"{routine.ref} ({routine.name}) comes from the config: remove it from "
                f"companies[{routine.company_id}].routines there, or pause it here"
            )
        now = self.clock.now()
        async with self.db.write() as conn:
            await store.delete(conn, routine.id)
            await audit.record(conn, now, actor, "routine.remove", routine.ref, routine.name)

    async def run_now(self, routine: Routine, agent: Agent, actor: str) -> Issue:
        """File an instance now, off schedule (its schedule is unchanged)."""
        now = self.clock.now()
        async with self.db.write() as conn:
            current = await issue_store.open_of_routine(conn, routine.id)
            if current is not None:
                raise Conflict(
                    f"{routine.ref} ({routine.name}) has an open instance, {current.id} "
                    f"({current.status.value}); a routine has at most one open at a time"
                )
            issue = await self._file(conn, routine, agent, now, actor)
            await store.filed(conn, routine.id, issue.id)
            await audit.record(conn, now, actor, "routine.run", routine.ref, {"issue": issue.id})
        self.events.publish(IssueAssigned(issue.id, agent.id, "routine"))
        return issue

    # -- the schedule ------------------------------------------------------------------------

    def schedule(self, routine: Routine) -> Schedule:
        return parse_schedule(routine.schedule, routine.timezone)

    async def tick(self, resolve: Resolver) -> list[Fired]:
        """Handle every due time that has come: file, skip or catch up (see the module)."""
        now = self.clock.now()
        out: list[Fired] = []
        for routine in await store.late(self.db.reader):
            await self._maybe_unstick(routine, now)
        for routine in await store.due(self.db.reader, now):
            try:
                out.append(await self._came_due(routine, resolve, now))
            except Exception as exc:
                # Retried next minute; meanwhile `late` says so, which raises routine_missed:
                # a routine that cannot file must not fail silently.
                log.exception(
                    "routine %s (%s) failed; retried next minute", routine.ref, routine.name
                )
                async with self.db.write() as conn:
                    await store.set_late(conn, routine.id, f"cannot file: {exc}"[:300])
        return out

    async def _came_due(self, routine: Routine, resolve: Resolver, now: float) -> Fired:
        sched = self.schedule(routine)
        anchor = routine.created_at
        handled = sched.due_in(routine.next_at, now, anchor)
        missed = (
            sched.due_in(routine.next_at, now - GRACE, anchor)
            if routine.next_at <= now - GRACE
            else 0
        )
        next_at = sched.next_after(now, anchor)
        agent: Agent | None = None
        problem = ""
        try:
            agent = await resolve(routine.assignee, routine.company_id)
        except FleetbotError as exc:
            problem = f"cannot file: {exc.message}"
        issue = None
        async with self.db.write() as conn:
            current = await issue_store.open_of_routine(conn, routine.id)
            late = []
            if missed:
                late.append(
                    f"missed {missed} due time(s) from {_when(routine.next_at, routine.timezone)}"
                    " (fleetbot was down or behind)"
                )
            if current is not None:
                late.append(
                    f"{current.id}, its last instance, is still {current.status.value}: "
                    f"skipped {routine.streak + handled} due time(s) (at most one is open)"
                )
            elif agent is not None:
                issue = await self._file(conn, routine, agent, now, ACTOR)
                if missed:
                    late[-1] += f"; filed {issue.id} to catch up"
            else:
                late.append(problem)
            await store.came_due(
                conn,
                routine.id,
                next_at=next_at,
                at=now,
                issue_id=issue.id if issue else None,
                skipped=handled if current is not None else 0,
                missed=missed,
                late="; ".join(late),
            )
        if issue is not None and agent is not None and issue.status is IssueStatus.TODO:
            self.events.publish(IssueAssigned(issue.id, agent.id, "routine"))
        return Fired(await self._get(routine.id), issue, handled)

    async def _maybe_unstick(self, routine: Routine, now: float) -> None:
        """A skipped routine whose open instance has closed is on schedule again."""
        if routine.streak == 0:
            return
        if await issue_store.open_of_routine(self.db.reader, routine.id) is None:
            async with self.db.write() as conn:
                await store.set_late(conn, routine.id, "")

    async def _file(
        self, conn: Conn, routine: Routine, agent: Agent, now: float, actor: str
    ) -> Issue:
        company = self._names.get(routine.company_id, routine.company_id)
        title = " ".join(fill(routine.title, routine, company, now).split())[:MAX_TITLE]
        issue = await issue_store.file(
            conn,
            company_id=agent.company_id,
            assignee_id=agent.id,
            title=title,
            body=fill(routine.body, routine, company, now),
            created_by=created_by(routine),
            model=None,
            max_attempts=self.config.defaults.max_attempts,
            now=now,
            priority=routine.priority,
            routine_id=routine.id,
        )
        await audit.record(
            conn,
            now,
            actor,
            "issue.file",
            issue.id,
            {"assignee": agent.id, "routine": routine.ref},
        )
        return issue

    async def _get(self, routine_id: int) -> Routine:
        found = await store.get(self.db.reader, routine_id)
        if found is None:
            raise RoutineNotFound(f"routine R{routine_id} is gone")
        return found


async def sync_routines(conn: Conn, config: Config, now: float) -> None:
    """Make the config's routines the store's (inside core.store.sync's transaction): new ones
    added, changed ones updated (a new schedule starts from now), removed ones deleted. Paused
    and the counters survive; routines added from the phone are left alone."""
    for company in config.companies:
        wanted = {r.name: r for r in company.routines}
        for existing in await store.every(conn, company.id):
            if existing.source == "config" and existing.name not in wanted:
                await store.delete(conn, existing.id)
        for name, r in wanted.items():
            tz = r.timezone or company.timezone
            sched = parse_schedule(r.schedule, tz)
            found = await store.named(conn, name, company.id)
            if not found:
                await store.add(
                    conn,
                    company_id=company.id,
                    name=name,
                    assignee=r.assignee,
                    schedule=sched.text,
                    timezone=tz,
                    title=r.title,
                    body=r.body,
                    priority=r.priority,
                    source="config",
                    next_at=sched.next_after(now, now),
                    created_by="config",
                    now=now,
                )
                continue
            old = found[0]
            same_schedule = (old.schedule, old.timezone) == (sched.text, tz)
            if same_schedule and (old.assignee, old.title, old.body, old.priority, old.source) == (
                r.assignee,
                r.title,
                r.body,
                r.priority,
                "config",
            ):
                continue
            await store.update_definition(
                conn,
                old.id,
                assignee=r.assignee,
                schedule=sched.text,
                timezone=tz,
                title=r.title,
                body=r.body,
                priority=r.priority,
                next_at=old.next_at if same_schedule else sched.next_after(now, old.created_at),
            )
