"""The runtime self-test: can fleetbot reach each agent's runtime, log in, and find the agent?

It works like the token self-test (core.auth.rotation) with one difference. Agents behind the
same runtime (one OpenClaw gateway, one http endpoint) fail together, so failures are grouped
by the probe's `target`: one dead gateway is one line naming its agents, and one alert
(core.alerting.monitors.find_runtime_unreachable).

    probe_all(agents, runtimes)      every agent's `Runtime.probe`, 8 at once, 10 s each at most
    RuntimeReport                    "N/M runtimes reachable", failures grouped by target
    self_test_runtimes(service, env) the one-shot test `fleetbot check` runs (own runtimes)
    RuntimeWatch                     the fleet's standing check: everyone at startup, then every
                                     monitors.interval the suspects (agents that failed their last
                                     probe, or whose last run failed on the runtime)
    unreachable(agents, failing)     agents to show as "unreachable" instead of "idle"

"Unreachable" is a display state, not an AgentStatus. It is derived from the last probe: an
idle agent (or one in error because a run failed on it) whose runtime's last probe failed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pydantic import TypeAdapter

from core.clock import Clock, SystemClock
from core.config import RuntimeConfig
from core.errors import AgentFailure
from core.models import Agent, AgentStatus
from core.runtimes import build_runtime
from core.runtimes.base import Runtime
from core.runtimes.webhook import public_url
from core.service import FleetService

log = logging.getLogger(__name__)

RuntimeFactory = Callable[[Agent], Runtime]
_RUNTIME_CONFIG: TypeAdapter[RuntimeConfig] = TypeAdapter(RuntimeConfig)

PROBE_TIMEOUT = 10.0  # seconds one probe may take before it counts as "no answer"
PROBES_AT_ONCE = 8  # probes in flight at once: a fleet of thousands must not open thousands
FRESH_FOR = 5.0  # a probe younger than this is reused (a run's end and its status change)
LOG_LINES = 50  # failing targets listed in the log; `fleetbot check` lists them all
# Run failure codes that mean trouble with the way to the agent (down, refusing our token,
# locked out, its secret or command missing), not with its work (docs/runtimes.md): an agent
# whose run failed this way is probed at once and again every monitors.interval.
RUNTIME_DOWN_CODES = frozenset(
    {
        "runtime_unreachable",
        "runtime_auth",
        "runtime_locked_out",
        "runtime_secret_missing",
        "runtime_missing",
    }
)


def _clause(text: str) -> str:
    return text.strip().rstrip(".")


def _sentences(problem: str, fix: str) -> str:
    """ "Problem. Fix: fix." from the probe's two parts, however they were punctuated."""
    fix = _clause(fix)
    return f"{_clause(problem) or 'it failed its self-test'}." + (f" Fix: {fix}." if fix else "")


@dataclass(frozen=True, slots=True)
class RuntimeCheck:
    """One agent's probe, as the self-test saw it."""

    agent_id: str
    company_id: str
    ok: bool
    target: str  # what was tested, without secrets: "the OpenClaw gateway at ws://…"
    problem: str = ""
    fix: str = ""
    code: str = ""  # runtime_unreachable, runtime_auth, agent_unknown, runtime_timeout, …
    at: float = 0.0  # when it was probed

    @property
    def reason(self) -> str:
        """What is wrong, naming the target: "the agent at http://…: connection refused"."""
        problem = _clause(self.problem) or "it failed its self-test"
        return problem if self.target in problem else f"{self.target}: {problem}"

    @property
    def explained(self) -> str:
        """The problem and the fix as sentences, without the target (said elsewhere)."""
        return _sentences(self.problem, self.fix)

    @property
    def detail(self) -> str:
        """The reason (naming the target) and the fix as sentences."""
        return _sentences(self.reason, self.fix)

    def line(self) -> str:
        if self.ok:
            return f"  {self.agent_id}: ok ({self.target})"
        return f"  {self.agent_id}: {self.code} — {self.detail}"


@dataclass(frozen=True, slots=True)
class TargetFailure:
    """Every failing agent behind one target that fails the same way (same code)."""

    target: str
    code: str
    checks: tuple[RuntimeCheck, ...]

    @property
    def agents(self) -> tuple[str, ...]:
        return tuple(c.agent_id for c in self.checks)

    @property
    def companies(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.company_id for c in self.checks))

    @property
    def explained(self) -> list[str]:
        """The distinct problem-and-fix sentences: one when the target itself is down."""
        return list(dict.fromkeys(c.explained for c in self.checks))

    def lines(self) -> list[str]:
        """One line for the target, naming its agents; a problem that differs per agent (an
        unknown agent id) is told in one indented line per agent."""
        noun = "agent" if len(self.checks) == 1 else "agents"
        head = f"  {self.target} — {self.code}, {noun} {', '.join(self.agents)}"
        said = self.explained
        if len(said) == 1:
            return [f"{head}: {said[0]}"]
        return [f"{head}:"] + [f"    {c.agent_id}: {c.explained}" for c in self.checks]


def group_failures(checks: Iterable[RuntimeCheck]) -> list[TargetFailure]:
    """Failing checks grouped by (target, code), in the order first seen."""
    groups: dict[tuple[str, str], list[RuntimeCheck]] = {}
    for c in checks:
        if not c.ok:
            groups.setdefault((c.target, c.code), []).append(c)
    return [TargetFailure(t, code, tuple(cs)) for (t, code), cs in groups.items()]


@dataclass(frozen=True, slots=True)
class RuntimeReport:
    checks: list[RuntimeCheck] = field(default_factory=list)

    @property
    def failing(self) -> list[RuntimeCheck]:
        return [c for c in self.checks if not c.ok]

    @property
    def ok(self) -> bool:
        return not self.failing

    def by_target(self) -> list[TargetFailure]:
        return group_failures(self.checks)

    def summary(self) -> str:
        total = len(self.checks)
        return f"{total - len(self.failing)}/{total} runtimes reachable"

    def lines(self, *, verbose: bool = False, limit: int | None = None) -> list[str]:
        """The summary, then one line per failing target naming its agents and the fix (at
        most `limit` targets); with `verbose`, also one line per agent that passed."""
        out = [self.summary()]
        groups = self.by_target()
        for g in groups[:limit] if limit is not None else groups:
            out.extend(g.lines())
        if limit is not None and len(groups) > limit:
            out.append(f"  … and {len(groups) - limit} more; `fleetbot check` lists them all")
        if verbose:
            out.extend(c.line() for c in self.checks if c.ok)
        return out


def describe(agent: Agent) -> str:
    """A target for an agent whose probe gave none (it hung or crashed), from its config."""
    kind = str(agent.runtime.get("kind", "unknown"))
    url = agent.runtime.get("url")
    if isinstance(url, str):
        return f"the {kind} runtime at {public_url(url)}"
    command = agent.runtime.get("command")
    if isinstance(command, list) and command:
        return f"the command {command[0]}"
    return f"the {kind} runtime of {agent.id}"


async def probe_one(
    agent: Agent,
    runtimes: RuntimeFactory,
    *,
    now: float,
    within: float = PROBE_TIMEOUT,
    known_target: str | None = None,
) -> RuntimeCheck:
    """The agent's runtime's `probe`, within `within` seconds; a hang or a crash is a failed
    check."""
    target = known_target or describe(agent)
    try:
        async with asyncio.timeout(within):
            probe = await runtimes(agent).probe(agent.id)
    except TimeoutError:
        problem = f"{target} did not answer the self-test within {within:g} s"
        fix = "check that it is running and not overloaded"
        return RuntimeCheck(
            agent.id, agent.company_id, False, target, problem, fix, "runtime_timeout", now
        )
    except AgentFailure as exc:
        return RuntimeCheck(
            agent.id, agent.company_id, False, target, exc.message, "", exc.code, now
        )
    except Exception as exc:  # a bug in one kind's probe must not end the whole self-test
        log.exception("the runtime self-test of %s crashed", agent.id)
        problem = f"its self-test crashed ({type(exc).__name__})"
        fix = "see the fleetbot log for the traceback"
        return RuntimeCheck(
            agent.id, agent.company_id, False, target, problem, fix, "probe_crashed", now
        )
    return RuntimeCheck(
        agent.id,
        agent.company_id,
        probe.ok,
        probe.target,
        probe.problem,
        probe.fix,
        "" if probe.ok else probe.code or "runtime_failed",
        now,
    )


async def probe_all(
    agents: Sequence[Agent],
    runtimes: RuntimeFactory,
    *,
    clock: Clock | None = None,
    within: float = PROBE_TIMEOUT,
    at_once: int = PROBES_AT_ONCE,
    known: Mapping[str, str] | None = None,
) -> RuntimeReport:
    """Probe every agent's runtime concurrently, `at_once` at a time, each within `within`
    seconds.
    `known` maps agent ids to the target their last probe named (used if this one hangs)."""
    gate = asyncio.Semaphore(at_once)
    now = (clock or SystemClock()).now
    targets = known or {}

    async def one(agent: Agent) -> RuntimeCheck:
        async with gate:
            return await probe_one(
                agent, runtimes, now=now(), within=within, known_target=targets.get(agent.id)
            )

    return RuntimeReport(list(await asyncio.gather(*(one(a) for a in agents))))


async def self_test_runtimes(
    service: FleetService, env: Mapping[str, str], agents: Sequence[Agent] | None = None
) -> RuntimeReport:
    """Probe every agent's runtime with runtimes of its own, closed before it returns (for
    `fleetbot check`, which must share nothing with a running `fleetbot run`)."""
    built: list[Runtime] = []

    def runtime(agent: Agent) -> Runtime:
        built.append(build_runtime(_RUNTIME_CONFIG.validate_python(agent.runtime), env, service))
        return built[-1]

    try:
        chosen = list(agents) if agents is not None else await service.agents()
        return await probe_all(chosen, runtime, clock=service.clock)
    finally:
        for r in built:
            await r.aclose()


def unreachable(
    agents: Iterable[Agent], failing: Mapping[str, RuntimeCheck]
) -> dict[str, RuntimeCheck]:
    """The agents shown as "unreachable" while their runtime's last probe fails: idle ones,
    and those in error because a run failed on that runtime (the runtime's alert names them;
    once it answers they show as in error again, to be reset). Paused, running and
    unauthenticated agents keep showing that status: it says more."""
    return {
        a.id: failing[a.id]
        for a in agents
        if a.id in failing
        and (
            a.status is AgentStatus.IDLE
            or (a.status is AgentStatus.ERROR and a.reason_code in RUNTIME_DOWN_CODES)
        )
    }


class RuntimeWatch:
    """The fleet's standing runtime checks, over the runtimes the scheduler dispatches with:
    the whole fleet at startup (and on /authcheck), then the suspects every monitors.interval
    (core.alerting.watchdog drives it and turns the failures into alerts)."""

    def __init__(
        self,
        service: FleetService,
        runtimes: RuntimeFactory,
        *,
        timeout: float = PROBE_TIMEOUT,
        at_once: int = PROBES_AT_ONCE,
    ) -> None:
        self.service = service
        self.runtimes = runtimes
        self.timeout = timeout
        self.at_once = at_once
        self.last: dict[str, RuntimeCheck] = {}  # agent id -> its latest probe
        self._suspects: set[str] = set()  # runs failed on the runtime since their last probe

    def failing(self) -> dict[str, RuntimeCheck]:
        """Agent id -> its last probe, for every agent whose last probe failed."""
        return {k: c for k, c in self.last.items() if not c.ok}

    def unreachable(self, agents: Iterable[Agent]) -> dict[str, RuntimeCheck]:
        return unreachable(agents, self.failing())

    def suspect(self, agent_id: str) -> None:
        """A run of this agent failed on its runtime: probe it on the next pass."""
        self._suspects.add(agent_id)

    def is_suspect(self, agent: Agent) -> bool:
        last = self.last.get(agent.id)
        return (
            agent.id in self._suspects
            or (last is not None and not last.ok)
            or (agent.status is AgentStatus.ERROR and agent.reason_code in RUNTIME_DOWN_CODES)
        )

    async def probe(self, agents: Sequence[Agent]) -> RuntimeReport:
        """Probe these agents now and remember the results."""
        report = await probe_all(
            agents,
            self.runtimes,
            clock=self.service.clock,
            within=self.timeout,
            at_once=self.at_once,
            known={k: c.target for k, c in self.last.items()},
        )
        for c in report.checks:
            self.last[c.agent_id] = c
            self._suspects.discard(c.agent_id)
        return report

    async def probe_fresh(self, agent: Agent, fresh_for: float = FRESH_FOR) -> RuntimeCheck:
        """The agent's last probe if it is younger than `fresh_for`, else a new one."""
        last = self.last.get(agent.id)
        if last is not None and self.service.clock.now() - last.at < fresh_for:
            return last
        return (await self.probe([agent])).checks[0]

    def forget_others(self, agents: Iterable[Agent]) -> None:
        """Drop results of agents no longer in the fleet (their alerts then resolve)."""
        keep = {a.id for a in agents}
        self.last = {k: c for k, c in self.last.items() if k in keep}
        self._suspects &= keep

    async def recheck(self, agents: Sequence[Agent]) -> RuntimeReport:
        """Probe the suspects among `agents` (the whole fleet): what monitors.interval runs."""
        self.forget_others(agents)
        return await self.probe([a for a in agents if self.is_suspect(a)])

    async def self_test(self, why: str, agents: Sequence[Agent] | None = None) -> RuntimeReport:
        """Probe every agent (or these), log the summary and one line per failing target."""
        fleet = list(agents) if agents is not None else await self.service.agents()
        if agents is None:
            self.forget_others(fleet)
        report = await self.probe(fleet)
        log.log(
            logging.INFO if report.ok else logging.WARNING,
            "runtime self-test (%s): %s",
            why,
            "\n".join(report.lines(limit=LOG_LINES)),
        )
        return report
