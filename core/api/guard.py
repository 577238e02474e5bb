"""Bearer-token authentication for the agent API, with a reason code on every refusal.

Only a verified signature may name an agent. A refused token whose signature verified (expired,
revoked, wrong audience, a run token whose run is over) is counted for the agent it names and
handed to a listener (the monitors). Every other refusal — a forged, malformed or foreign token
— is counted by source address and as `agent="unverified"`, so a stranger can neither page the
owner about an agent nor learn from /metrics which agent ids exist. No refusal changes an
agent's status: only a token file that fails fleetbot's own check (heartbeat, self-test) does.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import jwt

from core.auth.agent_auth import AgentAuth
from core.auth.tokens import Claims
from core.errors import NotFound, TokenInvalid
from core.metrics import Metrics
from core.models import Agent, AuthReason, RunStatus
from core.service import FleetService

log = logging.getLogger(__name__)

# (claimed agent id, or "unknown" when the token names no existing agent; reason code).
# Called for every 401; it must be quick and must not raise (errors are logged and dropped).
AuthFailureListener = Callable[[str, str], None]
UNKNOWN = "unknown"
UNVERIFIED = "unverified"
# Reasons decided after the signature verified: the token really is that agent's.
VERIFIED_REFUSALS = frozenset(
    {
        AuthReason.EXPIRED.value,
        AuthReason.REVOKED.value,
        AuthReason.WRONG_AUDIENCE.value,
        AuthReason.RUN_ENDED.value,
    }
)
MAX_SOURCES = 1024  # distinct addresses remembered; the oldest is forgotten first
FINISH_GRACE = 60.0  # seconds a run token may repeat its run's finish after the run ended


@dataclass(frozen=True, slots=True)
class Caller:
    agent: Agent
    claims: Claims


class Guard:
    def __init__(
        self,
        service: FleetService,
        auth: AgentAuth,
        metrics: Metrics,
        on_failure: AuthFailureListener | None = None,
    ) -> None:
        self.service = service
        self.auth = auth
        self.metrics = metrics
        self.on_failure = on_failure
        # Unverified refusals by client address (bounded), for spotting who sends junk.
        self.unverified_by_source: OrderedDict[str, int] = OrderedDict()

    async def authenticate(self, header: str | None, path: str = "", source: str = "") -> Caller:
        token = ""
        try:
            token = _bearer(header)
            claims = self.auth.verify(token)
            agent = await self.service.maybe_agent(claims.sub)
            self.auth.check_current(claims, agent)
            assert agent is not None
            if claims.run is not None:
                await self._check_run_alive(claims.run, path)
        except TokenInvalid as exc:
            await self._refused(token, exc.code, source)
            raise
        return Caller(agent, claims)

    async def _check_run_alive(self, run_id: str, path: str) -> None:
        """A run-scoped token dies with its run. The one exception: repeating the run's own
        finish for a minute after it ended (a retry of a finish whose answer was lost)."""
        try:
            run = await self.service.run(run_id)
        except NotFound:
            return  # fleetbot signs tokens for runs it opened; the run routes refuse the rest
        if run.status is RunStatus.RUNNING:
            return
        if (
            run.ended_at is not None
            and path.endswith(f"/runs/{run_id}/finish")
            and self.service.clock.now() - run.ended_at <= FINISH_GRACE
        ):
            return
        raise TokenInvalid(
            f"this token was valid for run {run_id} only, and that run is over; the next run "
            "brings a new one",
            code=AuthReason.RUN_ENDED.value,
        )

    async def _refused(self, token: str, code: str, source: str) -> None:
        if code not in VERIFIED_REFUSALS:
            self.metrics.auth_failures.labels(UNVERIFIED, code).inc()
            key = source or UNKNOWN
            self.unverified_by_source[key] = self.unverified_by_source.pop(key, 0) + 1
            while len(self.unverified_by_source) > MAX_SOURCES:
                self.unverified_by_source.popitem(last=False)
            self.metrics.auth_unverified_sources.set(len(self.unverified_by_source))
            return
        # The signature verified, so the token's `sub` is the agent's own.
        claimed = await self._claimed_agent(token) if token else UNKNOWN
        self.metrics.auth_failures.labels(claimed, code).inc()
        if self.on_failure is not None:
            try:
                self.on_failure(claimed, code)
            except Exception:
                log.exception("the auth failure listener failed; the 401 stands")

    async def _claimed_agent(self, token: str) -> str:
        """The agent id a refused token claims, if that agent exists: label values stay
        bounded by the fleet's size, whatever strangers send."""
        try:
            sub = jwt.decode(token, options={"verify_signature": False}).get("sub")
        except (jwt.InvalidTokenError, ValueError, TypeError, AttributeError):
            return UNKNOWN
        if isinstance(sub, str) and len(sub) <= 64 and await self.service.maybe_agent(sub):
            return sub
        return UNKNOWN


def _bearer(header: str | None) -> str:
    if not header or not header.strip():
        raise TokenInvalid(
            "send the agent's token as `Authorization: Bearer <token>`",
            code=AuthReason.MISSING_TOKEN.value,
        )
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenInvalid(
            "the Authorization header must be `Bearer <token>`", code=AuthReason.MALFORMED.value
        )
    return token.strip()
