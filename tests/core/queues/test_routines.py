"""Routines on a real store and a manual clock: a fleetbot down across due times catches up once,
an open instance skips due times instead of piling up, DST days file each instance once, and
the facade's pause/resume/run/remove are audited; config routines are kept in step."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from queue_stack import Priced, audit_rows, queue_config, ts, watchdog
from stack_helpers import Stack, open_stack

from core.alerting.book import AlertKind
from core.clock import ManualClock
from core.errors import Conflict, InvalidInput, RoutineNotFound
from core.models import IssueStatus, Priority, RunOutcome
from core.queues.feeder import Feeder
from core.queues.planner import Planner
from core.queues.schedule import zone

T0 = ts("2026-01-01T00:00+00:00")  # ManualClock's start, a Thursday
HOUR = 3600.0
STANDUP: dict[str, Any] = {
    "name": "standup",
    "schedule": "daily 09:00",
    "assignee": "ceo",
    "title": "Standup {date}",
    "body": "{company}, {weekday}",
}


async def _instances(s: Stack) -> list[tuple[str, str]]:
    rows = await s.db.fetchall(
        "SELECT id, status FROM issues WHERE routine_id IS NOT NULL ORDER BY number"
    )
    return [(r[0], r[1]) for r in rows]


async def _finish_live_run(s: Stack, agent_id: str) -> None:
    await s.scheduler.drain()
    [run] = [r for r in await s.service.recent_runs(agent_id) if r.ended_at is None]
    await s.service.finish_run(run.id, agent_id, RunOutcome.DONE)
    await s.scheduler.drain()


async def test_down_across_five_due_times_files_one_catch_up(
    tmp_path: Path, clock: ManualClock
) -> None:
    config = queue_config(tmp_path, aliens={"routines": [STANDUP]})
    async with open_stack(tmp_path, clock, config=config) as s:
        [r] = await s.service.routines()
        assert (r.ref, r.source, r.next_at) == ("R1", "config", ts("2026-01-01T09:00+00:00"))
    clock.set(ts("2026-01-05T12:00+00:00"))  # fleetbot was down across Jan 1 … 5, 09:00
    async with open_stack(tmp_path, clock, config=config) as s, watchdog(s) as w:
        feeder = Feeder(s.service, Planner(s.service, s.db, config, clock, s.service.events))
        [fired] = (await feeder.tick()).fired
        assert fired.due_times == 5 and fired.issue is not None
        issue = fired.issue
        assert (issue.title, issue.body, issue.assignee_id, issue.created_by) == (
            "Standup 2026-01-05",
            "Aliens Inc, Monday",
            "ali-ceo",
            "routine:R1",
        )
        r = fired.routine
        assert (r.missed, r.skipped, r.streak, r.last_issue) == (5, 0, 0, issue.id)
        assert r.next_at == ts("2026-01-06T09:00+00:00")
        assert r.late == (
            "missed 5 due time(s) from Thu 01 Jan 09:00 (fleetbot was down or behind); "
            f"filed {issue.id} to catch up"
        )
        [alert] = await w.alerts(AlertKind.ROUTINE_MISSED)
        assert [(m.label, m.detail) for m in alert.active_members] == [
            ("R1 standup (daily 09:00)", r.late)
        ]
        clock.advance(60)
        assert (await feeder.tick()).fired == []  # caught up: nothing more to file
        await _finish_live_run(s, "ali-ceo")
        clock.set(ts("2026-01-06T09:00+00:00"))  # the next due time, on time
        [fired] = (await feeder.tick()).fired
        assert fired.issue is not None and fired.issue.title == "Standup 2026-01-06"
        assert (fired.routine.late, fired.routine.missed, fired.due_times) == ("", 5, 1)
        assert await w.alerts(AlertKind.ROUTINE_MISSED) == []
        assert [i for i, _ in await _instances(s)] == ["ALI-1", "ALI-2"]


async def test_an_open_instance_skips_due_times_and_counts_them(stack: Stack) -> None:
    s = stack
    await s.service.add_routine(
        name="Triage", schedule="every 1h", assignee="ali-cto", title="Triage {time}", actor="al"
    )
    s.clock.advance(HOUR)
    [fired] = await s.service.run_routines()
    assert fired.issue is not None and fired.issue.title == "Triage 01:00"
    first = fired.issue
    await s.scheduler.drain()  # dispatched: in progress, still open
    async with watchdog(s) as w:
        for n in (1, 2):
            s.clock.advance(HOUR)
            [fired] = await s.service.run_routines()
            assert fired.issue is None
            r = fired.routine
            assert (r.skipped, r.streak, r.missed, r.next_at) == (n, n, 0, T0 + (n + 2) * HOUR)
            assert r.late == (
                f"{first.id}, its last instance, is still in_progress: skipped {n} due time(s) "
                "(at most one is open)"
            )
        [alert] = await w.alerts(AlertKind.ROUTINE_MISSED)
        assert alert.active_members[0].detail.startswith(f"{first.id}, its last instance")
        with pytest.raises(Conflict, match=f"has an open instance, {first.id}"):
            await s.service.run_routine("triage", "al")
        assert await _instances(s) == [(first.id, "in_progress")]
        await _finish_live_run(s, "ali-cto")
        s.clock.advance(60)
        assert await s.service.run_routines() == []
        r = await s.service.routine("R1")
        assert (r.late, r.streak) == ("", 2)  # on schedule again; the streak ends with a file
        assert await w.alerts(AlertKind.ROUTINE_MISSED) == []
        s.clock.set(T0 + 4 * HOUR)
        [fired] = await s.service.run_routines()
        assert fired.issue is not None and fired.issue.id != first.id
        assert (fired.routine.skipped, fired.routine.streak) == (2, 0)
        assert [status for _, status in await _instances(s)] == ["done", "todo"]


@pytest.mark.parametrize(
    ("timezone", "schedule", "start", "fires"),
    [
        # Spring-forward: 02:30 does not exist that night; it is filed once, at 03:00.
        ("Europe/Berlin", "daily 02:30", "2026-03-28T12:00+00:00", ["03-29 03:00", "03-30 02:30"]),
        (
            "America/New_York",
            "daily 02:30",
            "2026-03-07T12:00+00:00",
            ["03-08 03:00", "03-09 02:30"],
        ),
        # Fall-back: 02:30 (01:30) happens twice that night; it is filed once, the first time.
        ("Europe/Berlin", "daily 02:30", "2026-10-24T12:00+00:00", ["10-25 02:30", "10-26 02:30"]),
        (
            "America/New_York",
            "daily 01:30",
            "2026-10-31T12:00+00:00",
            ["11-01 01:30", "11-02 01:30"],
        ),
    ],
)
async def test_dst_days_file_each_instance_once(
    tmp_path: Path, timezone: str, schedule: str, start: str, fires: list[str]
) -> None:
    clock = ManualClock(ts(start))
    async with open_stack(tmp_path, clock, behaviour=Priced()) as s:
        await s.service.add_routine(
            name="night",
            schedule=schedule,
            assignee="ali-qa-1",
            title="{date} {time}",
            actor="al",
            timezone=timezone,
        )
        filed = []
        for _ in range(2 * 24 * 12):  # two days, every 5 minutes
            clock.advance(300)
            for fired in await s.service.run_routines():
                assert fired.issue is not None and fired.due_times == 1
                filed.append((clock.now(), fired.issue.title))
            await s.scheduler.drain()
        tz = zone(timezone)
        assert [datetime.fromtimestamp(t, tz).strftime("%m-%d %H:%M") for t, _ in filed] == fires
        assert [title[5:] for _, title in filed] == fires  # {date} {time}, in the zone
        r = await s.service.routine("night")
        assert (r.missed, r.skipped, r.late) == (0, 0, "")
        assert len(await _instances(s)) == 2


async def test_a_routine_added_in_the_repeated_hour_is_not_due_at_once(tmp_path: Path) -> None:
    """Added at 02:05 in the second pass of Berlin's repeated hour: its 02:15 and 02:45 were
    the first pass's, so the next due time is tomorrow, not a moment in the past."""
    clock = ManualClock(ts("2026-10-25T02:05+01:00"))
    async with open_stack(tmp_path, clock) as s:
        r = await s.service.add_routine(
            name="sweep",
            schedule="cron 15,45 2 * * *",
            assignee="ali-qa-1",
            title="Sweep",
            actor="al",
            timezone="Europe/Berlin",
        )
        assert r.next_at == ts("2026-10-26T02:15+01:00")
        clock.advance(60)
        assert await s.service.run_routines() == []
        assert await _instances(s) == []


async def test_a_routine_that_cannot_file_says_so(stack: Stack) -> None:
    # A title stored before templates were checked as strictly (or edited by hand): its due
    # time fails to file. It must raise routine_missed, not fail silently every minute.
    s = stack
    await s.service.add_routine(
        name="deploy", schedule="every 1h", title="Deploy", assignee="ali-ceo", actor="al"
    )
    async with s.db.write() as conn:
        await conn.execute("UPDATE routines SET title = 'Fix } now'")
    s.clock.advance(3600)
    assert await s.service.run_routines() == []
    [routine] = await s.service.routines()
    assert routine.late.startswith("cannot file: Single '}' encountered")
    assert await s.service.issues() == []


async def test_pause_resume_run_now_remove_through_the_facade(stack: Stack) -> None:
    s = stack
    r = await s.service.add_routine(
        name="digest",
        schedule="daily 09:00",
        assignee="cto@aliens",
        title="Digest {date}",
        actor="alice",
        priority=Priority.HIGH,
    )
    assert (r.ref, r.assignee, r.source, r.company_id) == ("R1", "cto", "chat", "aliens")
    assert (await s.service.pause_routine("digest", "alice")).paused is True
    with pytest.raises(Conflict, match="already paused"):
        await s.service.pause_routine("R1", "alice")
    s.clock.set(ts("2026-01-03T12:00+00:00"))  # two due times pass while paused
    assert await s.service.run_routines() == []
    resumed = await s.service.resume_routine("r1", "alice")
    assert (resumed.paused, resumed.missed, resumed.late) == (False, 0, "")
    assert resumed.next_at == ts("2026-01-04T09:00+00:00")  # not made up
    with pytest.raises(Conflict, match="not paused"):
        await s.service.resume_routine("digest", "alice")
    issue = await s.service.run_routine("digest@aliens", "alice")
    assert (issue.title, issue.priority, issue.assignee_id) == (
        "Digest 2026-01-03",
        Priority.HIGH,
        "ali-cto",
    )
    assert (await s.service.routine("R1")).next_at == resumed.next_at  # schedule unchanged
    assert (await s.service.remove_routine("digest", "alice")).ref == "R1"
    assert await s.service.routines() == []
    with pytest.raises(RoutineNotFound, match="/routines lists them"):
        await s.service.routine("R1")
    assert (await s.service.issue(issue.id)).status is not IssueStatus.CANCELLED  # it stays
    assert await audit_rows(s.service, "routine.") == [
        ("alice", f"routine.{action}", "R1")
        for action in ("add", "pause", "resume", "run", "remove")
    ]
    assert ("alice", "issue.file", issue.id) in await audit_rows(s.service, "issue.")


@pytest.mark.parametrize(
    ("override", "error", "says"),
    [
        ({"schedule": "hourly"}, InvalidInput, "'hourly' is not a schedule; write one of"),
        ({"schedule": "daily 09:00", "timezone": "Mars/X"}, InvalidInput, "is not a time zone"),
        ({"name": "Two Words"}, InvalidInput, "1–32 lowercase letters, digits, _ or -"),
        ({"title": "  "}, InvalidInput, "needs a title"),
        ({"title": "On {day}"}, InvalidInput, "{day} is not a template field; use {date}"),
        # What str.format would refuse when the routine comes due is refused now, not then.
        ({"title": "Fix } now"}, InvalidInput, "a lone { or } in 'Fix } now': write {{ or }}"),
        ({"title": "Deploy {date"}, InvalidInput, "a lone { or }"),
        ({"body": "{date!r}"}, InvalidInput, "{date} is not a template field"),
        ({"title": "{date:>20}"}, InvalidInput, "{date} is not a template field"),
        ({"title": "{date.year}"}, InvalidInput, "{date.year} is not a template field"),
        ({"name": "standup"}, Conflict, "aliens already has a routine 'standup'"),
    ],
)
async def test_bad_routines_are_refused_with_what_to_do(
    stack: Stack, override: dict[str, Any], error: type[Exception], says: str
) -> None:
    good: dict[str, Any] = {"name": "standup", "schedule": "daily 09:00", "title": "Standup"}
    await stack.service.add_routine(**good, assignee="ali-ceo", actor="al")
    with pytest.raises(error) as err:
        await stack.service.add_routine(
            **{**good, "name": "other", **override}, assignee="ali-ceo", actor="al"
        )
    assert says in str(err.value)
    assert len(await stack.service.routines()) == 1


async def test_config_routines_are_synced_and_not_removable_from_chat(
    tmp_path: Path, clock: ManualClock
) -> None:
    first = queue_config(tmp_path, aliens={"routines": [STANDUP]})
    async with open_stack(tmp_path, clock, config=first) as s:
        with pytest.raises(Conflict, match=r"comes from the config: remove it from companies\["):
            await s.service.remove_routine("standup", "alice")
        await s.service.pause_routine("standup", "alice")
        await s.service.add_routine(
            name="adhoc", schedule="every 2h", assignee="ali-cmo", title="Ads", actor="alice"
        )
    clock.set(ts("2026-01-02T12:00+00:00"))  # a Friday: restarted with the same config
    async with open_stack(tmp_path, clock, config=first) as s:
        r = await s.service.routine("standup")
        assert (r.source, r.paused, r.next_at) == ("config", True, ts("2026-01-01T09:00+00:00"))
    changed = {**STANDUP, "schedule": "weekdays 10:00", "title": "Standup {weekday}"}
    second = queue_config(tmp_path, aliens={"routines": [changed]})
    async with open_stack(tmp_path, clock, config=second) as s:
        r = await s.service.routine("standup")
        assert (r.schedule, r.title, r.paused) == ("weekdays 10:00", "Standup {weekday}", True)
        assert r.next_at == ts("2026-01-05T10:00+00:00")  # a new schedule starts from now
    third = queue_config(tmp_path)
    async with open_stack(tmp_path, clock, config=third) as s:
        assert [(r.name, r.source) for r in await s.service.routines()] == [("adhoc", "chat")]


async def test_a_removed_routines_ref_is_never_reused(stack: Stack) -> None:
    s = stack
    for name in ("one", "two"):
        await s.service.add_routine(
            name=name, schedule="daily 09:00", title="T", assignee="ali-ceo", actor="al"
        )
    await s.service.remove_routine("R2", "al")
    again = await s.service.add_routine(
        name="three", schedule="daily 09:00", title="T", assignee="ali-ceo", actor="al"
    )
    assert again.ref == "R3"
    with pytest.raises(RoutineNotFound):
        await s.service.routine("R2")
