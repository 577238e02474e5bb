"""Is a notification due for an alert? One pure function of the alert's state, `now` and config.

`decide` answers with one `Action`:

| situation                                                  | action     | delivered as        |
|------------------------------------------------------------|------------|---------------------|
| never notified, resolved already                           | `drop`     | nothing (a flap)    |
| never notified, younger than `group_wait`                  | `none`     | wait for the group  |
| never notified, acknowledged or muted                      | `none`     | nobody needs a ping |
| never notified, non-critical, inside quiet hours           | `none`     | wait for the end    |
| never notified, otherwise                                  | `new`      | a new message       |
| notified, all members resolved                             | `resolved` | an edit in place    |
| notified, firing, unmuted, `repeat_interval` since the ping | `repeat`   | a new message       |
| notified, changed since (members, ack, mute, details)      | `update`   | an edit in place    |
| anything else                                              | `none`     |                     |

Edits never ping a phone, so `update` and `resolved` ignore mutes and quiet hours; `new` and
`repeat` do ping, so they honour both (critical kinds ignore quiet hours). `repeat` wins over
`update`: the reminder carries the current content anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.config import QuietHours
from core.errors import ConfigError


class Action(StrEnum):
    NONE = "none"  # nothing to send now
    NEW = "new"  # first message for this alert
    UPDATE = "update"  # edit the messages already sent (members, ack, mute changed)
    REPEAT = "repeat"  # a reminder: a fresh message, since it is still firing unacknowledged
    RESOLVED = "resolved"  # edit the messages already sent into the resolved form
    DROP = "drop"  # resolved before anyone was told: close it silently


@dataclass(frozen=True, slots=True)
class NotifyState:
    """What `decide` needs to know about one alert."""

    critical: bool
    created_at: float
    version: int  # bumps on every change a reader would see
    notified_version: int  # the version last put in the outbox; 0 = never notified
    last_notified_at: float | None  # the last ping (new or repeat)
    acknowledged: bool
    resolved: bool
    muted: bool


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    # When to ask again if nothing is due now (None: only a change can make something due).
    recheck_at: float | None = None


def decide(
    s: NotifyState,
    now: float,
    *,
    group_wait: float,
    repeat_interval: float,
    quiet: QuietHours | None = None,
) -> Decision:
    """The notification due for alert `s` at `now` (see the module docstring's table)."""
    notified = s.notified_version > 0
    if s.resolved:
        if not notified:
            return Decision(Action.DROP)
        if s.version > s.notified_version:
            return Decision(Action.RESOLVED)
        return Decision(Action.NONE)
    quiet_end = None if s.critical or quiet is None else quiet_until(now, quiet)
    if not notified:
        ready_at = s.created_at + group_wait
        if now < ready_at:
            return Decision(Action.NONE, ready_at)
        if s.acknowledged or s.muted:
            return Decision(Action.NONE)
        if quiet_end is not None:
            return Decision(Action.NONE, quiet_end)
        return Decision(Action.NEW)
    changed = s.version > s.notified_version
    if not s.acknowledged and not s.muted and s.last_notified_at is not None:
        repeat_at = s.last_notified_at + repeat_interval
        if now >= repeat_at and quiet_end is None:
            return Decision(Action.REPEAT)
        if not changed:
            return Decision(Action.NONE, quiet_end if now >= repeat_at else repeat_at)
    if changed:
        return Decision(Action.UPDATE)
    return Decision(Action.NONE)


def _zone(q: QuietHours) -> ZoneInfo:
    try:
        return ZoneInfo(q.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            f"alerts.quiet_hours.timezone: unknown time zone {q.timezone!r}; use an IANA name "
            "such as Europe/Stockholm or UTC"
        ) from exc


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def quiet_until(now: float, q: QuietHours) -> float | None:
    """When the quiet hours around `now` end (epoch seconds), or None if `now` is not in them.

    A window whose start is after its end wraps midnight (22:00-07:00); start == end is off.
    """
    start, end = _minutes(q.start), _minutes(q.end)
    if start == end:
        return None
    local = datetime.fromtimestamp(now, _zone(q))
    minute = local.hour * 60 + local.minute
    inside = start <= minute < end if start < end else (minute >= start or minute < end)
    if not inside:
        return None
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    end_at = midnight + timedelta(minutes=end)
    if end_at <= local:
        end_at += timedelta(days=1)
    # Aware-datetime arithmetic is wall-clock arithmetic, so a DST change inside the window
    # still ends it at the local time written in the config.
    return end_at.timestamp()
