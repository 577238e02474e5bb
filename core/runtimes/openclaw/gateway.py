"""The `openclaw` runtime over the gateway protocol: start one turn per run, see it to its end.

A dispatch connects as an operator, starts the turn with `agent` (idempotency key = run id, one
session per issue or per run, the request computed once so every retry is byte-identical) and
asks `agent.wait` until the turn ends. OpenClaw dedupes by idempotency key, so a lost or late
acknowledgement is answered by asking again with the same request: it returns the same turn
(`in_flight`), never a second one. What fleetbot learns, within a second of the turn's end:

    ok                      → finished; the turn's last reply is the summary, usage and cost
                              from the gateway's own accounting (the agent's finish wins if it
                              came first)
    error                   → AgentFailure with the gateway's reason and a precise code
    still running at the deadline → aborted (chat.abort), AgentTimeout

Transient trouble (refused while the gateway restarts, a dropped socket, "starting, retry
shortly") is retried inside the run; only a gateway that stays unreachable for `timeout` fails
the run (`runtime_unreachable`). A refused token is `runtime_auth`; the lockout after repeated
bad logins is `runtime_locked_out` — neither is retried, both name the token to fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from core.config import OpenClawRuntime
from core.errors import AgentFailure, AgentTimeout, AgentUnreachable
from core.runtimes.base import (
    Dispatch,
    DispatchResult,
    Probe,
    Runtime,
    TurnUsage,
    read_secret,
)
from core.runtimes.openclaw.protocol import GatewayClosed, GatewayConnection, GatewayError, ws_url
from core.runtimes.wake import wake_message
from core.runtimes.webhook import public_url

log = logging.getLogger(__name__)

WAIT_SLICE = 25.0  # seconds per agent.wait: under the gateway's 30 s tick, so a dead socket shows
FINAL_GRACE = 1.0  # how long to wait for the settling answer (usage) once agent.wait said "ended"
BACKOFF = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
ABORT_WITHIN = 3.0
AUTH_DETAILS = {"AUTH_TOKEN_MISMATCH", "AUTH_TOKEN_MISSING", "AUTH_UNAUTHORIZED", "AUTH_REQUIRED"}

# The gateway's failure text → a machine reason: what broke, so alerts and retries can tell a
# model outage from a bad request.
_FAILURES = (
    (re.compile(r"rate limit|HTTP 429", re.I), "model_rate_limited"),
    (
        re.compile(r"connection refused by the provider|provider endpoint|ECONNREFUSED", re.I),
        "model_unreachable",
    ),
    (re.compile(r"HTTP \d{3}|request failed|provider", re.I), "model_error"),
)


def session_key(config: OpenClawRuntime, agent_id: str, job: Dispatch) -> str:
    """One OpenClaw session per issue (a retry keeps its context) or per run."""
    scope = f"issue-{job.issue_id.lower()}" if config.session == "issue" else f"run-{job.run_id}"
    return f"agent:{agent_id}:fleetbot-{scope}"


def failure_code(text: str, stop_reason: str = "") -> str:
    if stop_reason == "rpc":
        return "turn_aborted"
    for pattern, code in _FAILURES:
        if pattern.search(text):
            return code
    return "turn_failed"


class OpenClawGatewayRuntime(Runtime):
    """Drives OpenClaw agents through the gateway's WebSocket protocol."""

    kind = "openclaw"

    def __init__(
        self,
        config: OpenClawRuntime,
        env: Mapping[str, str],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._env = env
        self._clock = clock
        self._where = f"the OpenClaw gateway at {public_url(ws_url(config.url))}"

    # -- the turn ---------------------------------------------------------------------------

    async def dispatch(self, job: Dispatch) -> DispatchResult:
        self._check_open()
        token = self._token()
        agent_id = self._config.agent_id or job.agent_id
        key = session_key(self._config, agent_id, job)
        # Computed once: every retry inside this run sends these very bytes.
        params = {
            "message": wake_message(job),
            "agentId": agent_id,
            "sessionKey": key,
            "idempotencyKey": job.run_id,
            "deliver": False,
            "timeout": max(1, int(job.deadline - self._clock())),
        }
        accepted: str | None = None
        unreachable_since: float | None = None
        attempt = 0
        while True:
            try:
                async with self._connect(token) as gw:
                    unreachable_since = None
                    admitted, request_id = await gw.agent(params, within=self._config.timeout)
                    turn = str(admitted.get("runId") or job.run_id)
                    if accepted is None:
                        accepted = turn
                        if job.on_accepted is not None:
                            await job.on_accepted(turn)
                    return await self._see_through(gw, job, turn, key, request_id)
            except GatewayError as exc:
                retry_in = self._refusal(exc)
            except (GatewayClosed, TimeoutError) as exc:
                # Refused, dropped, or no acknowledgement in time: the turn may or may not be
                # running; asking again with the same key finds out without starting another.
                now = self._clock()
                if accepted is None:
                    unreachable_since = unreachable_since or now
                    upcoming = BACKOFF[min(attempt, len(BACKOFF) - 1)]
                    if now + upcoming - unreachable_since > self._config.timeout:
                        raise AgentUnreachable(
                            f"{self._where} could not be reached for "
                            f"{self._config.timeout:g}s: {_text(exc)}. Check that it is "
                            "running and that the runtime's url points at it.",
                            code="runtime_unreachable",
                        ) from None
                retry_in = None
                log.info("run %s: %s (%s); trying again", job.run_id[:8], self._where, _text(exc))
            wait = retry_in if retry_in is not None else BACKOFF[min(attempt, len(BACKOFF) - 1)]
            attempt += 1
            if self._clock() + wait >= job.deadline:
                raise AgentTimeout(
                    f"{self._where} did not settle the turn before the run's deadline.",
                )
            await asyncio.sleep(wait)

    async def _see_through(
        self, gw: GatewayConnection, job: Dispatch, turn: str, key: str, request_id: str
    ) -> DispatchResult:
        """agent.wait until the turn ends or the deadline passes."""
        while True:
            left = job.deadline - self._clock()
            if left <= 0:
                await self._abort(gw, key, turn)
                raise AgentTimeout(
                    f"the OpenClaw turn {turn} was still running at the run's deadline; "
                    "fleetbot aborted it.",
                )
            slice_ms = int(min(WAIT_SLICE, left) * 1000)
            waited = await gw.request(
                "agent.wait", {"runId": turn, "timeoutMs": slice_ms}, within=slice_ms / 1000 + 10
            )
            status = waited.get("status")
            if status == "timeout" and "endedAt" not in waited:
                continue  # still running (or queued behind the session's previous turn)
            final = await gw.final(request_id, FINAL_GRACE)
            return self._ending(turn, waited, final)

    def _ending(
        self, turn: str, waited: dict[str, Any], final: dict[str, Any] | None
    ) -> DispatchResult:
        status = waited.get("status")
        meta = _agent_meta(final)
        if status == "ok":
            reply = _reply_text(waited, final)
            return DispatchResult(
                finished=True,
                summary=reply,
                usage=_usage(meta, waited),
                external_id=turn,
                reason=(
                    "the OpenClaw turn ended without a finish call; its last reply is the summary"
                    if reply
                    else "the OpenClaw turn ended without a finish call or a reply"
                ),
                reason_code="turn_ended",
            )
        error = str(waited.get("error") or _final_error(final) or "no reason given")
        if status == "timeout":
            raise AgentTimeout(
                f"the OpenClaw turn {turn} timed out in the gateway: {error}", code="turn_timed_out"
            )
        raise AgentFailure(
            f"the OpenClaw turn {turn} failed: {error}",
            code=failure_code(error, str(waited.get("stopReason") or "")),
        )

    async def _abort(self, gw: GatewayConnection, key: str, turn: str) -> None:
        with contextlib.suppress(GatewayError, GatewayClosed, TimeoutError):
            await gw.request("chat.abort", {"sessionKey": key, "runId": turn}, within=ABORT_WITHIN)

    # -- errors, secrets, connections --------------------------------------------------------

    def _refusal(self, exc: GatewayError) -> float:
        """A refused request: raise what is final, return the wait before what is transient."""
        ref = self._config.token_ref().describe()
        if exc.detail == "AUTH_RATE_LIMITED":
            after = f" for {exc.retry_after:.0f}s" if exc.retry_after else ""
            raise AgentFailure(
                f"{self._where} locked fleetbot out{after} after repeated bad logins. Put the "
                f"gateway's token (gateway.auth.token) in {ref}; the lockout then expires by "
                "itself, or restart the gateway to clear it.",
                code="runtime_locked_out",
            )
        if exc.detail in AUTH_DETAILS or exc.detail.startswith("AUTH_"):
            raise AgentFailure(
                f"{self._where} refused the token ({exc.message}). Put the gateway's token "
                f"(gateway.auth.token in its config) in {ref}.",
                code="runtime_auth",
            )
        if exc.code == "UNAVAILABLE" and exc.method != "agent.wait":
            return exc.retry_after if exc.retry_after is not None else 1.0  # starting up
        raise AgentFailure(
            f"{self._where} refused {exc.method}: {exc.code} {exc.message}".rstrip(),
            code="runtime_refused",
        )

    def _token(self) -> str:
        return read_secret(
            self._config.token_ref(),
            self._env,
            f"the gateway token for {self._where}",
            " (it must equal gateway.auth.token in the gateway's config)",
        )

    def _connect(self, token: str) -> GatewayConnection:
        return GatewayConnection(self._config.url, token, timeout=self._config.timeout)

    # -- self-test ---------------------------------------------------------------------------

    async def probe(self, agent_id: str) -> Probe:
        """Connect, authenticate, and find the agent id among the gateway's agents."""
        who = self._config.agent_id or agent_id
        try:
            token = self._token()
            async with self._connect(token) as gw:
                missing = {"agent", "agent.wait"} - gw.methods
                if missing:
                    return Probe(
                        False,
                        self._where,
                        f"it does not offer {', '.join(sorted(missing))}",
                        "upgrade OpenClaw (fleetbot needs gateway protocol v4), or use "
                        "transport: hooks",
                        "runtime_incompatible",
                    )
                listed = await gw.request("agents.list", {}, within=self._config.timeout)
        except AgentFailure as exc:
            return Probe(False, self._where, exc.message, "", exc.code)
        except GatewayError as exc:
            try:
                self._refusal(exc)
            except AgentFailure as final:
                return Probe(False, self._where, final.message, "", final.code)
            return Probe(False, self._where, str(exc), "try again shortly", "runtime_starting")
        except (GatewayClosed, TimeoutError) as exc:
            return Probe(
                False,
                self._where,
                f"it cannot be reached: {_text(exc)}",
                "start the gateway, or fix the runtime's url",
                "runtime_unreachable",
            )
        agents = listed.get("agents")
        ids = (
            {str(a.get("id")) for a in agents if isinstance(a, dict)}
            if isinstance(agents, list)
            else set()
        )
        if who not in ids:
            return Probe(
                False,
                self._where,
                f"it has no agent {who!r} (it has: {', '.join(sorted(ids)) or 'none'})",
                "set the runtime's agent_id to one of those, or create the agent in OpenClaw",
                "agent_unknown",
            )
        return Probe(True, self._where)


def _text(exc: BaseException) -> str:
    return str(exc) or (
        "no answer in time" if isinstance(exc, TimeoutError) else type(exc).__name__
    )


def _dig(frame: object, *keys: str) -> Any:
    """`frame[k1][k2]…`, or None where a step is missing or not an object: the gateway's
    answers are read defensively, never trusted to have a shape."""
    for key in keys:
        if not isinstance(frame, dict):
            return None
        frame = frame.get(key)
    return frame


def _agent_meta(final: dict[str, Any] | None) -> dict[str, Any]:
    meta = _dig(final, "payload", "result", "meta", "agentMeta")
    return meta if isinstance(meta, dict) else {}


def _reply_text(waited: dict[str, Any], final: dict[str, Any] | None) -> str:
    text = _dig(waited, "terminalReply", "text")
    if isinstance(text, str):
        return text.strip()
    parts = _dig(final, "payload", "result", "payloads")
    if isinstance(parts, list):
        return "\n".join(str(p.get("text")) for p in parts if isinstance(p, dict) and p.get("text"))
    return ""


def _final_error(final: dict[str, Any] | None) -> str:
    message = _dig(final, "error", "message")
    return str(message or _dig(final, "payload", "summary") or "")


def _usage(meta: dict[str, Any], waited: dict[str, Any]) -> TurnUsage | None:
    """Tokens and cost from the gateway's accounting; the model it really used."""
    usage = meta.get("usage")
    provider = meta.get("provider") or _dig(waited, "terminalReceipt", "effective", "provider")
    model_name = meta.get("model") or _dig(waited, "terminalReceipt", "effective", "model")
    model = f"{provider}/{model_name}" if provider and model_name else (model_name or None)
    if not isinstance(usage, dict):
        return None if model is None else TurnUsage(0, 0, 0, 0.0, str(model))
    cost = meta.get("costUsd")
    if not isinstance(cost, int | float):
        total = usage.get("cost")
        cost = total.get("total", 0.0) if isinstance(total, dict) else 0.0
    turns = meta.get("assistantTurns")
    return TurnUsage(
        turns=int(turns) if isinstance(turns, int) and turns >= 0 else 1,
        input_tokens=_count(usage.get("input")) + _count(usage.get("cacheRead")),
        output_tokens=_count(usage.get("output")),
        cost=float(cost) if isinstance(cost, int | float) and cost >= 0 else 0.0,
        model=str(model) if model else None,
    )


def _count(value: object) -> int:
    return int(value) if isinstance(value, int | float) and value >= 0 else 0
