"""The `openclaw` runtime over hooks: `POST {url}{hook_path}` with `waitForCompletion`.

For gateways that expose only their hooks. The POST stays open until the agent's turn ends and
then says how it ended (`completion.status`), but never with the reply text, usage or model: a turn
that ended well sends the work to review, a failed one fails the run with the gateway's status. A
hooks mapping path answers at admission only; then the run is handed over and the agent reports
through the API (or the deadline ends the run).

Each run is one request, built once: the same bytes and `Idempotency-Key: <run id>` (also
`idempotencyKey` in the body) on every attempt, which the gateway dedupes into the same runId and
one turn, so a lost or late answer is retried safely. Hooks runs are isolated sessions: OpenClaw
refuses a request's sessionKey unless hooks.allowRequestSessionKey is set, so `session: issue`
cannot keep an issue's context over hooks (the `gateway` transport can). OpenClaw also wraps a hook
message in an "untrusted content" notice, which a mapping with allowUnsafeExternalContent avoids.

A 429 here is the gateway locking out a token after repeated bad logins, not load (a correct token
is let through at once): it is reported pointing at the token, never retried.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from core.config import OpenClawRuntime
from core.errors import AgentBadReply, AgentBadStatus, AgentFailure
from core.runtimes.base import ACCEPTED, SECRET_MISSING, Dispatch, DispatchResult, Probe
from core.runtimes.wake import wake_message
from core.runtimes.webhook import (
    UNREACHABLE,
    WebhookRuntime,
    bad_status,
    excerpt,
    json_body,
    public_url,
    retry_after,
    status_line,
)

ENDED_WELL = "the OpenClaw turn ended; hooks report no reply text, so the work goes to review"
_SAME_TOKEN = " (it must equal hooks.token in the gateway's config, not the gateway token)"


def hooks_url(config: OpenClawRuntime) -> str:
    """`{url}{hook_path}`, over http(s) whichever scheme names the gateway (it serves both)."""
    url = config.url.rstrip("/")
    for ws, http in (("wss://", "https://"), ("ws://", "http://")):
        if url.startswith(ws):
            url = http + url.removeprefix(ws)
    return url + config.hook_path


class OpenClawHooksRuntime(WebhookRuntime[OpenClawRuntime]):
    """Runs each dispatch as one isolated, undelivered OpenClaw hook turn and waits for its end."""

    kind = "openclaw"

    @property
    def _url(self) -> str:
        return hooks_url(self._config)

    @property
    def _who(self) -> str:
        return f"the OpenClaw gateway at {public_url(self._url)}"

    async def dispatch(self, job: Dispatch) -> DispatchResult:
        """POST the hook and wait for the turn: its end finishes the run, or fails it."""
        self._check_open()
        who, ref = self._who, self._config.token_ref()
        token = self._secret(ref, f"the hooks token for {who}", _SAME_TOKEN)
        left = self._time_left(job, who)
        payload = {
            "message": wake_message(job),
            "name": job.agent_name,
            "agentId": self._config.agent_id or job.agent_id,
            "deliver": False,  # the outcome goes to fleetbot, not to a chat channel
            "waitForCompletion": True,
            "idempotencyKey": job.run_id,
            # Once, from the deadline: the gateway dedupes on the whole body, so every attempt
            # must send these same bytes.
            "timeoutSeconds": max(1, int(left)),
        }
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": job.run_id}
        secrets = [token, job.token]
        response, body = await self._deliver(
            self._url,
            json_body(payload),
            deadline=job.deadline,
            headers=headers,
            secrets=secrets,
            who=who,
            retry_429=False,
        )
        if not response.is_success:
            raise self._refusal(response, body, secrets)
        answer = _json_object(body)
        if answer.get("ok") is False:
            raise AgentBadReply(
                f"{who} answered {status_line(response)} but refused the hook "
                f'("{excerpt(body, secrets)}"); check the gateway\'s logs and hooks settings '
                "(e.g. hooks.allowedAgentIds)."
            )
        turn = answer.get("runId")
        turn = turn if isinstance(turn, str) and turn else None
        if turn is not None and job.on_accepted is not None:
            await job.on_accepted(turn)
        completion = answer.get("completion")
        if not isinstance(completion, dict):
            return ACCEPTED  # admission only (a hooks mapping): the agent reports through the API
        status = completion.get("status")
        if status == "ok":
            return DispatchResult(
                finished=True, external_id=turn, reason=ENDED_WELL, reason_code="turn_ended"
            )
        reply = completion.get("replyDisposition")
        said = f" (reply: {excerpt(str(reply))})" if reply else ""
        raise AgentFailure(
            f"{who} reports that its turn {turn or '(no runId)'} ended with status "
            f"{excerpt(str(status))!r}{said}; the gateway's log has the cause "
            "(look for 'hook agent run completed').",
            code="turn_failed",
        )

    def _refusal(self, response: httpx.Response, body: bytes, secrets: list[str]) -> AgentFailure:
        """The failure for a non-2xx answer to the hook, named for what the gateway meant."""
        who, ref, status = self._who, self._config.token_ref(), status_line(response)
        code = response.status_code
        if code in (401, 403):
            return AgentBadStatus(
                f"{who} answered {status}: the hooks token was refused. Check that "
                f"{ref.describe()} holds the gateway's hooks.token (not the gateway token).",
                code="runtime_auth",
            )
        if code == 429:
            problem, fix = _lockout(who, response, self._clock(), ref.describe())
            return AgentBadStatus(f"{problem}; {fix}.", code=_LOCKED)
        if code == 404:
            return AgentBadStatus(
                f"{who} answered {status} for {self._config.hook_path}; enable the gateway's hooks "
                "(hooks.enabled, hooks.path) or fix `hook_path` in the agent's runtime config."
            )
        if code == 400:
            error = _json_object(body).get("error")
            said = excerpt(str(error) if error else body, secrets)
            if "agentid" in said.lower():
                return AgentBadStatus(
                    f'{who} refused the hook ("{said}"); set `agent_id` to an OpenClaw agent id '
                    "listed in the gateway's hooks.allowedAgentIds.",
                    code="agent_unknown",
                )
            return AgentBadStatus(
                f'{who} refused the hook as a bad request ("{said}"); check the gateway\'s hooks '
                "settings and version (fleetbot speaks openclaw@2026.9.6)."
            )
        return bad_status(who, response, body, secrets)

    async def probe(self, agent_id: str) -> Probe:
        """POST `{}` with the token: 400 ("message required") means reachable and the token
        accepted, without starting a turn."""
        target = f"the OpenClaw hooks at {public_url(self._url)}"
        ref = self._config.token_ref()
        token = ref.resolve(self._env)
        if token is None:
            return Probe(
                ok=False,
                target=target,
                problem="the hooks token is empty or missing",
                fix=f"Put the gateway's hooks.token in {ref.describe()}.",
                code=SECRET_MISSING,
            )
        answer = await self._knock(
            "POST",
            self._url,
            target=target,
            fix="Check `url` and that the gateway is running and reachable from this host.",
            content=b"{}",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            secrets=[token],
        )
        if isinstance(answer, Probe):
            return answer
        code, status = answer.status_code, status_line(answer)
        # 400: the token passed and the empty body was refused; a 2xx comes from a mapping path.
        if code == 400 or answer.is_success:
            return Probe(ok=True, target=target)
        if code in (401, 403):
            return Probe(
                ok=False,
                target=target,
                problem=f"{target} answered {status}: the hooks token was refused",
                fix=f"Put the gateway's hooks.token in {ref.describe()} (not the gateway token).",
                code="runtime_auth",
            )
        if code == 429:
            problem, fix = _lockout(target, answer, self._clock(), ref.describe())
            return Probe(
                ok=False,
                target=target,
                problem=problem,
                fix=f"{fix[0].upper()}{fix[1:]}.",
                code=_LOCKED,
            )
        if code == 404:
            return Probe(
                ok=False,
                target=target,
                problem=f"{target} answered {status}: no hooks endpoint there",
                fix="Enable the gateway's hooks (hooks.enabled, hooks.path) or fix `hook_path`.",
                code="runtime_bad_status",
            )
        return Probe(
            ok=False,
            target=target,
            problem=f"{target} answered {status}",
            fix="Check the gateway's logs and that it is an OpenClaw gateway.",
            code=UNREACHABLE if code >= 500 else "runtime_bad_status",
        )


_LOCKED = "runtime_locked_out"


def _lockout(who: str, response: httpx.Response, now: float, where: str) -> tuple[str, str]:
    """What a 429 from the hooks means, and what to do: (problem, fix)."""
    wait = retry_after(response, now)
    after = f"Retry-After: {wait:.0f} s" if wait is not None else "no Retry-After"
    return (
        f"{who} locked fleetbot out after repeated bad logins ({status_line(response)}, {after})",
        f"fix the hooks token in {where} (it must equal hooks.token in the gateway's config): "
        "the right token is let in at once, retrying a wrong one only extends the lockout",
    )


def _json_object(body: bytes) -> dict[str, Any]:
    """`body` as a JSON object, or {} (a non-JSON 2xx is still an acknowledgement)."""
    try:
        data = json.loads(body) if body.strip() else None
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
