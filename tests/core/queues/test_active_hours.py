"""Active hours: the window as a pure function of a time (table), then heartbeats on a real stack
that wake no model outside it, move the next beat to its start, and still dispatch critical work."""

from __future__ import annotations

from pathlib import Path

import pytest
from queue_stack import Priced, queue_config, ts
from stack_helpers import heartbeat_counts, open_stack

from core.clock import ManualClock
from core.config.queues import ActiveHours
from core.models import IssueStatus, Priority
from core.queues.hours import HoursBook, Window

OFFICE = ActiveHours(start="09:00", end="17:00", days="mon-fri")
NIGHTS = ActiveHours(start="22:00", end="06:00", days="mon-fri")
WEEKENDS = ActiveHours(start="00:00", end="00:00", days="sat-sun")


@pytest.mark.parametrize(
    ("hours", "timezone", "at", "active", "opens"),
    [
        (OFFICE, "Europe/Berlin", "2026-01-01T09:30+01:00", True, "2026-01-01T09:30+01:00"),
        (OFFICE, "Europe/Berlin", "2026-01-01T08:59+01:00", False, "2026-01-01T09:00+01:00"),
        (OFFICE, "Europe/Berlin", "2026-01-01T17:00+01:00", False, "2026-01-02T09:00+01:00"),
        (OFFICE, "Europe/Berlin", "2026-01-02T18:00+01:00", False, "2026-01-05T09:00+01:00"),
        (OFFICE, "Europe/Berlin", "2026-01-03T12:00+01:00", False, "2026-01-05T09:00+01:00"),
        (OFFICE, "UTC", "2026-01-01T08:30+00:00", False, "2026-01-01T09:00+00:00"),
        # Spanning midnight: the morning part belongs to the day before.
        (NIGHTS, "UTC", "2026-01-02T23:00+00:00", True, "2026-01-02T23:00+00:00"),  # Fri
        (NIGHTS, "UTC", "2026-01-03T05:00+00:00", True, "2026-01-03T05:00+00:00"),  # Sat a.m.
        (NIGHTS, "UTC", "2026-01-03T23:00+00:00", False, "2026-01-05T22:00+00:00"),  # Sat p.m.
        (NIGHTS, "UTC", "2026-01-05T05:00+00:00", False, "2026-01-05T22:00+00:00"),  # Mon a.m.
        # start == end: all day on its days.
        (WEEKENDS, "UTC", "2026-01-04T23:59+00:00", True, "2026-01-04T23:59+00:00"),
        (WEEKENDS, "UTC", "2026-01-05T00:00+00:00", False, "2026-01-10T00:00+00:00"),
    ],
)
def test_window(hours: ActiveHours, timezone: str, at: str, active: bool, opens: str) -> None:
    w = Window.of(hours, timezone)
    assert w.active(ts(at)) is active
    assert w.next_start(ts(at)) == ts(opens)


def test_agent_over_company_over_defaults(tmp_path: Path) -> None:
    config = queue_config(
        tmp_path,
        defaults={"active_hours": {"start": "08:00", "end": "20:00"}},
        aliens={
            "timezone": "Europe/Berlin",
            "active_hours": {"start": "09:00", "end": "17:00", "days": "mon-fri"},
        },
        agents={"ali-cmo": {"active_hours": {"start": "22:00", "end": "06:00", "timezone": "UTC"}}},
    )
    book = HoursBook(config)
    windows = {a: book.window(a) for a in ("ali-cto", "ali-cmo", "mat-ceo")}
    assert {a: (str(w.start), str(w.end), w.timezone) for a, w in windows.items() if w} == {
        "ali-cto": ("09:00:00", "17:00:00", "Europe/Berlin"),
        "ali-cmo": ("22:00:00", "06:00:00", "UTC"),
        "mat-ceo": ("08:00:00", "20:00:00", "UTC"),
    }
    at = ts("2026-01-01T08:30+00:00")  # 09:30 in Berlin
    assert [book.active(a, at) for a in ("ali-cto", "ali-cmo", "mat-ceo")] == [True, False, True]
    assert book.active("nobody", at) and book.next_start("nobody", at) == at


async def test_outside_hours_work_waits_and_critical_work_does_not(tmp_path: Path) -> None:
    config = queue_config(
        tmp_path,
        aliens={"active_hours": {"start": "09:00", "end": "17:00", "days": "mon-fri"}},
        agents={"ali-cmo": {"active_hours": {"start": "06:00", "end": "08:00"}}},
    )
    clock = ManualClock(ts("2026-01-01T07:00+00:00"))  # Thursday, before the office opens
    async with open_stack(tmp_path, clock, config=config, behaviour=Priced()) as s:
        waits = await s.service.file_issue(title="waits", assignee="ali-cto", actor="al")
        await s.scheduler.drain()
        assert s.runtimes.calls == [], "outside its hours: no model woken"
        assert await heartbeat_counts(s.service, "ali-cto") == {"off_hours": 1}
        cto = await s.service.agent("ali-cto")
        assert cto.next_heartbeat_at == ts("2026-01-01T09:00+00:00")  # not 11:00 (4h)
        urgent = await s.service.file_issue(
            title="prod down", assignee="ali-cto", actor="al", priority=Priority.CRITICAL
        )
        await s.service.file_issue(title="ads", assignee="ali-cmo", actor="al")  # its own hours
        await s.service.file_issue(title="free", assignee="mat-cto", actor="al")  # no hours
        await s.scheduler.drain()
        assert sorted((j.agent_id, j.issue["title"]) for j in s.runtimes.calls) == [
            ("ali-cmo", "ads"),
            ("ali-cto", "prod down"),
            ("mat-cto", "free"),
        ]
        assert (await s.service.issue(urgent.id)).status is IssueStatus.DONE
        assert (await s.service.issue(waits.id)).status is IssueStatus.TODO
        clock.set(ts("2026-01-01T09:00+00:00"))
        report = await s.scheduler.tick()
        await s.scheduler.drain()
        assert [j.issue["title"] for j in s.runtimes.calls if j.agent_id == "ali-cto"] == [
            "prod down",
            "waits",
        ]
        assert sum(report.beats.values()) == 1  # only ali-cto was due, at the window's start
        clock.set(ts("2026-01-01T17:30+00:00"))  # after hours: the 4h interval is sooner
        await s.service.file_issue(title="evening", assignee="ali-cto", actor="al")
        await s.scheduler.drain()
        cto = await s.service.agent("ali-cto")
        assert cto.next_heartbeat_at == ts("2026-01-01T21:30+00:00")
        assert (await heartbeat_counts(s.service, "ali-cto"))["off_hours"] == 3
