"""The durable outbox on its own: dedupe, coalescing, the attempt record, reconcile after a
crash, retries with due times, and recipients that moved or blocked the bot."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_alerts import alerting_config

from core.alerting.outbox import UNDELIVERABLE_FOR, Outbox, Recipient
from core.clock import ManualClock
from core.store.engines import database_for

OWNER = Recipient("1001")
TEAM = Recipient("-1001", 7, "aliens")


@pytest.fixture
async def outbox(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Outbox]:
    config = alerting_config(tmp_path)
    async with database_for(config.storage) as db:
        yield Outbox(db, clock, config)


async def test_routing_owners_and_company_chats(outbox: Outbox) -> None:
    assert outbox.recipients_for_alert({"aliens"}) == [OWNER, TEAM]
    assert outbox.recipients_for_alert({None}) == [OWNER]  # company-less: owners only
    assert outbox.summary_recipient("matrix") == Recipient("-1002", None, "matrix")


async def test_text_is_deduplicated_and_wakes_the_sender(outbox: Outbox) -> None:
    woken: list[int] = []
    outbox.on_enqueue(lambda: woken.append(1))
    first = await outbox.enqueue_text("1001", "hello", "k1")
    assert first is not None
    assert await outbox.enqueue_text("1001", "hello again", "k1") is None
    assert [r.payload["text"] for r in await outbox.rows()] == ["hello"]
    assert len(woken) == 2
    with pytest.raises(ValueError, match="needs text"):
        await outbox.enqueue_text("1001", "  ", "k2")


async def test_edits_coalesce_and_a_pending_send_absorbs_them(
    outbox: Outbox, clock: ManualClock
) -> None:
    now = clock.now()
    async with outbox.db.write() as conn:
        # A chat that never got the alert: an edit becomes a send, or nothing if it may not ping.
        assert await outbox.enqueue_edit_in(conn, 1, OWNER, now, may_send=False) is None
        sent = await outbox.enqueue_alert_in(conn, 1, OWNER, now, seq=1)
        assert sent is not None
        assert await outbox.enqueue_alert_in(conn, 1, OWNER, now, seq=2) is None  # still waiting
        assert await outbox.enqueue_edit_in(conn, 1, OWNER, now, may_send=True) is None
    [row] = await outbox.due()
    assert await outbox.start(row.id) and not await outbox.start(row.id)  # one sender only
    await outbox.sent(row.id, 55, "1001")
    assert await outbox.delivery(1, "1001") == 55
    async with outbox.db.write() as conn:
        first_edit = await outbox.enqueue_edit_in(conn, 1, OWNER, now, may_send=False)
        assert first_edit is not None
        assert await outbox.enqueue_edit_in(conn, 1, OWNER, now, may_send=False) is None
        # A reminder supersedes the waiting edit: the new message shows the latest state.
        assert await outbox.enqueue_alert_in(conn, 1, OWNER, now, seq=2) is not None
    states = {r.id: r.state for r in await outbox.rows()}
    assert states[first_edit] == "superseded"


async def test_failed_rows_wait_for_their_due_time(outbox: Outbox, clock: ManualClock) -> None:
    row_id = await outbox.enqueue_text("1001", "x", "k")
    assert row_id is not None
    assert await outbox.start(row_id)
    await outbox.failed(row_id, "flood control", 30)
    assert await outbox.due() == []
    assert await outbox.next_due_at() == clock.now() + 30
    clock.advance(30)
    [row] = await outbox.due()
    assert (row.attempts, row.error) == (1, "flood control")


async def test_reconcile_after_a_crash(outbox: Outbox, clock: ManualClock) -> None:
    now = clock.now()
    async with outbox.db.write() as conn:
        send = await outbox.enqueue_alert_in(conn, 1, OWNER, now, seq=1)
    assert send is not None and await outbox.start(send)
    await outbox.sent(send, 9, "1001")
    async with outbox.db.write() as conn:
        edit = await outbox.enqueue_edit_in(conn, 1, OWNER, now, may_send=False)
        second = await outbox.enqueue_alert_in(conn, 2, OWNER, now, seq=1)
    assert edit is not None and second is not None
    assert await outbox.start(edit) and await outbox.start(second)
    # The process dies here, with both attempts recorded and neither marked.
    doubtful = await outbox.reconcile()
    assert [r.id for r in doubtful] == [second]
    states = {r.id: r.state for r in await outbox.rows()}
    assert states == {send: "sent", edit: "pending", second: "in_doubt"}
    assert [r.id for r in await outbox.due()] == [edit]  # the edit is redone, the send is not


async def test_migrations_chain_and_blocked_recipients_expire(
    outbox: Outbox, clock: ManualClock
) -> None:
    await outbox.migrate_chat("-1", "-100200")
    await outbox.migrate_chat("-100200", "-100300")
    assert await outbox.chat_for("-1") == "-100300"
    await outbox.migrate_chat("-100300", "-1")  # a loop cannot hang the sender
    assert await outbox.chat_for("-1") in {"-1", "-100200", "-100300"}
    await outbox.mark_undeliverable("1001", "Forbidden: bot was blocked by the user")
    assert await outbox.undeliverable("1001")
    clock.advance(UNDELIVERABLE_FOR)
    assert not await outbox.undeliverable("1001")
    await outbox.mark_undeliverable("1001", "blocked")
    await outbox.mark_deliverable("1001")
    assert not await outbox.undeliverable("1001")
