"""The config of queues that feed themselves: active hours, routines, the planner, backlog
promotion and the spend-velocity breaker (core.queues). Imported by core.config.schema."""

from __future__ import annotations

import string

from pydantic import Field, field_validator, model_validator

from core.config.base import Model as _Model, Seconds
from core.models import Priority
from core.queues.schedule import parse_schedule, zone

_HHMM = r"([01]\d|2[0-3]):[0-5]\d"
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ROUTINE_NAME = r"^[a-z0-9][a-z0-9_-]{0,31}$"
# What a routine's title and body may say in braces, filled when an instance is filed.
TEMPLATE_FIELDS = ("date", "time", "weekday", "week", "month", "year", "company", "routine")


def parse_days(text: str) -> frozenset[int]:
    """`mon-fri`, `mon,wed,fri`, `sat-sun`, `*`: weekdays as 0 (Monday) … 6."""
    text = text.strip().lower().replace(" ", "")
    if text in ("*", "all", "every", "daily"):
        return frozenset(range(7))
    out: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        if first[:3] not in _DAYS or (last and last[:3] not in _DAYS):
            raise ValueError(f"{part!r} is not a day; write mon-fri, sat-sun or mon,wed,fri")
        a = _DAYS.index(first[:3])
        b = _DAYS.index(last[:3]) if last else a
        out.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return frozenset(out)


class ActiveHours(_Model):
    """When heartbeats may wake a model; outside, work waits unless it is critical. An
    `end` before `start` spans midnight (22:00–06:00). Zone: this, else the company's."""

    start: str = Field(pattern=f"^{_HHMM}$")
    end: str = Field(pattern=f"^{_HHMM}$")
    days: str = "mon-sun"
    timezone: str | None = None

    @field_validator("days")
    @classmethod
    def _days(cls, v: str) -> str:
        parse_days(v)
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str | None) -> str | None:
        if v is not None:
            zone(v)
        return v


class RoutineConfig(_Model):
    """Recurring work, filed on a schedule; at most one instance open at a time."""

    name: str = Field(pattern=ROUTINE_NAME)
    schedule: str
    assignee: str = Field(min_length=1)  # an agent id or a role of the company
    title: str = Field(min_length=1, max_length=200)
    body: str = Field(default="", max_length=20_000)
    priority: Priority = Priority.MEDIUM
    timezone: str | None = None  # default: the company's

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: str) -> str:
        return parse_schedule(v).text

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str | None) -> str | None:
        if v is not None:
            zone(v)
        return v

    @field_validator("title", "body")
    @classmethod
    def _template(cls, v: str) -> str:
        check_template(v)
        return v


def check_template(text: str) -> None:
    """ValueError if `text` could not be filled when the routine comes due: a field in braces
    a routine cannot fill, a format spec or conversion, or a lone brace (checked with the
    very parser that fills it, so what passes here always files)."""
    fields = " ".join(f"{{{f}}}" for f in TEMPLATE_FIELDS)
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError:
        raise ValueError(
            f"a lone {{ or }} in {text!r}: write {{{{ or }}}} for a brace, or a field: {fields}"
        ) from None
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in TEMPLATE_FIELDS or spec or conversion:
            raise ValueError(f"{{{name}}} is not a template field; use {fields}")


class PlannerConfig(_Model):
    """Opt-in: when the queue stays empty and the backlog is drained, file one planning issue."""

    # An agent id or a role; default: the top of the company's reports_to chain.
    assignee: str | None = None
    every: Seconds = 86400  # at most one planning issue per this period
    goals: list[str] = Field(default_factory=list)  # standing goals, quoted in its body
    recent: int = Field(default=10, ge=0, le=50)  # recent done issues quoted in its body

    @field_validator("every")
    @classmethod
    def _often(cls, v: float) -> float:
        if v < 600:
            raise ValueError("plan at most every 10m (a planner is a deliberate LLM call)")
        return v


class SpendVelocity(_Model):
    """Per agent, spend in the last hour against its own baseline: above `multiple` × the
    baseline and above a floor, one `spend_velocity` alert and, with `pause`, a pause."""

    multiple: float = Field(default=5.0, ge=1.5)
    floor_usd: float = Field(default=2.0, ge=0)  # per hour; below it, never a trip
    floor_tokens: int = Field(default=2_000_000, ge=0)  # per hour; for models billed at 0
    baseline: Seconds = 7 * 86400  # the window of history the baseline is the hourly mean of
    pause: bool = False

    @model_validator(mode="after")
    def _some_floor(self) -> SpendVelocity:
        if self.floor_usd <= 0 and self.floor_tokens <= 0:
            raise ValueError(
                "give floor_usd or floor_tokens above 0: without a floor every "
                "first hour of a new agent trips the breaker"
            )
        return self
