"""Routine schedules as pure functions, against tables: each form parses to its cron or interval,
bad ones say what to write, and next due times hold across both DST changes (no clock)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from queue_stack import ts

from core.queues.schedule import parse_schedule, zone

T0 = ts("2026-01-01T00:00+00:00")  # a Thursday


@pytest.mark.parametrize(
    ("text", "every", "cron"),
    [
        ("every 4h", 4 * 3600.0, None),
        ("EVERY 90m", 90 * 60.0, None),
        ("every 1m", 60.0, None),
        ("daily 09:00", None, "0 9 * * *"),
        ("daily 9:05", None, "5 9 * * *"),
        ("weekdays 09:00", None, "0 9 * * 1-5"),
        ("weekly mon 09:00", None, "0 9 * * 1"),
        ("weekly Sunday 18:30", None, "30 18 * * 7"),
        ("monthly 1 09:00", None, "0 9 1 * *"),
        ("monthly 28 23:59", None, "59 23 28 * *"),
        ("cron 0 9 * * mon-fri", None, "0 9 * * mon-fri"),
        ("cron   */15  *  * * *", None, "*/15 * * * *"),
    ],
)
def test_each_form_parses(text: str, every: float | None, cron: str | None) -> None:
    s = parse_schedule(text, "Europe/Berlin")
    assert (s.every, s.cron, s.timezone) == (every, cron, "Europe/Berlin")
    assert s.text == " ".join(text.lower().split())


@pytest.mark.parametrize(
    ("text", "timezone", "says"),
    [
        ("", "UTC", "a schedule is one of: every 4h | daily 09:00"),
        ("hourly", "UTC", "'hourly' is not a schedule; write one of: every 4h"),
        ("cron * * * *", "UTC", "is not a schedule; write one of"),
        ("weekly xyz 09:00", "UTC", "is not a schedule; write one of"),
        ("every banana", "UTC", "expected a duration like 30s, 15m"),
        ("every 30s", "UTC", "'every 30s' is too often for a routine: give at least every 1m"),
        ("daily 9", "UTC", "'9' is not a time of day; write HH:MM, e.g. 09:00"),
        ("daily 24:00", "UTC", "'24:00' is not a time of day"),
        ("monthly 31 09:00", "UTC", "monthly takes a day from 1 to 28"),
        ("monthly 1 25:00", "UTC", "'25:00' is not a time of day"),
        ("cron 61 * * * *", "UTC", "'61 * * * *' is not a cron expression (Bad minute)"),
        ("cron 0 9 30 2 *", "UTC", "is not a cron expression"),
        ("daily 09:00", "Mars/Olympus", "'Mars/Olympus' is not a time zone: write an IANA name"),
    ],
)
def test_bad_schedules_say_what_to_write(text: str, timezone: str, says: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_schedule(text, timezone)
    assert says in str(err.value)


def _chain(text: str, timezone: str, after: str, n: int, anchor: float = T0) -> list[str]:
    """The next `n` due times after `after`, as local ISO times with their offsets."""
    s = parse_schedule(text, timezone)
    t, out = ts(after), []
    for _ in range(n):
        t = s.next_after(t, anchor)
        local = datetime.fromtimestamp(t, UTC).astimezone(zone(timezone))
        out.append(local.isoformat(timespec="minutes"))
    return out


@pytest.mark.parametrize(
    ("text", "timezone", "after", "expected"),
    [
        # Elapsed time from the anchor (T0), whatever the wall clock does.
        (
            "every 4h",
            "UTC",
            "2026-01-01T05:00+00:00",
            ["2026-01-01T08:00+00:00", "2026-01-01T12:00+00:00"],
        ),
        (
            "every 6h",
            "Europe/Berlin",
            "2026-03-29T00:00+00:00",  # across the spring-forward: still 6 h apart
            ["2026-03-29T08:00+02:00", "2026-03-29T14:00+02:00"],
        ),
        (
            "daily 09:00",
            "Europe/Berlin",
            "2026-01-01T00:00+00:00",
            ["2026-01-01T09:00+01:00", "2026-01-02T09:00+01:00"],
        ),
        (
            "weekdays 09:00",
            "UTC",
            "2026-01-02T10:00+00:00",  # Friday after nine: Monday, then Tuesday
            ["2026-01-05T09:00+00:00", "2026-01-06T09:00+00:00"],
        ),
        (
            "weekly mon 09:00",
            "UTC",
            "2026-01-01T00:00+00:00",
            ["2026-01-05T09:00+00:00", "2026-01-12T09:00+00:00"],
        ),
        (
            "weekly sun 18:30",
            "UTC",
            "2026-01-01T00:00+00:00",
            ["2026-01-04T18:30+00:00", "2026-01-11T18:30+00:00"],
        ),
        (
            "monthly 1 09:00",
            "UTC",
            "2026-01-01T09:00+00:00",  # at the due time: strictly after it
            ["2026-02-01T09:00+00:00", "2026-03-01T09:00+00:00"],
        ),
        (
            "cron 0 9 * * mon-fri",
            "America/New_York",
            "2026-01-02T15:00+00:00",  # Friday 10:00 in New York
            ["2026-01-05T09:00-05:00", "2026-01-06T09:00-05:00"],
        ),
        # Spring-forward: 02:30 does not exist; it fires once, when the clock resumes at 03:00.
        (
            "daily 02:30",
            "Europe/Berlin",
            "2026-03-27T12:00+00:00",
            ["2026-03-28T02:30+01:00", "2026-03-29T03:00+02:00", "2026-03-30T02:30+02:00"],
        ),
        (
            "daily 02:30",
            "America/New_York",
            "2026-03-06T12:00+00:00",
            ["2026-03-07T02:30-05:00", "2026-03-08T03:00-04:00", "2026-03-09T02:30-04:00"],
        ),
        # Fall-back: the hour repeats; a fixed time fires once, in its first pass.
        (
            "daily 02:30",
            "Europe/Berlin",
            "2026-10-23T12:00+00:00",
            ["2026-10-24T02:30+02:00", "2026-10-25T02:30+02:00", "2026-10-26T02:30+01:00"],
        ),
        (
            "daily 01:30",
            "America/New_York",
            "2026-10-30T12:00+00:00",
            ["2026-10-31T01:30-04:00", "2026-11-01T01:30-04:00", "2026-11-02T01:30-05:00"],
        ),
        # A wildcard-hour schedule fires in both passes of the repeated hour (Debian cron).
        (
            "cron */30 * * * *",
            "Europe/Berlin",
            "2026-10-25T00:00+00:00",
            [
                "2026-10-25T02:30+02:00",
                "2026-10-25T02:00+01:00",
                "2026-10-25T02:30+01:00",
                "2026-10-25T03:00+01:00",
            ],
        ),
    ],
)
def test_next_due_times(text: str, timezone: str, after: str, expected: list[str]) -> None:
    assert _chain(text, timezone, after, len(expected)) == expected


# Fixed times in, before and after the skipped or repeated hour, and wildcard ones.
DST_CASES = [
    ("Europe/Berlin", "2026-03-29"),
    ("Europe/Berlin", "2026-10-25"),
    ("America/New_York", "2026-03-08"),
    ("America/New_York", "2026-11-01"),
]
DST_SCHEDULES = [
    "daily 02:30",
    "daily 01:30",
    "weekly sun 02:30",
    "cron 0,30 1 * * *",
    "cron 15,45 1-3 * * *",
    "cron */15 2 * * *",
    "cron */30 * * * *",
    "cron 30 * * * *",
]


@pytest.mark.parametrize(("timezone", "day"), DST_CASES)
@pytest.mark.parametrize("text", DST_SCHEDULES)
def test_never_backwards_and_each_due_time_once(timezone: str, day: str, text: str) -> None:
    """From any moment of the change day (a fleetbot restarted in the repeated hour, too), the
    next due time is strictly later, never earlier than from a moment before, and one of the
    due times the schedule's own chain visits: nothing fires twice, nothing is made up."""
    s = parse_schedule(text, timezone)
    start = ts(f"{day}T00:00+00:00") - 12 * 3600
    end = start + 48 * 3600
    chain, t = [], start
    while t < end:
        t = s.next_after(t, T0)
        chain.append(t)
    assert len(chain) == len(set(chain))
    seen: set[float] = set()
    prev = None
    t = start
    while t < end - 86400:
        found = s.next_after(t, T0)
        assert found > t, f"{text} in {timezone}: next after {t} is {found}, not later"
        assert prev is None or found >= prev, f"{text}: went back from {prev} to {found}"
        prev = found
        seen.add(found)
        t += 7 * 60 + 13  # not aligned to minutes: cronsim starts from the minute t is in
    assert seen <= set(chain)
    words = text.split()
    if words[0] != "cron" or not (words[1].startswith("*") or words[2].startswith("*")):
        # A job at a specific time fires once; a wildcard minute or hour in both passes.
        tz = zone(timezone)
        walls = [datetime.fromtimestamp(x, UTC).astimezone(tz).replace(tzinfo=None) for x in chain]
        assert len(walls) == len(set(walls)), f"{text}: a wall-clock time fired twice"
