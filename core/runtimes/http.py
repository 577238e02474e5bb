"""The `http` runtime: POST the dispatch as JSON to the agent's URL and read its answer.

The agent may answer at once that it accepted the run (the run is handed over: the agent reports
through the API, or the deadline ends it), or only when its work is done, with the outcome (the run
ends with it). So the POST waits for the answer until the run's deadline. Every attempt of a run
sends the same bytes with `Idempotency-Key: <run id>`: an agent must start one turn per key, since
a lost answer is retried (see core.runtimes.webhook).
"""

from __future__ import annotations

import json
from typing import Literal

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from core.config import HttpRuntime
from core.errors import AgentBadReply
from core.models import RunOutcome
from core.runtimes.base import ACCEPTED, SECRET_MISSING, Dispatch, DispatchResult, Probe
from core.runtimes.webhook import (
    WebhookRuntime,
    bad_status,
    excerpt,
    json_body,
    public_url,
    status_line,
)

_REPLY_SHAPE = '{"status": "accepted" | "done" | "failed" | "blocked", "summary": "…"}'


class AgentReply(BaseModel):
    """What an http agent may answer with a 2xx; other keys in the object are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    status: Literal["accepted", "done", "failed", "blocked"]
    summary: str = ""


class HttpAgentRuntime(WebhookRuntime[HttpRuntime]):
    """Wakes an agent by POSTing the dispatch (`Dispatch.wire()`) to its URL."""

    kind = "http"

    async def dispatch(self, job: Dispatch) -> DispatchResult:
        """POST the job; an empty or `accepted` 2xx hands the run over, a verdict ends it."""
        self._check_open()
        who = f"agent at {public_url(self._config.url)}"
        headers = dict(self._config.headers)
        secrets = [job.token]
        for name, ref in self._config.secret_headers.items():
            headers[name] = self._secret(ref, f"the secret for header {name} of {who}")
            secrets.append(headers[name])
        headers["Idempotency-Key"] = job.run_id
        self._time_left(job, who)
        response, body = await self._deliver(
            self._config.url,
            json_body(job.wire()),
            deadline=job.deadline,
            headers=headers,
            secrets=secrets,
            who=who,
        )
        if not response.is_success:
            raise bad_status(who, response, body, secrets)
        return _read_reply(who, response, body, secrets)

    async def probe(self, agent_id: str) -> Probe:
        """Reachable if a GET of the URL gets any HTTP answer (even 404 or 405) in time."""
        target = f"the agent at {public_url(self._config.url)}"
        for name, ref in self._config.secret_headers.items():
            if ref.resolve(self._env) is None:
                return Probe(
                    ok=False,
                    target=target,
                    problem=f"the secret for header {name} is empty or missing",
                    fix=f"Put it in {ref.describe()}.",
                    code=SECRET_MISSING,
                )
        answer = await self._knock(
            "GET",
            self._config.url,
            target=target,
            fix="Check `url` and that the agent is running and reachable from this host.",
        )
        return answer if isinstance(answer, Probe) else Probe(ok=True, target=target)


def _read_reply(
    who: str, response: httpx.Response, body: bytes, secrets: list[str]
) -> DispatchResult:
    """Turn a 2xx body into a DispatchResult, or AgentBadReply."""
    if not body.strip():
        return ACCEPTED
    status = status_line(response)
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise AgentBadReply(
            f'{who} answered {status} with a body that is not JSON ("{excerpt(body, secrets)}"); '
            f"it should answer nothing or {_REPLY_SHAPE}."
        ) from exc
    try:
        reply = AgentReply.model_validate(data)
    except ValidationError as exc:
        raise AgentBadReply(
            f'{who} answered {status} with JSON of the wrong shape ("{excerpt(body, secrets)}"); '
            f"it should answer nothing or {_REPLY_SHAPE}."
        ) from exc
    if reply.status == "accepted":
        return ACCEPTED
    return DispatchResult(finished=True, outcome=RunOutcome(reply.status), summary=reply.summary)
