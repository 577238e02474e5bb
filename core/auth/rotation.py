"""Rotating keys and tokens, and the self-test that proves every agent can authenticate.

Rotating all keys never causes a 401: the previous key stays verify-only for the grace period,
so tokens already handed out keep working while every token file is re-issued and verified.
Rotating all keys survives a kill at any step: it holds the key ring's lock throughout and
journals itself, and whoever takes the lock next finishes it (core.auth.rotation_journal has
the steps and the invariant). A key is retired only when no token file is signed by it.
Rotating one agent bumps its token version, so its old token dies at once and nobody else's.
File work runs in worker threads, a chunk at a time, so the API keeps answering meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from core.auth import rotation_journal as journal
from core.auth.agent_auth import FLEET_WIDE, ROTATE_ALL, AgentAuth, fix_for
from core.auth.keyring import Key, KeyRing
from core.auth.retirement import due_keys, retire_expired
from core.auth.rotation_journal import Rotation
from core.auth.secretfile import fsync_dir, locked_async
from core.auth.tokens import write_token_file
from core.clock import utc
from core.errors import TokenInvalid
from core.models import Agent, AgentStatus, AuthReason
from core.service import FleetService
from core.store import agents as agent_store, audit

log = logging.getLogger(__name__)

CHUNK = 500  # agents per worker-thread hop: small enough that the loop is never held long
LOG_LINES = 50  # failing agents listed in the log; `fleetbot check` lists them all
Step = Callable[[str], None]  # told the name of each step a rotation has just completed


def _no_step(name: str) -> None:
    """Steps are observed only by tests, which kill the process there (a test seam)."""


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
        return "" if self.code is None else fix_for(self.code, self.agent_id)

    def line(self) -> str:
        if self.code is None:
            return f"  {self.agent_id}: ok"
        return f"  {self.agent_id}: {self.code} — {self.message}. Fix: {self.fix}"


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

    def by_reason(self) -> dict[str, int]:
        return dict(Counter(c.code for c in self.failing if c.code is not None))

    def summary(self) -> str:
        total = len(self.checks)
        return f"{total - len(self.failing)}/{total} agents authenticated"

    def lines(self, *, verbose: bool = False, limit: int | None = None) -> list[str]:
        """The summary, a hint when one cause broke many agents, then one line per failing
        agent (every agent with `verbose`), at most `limit` of them."""
        out = [self.summary()]
        for code, count in sorted(self.by_reason().items()):
            if count > 1 and code in FLEET_WIDE:
                out.append(f"  {count} agents fail with {code}: one {ROTATE_ALL} fixes them all")
        shown = self.checks if verbose else self.failing
        for c in shown[:limit] if limit is not None else shown:
            out.append(c.line())
        if limit is not None and len(shown) > limit:
            out.append(f"  … and {len(shown) - limit} more; `fleetbot check` lists them all")
        return out


def _check(auth: AgentAuth, agent: Agent) -> AgentCheck:
    problem = auth.check_file(agent)
    if problem is None:
        return AgentCheck(agent.id, agent.company_id, None)
    return AgentCheck(agent.id, agent.company_id, problem.code, problem.message)


def _checks(auth: AgentAuth, agents: Sequence[Agent]) -> list[AgentCheck]:
    return [_check(auth, a) for a in agents]


def self_test(auth: AgentAuth, agents: Sequence[Agent]) -> AuthReport:
    """Verify every agent's token file as the API and the heartbeat would."""
    return AuthReport(_checks(auth, agents), auth.keyring.ring.active.kid)


async def self_test_async(
    auth: AgentAuth, agents: Sequence[Agent], *, chunk: int = CHUNK
) -> AuthReport:
    """`self_test` in worker threads, a chunk at a time, so the event loop keeps serving."""
    checks: list[AgentCheck] = []
    for start in range(0, len(agents), chunk):
        part = agents[start : start + chunk]
        checks.extend(await asyncio.to_thread(_checks, auth, part))
    return AuthReport(checks, auth.keyring.ring.active.kid)


async def record(service: FleetService, agents: Sequence[Agent], report: AuthReport) -> list[str]:
    """Apply a self-test to agents' statuses: a failing idle agent becomes unauthenticated
    with its reason; an unauthenticated agent that passes is idle again and woken. Paused,
    erroring and running agents keep their status (their heartbeat checks again later).
    `agents` may be a snapshot: each agent to change is read again before it is changed.
    Returns the ids of agents that came back."""
    checks = {c.agent_id: c for c in report.checks}
    back: list[str] = []
    for snapshot in agents:
        check = checks.get(snapshot.id)
        if check is None or not _needs_change(snapshot, check):
            continue
        agent = await service.maybe_agent(snapshot.id)
        if agent is None or not _needs_change(agent, check):
            continue
        if check.code is None:
            await service.set_auth_status(agent, None)
            await service.wake(agent.id, "fleetbot", audited=False)
            back.append(agent.id)
        else:
            await service.set_auth_status(agent, TokenInvalid(check.message, code=check.code))
    return back


def _needs_change(agent: Agent, check: AgentCheck) -> bool:
    if check.code is None:
        return agent.status is AgentStatus.UNAUTHENTICATED
    return agent.status is AgentStatus.IDLE or (
        agent.status is AgentStatus.UNAUTHENTICATED and agent.reason_code != check.code
    )


def _issue_and_check(
    auth: AgentAuth, agents: Sequence[Agent], step: Step = _no_step
) -> list[AgentCheck]:
    # No fsync per file: one fsync of the folder at the end makes the renames durable, and
    # each file is still replaced atomically (10,000 agents rotate in seconds, not minutes).
    authority, now, ttl = auth.signing_authority, auth.clock.now(), auth.config.token_ttl
    unwritten: dict[str, AgentCheck] = {}
    for agent in agents:
        token = authority.issue(agent, now, ttl)
        try:
            write_token_file(auth.token_dir, agent.id, token, fsync=False)
        except OSError as exc:
            # A full disk or a read-only folder fails this agent's line, not the rotation:
            # the others are re-issued, and the previous key still verifies for the grace.
            unwritten[agent.id] = AgentCheck(
                agent.id,
                agent.company_id,
                AuthReason.MISSING_FILE.value,
                f"cannot write {auth.token_file(agent.id)} ({exc.strerror or exc})",
            )
        step(f"token file {agent.id}")
    return [unwritten.get(a.id) or _check(auth, a) for a in agents]


async def _reissue_all(
    auth: AgentAuth, service: FleetService, chunk: int, step: Step
) -> tuple[list[Agent], list[AgentCheck]]:
    """Every agent's token file re-issued with the active key and made durable."""
    agents = await service.agents()
    checks: list[AgentCheck] = []
    for start in range(0, len(agents), chunk):
        part = agents[start : start + chunk]
        checks.extend(await asyncio.to_thread(_issue_and_check, auth, part, step))
    if agents:
        await asyncio.to_thread(fsync_dir, auth.token_dir)
        step("token files durable")
    return agents, checks


async def rotate_all(
    auth: AgentAuth,
    service: FleetService,
    actor: str,
    *,
    chunk: int = CHUNK,
    on_step: Step | None = None,
) -> AuthReport:
    """New active key, previous one verify-only for the grace; every token re-issued and
    verified. Agents that were unauthenticated are idle again and woken at once.

    Holds the key ring's lock throughout, first finishes a rotation it finds interrupted, and
    journals its own (core.auth.rotation_journal). `on_step` is a test seam: called after each
    step with its name, so a test can kill the process there; nothing else passes it.
    """
    step = on_step or _no_step
    grace, alg = auth.config.rotation_grace, auth.config.algorithm
    path = auth.keyring.path
    async with locked_async(path):
        await _recover_held(auth, service, chunk, step)
        now = service.clock.now()

        def begin(ring: KeyRing) -> Key:
            journal.begin(path, Rotation(ring.active.kid, now, actor))
            step("journal written")
            try:
                return ring.rotate(now, grace, alg)
            except BaseException:
                journal.clear(path)  # refused before the key ring was written: nothing to finish
                raise

        key = auth.keyring.update_held(begin)
        step("key ring saved")
        agents, checks = await _reissue_all(auth, service, chunk, step)
        journal.clear(path)
        step("journal removed")
    report = AuthReport(checks, key.kid)
    await service.audit(
        actor,
        "tokens.rotate_all",
        key.kid,
        {"summary": report.summary(), "failing": report.by_reason()},
        "ok" if report.ok else "partial",
    )
    await record(service, agents, report)
    log.info("rotated to key %s by %s: %s", key.kid, actor, report.summary())
    return report


async def recover(
    auth: AgentAuth, service: FleetService, *, chunk: int = CHUNK, on_step: Step | None = None
) -> AuthReport | None:
    """Finish a rotate-all that was killed (or failed) half-way: completed when its new key
    was saved (every token re-issued with it), rolled back when it was not. The report of the
    re-issued tokens, or None when there was nothing to re-issue. Statuses are the caller's
    to record (a self-test follows). One stat when there is no journal."""
    if not journal.pending(auth.keyring.path):
        return None
    async with locked_async(auth.keyring.path):
        return await _recover_held(auth, service, chunk, on_step or _no_step)


async def _recover_held(
    auth: AgentAuth, service: FleetService, chunk: int, step: Step
) -> AuthReport | None:
    path = auth.keyring.path
    entry = journal.read(path)
    if entry is None:
        return None
    # Under the lock, a journal belongs to a rotation whose process is gone: nobody else is
    # writing the key ring or the token files now.
    active = auth.keyring.update_held(lambda ring: ring.active)  # fresh from disk
    began = f"started {_when(entry.started_at)} by {entry.actor}"
    if entry.old_kid == active.kid:
        journal.clear(path)
        step("journal removed")
        log.warning(
            "an interrupted key rotation (%s) had not saved its new key: nothing changed, "
            "key %s stays active",
            began,
            active.kid,
        )
        return None
    _, checks = await _reissue_all(auth, service, chunk, step)
    journal.clear(path)
    step("journal removed")
    report = AuthReport(checks, active.kid)
    await service.audit(
        "fleetbot",
        "tokens.rotate_all.completed",
        active.kid,
        {"started": began, "summary": report.summary(), "failing": report.by_reason()},
        "ok" if report.ok else "partial",
    )
    log.warning(
        "completed an interrupted key rotation to key %s (%s): every token file re-issued, %s",
        active.kid,
        began,
        report.summary(),
    )
    return report


def _when(ts: float) -> str:
    return utc(ts).strftime("%Y-%m-%d %H:%M:%S UTC") if ts else "at an unknown time"


async def rotate_agent(
    auth: AgentAuth, service: FleetService, agent_id: str, actor: str
) -> AgentCheck:
    """Revoke one agent's token (version bump: its old token and run tokens die at once) and
    issue it a new one."""
    agent = await service.agent(agent_id)
    # Before the old token is revoked: an agent must never be left with no token that works.
    auth.check_can_sign()
    now = service.clock.now()
    async with service.db.write() as conn:
        await agent_store.revoke_tokens(conn, agent.id)
        await audit.record(conn, now, actor, "tokens.rotate", agent.id)
    agent = await service.agent(agent.id)
    # Under the key ring's lock: a retirement re-signing token files must not put this
    # agent's previous (now revoked) token back over the new one.
    async with locked_async(auth.keyring.path):
        check = (await asyncio.to_thread(_issue_and_check, auth, [agent]))[0]
    await record(service, [agent], AuthReport([check], auth.keyring.ring.active.kid))
    return check


def _issue_missing(auth: AgentAuth, agents: Sequence[Agent]) -> list[str]:
    missing = [a for a in agents if not auth.token_file(a.id).exists() or auth.superseded_file(a)]
    for agent in missing:
        auth.issue(agent, fsync=False)
    if missing:
        fsync_dir(auth.token_dir)
    return [a.id for a in missing]


async def issue_missing(auth: AgentAuth, agents: Sequence[Agent]) -> list[str]:
    """Write a token file for every agent that has none (a new agent in the config) or whose
    file holds its own token of an earlier token version (an agent removed from the config and
    added again, a `/rotate AGENT` whose write failed). Never touches any other file, so a
    broken one still shows up in the self-test."""
    return await asyncio.to_thread(_issue_missing, auth, agents)


class AuthWatch:
    """The fleet's standing auth checks: at startup, finishing a rotation a crash interrupted
    and the self-test; every minute, the same recovery, moving token files off keys whose grace
    is ending and retiring those keys, and a re-test of every agent when the key ring changed
    (a rotation by `fleetbot tokens rotate` in another process, or a hand-edited file)."""

    INTERVAL = 60.0  # seconds between scheduled checks

    def __init__(self, auth: AgentAuth, service: FleetService) -> None:
        self.auth = auth
        self.service = service
        self.last: AuthReport | None = None
        self._tested_kid = ""
        self._file_problems: list[str] = []

    async def startup(self) -> AuthReport:
        """Finish a rotation a crash interrupted, issue tokens to agents new in the config,
        then self-test the whole fleet."""
        await recover(self.auth, self.service)
        written = await issue_missing(self.auth, await self.service.agents())
        if written:
            log.info(
                "issued token files for %d new or re-added agent(s): %s",
                len(written),
                ", ".join(written),
            )
        return await self.self_test("startup")

    async def self_test(self, why: str) -> AuthReport:
        """Test every agent, log the summary and each failing agent, record statuses."""
        agents = await self.service.agents()
        report = await self_test_async(self.auth, agents)
        self._tested_kid = report.kid
        self.last = report
        log.log(
            logging.INFO if report.ok else logging.WARNING,
            "auth self-test (%s): %s",
            why,
            "\n".join(report.lines(limit=LOG_LINES)),
        )
        await record(self.service, agents, report)
        return report

    def check_files(self) -> bool:
        """Log an error, with its fix, for each problem of the key ring file and the token
        folder on disk; False when the key ring must not be used (nothing is signed with it
        then). Startup refuses the same problems: this finds those that arose since."""
        problems = self.auth.problems()
        for problem in problems:
            log.error("auth files: %s", problem)
        if self._file_problems and not problems:
            log.info("auth files: the key ring and the token folder are fine again")
        self._file_problems = problems
        return self.auth.keyring.problem() is None

    async def tick(self) -> None:
        # Permissions are checked every minute, not only at start: a key ring chmod-ed open
        # or swapped for a link while the fleet runs is named in the log within a minute.
        if not await asyncio.to_thread(self.check_files):
            return  # rotations and retirement would write the key ring: not while it is unsafe
        # A rotation killed in another process (or in this one) is finished here, within a
        # minute, long before the previous key's grace ends.
        recovered = await recover(self.auth, self.service)
        now = self.service.clock.now()
        retired: list[str] = []
        if due_keys(self.auth.keyring.ring, now):  # the file work only when a grace is ending
            retired = await asyncio.to_thread(retire_expired, self.auth, now)
        if retired:
            log.info("retired key(s) past their rotation grace: %s", ", ".join(retired))
            # A token still signed by a retired key fails from now on: say so at once.
            await self.self_test("keys retired")
        elif recovered is not None:
            await self.self_test("interrupted rotation completed")
        elif self.auth.keyring.ring.active.kid != self._tested_kid:
            await self.self_test("key ring changed")
