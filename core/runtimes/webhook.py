"""What the http and openclaw-hooks runtimes share: waking an agent with one JSON POST per run.

`WebhookRuntime` owns the runtime's httpx client (closed by `aclose()`), reads secrets when a
dispatch needs them, and delivers each run's request with `_deliver`: one body, built once, sent
byte-identical with the same idempotency key on every attempt, so an agent that dedupes by key
never starts a second turn for a retry. An attempt connects within the runtime's `timeout` and then
waits for the answer until the run's deadline, because an agent may answer only when its turn ends.

Transient failures are retried inside the run's deadline, never past it, with the same request:
connection refused, reset or dropped, a connect or read that timed out before the deadline,
502/503/504, and 429 with Retry-After (where the kind allows; never sooner than it asks). The
backoff doubles from 0.5 s to 8 s. They end the dispatch only when the next try would not fit
before the deadline. httpx errors are translated into core.errors once:

    the run's deadline reached while waiting           → AgentTimeout
    httpx.InvalidURL, UnsupportedProtocol              → AgentUnreachable (fix the URL), final
    httpx.TimeoutException before the deadline         → retried, then AgentTimeout
    httpx.TransportError                               → retried, then AgentUnreachable
    any other httpx.HTTPError                          → AgentBadReply, final
    502/503/504, 429 with Retry-After                  → retried, then AgentBadStatus
    any other answer                                   → returned; the kind reads it (`bad_status`)

URLs and bodies in messages are described without their secrets (`public_url`, `excerpt`).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx

from core.config import HttpRuntime, OpenClawRuntime, SecretRef
from core.errors import AgentBadReply, AgentBadStatus, AgentFailure, AgentTimeout, AgentUnreachable
from core.runtimes.base import Dispatch, Probe, Runtime, read_secret

MAX_BODY = 64 * 1024  # an answer is tiny; never buffer whatever a broken agent streams
EXCERPT_CHARS = 200
UNREACHABLE = "runtime_unreachable"
TRANSIENT_STATUSES = frozenset({502, 503, 504})
BACKOFF_FIRST = 0.5
BACKOFF_CAP = 8.0
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
ConfigT = TypeVar("ConfigT", bound=HttpRuntime | OpenClawRuntime)
Sleep = Callable[[float], Awaitable[object]]


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


def json_body(payload: Any) -> bytes:
    """`payload` as the exact bytes every attempt of a run sends."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def backoff(retry: int) -> float:
    """Seconds before retry number `retry` (1, 2, …): 0.5, 1, 2, 4, 8, 8, …"""
    return min(BACKOFF_CAP, BACKOFF_FIRST * 2.0 ** (retry - 1))


def retry_after(response: httpx.Response, now: float) -> float | None:
    """The answer's Retry-After in seconds from `now` (delta-seconds or an HTTP date), or None."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def bad_status(
    who: str, response: httpx.Response, body: bytes, secrets: Iterable[str]
) -> AgentBadStatus:
    """The failure for a non-2xx answer no kind has a better word for."""
    detail = f": {excerpt(body, secrets)}" if body.strip() else ""
    if response.is_redirect and "location" in response.headers:
        where = public_url(response.headers["location"])
        return AgentBadStatus(
            f"{who} answered {status_line(response)} pointing to {where}; "
            "put the final address in the runtime's `url`."
        )
    return AgentBadStatus(
        f"{who} answered {status_line(response)}{detail}; check the agent's logs."
    )


class WebhookRuntime(Runtime, Generic[ConfigT]):
    """A runtime that wakes its agent with a POST through one httpx client of its own."""

    def __init__(
        self,
        config: ConfigT,
        env: Mapping[str, str],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._config: ConfigT = config
        self._env = env
        self._clock = clock
        self._sleep = sleep
        # trust_env=False: core never reads os.environ behind the config's back (no proxy vars).
        self._client = httpx.AsyncClient(
            transport=transport, trust_env=False, follow_redirects=False
        )

    async def _close(self) -> None:
        await self._client.aclose()

    def _secret(self, ref: SecretRef, what: str, note: str = "") -> str:
        return read_secret(ref, self._env, what, note)

    def _time_left(self, job: Dispatch, who: str) -> float:
        """Seconds until the run's deadline; AgentTimeout if it has already passed."""
        left = job.deadline - self._clock()
        if left <= 0:
            raise AgentTimeout(
                f"run {job.run_id} reached its deadline before {who} was called; "
                "check the run timeout and whether dispatches are queueing up."
            )
        return left

    async def _deliver(
        self,
        url: str,
        content: bytes,
        *,
        deadline: float,
        headers: Mapping[str, str],
        secrets: Iterable[str],
        who: str,
        retry_429: bool = True,
    ) -> tuple[httpx.Response, bytes]:
        """POST `content` until an answer that is not transient, retrying transient failures
        (see the module docstring) with the identical request while the deadline allows.
        Returns that answer and its (capped) body, or raises the matching AgentFailure."""
        secrets = list(secrets)
        headers = {"Content-Type": "application/json", **headers}
        started = self._clock()
        retries = 0
        while True:
            left = deadline - self._clock()
            if left <= 0:
                raise AgentTimeout(
                    f"the run's deadline passed before {who} was called; "
                    "check the run timeout and whether dispatches are queueing up."
                )
            wait: float | None = None
            try:
                response, body = await self._attempt(url, content, headers, left)
            except TimeoutError as exc:
                raise AgentTimeout(
                    f"{who} did not answer within {left:.1f} s, when the run's deadline came; "
                    "check that it is running and not stuck, or raise the run timeout."
                ) from exc
            except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
                raise AgentUnreachable(
                    f"{who} has an unusable URL ({excerpt(str(exc), secrets)}); "
                    "fix `url` in the agent's runtime config."
                ) from exc
            except httpx.TimeoutException as exc:
                phase = "accept a connection" if _connecting(exc) else "answer"
                last = _Transient(
                    AgentTimeout,
                    f"{who} did not {phase} in time",
                    "check that it is running and not overloaded, or raise the runtime's timeout",
                    exc,
                )
            except httpx.TransportError as exc:
                reason = excerpt(str(exc), secrets) or type(exc).__name__
                last = _Transient(
                    AgentUnreachable,
                    f"cannot reach {who} ({reason})",
                    "check the URL and that it is running and reachable from this host",
                    exc,
                )
            except httpx.HTTPError as exc:
                raise AgentBadReply(
                    f"{who} sent a reply that cannot be read ({type(exc).__name__}); "
                    "check its logs."
                ) from exc
            else:
                if response.status_code == 429 and retry_429:
                    wait = retry_after(response, self._clock())
                if response.status_code not in TRANSIENT_STATUSES and wait is None:
                    return response, body
                asked = f" asking to retry in {wait:.0f} s" if wait is not None else ""
                detail = f" ({excerpt(body, secrets)})" if body.strip() else ""
                last = _Transient(
                    AgentBadStatus,
                    f"{who} answered {status_line(response)}{asked}{detail}",
                    "check its logs and load",
                )
            retries += 1
            # Retry-After is the least to wait; the backoff keeps "retry in 0 s" from spinning.
            pause = backoff(retries) if wait is None else max(wait, backoff(retries))
            if self._clock() + pause >= deadline:
                spent = self._clock() - started
                tried = f"tried {retries} times over {spent:.1f} s; " if retries > 1 else ""
                raise last.cls(
                    f"{last.problem} ({tried}the run's deadline is too near to try again); "
                    f"{last.fix}."
                ) from last.cause
            await self._sleep(pause)

    async def _attempt(
        self, url: str, content: bytes, headers: Mapping[str, str], left: float
    ) -> tuple[httpx.Response, bytes]:
        """One POST: connect within the runtime's timeout, then wait up to `left` for the answer."""
        connect = min(self._config.timeout, left)
        timeout = httpx.Timeout(connect=connect, write=connect, pool=connect, read=left)
        # httpx's timeouts are per phase (connect, write, each read); this one bounds the whole.
        async with (
            asyncio.timeout(left),
            self._client.stream(
                "POST", url, content=content, headers=dict(headers), timeout=timeout
            ) as response,
        ):
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) >= MAX_BODY:
                    break
        return response, bytes(body[:MAX_BODY])

    async def _knock(
        self,
        method: str,
        url: str,
        *,
        target: str,
        fix: str,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        secrets: Iterable[str] = (),
    ) -> httpx.Response | Probe:
        """One request for a self-test, within the runtime's timeout: the answer (whatever its
        status), or a failed Probe saying why nothing answered. Starts no retry."""
        within = self._config.timeout
        try:
            async with (
                asyncio.timeout(within),
                self._client.stream(
                    method, url, content=content, headers=dict(headers or {}), timeout=within
                ) as response,
            ):
                pass  # the status is all a self-test needs; the body is never read
        except (TimeoutError, httpx.TimeoutException):
            problem = f"{target} did not answer within {within:g} s"
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            return Probe(
                ok=False,
                target=target,
                problem=f"{target} has an unusable URL ({excerpt(str(exc), secrets)})",
                fix="Fix `url` in the agent's runtime config.",
                code=UNREACHABLE,
            )
        except httpx.HTTPError as exc:
            reason = excerpt(str(exc), secrets) or type(exc).__name__
            problem = f"cannot reach {target} ({reason})"
        else:
            return response
        return Probe(ok=False, target=target, problem=problem, fix=fix, code=UNREACHABLE)


@dataclass(frozen=True, slots=True)
class _Transient:
    """A failed attempt that is worth another: what to raise if no other fits in time."""

    cls: type[AgentFailure]
    problem: str
    fix: str
    cause: BaseException | None = None


def _connecting(exc: httpx.TimeoutException) -> bool:
    return isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
