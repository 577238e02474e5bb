"""The `http` runtime: POST the dispatch as JSON to the agent's URL and read its answer.

Also home of the plumbing the openclaw runtime shares: one POST bounded by the run's deadline,
httpx errors translated into core.errors, and URLs and bodies described without their secrets.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import urlsplit, urlunsplit

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from core.config import HttpRuntime
from core.errors import AgentBadReply, AgentBadStatus, AgentFailure, AgentTimeout, AgentUnreachable
from core.models import RunOutcome
from core.runtimes.base import ACCEPTED, Dispatch, DispatchResult, Runtime

MAX_BODY = 64 * 1024  # an acknowledgement is tiny; never buffer whatever a broken agent streams
EXCERPT_CHARS = 200
SECRET_MISSING = "runtime_secret_missing"
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_REPLY_SHAPE = '{"status": "accepted" | "done" | "failed" | "blocked", "summary": "…"}'


class AgentReply(BaseModel):
    """What an http agent may answer with a 2xx; other keys in the object are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    status: Literal["accepted", "done", "failed", "blocked"]
    summary: str = ""


def public_url(url: str) -> str:
    """`url` fit for messages and logs: no user:password@, no query (either may hold a secret)."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return "(an unparseable URL)"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def excerpt(body: bytes | str, secrets: Iterable[str] = ()) -> str:
    """A one-line, printable excerpt of `body` with every secret redacted, ≤ 200 characters."""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    # Redact before cutting, or a secret split at the cut would leak its first half.
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    text = " ".join(_UNPRINTABLE.sub(" ", text).split())
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


def status_line(response: httpx.Response) -> str:
    """'503 Service Unavailable', from the standard phrase rather than what the server claims."""
    try:
        phrase = HTTPStatus(response.status_code).phrase
    except ValueError:
        phrase = response.reason_phrase
    return f"{response.status_code} {phrase}".strip()


def time_left(job: Dispatch, now: float, who: str) -> float:
    """Seconds until the run's deadline; AgentTimeout if it has already passed."""
    left = job.deadline - now
    if left <= 0:
        raise AgentTimeout(
            f"run {job.run_id} reached its deadline before {who} was called; "
            "check the run timeout and whether dispatches are queueing up."
        )
    return left


async def post_json(
    client: httpx.AsyncClient,
    url: str,
    payload: dict[str, Any],
    *,
    headers: Mapping[str, str],
    within: float,
    secrets: Iterable[str],
    who: str,
    refused_hint: str = "",
) -> tuple[httpx.Response, bytes]:
    """POST `payload` within `within` seconds; return a 2xx response and its (capped) body."""
    secrets = list(secrets)
    try:
        # httpx's timeout is per phase (connect, write, each read); this one bounds the whole.
        async with asyncio.timeout(within):
            async with client.stream(
                "POST", url, json=payload, headers=dict(headers), timeout=within
            ) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) >= MAX_BODY:
                        break
    except (TimeoutError, httpx.TimeoutException) as exc:
        raise AgentTimeout(
            f"{who} did not answer within {within:.1f} s; "
            "check that it is running and not overloaded, or raise the runtime's timeout."
        ) from exc
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        raise AgentUnreachable(
            f"{who} has an unusable URL ({excerpt(str(exc), secrets)}); "
            "fix `url` in the agent's runtime config."
        ) from exc
    except httpx.TransportError as exc:
        reason = excerpt(str(exc), secrets) or type(exc).__name__
        raise AgentUnreachable(
            f"cannot reach {who} ({reason}); check the URL and that the agent is running "
            "and reachable from this host."
        ) from exc
    except httpx.HTTPError as exc:
        raise AgentBadReply(
            f"{who} sent a reply that cannot be read ({type(exc).__name__}); check its logs."
        ) from exc
    data = bytes(body[:MAX_BODY])
    if response.is_success:
        return response, data
    detail = f": {excerpt(data, secrets)}" if data.strip() else ""
    if response.status_code in (401, 403) and refused_hint:
        raise AgentBadStatus(f"{who} answered {status_line(response)}{detail}: {refused_hint}")
    if response.is_redirect and "location" in response.headers:
        where = public_url(response.headers["location"])
        raise AgentBadStatus(
            f"{who} answered {status_line(response)} pointing to {where}; "
            "put the final address in the runtime's `url`."
        )
    raise AgentBadStatus(f"{who} answered {status_line(response)}{detail}; check the agent's logs.")


class HttpClientRuntime(Runtime):
    """A runtime that owns one httpx client, closed once by `aclose()`."""

    def __init__(self, env: Mapping[str, str], transport: httpx.AsyncBaseTransport | None) -> None:
        self._env = env
        # trust_env=False: core never reads os.environ behind the config's back (no proxy vars).
        self._client = httpx.AsyncClient(
            transport=transport, trust_env=False, follow_redirects=False
        )
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise AgentFailure(f"the {self.kind} runtime was closed; fleetbot is shutting down.")

    async def aclose(self) -> None:
        """Close the HTTP client. Idempotent."""
        if not self._closed:
            self._closed = True
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class HttpAgentRuntime(HttpClientRuntime):
    """Wakes an agent by POSTing the dispatch (`Dispatch.wire()`) to its URL."""

    kind = "http"

    def __init__(
        self,
        config: HttpRuntime,
        env: Mapping[str, str],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(env, transport)
        self._config = config
        self._clock = clock

    async def dispatch(self, job: Dispatch) -> DispatchResult:
        """POST the job; an empty or `accepted` 2xx hands the run over, a verdict ends it."""
        self._check_open()
        who = f"agent at {public_url(self._config.url)}"
        headers = dict(self._config.headers)
        secrets = [job.token]
        # Resolved per dispatch so a rotated secret file is picked up without a restart.
        for name, ref in self._config.secret_headers.items():
            value = ref.resolve(self._env)
            if value is None:
                raise AgentFailure(
                    f"the secret for header {name} of {who} is empty or missing; "
                    f"put it in {ref.describe()}.",
                    code=SECRET_MISSING,
                )
            headers[name] = value
            secrets.append(value)
        timeout = min(self._config.timeout, time_left(job, self._clock(), who))
        response, body = await post_json(
            self._client,
            self._config.url,
            job.wire(),
            headers=headers,
            within=timeout,
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
