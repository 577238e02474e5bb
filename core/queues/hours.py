"""Active hours: when a heartbeat may wake an agent's model (no 3 a.m. wake for a daytime agent).

Pure time arithmetic over core.config.queues.ActiveHours, read in its zone. Outside the hours a
heartbeat dispatches only critical work (urgent by definition); the rest waits, and the agent's
next heartbeat is moved up to the moment its hours begin so waiting work starts on time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from core.config import Config
from core.config.queues import ActiveHours, parse_days
from core.queues.schedule import zone


@dataclass(frozen=True, slots=True)
class Window:
    start: time
    end: time
    days: frozenset[int]  # 0 Monday … 6 Sunday: days on which a window starts
    timezone: str

    @classmethod
    def of(cls, hours: ActiveHours, timezone: str) -> Window:
        h1, m1 = map(int, hours.start.split(":"))
        h2, m2 = map(int, hours.end.split(":"))
        return cls(time(h1, m1), time(h2, m2), parse_days(hours.days), hours.timezone or timezone)

    def active(self, t: float) -> bool:
        local = datetime.fromtimestamp(t, UTC).astimezone(zone(self.timezone))
        now, day = local.time().replace(tzinfo=None), local.weekday()
        if self.start == self.end:  # all day on its days
            return day in self.days
        if self.start < self.end:
            return day in self.days and self.start <= now < self.end
        # Spans midnight: the evening part on a listed day, the morning part the day after.
        return (day in self.days and now >= self.start) or (
            (day - 1) % 7 in self.days and now < self.end
        )

    def next_start(self, t: float) -> float:
        """`t` if the window is open at `t`, else when it next opens."""
        if self.active(t):
            return t
        tz = zone(self.timezone)
        local = datetime.fromtimestamp(t, UTC).astimezone(tz)
        for ahead in range(8):
            day = local.date() + timedelta(days=ahead)
            if day.weekday() not in self.days:
                continue
            opens = datetime.combine(day, self.start, tzinfo=tz).timestamp()
            if opens > t:
                return opens
        return t + 86400.0  # no listed day (cannot happen: parse_days refuses an empty set)


class HoursBook:
    """Every agent's active window, looked up per heartbeat without walking the config."""

    def __init__(self, config: Config) -> None:
        self._by_agent: dict[str, Window] = {}
        for company in config.companies:
            for agent in company.agents:
                hours = agent.active_hours or company.active_hours or config.defaults.active_hours
                if hours is not None:
                    self._by_agent[agent.id] = Window.of(hours, company.timezone)

    def window(self, agent_id: str) -> Window | None:
        return self._by_agent.get(agent_id)

    def active(self, agent_id: str, t: float) -> bool:
        w = self._by_agent.get(agent_id)
        return w is None or w.active(t)

    def next_start(self, agent_id: str, t: float) -> float:
        w = self._by_agent.get(agent_id)
        return t if w is None else w.next_start(t)
