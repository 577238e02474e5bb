"""The one "is a notification due" function, against a table; quiet hours with no clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.alerting.policy import Action, NotifyState, decide, quiet_until
from core.config import QuietHours
from core.errors import ConfigError

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a Thursday
GW, REPEAT = 30.0, 4 * 3600.0


def state(**kw: object) -> NotifyState:
    base: dict[str, object] = {
        "critical": True,
        "created_at": T0,
        "version": 1,
        "notified_version": 0,
        "last_notified_at": None,
        "acknowledged": False,
        "resolved": False,
        "muted": False,
    }
    base.update(kw)
    return NotifyState(**base)  # type: ignore[arg-type]


SENT = {"notified_version": 1, "last_notified_at": T0 + GW}

# (case, state, seconds after T0, expected action, expected recheck_at or None)
TABLE = [
    ("first firing waits for the group", state(), 10, Action.NONE, T0 + GW),
    ("first firing when group_wait is over", state(), GW, Action.NEW, None),
    ("first firing long after", state(), 3600, Action.NEW, None),
    ("resolved before anyone was told", state(resolved=True, version=2), GW, Action.DROP, None),
    ("acked before the first message", state(acknowledged=True), GW, Action.NONE, None),
    ("muted before the first message", state(muted=True), GW, Action.NONE, None),
    ("new members after the message", state(version=2, **SENT), GW + 5, Action.UPDATE, None),
    ("nothing new", state(**SENT), GW + 5, Action.NONE, T0 + GW + REPEAT),
    ("repeat interval passed", state(**SENT), GW + REPEAT, Action.REPEAT, None),
    (
        "repeat wins over an update",
        state(version=3, **SENT),
        GW + REPEAT,
        Action.REPEAT,
        None,
    ),
    (
        "acknowledged: no repeat",
        state(acknowledged=True, **SENT),
        GW + 2 * REPEAT,
        Action.NONE,
        None,
    ),
    (
        "acknowledged: the ack itself is an edit",
        state(acknowledged=True, version=2, **SENT),
        GW + 60,
        Action.UPDATE,
        None,
    ),
    ("muted: no repeat", state(muted=True, **SENT), GW + 2 * REPEAT, Action.NONE, None),
    (
        "muted: still edited in place",
        state(muted=True, version=2, **SENT),
        GW + 60,
        Action.UPDATE,
        None,
    ),
    (
        "all resolved after the message",
        state(resolved=True, version=2, **SENT),
        90,
        Action.RESOLVED,
        None,
    ),
    (
        "resolution already sent",
        state(resolved=True, version=2, notified_version=2, last_notified_at=T0 + GW),
        900,
        Action.NONE,
        None,
    ),
]


@pytest.mark.parametrize(
    ("case", "s", "offset", "action", "recheck"), TABLE, ids=[row[0] for row in TABLE]
)
def test_decide_table(
    case: str, s: NotifyState, offset: float, action: Action, recheck: float | None
) -> None:
    got = decide(s, T0 + offset, group_wait=GW, repeat_interval=REPEAT)
    assert got.action is action, case
    assert got.recheck_at == recheck, case


NIGHT = QuietHours(start="22:00", end="07:00", timezone="UTC")


def at(hour: int, minute: int = 0, day: int = 1) -> float:
    return datetime(2026, 1, day, hour, minute, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("now", "until"),
    [
        (at(23), at(7, day=2)),
        (at(2, 30), at(7)),
        (at(6, 59), at(7)),
        (at(7), None),
        (at(12), None),
        (at(21, 59), None),
        (at(22), at(7, day=2)),
    ],
)
def test_quiet_hours_wrap_midnight(now: float, until: float | None) -> None:
    assert quiet_until(now, NIGHT) == until


def test_quiet_hours_daytime_window_and_timezone() -> None:
    lunch = QuietHours(start="12:00", end="13:00", timezone="Europe/Stockholm")  # UTC+1 in Jan
    assert quiet_until(at(11, 30), lunch) == at(12)  # 12:30 in Stockholm
    assert quiet_until(at(12, 30), lunch) is None
    assert quiet_until(at(3), QuietHours(start="08:00", end="08:00")) is None  # empty window
    with pytest.raises(ConfigError, match="IANA"):
        quiet_until(at(3), QuietHours(start="01:00", end="02:00", timezone="Mars/Olympus"))


def test_quiet_hours_hold_warnings_not_critical_and_not_edits() -> None:
    warning = state(critical=False)
    held = decide(warning, at(23), group_wait=0, repeat_interval=REPEAT, quiet=NIGHT)
    assert held.action is Action.NONE and held.recheck_at == at(7, day=2)
    loud = decide(
        state(created_at=at(23)), at(23), group_wait=0, repeat_interval=REPEAT, quiet=NIGHT
    )
    assert loud.action is Action.NEW
    # An edit does not ping a phone: it goes out in quiet hours too.
    sent = state(critical=False, version=2, notified_version=1, last_notified_at=at(21))
    assert decide(sent, at(23), group_wait=0, repeat_interval=REPEAT, quiet=NIGHT).action is (
        Action.UPDATE
    )
    # A reminder that falls in quiet hours waits for the morning.
    due = state(critical=False, created_at=at(12), notified_version=1, last_notified_at=at(18))
    late = decide(due, at(23), group_wait=0, repeat_interval=REPEAT, quiet=NIGHT)
    assert late.action is Action.NONE and late.recheck_at == at(7, day=2)
    morning = decide(due, at(7, day=2), group_wait=0, repeat_interval=REPEAT, quiet=NIGHT)
    assert morning.action is Action.REPEAT
