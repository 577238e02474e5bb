"""Backlogs as digests: which waiting rows fold (a table, no clock), and what a digest shows
within Telegram's limits (4096 characters, 100 buttons, 64 bytes of callback data)."""

from __future__ import annotations

import pytest

from bot.views.alerts import digest_keyboard, render_digest
from bot.views.html import MAX_TEXT
from core import Alert, AlertKind, AlertMember, AlertState, Fix, Severity
from core.alerting.outbox import BACKLOG_AGE, OutboxKind, OutboxRow, OutboxState, backlogs

NOW = 10_000.0


def row(row_id: int, chat: str = "-1", age: float = 120.0, **kw: object) -> OutboxRow:
    fields: dict[str, object] = dict(
        id=row_id,
        kind=OutboxKind.ALERT,
        chat=chat,
        thread_id=None,
        company_id=None,
        alert_id=row_id,
        payload={},
        state=OutboxState.PENDING,
        created_at=NOW - age,
        due_at=NOW,
        attempts=0,
        message_id=None,
        error="",
    )
    fields.update(kw)
    return OutboxRow(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rows", "joining", "folded"),
    [
        ([row(i) for i in range(1, 4)], (), []),  # three waiting: at the threshold, sent as is
        ([row(i) for i in range(1, 5)], (), [[1, 2, 3, 4]]),  # four, a minute old: one digest
        ([row(i, age=BACKLOG_AGE - 1) for i in range(1, 9)], (), []),  # a burst, not a backlog
        ([row(1), *(row(i, age=1) for i in range(2, 6))], (), [[1, 2, 3, 4, 5]]),  # oldest decides
        ([row(1)], [("-1", None)], [[1]]),  # a digest still waiting takes late ones
        ([row(i, chat=str(i % 2)) for i in range(1, 9)], (), [[2, 4, 6, 8], [1, 3, 5, 7]]),
        ([row(i, kind=OutboxKind.ALERT_EDIT) for i in range(1, 9)], (), []),  # edits never fold
        ([row(i, thread_id=i % 2) for i in range(1, 7)], (), []),  # each topic on its own
    ],
)
def test_which_waiting_rows_fold_into_a_digest(
    rows: list[OutboxRow], joining: list[tuple[str, int | None]], folded: list[list[int]]
) -> None:
    got = [[r.id for r in group] for group in backlogs(rows, NOW, joining)]
    assert sorted(got) == sorted(folded)


def alert(alert_id: int, kind: AlertKind, *, resolved: bool = False, label: str = "") -> Alert:
    member = AlertMember(
        f"{kind.value}:agent:a{alert_id}",
        f"agent:a{alert_id}",
        "aliens",
        label or f"agent-{alert_id} (dev)",
        "broken",
        "x",
        0.0,
        0.0,
        1.0 if resolved else None,
    )
    critical = kind in (AlertKind.AGENT_ERROR, AlertKind.AGENT_UNAUTHENTICATED)
    fixes = {AlertKind.AGENT_ERROR: (Fix.RESET,), AlertKind.AGENT_UNAUTHENTICATED: (Fix.ROTATE,)}
    return Alert(
        id=alert_id,
        kind=kind,
        cause=f"{kind.value}:x{alert_id}",
        severity=Severity.CRITICAL if critical else Severity.WARNING,
        state=AlertState.RESOLVED if resolved else AlertState.FIRING,
        title=kind.value,
        fixes=fixes.get(kind, (Fix.REASSIGN,)),
        created_at=0.0,
        changed_at=0.0,
        version=1,
        acked_at=None,
        acked_by=None,
        resolved_at=1.0 if resolved else None,
        members=(member,),
    )


def test_a_full_digest_keeps_to_telegrams_limits() -> None:
    many = [alert(i, AlertKind.AGENT_ERROR, label="x" * 60) for i in range(1, 101)]
    many += [alert(i, AlertKind.AGENT_UNAUTHENTICATED) for i in range(101, 120)]
    text = render_digest(many, None, NOW)
    assert len(text) <= MAX_TEXT and "more (/alerts)" in text
    keyboard = digest_keyboard(many)
    assert keyboard is not None
    pressable = [b for r in keyboard.inline_keyboard for b in r]
    assert len(pressable) == 100
    assert all(len(str(b.callback_data).encode()) <= 64 for b in pressable)
    # The worst kind first: unauthenticated and in error are both critical, error has more.
    assert text.index("agent_error") < text.index("agent_unauthenticated")
    assert sum(b.text == "🔑 Rotate tokens" for b in pressable) <= 1


def test_a_digest_counts_resolved_alerts_and_says_when_all_are() -> None:
    mixed = [
        alert(1, AlertKind.AGENT_STUCK),
        alert(2, AlertKind.AGENT_ERROR, resolved=True),
        alert(3, AlertKind.AGENT_ERROR),
    ]
    text = render_digest(mixed, None, NOW)
    assert "agent_error</b>: 1 open, 1 resolved · critical" in text
    assert "<s>#2 agent-2 (dev)</s> ✓" in text
    assert text.index("agent_error") < text.index("agent_stuck")  # critical before warning
    keyboard = digest_keyboard(mixed)
    assert keyboard is not None
    labels = [b.text for r in keyboard.inline_keyboard for b in r]
    assert labels == ["♻️ Reset #3", "👤 Reassign #1"]  # no fix for what is resolved
    done = [alert(i, AlertKind.AGENT_ERROR, resolved=True) for i in (1, 2)]
    assert render_digest(done, None, NOW).startswith("✅ <b>All 2 alerts")
    assert digest_keyboard(done) is None
