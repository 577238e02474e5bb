"""What the http and openclaw runtimes share: waking an agent with one JSON POST.

`WebhookRuntime` owns the runtime's httpx client (closed by `aclose()`), reads secrets when a
dispatch needs them, bounds the POST by the runtime's timeout and the run's deadline, and
translates every httpx error into core.errors once:

    httpx.TimeoutException, or the whole POST over time → AgentTimeout
    httpx.InvalidURL, UnsupportedProtocol               → AgentUnreachable (fix the URL)
    httpx.TransportError                                → AgentUnreachable (cannot connect)
    any other httpx.HTTPError                           → AgentBadReply
    a non-2xx answer                                    → AgentBadStatus

URLs and bodies in messages are described without their secrets (`public_url`, `excerpt`).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx

from core.config import HttpRuntime, OpenClawRuntime, SecretRef
from core.errors import AgentBadReply, AgentBadStatus, AgentFailure, AgentTimeout, AgentUnreachable
from core.runtimes.base import Dispatch, Runtime

MAX_BODY = 64 * 1024  # an acknowledgement is tiny; never buffer whatever a broken agent streams
EXCERPT_CHARS = 200
SECRET_MISSING = "runtime_secret_missing"
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
ConfigT = TypeVar("ConfigT", bound=HttpRuntime | OpenClawRuntime)


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


class WebhookRuntime(Runtime, Generic[ConfigT]):
    """A runtime that wakes its agent with a POST through one httpx client of its own."""

    def __init__(
        self,
        config: ConfigT,
        env: Mapping[str, str],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config: ConfigT = config
        self._env = env
        self._clock = clock
        # trust_env=False: core never reads os.environ behind the config's back (no proxy vars).
        self._client = httpx.AsyncClient(
            transport=transport, trust_env=False, follow_redirects=False
        )

    async def _close(self) -> None:
        await self._client.aclose()

    def _secret(self, ref: SecretRef, what: str, note: str = "") -> str:
        """The secret `ref` points at, read now so a rotated file is picked up without a
        restart; AgentFailure naming where to put it if it is empty or missing."""
        value = ref.resolve(self._env)
        if value is None:
            raise AgentFailure(
                f"{what} is empty or missing; put it in {ref.describe()}{note}.",
                code=SECRET_MISSING,
            )
        return value

    def _time_left(self, job: Dispatch, who: str) -> float:
        """Seconds until the run's deadline; AgentTimeout if it has already passed."""
        left = job.deadline - self._clock()
        if left <= 0:
            raise AgentTimeout(
                f"run {job.run_id} reached its deadline before {who} was called; "
                "check the run timeout and whether dispatches are queueing up."
            )
        return left

    async def _post(
        self,
        url: str,
        payload: dict[str, Any],
        *,
        left: float,
        headers: Mapping[str, str],
        secrets: Iterable[str],
        who: str,
        refused_hint: str = "",
    ) -> tuple[httpx.Response, bytes]:
        """POST `payload` within the runtime's timeout and `left` (seconds to the deadline);
        return a 2xx response and its (capped) body, or raise the matching AgentFailure."""
        within = min(self._config.timeout, left)
        secrets = list(secrets)
        try:
            # httpx's timeout is per phase (connect, write, each read); this one bounds the whole.
            async with asyncio.timeout(within):
                async with self._client.stream(
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
        raise AgentBadStatus(
            f"{who} answered {status_line(response)}{detail}; check the agent's logs."
        )
