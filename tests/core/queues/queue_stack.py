"""What the queue tests build on: the base config with queue sections merged in, UTC times
written as text, the watchdog (monitors, alert book, outbox) on a Stack, and a runtime whose
runs end at once with the usage the test sets.

Imported by name (`from queue_stack import …`), like stack_helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from stack_helpers import Stack, config_data

from core.alerting.book import Alert, AlertBook, AlertKind
from core.alerting.outbox import Outbox
from core.alerting.watchdog import Monitors
from core.config import Config, parse_config
from core.engine.recovery import Recovery
from core.models import RunOutcome
from core.queues.planner import Planner
from core.reports.costs import CostBook
from core.runtimes.base import Dispatch, DispatchResult, TurnUsage
from core.service import FleetService


def ts(text: str) -> float:
    """Epoch seconds of an ISO time with its offset: `2026-03-29T03:00+02:00`."""
    return datetime.fromisoformat(text).timestamp()


def queue_config(
    tmp_path: Path,
    *,
    defaults: dict[str, Any] | None = None,
    monitors: dict[str, Any] | None = None,
    aliens: dict[str, Any] | None = None,
    agents: dict[str, dict[str, Any]] | None = None,
) -> Config:
    """The two-company base config; `aliens` merged into its first company, `agents` into the
    agents of that id, `defaults` and `monitors` into theirs."""
    data = config_data(tmp_path, **(defaults or {}))
    data["monitors"] = dict(monitors or {})
    data["companies"][0].update(aliens or {})
    for company in data["companies"]:
        for agent in company["agents"]:
            agent.update((agents or {}).get(agent["id"], {}))
    return parse_config(data, "queue test config")


async def audit_rows(service: FleetService, prefix: str) -> list[tuple[str, str, str]]:
    """(actor, action, target) of the audit rows whose action starts with `prefix`, oldest
    first."""
    rows = await service.audit_log(1000)
    return [
        (r["actor"], r["action"], r["target"])
        for r in reversed(rows)
        if r["action"].startswith(prefix)
    ]


@dataclass
class Watchdog:
    monitors: Monitors
    book: AlertBook

    async def alerts(self, kind: AlertKind) -> list[Alert]:
        """Open alerts of `kind` after one monitor pass."""
        await self.monitors.run()
        return [a for a in await self.book.firing() if a.kind is kind]


@asynccontextmanager
async def watchdog(s: Stack, planner: Planner | None = None) -> AsyncIterator[Watchdog]:
    """The monitors as core.fleet wires them, listening to the stack's events."""
    outbox = Outbox(s.db, s.clock, s.config)
    book = AlertBook(s.db, s.clock, s.config, outbox)
    monitors = Monitors(
        s.service,
        book,
        CostBook(s.db, s.clock),
        Recovery(s.service, s.config),
        s.config,
        s.clock,
        planner=planner,
    )
    unsubscribe = s.service.events.subscribe(monitors.on_event)
    try:
        yield Watchdog(monitors, book)
    finally:
        unsubscribe()
        await monitors.aclose()


@dataclass
class Priced:
    """A runtime behaviour: each run ends done at once, costing what `price` says for its
    agent (cost, tokens); agents not listed cost nothing."""

    price: dict[str, tuple[float, int]] = field(default_factory=dict)
    in_review: set[str] = field(default_factory=set)  # titles whose runs end without a verdict

    async def __call__(self, job: Dispatch) -> DispatchResult:
        cost, tokens = self.price.get(job.agent_id, (0.0, 0))
        usage = TurnUsage(1, tokens, 0, cost)
        if job.issue["title"] in self.in_review:
            return DispatchResult(finished=True, usage=usage)
        return DispatchResult(finished=True, outcome=RunOutcome.DONE, usage=usage)
