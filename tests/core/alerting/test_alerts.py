"""The alert lifecycle in the store: group by cause, hold for group_wait, repeat, ack, mute,
resolve, and exactly one outbox row per audience for each notification."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from stack_helpers import config_data

from core.alerting.book import AlertBook, AlertKind, AlertState, Finding, Fix
from core.alerting.outbox import Outbox
from core.clock import ManualClock
from core.config import Config, parse_config
from core.errors import AlertNotFound, Conflict, InvalidInput, NotFound
from core.service import FleetService
from core.store.db import Database
from core.store.engines import database_for

OWNER = 1001
ALI_CHAT, MAT_CHAT = -1001, -1002


def alerting_config(tmp_path: Path, **alerts: Any) -> Config:
    data = config_data(tmp_path)
    data["telegram"] = {"owners": [OWNER]}
    data["companies"][0].update(chat=ALI_CHAT, topics={"alerts": 7})
    data["companies"][1]["chat"] = MAT_CHAT
    data["alerts"] = {"group_wait": "30s", "repeat_interval": "4h", **alerts}
    return parse_config(data, "test")


@dataclass
class Desk:
    clock: ManualClock
    db: Database
    service: FleetService
    outbox: Outbox
    book: AlertBook

    async def rows(self, kind: str | None = None) -> list[Any]:
        rows = await self.outbox.rows()
        return [r for r in rows if kind is None or r.kind == kind]

    async def deliver_all(self) -> None:
        """What the notifier does, minus Telegram: every pending row sent."""
        for n, row in enumerate(await self.outbox.due(1000)):
            assert await self.outbox.start(row.id)
            await self.outbox.sent(row.id, 100 + n, row.chat)


@pytest.fixture
async def desk(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Desk]:
    config = alerting_config(tmp_path)
    async with database_for(config.storage) as db:
        service = FleetService(db, config, clock)
        await service.sync_config()
        outbox = Outbox(db, clock, config)
        yield Desk(clock, db, service, outbox, AlertBook(db, clock, config, outbox))


def unauth(agent_id: str, company: str = "aliens", code: str = "unknown_key") -> Finding:
    return Finding(
        AlertKind.AGENT_UNAUTHENTICATED,
        f"agent:{agent_id}",
        company,
        agent_id,
        "signed by a key this key ring lacks",
        code,
    )


async def test_same_cause_groups_into_one_message_per_audience(desk: Desk) -> None:
    await desk.book.raise_(unauth("ali-ceo"))
    await desk.book.raise_(unauth("mat-cto", "matrix", code="expired"))  # another cause
    desk.clock.advance(5)
    await desk.book.raise_(unauth("ali-cto"), unauth("mat-ceo", "matrix"))
    assert await desk.book.flush() == {}  # held for group_wait
    assert await desk.rows() == []

    desk.clock.advance(25)
    flushed = await desk.book.flush()
    rows = await desk.rows("alert")
    [grouped, other] = sorted(await desk.book.firing(), key=lambda a: -len(a.members))
    assert [m.agent_id for m in grouped.members] == ["ali-ceo", "ali-cto", "mat-ceo"]
    assert grouped.fixes == (Fix.ROTATE,) and grouped.cause == "agent_unauthenticated:unknown_key"
    # One to the owner, one to each company's chat (aliens in its alerts topic).
    assert sorted(
        (r.chat, r.thread_id, r.company_id) for r in rows if r.alert_id == grouped.id
    ) == [
        (str(ALI_CHAT), 7, "aliens"),
        (str(MAT_CHAT), None, "matrix"),
        (str(OWNER), None, None),
    ]
    assert grouped.members_for("matrix")[0].agent_id == "mat-ceo"
    assert (
        other.cause.endswith(":expired") and len([r for r in rows if r.alert_id == other.id]) == 2
    )
    assert flushed == {"new": 2}
    assert await desk.book.flush() == {}  # nothing twice


async def test_new_member_edits_in_place_and_resolution_closes(desk: Desk) -> None:
    await desk.book.raise_(unauth("ali-ceo"))
    desk.clock.advance(30)
    await desk.book.flush()
    await desk.deliver_all()
    desk.clock.advance(60)
    await desk.book.raise_(unauth("ali-cto"))
    await desk.book.raise_(unauth("ali-cto"))  # a refresh with nothing new changes nothing
    assert await desk.book.flush() == {"update": 1}
    edits = await desk.rows("alert_edit")
    assert {r.chat for r in edits} == {str(OWNER), str(ALI_CHAT)}
    # Two more changes while those edits wait: coalesced, no new rows.
    await desk.book.raise_(unauth("ali-qa-1"))
    await desk.book.flush()
    assert len(await desk.rows("alert_edit")) == 2

    assert await desk.book.resolve("agent_unauthenticated:agent:ali-ceo") == 1
    alert = (await desk.book.firing())[0]
    assert alert.state is AlertState.FIRING and len(alert.active_members) == 2
    await desk.book.resolve(
        "agent_unauthenticated:agent:ali-cto", "agent_unauthenticated:agent:ali-qa-1"
    )
    assert await desk.book.firing() == []
    assert await desk.book.flush() == {"resolved": 1}
    resolved = await desk.book.get(alert.id)
    assert resolved.state is AlertState.RESOLVED and resolved.resolved_at == desk.clock.now()
    desk.clock.advance(10 * 3600)
    assert await desk.book.flush() == {}  # closed: never repeats
    # The same agent breaking again is a new alert, not the closed one reopened.
    await desk.book.raise_(unauth("ali-ceo"))
    assert (await desk.book.firing())[0].id != alert.id


async def test_flap_within_group_wait_sends_nothing(desk: Desk) -> None:
    await desk.book.raise_(unauth("ali-ceo"))
    desk.clock.advance(10)
    await desk.book.resolve("agent_unauthenticated:agent:ali-ceo")
    desk.clock.advance(30)
    assert await desk.book.flush() == {"drop": 1}
    assert await desk.rows() == []


async def test_repeat_until_acknowledged(desk: Desk) -> None:
    await desk.book.raise_(unauth("ali-ceo"))
    desk.clock.advance(30)
    await desk.book.flush()
    await desk.deliver_all()
    desk.clock.advance(4 * 3600)
    assert await desk.book.flush() == {"repeat": 1}
    assert len(await desk.rows("alert")) == 4  # owner + aliens chat, twice
    [alert] = await desk.book.firing()
    acked = await desk.book.ack(alert.id, "alice")
    assert acked.state is AlertState.ACKNOWLEDGED and acked.acked_by == "alice"
    assert (await desk.book.ack(f"#{alert.id}", "bob")).acked_by == "alice"  # idempotent
    assert await desk.book.flush() == {"update": 1}  # the message shows the ack
    desk.clock.advance(48 * 3600)
    assert await desk.book.flush() == {}
    assert len(await desk.rows("alert")) == 4
    # A new failure after the ack is a new alert: the ack covered what alice saw.
    await desk.book.raise_(unauth("ali-cto"))
    assert len(await desk.book.firing()) == 2
    audit = await desk.service.audit_log()
    assert [r["action"] for r in audit if r["action"] == "alert.ack"] == ["alert.ack"]


async def test_ack_errors(desk: Desk) -> None:
    with pytest.raises(AlertNotFound, match="#99"):
        await desk.book.ack(99, "alice")
    with pytest.raises(AlertNotFound):
        await desk.book.get("abc")
    await desk.book.raise_(unauth("ali-ceo"))
    await desk.book.resolve("agent_unauthenticated:agent:ali-ceo")
    [alert] = await desk.book.recent()
    with pytest.raises(Conflict, match="already resolved"):
        await desk.book.ack(alert.id, "alice")


async def test_mute_with_expiry_author_and_reason(desk: Desk) -> None:
    await desk.book.raise_(unauth("ali-ceo"))
    [alert] = await desk.book.firing()
    mute = await desk.book.mute(str(alert.id), desk.clock.now() + 3600, "alice", "  rotating  ")
    assert (mute.target, mute.author, mute.reason) == (f"alert:{alert.id}", "alice", "rotating")
    shown = await desk.book.get(alert.id)
    assert shown.state is AlertState.MUTED and shown.muted_until == desk.clock.now() + 3600
    desk.clock.advance(30)
    assert await desk.book.flush() == {}  # muted: no first message
    desk.clock.advance(3600)  # the mute expired
    assert await desk.book.flush() == {"new": 1}
    assert (await desk.book.get(alert.id)).state is AlertState.FIRING


async def test_mute_targets(desk: Desk) -> None:
    now = desk.clock.now()
    await desk.book.raise_(unauth("ali-ceo"), unauth("mat-ceo", "matrix"))
    [alert] = await desk.book.firing()
    company = await desk.book.mute("ALI", now + 60, "alice")
    assert company.target == "company:aliens"
    assert (await desk.book.get(alert.id)).state is AlertState.FIRING  # mat-ceo is not covered
    await desk.book.mute("agent:mat-ceo", now + 60, "alice")
    assert (await desk.book.get(alert.id)).state is AlertState.MUTED
    kind = await desk.book.mute("agent_error", now + 60, "alice")
    assert kind.target == "kind:agent_error"
    await desk.service.file_issue(title="x", assignee="ali-ceo", actor="t")
    assert (await desk.book.mute("ali-1", now + 60, "alice")).target == "issue:ALI-1"
    for bad, error in [
        ("nobody", InvalidInput),
        ("kind:nope", InvalidInput),
        ("#404", AlertNotFound),
        ("", InvalidInput),
    ]:
        with pytest.raises(error):
            await desk.book.mute(bad, now + 60, "alice")
    with pytest.raises(InvalidInput, match="future"):
        await desk.book.mute("ali-ceo", now - 1, "alice")
    with pytest.raises(InvalidInput, match="90 days"):
        await desk.book.mute("ali-ceo", now + 91 * 86400, "alice")
    assert len(await desk.book.mutes()) == 4


async def test_unmute_by_mute_id_alert_or_target(desk: Desk) -> None:
    now = desk.clock.now()
    await desk.book.raise_(unauth("ali-ceo"))
    [alert] = await desk.book.firing()
    by_kind = await desk.book.mute("agent_unauthenticated", now + 600, "alice", "known")
    by_id = await desk.book.mute(f"alert:{alert.id}", now + 600, "alice")
    other = await desk.book.mute("mat-ceo", now + 600, "alice")
    lifted = await desk.book.unmute(f"m{by_id.id}", "bob")
    assert [m.id for m in lifted] == [by_id.id] and lifted[0].lifted_by == "bob"
    assert (await desk.book.get(alert.id)).state is AlertState.MUTED  # the kind mute still holds
    lifted = await desk.book.unmute(alert.id, "bob")  # every mute covering the alert
    assert [m.id for m in lifted] == [by_kind.id]
    assert (await desk.book.get(alert.id)).state is AlertState.FIRING
    with pytest.raises(NotFound, match="nothing muted"):
        await desk.book.unmute(f"m{by_id.id}", "bob")
    assert [m.id for m in await desk.book.unmute("agent:mat-ceo", "bob")] == [other.id]
    assert await desk.book.mutes() == []
    assert len(await desk.book.mutes(active_only=False)) == 3


async def test_cause_change_moves_the_member(desk: Desk) -> None:
    await desk.book.raise_(unauth("ali-ceo"))
    await desk.book.raise_(unauth("ali-ceo", code="expired"))
    alerts = await desk.book.recent()
    assert [a.state for a in alerts] == [AlertState.FIRING, AlertState.RESOLVED]
    assert alerts[0].cause.endswith("expired")


async def test_reconcile_keeps_members_raised_after_the_snapshot(desk: Desk) -> None:
    taken_at = desk.clock.now()
    desk.clock.advance(1)
    await desk.book.raise_(unauth("ali-ceo"))  # an event, after the monitor read its state
    await desk.book.reconcile([], frozenset(AlertKind), taken_at)
    assert len(await desk.book.firing()) == 1
    await desk.book.reconcile([], frozenset(AlertKind), desk.clock.now())
    assert await desk.book.firing() == []
    # Kinds the pass did not look at are left alone.
    await desk.book.raise_(unauth("ali-cto"))
    await desk.book.reconcile([], frozenset({AlertKind.AGENT_ERROR}), desk.clock.now())
    assert len(await desk.book.firing()) == 1


async def test_quiet_hours_hold_warnings(tmp_path: Path) -> None:
    clock = ManualClock(1_767_225_600.0 + 23 * 3600)  # 23:00 UTC
    config = alerting_config(tmp_path, quiet_hours={"start": "22:00", "end": "07:00"})
    async with database_for(config.storage) as db:
        outbox = Outbox(db, clock, config)
        book = AlertBook(db, clock, config, outbox)
        await book.raise_(
            Finding(AlertKind.QUEUE_EMPTY, "company:aliens", "aliens", "Aliens", "no work", "")
        )
        await book.raise_(unauth("ali-ceo"))
        clock.advance(60)
        assert await book.flush() == {"new": 1}  # only the critical one
        clock.set(1_767_225_600.0 + 31 * 3600)  # 07:00 next day
        assert await book.flush() == {"new": 1, "repeat": 1}  # the warning, and a reminder
