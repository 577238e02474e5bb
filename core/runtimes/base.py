"""How the core wakes an agent that has work: one small class per kind behind `Runtime`.

A runtime gets a `Dispatch` (everything the agent needs for one run) and sees the turn through
to its end whenever the runtime can tell (openclaw over the gateway, process, simulated, an http
agent that answers with its outcome): it returns a finished `DispatchResult` with the turn's
last reply, usage and the runtime's own id for the turn. A runtime that can only hand the run
over (an http agent that answers "accepted") returns ACCEPTED, and the agent reports through
the API or the run's deadline ends it. Every failure is raised as a core.errors.AgentFailure
subclass whose message says precisely what went wrong; the scheduler turns it into a failed run
and an agent in `error` with that reason.

Whoever builds a runtime closes it: `async with` it, or call `aclose()`, which is idempotent and
releases what the kind owns (its `_close()`: an HTTP client, live child processes).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

from core.config import SecretRef
from core.errors import AgentFailure
from core.models import RunOutcome

SECRET_MISSING = "runtime_secret_missing"


def read_secret(ref: SecretRef, env: Mapping[str, str], what: str, note: str = "") -> str:
    """The secret `ref` points at, read now so a rotated file is picked up without a restart;
    AgentFailure naming where to put it if it is empty or missing."""
    value = ref.resolve(env)
    if value is None:
        raise AgentFailure(
            f"{what} is empty or missing; put it in {ref.describe()}{note}.", code=SECRET_MISSING
        )
    return value


@dataclass(frozen=True, slots=True)
class Dispatch:
    run_id: str
    agent_id: str
    agent_name: str
    company_id: str
    issue: dict[str, Any]  # id, title, body, status
    api_url: str
    token: str = field(repr=False)  # short-lived per-run token; never logged
    token_file: Path | None
    model: str
    max_turns: int
    skills: tuple[str, ...]
    deadline: float  # epoch seconds
    wake_reason: str = "heartbeat"  # assigned, heartbeat, answer, comment, approval, …
    # One line saying why, for the wakes that carry news (answer, approval, comment), e.g.
    # `Q7 "Deploy to prod?" answered by Ann (tg:123): Approve`; at most 500 characters.
    wake_note: str = ""
    # Called once the runtime acknowledged the turn, with the runtime's own id for it (OpenClaw's
    # runId), so the run card shows it while the turn is still running.
    on_accepted: Callable[[str], Awaitable[None]] | None = field(
        default=None, repr=False, compare=False
    )

    @property
    def issue_id(self) -> str:
        return str(self.issue.get("id", ""))

    def wire(self) -> dict[str, Any]:
        """The JSON the http runtime posts (the design's contract)."""
        return {
            "run_id": self.run_id,
            "agent_id": self.agent_id,
            "company_id": self.company_id,
            "issue": self.issue,
            "api_url": self.api_url,
            "token": self.token,
            "model": self.model,
            "max_turns": self.max_turns,
            "skills": list(self.skills),
            "deadline": self.deadline,
        }


@dataclass(frozen=True, slots=True)
class TurnUsage:
    """What a turn consumed, as the runtime measured it (totals for the whole run)."""

    turns: int
    input_tokens: int
    output_tokens: int
    cost: float
    model: str | None = None


@dataclass(frozen=True, slots=True)
class DispatchResult:
    """What came back. `finished` means the run is over once dispatch returns."""

    finished: bool
    outcome: RunOutcome | None = None  # None with finished=True: ended well, no verdict given
    summary: str = ""  # the agent's verdict, or the turn's last reply
    usage: TurnUsage | None = None
    external_id: str | None = None  # the runtime's own id for the turn
    # How the turn ended when the agent gave no verdict, in words and as a machine code.
    reason: str = ""
    reason_code: str = ""


@dataclass(frozen=True, slots=True)
class Probe:
    """A runtime's self-test: can fleetbot reach it, authenticate, and find the agent?"""

    ok: bool
    target: str  # what was tested, without secrets: "the OpenClaw gateway at ws://…"
    problem: str = ""  # what is wrong, as a sentence
    fix: str = ""  # what to do about it, as a sentence
    code: str = ""  # machine reason: runtime_unreachable, runtime_auth, agent_unknown, …


ACCEPTED = DispatchResult(finished=False)


class RunReporter(Protocol):
    """What an in-process agent (the simulated runtime) may call, as a real agent would the API."""

    async def report_usage(
        self,
        run_id: str,
        agent_id: str,
        *,
        turns: int,
        input_tokens: int,
        output_tokens: int,
        cost: float,
        model: str | None = None,
    ) -> object: ...

    async def finish_run(
        self, run_id: str, agent_id: str, outcome: RunOutcome, summary: str
    ) -> object: ...


class Runtime(ABC):
    """One kind of agent runtime; an async context manager that `aclose()`s on exit."""

    kind: str
    _closed = False  # a class default, so kinds that own nothing need no __init__ of ours

    @abstractmethod
    async def dispatch(self, job: Dispatch) -> DispatchResult:
        """Wake the agent for `job`; raise AgentFailure with a precise reason on failure."""

    async def probe(self, agent_id: str) -> Probe:
        """Self-test without starting a turn. Kinds that own nothing remote pass."""
        return Probe(ok=True, target=f"the {self.kind} runtime")

    @property
    def closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        """Release what the runtime owns (clients, processes). Idempotent."""
        if not self._closed:
            self._closed = True
            await self._close()

    async def _close(self) -> None:  # noqa: B027  (most runtimes own nothing)
        """Release what this kind owns; called once, by the first `aclose()`."""

    def _check_open(self) -> None:
        """AgentFailure if the runtime was closed: nothing new starts during shutdown."""
        if self._closed:
            raise AgentFailure(f"the {self.kind} runtime was closed; fleetbot is shutting down.")

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
