"""This replica's place among the replicas of one database: alive, and leading or standing by.

Every replica serves the agent API and dispatches the runs its own wake-ups open (each run is
opened by one compare-and-set in the store, so two replicas cannot open the same). The leader
alone does the work that must happen once: the heartbeat sweep, the monitors and alert grouping,
recovery, routines, key retirement, the Telegram poller, the notifier and the digest.

The lease (core.store.lease) is claimed and renewed every RENEW seconds on the database's clock
and lasts TTL. A replica counts itself leader only until TTL - RENEW after the moment it *sent*
its last successful claim: by then its lease may be about to lapse in the database, and a
successor can take it only once it has. Losing it stops the singleton work at once (its tasks
are cancelled, the listeners told); writes made as the leader carry the lease's epoch and are
refused by the store once another replica holds the lease (the fence), so a paused leader that
wakes up late cannot act on what its successor owns.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

from core.errors import LeadershipLost, StoreError
from core.store import lease
from core.store.db import Database
from core.store.lease import FENCE, Fence, Replica

log = logging.getLogger(__name__)

TTL = 10.0  # a leader that stops renewing is replaced about this long after its last renewal
RENEW = 2.0  # how often the leader renews, and standbys try
FORGET = 3600.0  # replicas quiet this long drop off the list

Job = Callable[[], Coroutine[Any, Any, Any]]
Listener = Callable[[bool], Awaitable[None]]


class Leadership:
    """`await start()` joins (and leads at once if the lease is free); `aclose()` leaves,
    giving the lease up so a standby takes over at its next try."""

    def __init__(
        self,
        db: Database,
        *,
        ttl: float = TTL,
        renew: float = RENEW,
        replica_id: str | None = None,
    ) -> None:
        if renew * 2 > ttl:
            raise ValueError("the lease must outlast two renewals")
        self.db = db
        self.ttl = ttl
        self.renew = renew
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.id = replica_id or f"{self.host}:{self.pid}:{secrets.token_hex(3)}"
        self.started_at = time.time()
        self._fence: Fence | None = None
        self._valid_until = 0.0  # monotonic: the local end of the current lease
        self._listeners: list[Listener] = []
        self._work: set[asyncio.Task[Any]] = set()
        self._stopping: set[asyncio.Task[Any]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self.changes = 0  # how many times this replica gained or lost the lease

    # -- what others ask ---------------------------------------------------------------------

    @property
    def leading(self) -> bool:
        return self._fence is not None and time.monotonic() < self._valid_until

    @property
    def epoch(self) -> int | None:
        return self._fence.epoch if self.leading and self._fence else None

    def on_change(self, listener: Listener) -> None:
        """`await listener(leading)` each time this replica gains or loses the lease."""
        self._listeners.append(listener)

    async def replicas(self) -> list[Replica]:
        """The replicas alive now, the leader first (for /status and `fleetbot status`)."""
        return await lease.live(self.db.reader, self.db.engine, self.ttl)

    async def alive_ids(self) -> list[str]:
        """The replicas whose runs are theirs to finish. On a store one process holds alone
        (SQLite), that is this one: any other listed has died since."""
        if not self.db.shared:
            return [self.id]
        return [r.id for r in await self.replicas()]

    @contextmanager
    def fenced(self) -> Iterator[None]:
        """Writes inside are the leader's: refused (LeadershipLost) once it is not."""
        fence = self._fence if self.leading else None
        if fence is None:
            raise LeadershipLost("this replica does not lead; the leader does this")
        token = FENCE.set(fence)
        try:
            yield
        finally:
            FENCE.reset(token)

    def singleton(self, job: Job, name: str) -> Job:
        """`job` as the leader's alone: skipped on a standby, fenced, cancelled on loss."""

        async def run() -> None:
            if not self.leading:
                return
            task = asyncio.current_task()
            assert task is not None
            self._work.add(task)
            try:
                with self.fenced():
                    await job()
            except LeadershipLost as exc:
                log.info("%s stopped: %s", name, exc.message)
            except asyncio.CancelledError:
                if task not in self._stopping:
                    raise
                task.uncancel()  # stopped by the lease's loss, not by a shutdown
                log.info("%s stopped: this replica lost the lease", name)
            finally:
                self._work.discard(task)
                self._stopping.discard(task)

        run.__name__ = name
        return run

    # -- joining, renewing, leaving ----------------------------------------------------------

    async def start(self) -> None:
        await self._try()
        self._loop_task = asyncio.get_running_loop().create_task(self._loop(), name="lease")

    async def aclose(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
            self._loop_task = None
        fence = self._fence
        await self._lose("this replica is stopping")
        try:
            async with self.db.write() as conn:
                if fence is not None:
                    await lease.release(conn, fence.holder, fence.epoch)
                await lease.gone(conn, self.id)
        except StoreError as exc:
            log.warning("could not give the lease up (%s); it lapses in %g s", exc, self.ttl)

    async def _loop(self) -> None:
        while True:
            # A leader whose renewals fail wakes at its lease's local end, to stop right then.
            left = self._valid_until - time.monotonic()
            await asyncio.sleep(min(self.renew, max(left, 0.0)) if self._fence else self.renew)
            left = self._valid_until - time.monotonic()
            if self._fence is not None and left <= 0:
                await self._lose("the lease could not be renewed in time")
            # A renewal stuck behind a slow database must not outlive the lease it renews.
            try:
                await asyncio.wait_for(self._try(), timeout=left if self._fence else self.ttl)
            except TimeoutError:
                await self._lose("renewing the lease took longer than the lease had left")
            except Exception:
                # A bug here must not end the renewals with the leader's work still running:
                # the lease then runs out as if the database were gone, and is tried again.
                log.exception("renewing the lease failed")

    async def _try(self) -> None:
        """Renew (or claim) the lease and say this replica is alive, in one transaction."""
        sent = time.monotonic()
        try:
            async with self.db.write() as conn:
                epoch = await lease.claim(
                    conn, self.db.engine, self.id, self.ttl, sole=not self.db.shared
                )
                await lease.seen(
                    conn, self.db.engine, self.id, self.host, self.pid, self.started_at
                )
                if epoch is not None:
                    await lease.forget_quiet(conn, self.db.engine, FORGET)
        except StoreError as exc:
            # The database is unreachable or busy: the lease runs out on its own clock.
            if self._fence is not None and time.monotonic() >= self._valid_until:
                await self._lose(f"the lease could not be renewed ({exc})")
            elif self._fence is not None:
                log.warning("renewing the lease failed (%s); retrying", exc)
            return
        if epoch is None:
            await self._lose("another replica holds the lease")
            return
        self._valid_until = sent + self.ttl - self.renew
        if self._fence is None or self._fence.epoch != epoch:
            await self._lose("the lease was lost and taken again")
            self._fence = Fence(self.id, epoch)
            self.changes += 1
            log.info("this replica (%s) leads now (epoch %d)", self.id, epoch)
            await self._tell(True)

    async def _lose(self, why: str) -> None:
        if self._fence is None:
            return
        log.warning("this replica (%s) no longer leads: %s", self.id, why)
        self._fence = None
        self.changes += 1
        for task in list(self._work):
            self._stopping.add(task)
            task.cancel()
        await self._tell(False)

    async def _tell(self, leading: bool) -> None:
        for listener in self._listeners:
            try:
                await listener(leading)
            except Exception:
                log.exception("reacting to %s the lease failed", "gaining" if leading else "losing")
