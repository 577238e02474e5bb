"""The queues' minute: routines that came due are filed, then empty queues wake their planner.

core.fleet runs `tick()` once at startup (a routine that came due while fleetbot was down is
caught up at once, not a minute later) and then every INTERVAL seconds. Backlog promotion is
not here: it happens inside the heartbeat that finds an inbox empty (core.queues.backlog).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from core.models import Issue
from core.queues.planner import Planner
from core.queues.routines import Fired
from core.service import FleetService

log = logging.getLogger(__name__)

INTERVAL = 60.0  # routines are scheduled to the minute


@dataclass(frozen=True, slots=True)
class FeedReport:
    fired: list[Fired]
    planned: list[Issue]


class Feeder:
    def __init__(self, service: FleetService, planner: Planner) -> None:
        self.service = service
        self.planner = planner

    async def tick(self) -> FeedReport:
        fired: list[Fired] = []
        planned: list[Issue] = []
        try:
            fired = await self.service.run_routines()
        except Exception:
            log.exception("routines failed; the next minute retries")
        try:
            planned = await self.planner.tick()
        except Exception:
            log.exception("the planner failed; the next minute retries")
        return FeedReport(fired, planned)
