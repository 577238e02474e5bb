"""Replicas on one database (both engines): one leads, the lease moves when it stops or dies,
the epoch fences a deposed leader's writes, and its singleton work stops at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import store_helpers

from core.cluster.leadership import Leadership
from core.config.schema import StorageConfig
from core.errors import LeadershipLost, StoreUnavailable
from core.store import lease
from core.store.db import Database
from core.store.engines import database_for

TTL, RENEW = 1.2, 0.3


@pytest.fixture
async def dbs(tmp_path: Path) -> AsyncIterator[list[Database]]:
    """Three connections to one store, as three processes would have."""
    storage = StorageConfig.model_validate(store_helpers.storage(tmp_path))
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(database_for(storage)) for _ in range(3)]


def replica(db: Database, name: str) -> Leadership:
    return Leadership(db, ttl=TTL, renew=RENEW, replica_id=name)


async def wait_for(predicate: object, within: float) -> float:
    """Seconds until `predicate()` is true; fails after `within`."""
    start = time.monotonic()
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() - start < within, "timed out"
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def test_one_replica_leads_and_all_are_listed(dbs: list[Database]) -> None:
    a, b = replica(dbs[0], "a"), replica(dbs[1], "b")
    await a.start()
    await b.start()
    try:
        assert (a.leading, b.leading) == (True, False)
        await asyncio.sleep(RENEW * 3)  # renewals keep it where it is
        assert (a.leading, b.leading, a.epoch) == (True, False, 1)
        listed = await b.replicas()
        assert [(r.id, r.leader) for r in listed] == [("a", True), ("b", False)]
        assert await b.alive_ids() == (["a", "b"] if dbs[0].shared else ["b"])
    finally:
        await b.aclose()
        await a.aclose()


async def test_a_clean_stop_hands_the_lease_over_at_the_next_try(dbs: list[Database]) -> None:
    a, b = replica(dbs[0], "a"), replica(dbs[1], "b")
    await a.start()
    await b.start()
    told: list[bool] = []

    async def note(leading: bool) -> None:
        told.append(leading)

    b.on_change(note)
    await a.aclose()
    took = await wait_for(lambda: b.leading, RENEW * 3)
    assert took <= RENEW * 2 and b.epoch == 2 and told == [True]
    assert [r.id for r in await b.replicas()] == ["b"]  # a said goodbye
    await b.aclose()
    assert told == [True, False]


async def test_a_killed_leader_is_replaced_only_after_its_own_lease_ran_out(
    dbs: list[Database],
) -> None:
    a, b = replica(dbs[0], "a"), replica(dbs[1], "b")
    await a.start()
    await b.start()
    try:
        assert a._loop_task is not None
        a._loop_task.cancel()  # as a SIGKILL: no renewal, no goodbye
        killed = time.monotonic()
        await wait_for(lambda: not a.leading, TTL)
        a_stopped = time.monotonic()
        await wait_for(lambda: b.leading, TTL + RENEW * 3)
        b_started = time.monotonic()
        # The old leader counts itself deposed before the new one can start: no overlap.
        assert a_stopped < b_started
        assert TTL - RENEW * 2 <= b_started - killed <= TTL + RENEW * 3
        assert b.epoch == 2
    finally:
        await b.aclose()
        a._loop_task = None
        await a.aclose()


async def test_a_deposed_leaders_writes_are_refused(dbs: list[Database]) -> None:
    a, b = replica(dbs[0], "a"), replica(dbs[1], "b")
    await a.start()
    try:
        with a.fenced():
            async with dbs[0].write() as conn:  # the current leader's write goes through
                await conn.execute("UPDATE companies SET name = name")
        assert a._loop_task is not None
        a._loop_task.cancel()  # paused: its lease lapses, but it does not know yet
        a._valid_until = time.monotonic() + 60
        await asyncio.sleep(TTL + 0.1)
        await b.start()
        assert b.leading and a.leading  # a still believes it leads
        with pytest.raises(LeadershipLost, match="no longer current"), a.fenced():
            async with dbs[0].write() as conn:
                await conn.execute("UPDATE companies SET name = name")
        async with dbs[0].write() as conn:  # a's writes that are not the leader's still go
            await conn.execute("UPDATE companies SET name = name")
        with pytest.raises(LeadershipLost, match="does not lead"), replica(dbs[2], "c").fenced():
            pass  # a standby has no fence to write under
    finally:
        await b.aclose()
        a._loop_task = None
        await a.aclose()


async def test_losing_the_lease_stops_singleton_work_at_once(dbs: list[Database]) -> None:
    a, b = replica(dbs[0], "a"), replica(dbs[1], "b")
    await a.start()
    await b.start()
    ran: list[str] = []

    async def long_job() -> None:
        ran.append("started")
        await asyncio.sleep(60)
        ran.append("finished")

    job = asyncio.create_task(a.singleton(long_job, "long")())
    skipped = asyncio.create_task(b.singleton(long_job, "long")())
    await asyncio.sleep(0.05)
    assert ran == ["started"] and skipped.done()  # the standby skips it
    try:
        async with dbs[2].write() as conn:  # an operator's hand, or a network split
            await conn.execute("UPDATE leader_lease SET holder = 'b', epoch = epoch + 1")
        await asyncio.wait_for(job, RENEW * 3)  # cancelled at a's next renewal, quietly
        assert ran == ["started"] and not a.leading
    finally:
        await b.aclose()
        await a.aclose()


async def test_a_leader_that_cannot_renew_stops_at_its_leases_local_end(
    dbs: list[Database], monkeypatch: pytest.MonkeyPatch
) -> None:
    a = replica(dbs[0], "a")
    await a.start()
    told: list[bool] = []

    async def note(leading: bool) -> None:
        told.append(leading)

    a.on_change(note)
    renewed = time.monotonic()

    async def unreachable(*_args: object) -> int:
        raise StoreUnavailable("the store is gone", cause="test", fix="none")

    monkeypatch.setattr(lease, "claim", unreachable)  # the database went away
    try:
        await wait_for(lambda: told == [False], TTL + RENEW)
        stopped = time.monotonic() - renewed
        # No later than its local end (TTL - RENEW after the last renewal was sent), and not
        # at the first failed renewal: the database may be back before the lease runs out.
        assert TTL - RENEW * 2 <= stopped <= TTL - RENEW + 0.15, stopped
        assert not a.leading
    finally:
        monkeypatch.undo()
        await a.aclose()


@pytest.mark.sqlite_only
async def test_a_process_holding_sqlite_alone_takes_a_dead_ones_lease_at_once(
    tmp_path: Path,
) -> None:
    """`fleetbot run` restarted after a kill: the lock file proves the last holder dead, so
    the bot polls again at once, not after the dead one's lease runs out."""
    storage = StorageConfig.model_validate(store_helpers.storage(tmp_path))
    async with database_for(storage, replica=True) as db:
        dead = replica(db, "dead")
        await dead.start()
        assert dead._loop_task is not None
        dead._loop_task.cancel()
    async with database_for(storage, replica=True) as db:
        alive = replica(db, "alive")
        await alive.start()
        try:
            assert alive.leading and alive.epoch == 2
            assert await alive.alive_ids() == ["alive"]
        finally:
            await alive.aclose()
