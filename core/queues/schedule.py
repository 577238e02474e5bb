"""When a routine comes due: schedules as people write them, evaluated in a time zone.

Forms: `every 4h` (elapsed time from the routine's anchor; no wall clock, so no DST), `daily
09:00`, `weekdays 09:00`, `weekly mon 09:00`, `monthly 1 09:00`, and `cron M H DOM MON DOW`.
Everything but `every` is wall-clock time in the routine's zone, evaluated by cronsim, which
follows Debian cron across DST changes: a time the spring-forward skips fires when the clock
resumes (02:30 → 03:00), a time the fall-back repeats fires once, and a wildcard-hour schedule
(`cron */30 * * * *`) fires in both passes of the repeated hour. (APScheduler 3.11's
CronTrigger, already a dependency, goes backwards and repeats across the fall-back hour.)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from core.durations import parse_duration

USAGE = (
    "every 4h | daily 09:00 | weekdays 09:00 | weekly mon 09:00 | monthly 1 09:00 | "
    "cron M H DOM MON DOW"
)
_HHMM = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MIN_EVERY = 60.0  # a routine is work for an agent, not a busy loop
MAX_DUE_COUNT = 10_000  # due times counted across a long downtime, at most


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`; ValueError naming what to write if there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{name!r} is not a time zone: write an IANA name such as UTC, Europe/Berlin or "
            "America/New_York"
        ) from None


@dataclass(frozen=True, slots=True)
class Schedule:
    text: str  # as written, normalised
    timezone: str
    every: float | None = None  # seconds, for `every`
    cron: str | None = None  # the five-field expression otherwise

    def next_after(self, t: float, anchor: float) -> float:
        """The first due time strictly after `t` (an `every` counts from `anchor`)."""
        if self.every is not None:
            steps = math.floor((t - anchor) / self.every) + 1
            return anchor + max(steps, 1) * self.every
        assert self.cron is not None
        start = datetime.fromtimestamp(t, UTC).astimezone(zone(self.timezone))
        # cronsim starts from the minute `t` is in, and reads a `t` in the second pass of a
        # repeated (fall-back) hour as wall-clock time, so it may first yield the first pass's
        # due times, which lie before `t`: skip to the first one after it.
        for found in CronSim(self.cron, start):
            if found.timestamp() > t:
                return found.timestamp()
        raise ValueError(f"{self.text!r} never comes due again")

    def due_in(self, first: float, until: float, anchor: float) -> int:
        """How many due times fall in [first, until], `first` being one of them. One pass of
        one cron iterator (not next_after per due time): after a month down, a minutely
        routine is counted in milliseconds, not by blocking the loop for a second."""
        if first > until:
            return 0
        if self.every is not None:
            return min(MAX_DUE_COUNT, int((until - first) // self.every) + 1)
        assert self.cron is not None
        n, last = 1, first
        start = datetime.fromtimestamp(first, UTC).astimezone(zone(self.timezone))
        for found in CronSim(self.cron, start):
            t = found.timestamp()
            if t <= last:  # the repeated hour's first pass, as in next_after
                continue
            if t > until or n >= MAX_DUE_COUNT:
                break
            n, last = n + 1, t
        return n


def parse_schedule(text: str, timezone: str = "UTC") -> Schedule:
    """A Schedule from its written form; ValueError saying what to write instead."""
    zone(timezone)
    words = text.strip().lower().split()
    if not words:
        raise ValueError(f"a schedule is one of: {USAGE}")
    kind, rest = words[0], words[1:]
    norm = " ".join(words)
    if kind == "every" and len(rest) == 1:
        seconds = parse_duration(rest[0])
        if seconds < MIN_EVERY:
            raise ValueError(f"{norm!r} is too often for a routine: give at least every 1m")
        return Schedule(norm, timezone, every=seconds)
    if kind == "cron" and len(rest) == 5:
        expr = " ".join(rest)
        try:
            CronSim(expr, datetime.now(UTC))
        except CronSimError as exc:
            raise ValueError(f"{expr!r} is not a cron expression ({exc})") from None
        return Schedule(norm, timezone, cron=expr)
    if kind in ("daily", "weekdays") and len(rest) == 1:
        h, m = _time(rest[0])
        return Schedule(norm, timezone, cron=f"{m} {h} * * {'*' if kind == 'daily' else '1-5'}")
    if kind == "weekly" and len(rest) == 2 and rest[0][:3] in _DAYS:
        h, m = _time(rest[1])
        return Schedule(norm, timezone, cron=f"{m} {h} * * {_DAYS.index(rest[0][:3]) + 1}")
    if kind == "monthly" and len(rest) == 2 and rest[0].isdigit() and 1 <= int(rest[0]) <= 28:
        h, m = _time(rest[1])
        return Schedule(norm, timezone, cron=f"{m} {h} {int(rest[0])} * *")
    if kind == "monthly":
        raise ValueError("monthly takes a day from 1 to 28 (every month has it) and HH:MM")
    raise ValueError(f"{text.strip()!r} is not a schedule; write one of: {USAGE}")


def _time(word: str) -> tuple[int, int]:
    found = _HHMM.fullmatch(word)
    if found is None:
        raise ValueError(f"{word!r} is not a time of day; write HH:MM, e.g. 09:00")
    return int(found[1]), int(found[2])
