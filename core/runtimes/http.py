"""The `http` runtime: POST the dispatch as JSON to the agent's URL and read its answer."""

from __future__ import annotations

import json
from typing import Literal

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from core.config import HttpRuntime
from core.errors import AgentBadReply
from core.models import RunOutcome
from core.runtimes.base import ACCEPTED, Dispatch, DispatchResult
from core.runtimes.webhook import WebhookRuntime, excerpt, public_url, status_line

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
        response, body = await self._post(
            self._config.url,
            job.wire(),
            left=self._time_left(job, who),
            headers=headers,
            secrets=secrets,
            who=who,
        )
        return _read_reply(who, response, body, secrets)


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
