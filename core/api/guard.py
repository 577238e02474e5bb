"""Bearer-token authentication for the agent API, with a reason code on every refusal.

A refusal is counted per claimed agent and reason, and handed to a listener (the monitors), but
it never changes an agent's status: a stranger sending junk tokens cannot knock an agent out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jwt

from core.auth import AgentAuth
from core.errors import TokenInvalid
from core.metrics import Metrics
from core.models import Agent, AuthReason
from core.service import FleetService
from core.tokens import Claims

AuthFailureListener = Callable[[str, str], None]  # (claimed agent id or "unknown", reason code)


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

    async def authenticate(self, header: str | None) -> Caller:
        token = _bearer(header)
        try:
            claims = self.auth.verify(token)
            agent = await self.service.maybe_agent(claims.sub)
            self.auth.check_current(claims, agent)
            assert agent is not None
        except TokenInvalid as exc:
            claimed = await self._claimed_agent(token)
            self.metrics.auth_failures.labels(claimed, exc.code).inc()
            if self.on_failure is not None:
                self.on_failure(claimed, exc.code)
            raise
        return Caller(agent, claims)

    async def _claimed_agent(self, token: str) -> str:
        """The agent id a refused token claims, if that agent exists (bounded label values)."""
        try:
            sub = jwt.decode(token, options={"verify_signature": False}).get("sub")
        except jwt.InvalidTokenError:
            return "unknown"
        if isinstance(sub, str) and len(sub) <= 64 and await self.service.maybe_agent(sub):
            return sub
        return "unknown"


def _bearer(header: str | None) -> str:
    if not header:
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
