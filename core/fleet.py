"""The composition root of the core: builds store, auth, service, scheduler and API in order,
and tears them down in reverse, also on errors."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextlib import AsyncExitStack
from types import TracebackType

from core.alerting.book import AlertBook
from core.alerting.outbox import Outbox
from core.alerting.watchdog import Monitors
from core.api import Guard, create_app
from core.api.server import ApiServer
from core.auth.agent_auth import AgentAuth, KeyRingFile
from core.auth.keyring import check_single_source
from core.auth.rotation import AuthWatch
from core.clock import Clock, SystemClock
from core.cluster.leadership import RENEW as LEASE_RENEW, TTL as LEASE_TTL, Leadership
from core.config import Config
from core.engine.recovery import Recovery
from core.engine.runtime_check import RuntimeWatch
from core.engine.scheduler import RuntimePool, Scheduler
from core.events import EventBus
from core.metrics import Metrics
from core.queues.feeder import INTERVAL as FEED_INTERVAL, Feeder
from core.queues.planner import Planner
from core.reports.costs import CostBook
from core.service import FleetService
from core.store.engines import database_for

log = logging.getLogger(__name__)

ENDED_POLL = 2.0  # seconds: how soon a run ended on another replica stops its turn here


class Fleet:
    """Everything `fleetbot run` needs but the bot. `async with Fleet(config, env) as fleet:`."""

    def __init__(
        self,
        config: Config,
        env: Mapping[str, str],
        clock: Clock | None = None,
        *,
        serve_api: bool = True,
        periodic: bool = True,
        sweep_interval: float = 10.0,
        lease_ttl: float = LEASE_TTL,
        lease_renew: float = LEASE_RENEW,
    ) -> None:
        self.config = config
        self.lease_ttl = lease_ttl  # tests and bench/failover.py may shorten them
        self.lease_renew = lease_renew
        self.env = env
        self.clock = clock or SystemClock()
        self.serve_api = serve_api
        self.periodic = periodic
        self.sweep_interval = sweep_interval
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> Fleet:
        try:
            await self._build()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def _build(self) -> None:
        cfg = self.config
        check_single_source(cfg.auth.keyring, self.env, token_dir=cfg.auth.token_dir)
        self.events = EventBus()
        # A replica's hold: on SQLite a second `fleetbot run` is refused before it touches the
        # file; on PostgreSQL replicas share the database and one leads (core.cluster).
        self.db = await self._stack.enter_async_context(
            database_for(cfg.storage, self.env, replica=True)
        )
        self.keyring = KeyRingFile(cfg.auth.keyring)
        self.auth = AgentAuth(self.keyring, cfg.auth, self.clock)
        self.service = FleetService(
            self.db, cfg, self.clock, self.events, token_check=self.auth.check_file
        )
        await self.service.sync_config()
        # Joined before anything starts work: this replica's runs carry its id, and it leads
        # at once if no other replica does. Left after the scheduler has stopped its runs.
        self.leadership = Leadership(self.db, ttl=self.lease_ttl, renew=self.lease_renew)
        self.service.runs.replica = self.leadership.id
        await self.leadership.start()
        self._stack.push_async_callback(self.leadership.aclose)
        single = self.leadership.singleton
        # Alerts: monitors listen before anything can change an agent's status, so even the
        # startup token check below is pushed. The bot's notifier drains `self.outbox`.
        self.outbox = Outbox(self.db, self.clock, cfg)
        self.outbox.fence = self.leadership.fenced
        self.alerts = AlertBook(self.db, self.clock, cfg, self.outbox)
        self.costs = CostBook(self.db, self.clock)
        self.recovery = Recovery(self.service, cfg)
        # One runtime per agent, shared by the scheduler's dispatches and the runtime self-test;
        # closed after the monitors and the scheduler that use it.
        self.runtimes = RuntimePool(self.env, self.service)
        self._stack.push_async_callback(self.runtimes.aclose)
        self.runtime_watch = RuntimeWatch(self.service, self.runtimes)
        self.planner = Planner(self.service, self.db, cfg, self.clock, self.events)
        self.feeder = Feeder(self.service, self.planner)
        self.monitors = Monitors(
            self.service,
            self.alerts,
            self.costs,
            self.recovery,
            cfg,
            self.clock,
            runtimes=self.runtime_watch,
            planner=self.planner,
        )
        self._stack.push_async_callback(self.monitors.aclose)
        self.events.subscribe(self.monitors.on_event)
        # Every agent's token is tested before anything is dispatched: failing agents are
        # marked unauthenticated with their reason, and the log names each one and its fix.
        self.auth_watch = AuthWatch(self.auth, self.service)
        await self.auth_watch.startup()
        # Every agent's runtime too: the log names each failing target, its agents and the fix,
        # and each dead target raises one runtime_unreachable alert naming its agents.
        await self.monitors.check_runtimes(why="startup")
        self.metrics = Metrics()
        leader_gauge = self.metrics.leader.labels(replica=self.leadership.id)
        leader_gauge.set(1 if self.leadership.leading else 0)

        async def show_leader(leading: bool) -> None:
            leader_gauge.set(1 if leading else 0)

        self.leadership.on_change(show_leader)
        self.guard = Guard(
            self.service, self.auth, self.metrics, on_failure=self.monitors.on_auth_failure
        )
        self.app = create_app(self.service, self.guard, self.metrics)
        self.server: ApiServer | None = None
        api_url = cfg.api.url
        if self.serve_api:
            self.server = ApiServer(self.app, cfg.api.host, cfg.api.port)
            await self._stack.enter_async_context(self.server)
            api_url = cfg.api.public_url or self.server.url
        self.api_url = api_url
        self.scheduler = Scheduler(
            self.service,
            self.runtimes,
            self.clock,
            auth=self.auth,
            api_url=api_url,
            sweep_interval=self.sweep_interval,
            wake_on_assign=cfg.defaults.wake_on_assign,
            singleton=single,
        )
        self._stack.push_async_callback(self.scheduler.aclose)
        await self.scheduler.start(periodic=self.periodic, alive=await self.leadership.alive_ids())
        # Retires keys past their grace; re-tests every agent when the key ring changed
        # (e.g. `fleetbot tokens rotate` run in a shell while this process runs).
        self.scheduler.add_job(self.auth_watch.tick, AuthWatch.INTERVAL, "auth")
        self.scheduler.add_job(self.monitors.run, cfg.monitors.interval, "monitors")
        self.scheduler.add_job(self.recovery.sweep, self.sweep_interval, "recovery")
        # Held alerts leave when group_wait is over: checked every second, a cheap query.
        self.scheduler.add_job(self.alerts.flush, 1.0, "alerts")
        # The runs of a replica that stopped or was killed are over: its turns died with it.
        self.scheduler.add_job(self._reap_orphans, self.leadership.renew, "orphans")
        # Every replica: its runs that ended on another replica (no events cross processes).
        if self.db.shared:
            self.scheduler.add_job(
                self.scheduler.stop_ended_elsewhere, ENDED_POLL, "ended", leader_only=False
            )
        # Routines due while fleetbot was down are caught up now; then every minute.
        if self.periodic:
            await single(self.feeder.tick, "queues")()
        self.scheduler.add_job(self.feeder.tick, FEED_INTERVAL, "queues")

    async def _reap_orphans(self) -> None:
        ended = await self.service.runs.interrupt_orphans(await self.leadership.alive_ids())
        if ended:
            log.warning("marked %d run(s) of a stopped replica as interrupted", ended)

    async def aclose(self) -> None:
        await self._stack.aclose()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
