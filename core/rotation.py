"""Rotating keys and tokens, and the self-test that proves every agent can authenticate.

Rotating all keys never causes a 401: the previous key stays verify-only for the grace period,
so tokens already handed out keep working while every token file is re-issued and verified.
Rotating one agent bumps its token version, so its old token dies at once and nobody else's.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from core.auth import AgentAuth
from core.errors import TokenInvalid
from core.models import Agent
from core.secretfile import fsync_dir
from core.service import FleetService
from core.store import ops


@dataclass(frozen=True, slots=True)
class AgentCheck:
    agent_id: str
    company_id: str
    code: str | None  # None: authenticated
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.code is None

    @property
    def fix(self) -> str:
        if self.code in (
            None,
            "revoked",
            "expired",
            "unknown_key",
            "bad_signature",
            "missing_file",
            "malformed",
        ):
            return f"fleetbot tokens rotate --agent {self.agent_id}  (or /rotate {self.agent_id})"
        return "re-issue the token with `fleetbot tokens rotate`"


@dataclass(frozen=True, slots=True)
class AuthReport:
    checks: list[AgentCheck] = field(default_factory=list)
    kid: str = ""

    @property
    def failing(self) -> list[AgentCheck]:
        return [c for c in self.checks if not c.ok]

    @property
    def ok(self) -> bool:
        return not self.failing

    def summary(self) -> str:
        total = len(self.checks)
        return f"{total - len(self.failing)}/{total} agents authenticated"

    def lines(self) -> list[str]:
        out = [self.summary()]
        for c in self.failing:
            out.append(f"  {c.agent_id}: {c.code} — {c.message}. Fix: {c.fix}")
        return out


def self_test(auth: AgentAuth, agents: list[Agent]) -> AuthReport:
    """Verify every agent's token file as the API and the heartbeat would."""
    checks = []
    for agent in agents:
        problem = auth.check_file(agent)
        checks.append(
            AgentCheck(agent.id, agent.company_id, None)
            if problem is None
            else AgentCheck(agent.id, agent.company_id, problem.code, problem.message)
        )
    return AuthReport(checks, auth.keyring.ring.active.kid)


async def rotate_all(auth: AgentAuth, service: FleetService, actor: str) -> AuthReport:
    """New active key, previous one verify-only for the grace; every token re-issued and
    verified. Agents that were unauthenticated come back at their next heartbeat, and are
    woken now so that is at once."""
    ring = auth.keyring.ring
    key = ring.rotate(service.clock.now(), auth.config.rotation_grace)
    auth.keyring.saved()
    agents = await service.agents()
    await asyncio.to_thread(_issue_files, auth, agents)
    report = self_test(auth, agents)
    await service.audit(
        actor, "tokens.rotate_all", key.kid, report.summary(), "ok" if report.ok else "partial"
    )
    for agent in agents:
        if agent.status.value == "unauthenticated":
            await service.set_auth_status(agent, auth.check_file(agent))
    return AuthReport(report.checks, key.kid)


def _issue_files(auth: AgentAuth, agents: list[Agent]) -> None:
    # One fsync of the folder instead of one per file: 10,000 agents rotate in seconds,
    # and each file is still replaced atomically.
    for agent in agents:
        auth.issue(agent, fsync=False)
    if agents:
        fsync_dir(auth.token_dir)


async def rotate_agent(
    auth: AgentAuth, service: FleetService, agent_id: str, actor: str
) -> AgentCheck:
    """Revoke one agent's token (version bump) and issue it a new one."""
    agent = await service.agent(agent_id)
    now = service.clock.now()
    async with service.db.write() as conn:
        await conn.execute(
            "UPDATE agents SET token_version = token_version + 1 WHERE id = ?", (agent.id,)
        )
        await ops.audit(conn, now, actor, "tokens.rotate", agent.id)
    agent = await service.agent(agent.id)
    auth.issue(agent)
    problem: TokenInvalid | None = auth.check_file(agent)
    await service.set_auth_status(agent, problem)
    if problem is None:
        return AgentCheck(agent.id, agent.company_id, None)
    return AgentCheck(agent.id, agent.company_id, problem.code, problem.message)


def retire_expired(auth: AgentAuth, now: float) -> list[str]:
    """Retire verify-only keys past their grace (scheduled)."""
    done = auth.keyring.ring.retire_expired(now)
    if done:
        auth.keyring.saved()
    return done
