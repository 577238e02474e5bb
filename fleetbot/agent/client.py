"""The agent API over HTTP, for `fleetbot agent`: one call per command, every refusal an AgentError.

Retries happen here, and only where nothing can have been recorded twice: a refused connection
(the request never arrived: fleetbot restarting) and a 503 (the store changed nothing).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from fleetbot.agent.errors import END_TURN, ERROR, UNREACHABLE, AgentError, explain

TIMEOUT = 30.0  # seconds for one request; a long poll adds its own wait to it
CONNECT_RETRIES = (0.5, 1.5)  # waits before the 2nd and 3rd try of a refused connection
STORE_RETRIES = 2  # 503s retried, each after its Retry-After (capped below)
MAX_RETRY_AFTER = 5.0


def api_base(url: str) -> str:
    """`http://host:8080`, `…/` and `…/api/v1` all mean the same API."""
    url = url.strip().rstrip("/")
    return url.removesuffix("/api/v1")


class Client:
    """fleetbot's agent API at `api_url`, as the agent whose `token` it is."""

    def __init__(
        self,
        api_url: str,
        token: str,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api_url = api_base(api_url)
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.api_url + "/api/v1",
            headers={"Authorization": f"Bearer {token}", "User-Agent": "fleetbot-agent"},
            timeout=TIMEOUT,
            transport=transport,
            # Plain http has no certificate to check, and loading the CA bundle is a third of
            # a command's start-up (70 ms); https verifies as usual. Redirects are not followed,
            # so an http URL never turns into an unverified https one.
            verify=self.api_url.startswith("https://"),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        params: dict[str, Any] | None = None,
        wait: float = 0.0,
    ) -> Any:
        """The answer's JSON; AgentError for anything but a 2xx. `wait`: a long poll's seconds."""
        timeout = httpx.Timeout(TIMEOUT + wait, connect=10.0)
        connects, stores = list(CONNECT_RETRIES), STORE_RETRIES
        while True:
            try:
                answer = self._http.request(method, path, json=body, params=params, timeout=timeout)
            except httpx.ConnectError as exc:
                if connects:
                    self._sleep(connects.pop(0))
                    continue
                raise self._unreachable(f"no connection: {_reason(exc)}") from exc
            except httpx.TimeoutException as exc:
                raise self._unreachable(
                    f"no answer within {TIMEOUT + wait:.0f} s; what you sent may or may not have "
                    "been recorded (`fleetbot agent show` tells)"
                ) from exc
            except httpx.TransportError as exc:
                raise self._unreachable(_reason(exc)) from exc
            if answer.status_code == 503 and stores:
                stores -= 1
                self._sleep(_retry_after(answer.headers.get("Retry-After")))
                continue
            return self._decode(answer)

    def _unreachable(self, why: str) -> AgentError:
        return AgentError(
            UNREACHABLE,
            f"cannot reach fleetbot's API at {self.api_url} ({why}); {END_TURN}",
            "unreachable",
        )

    def _decode(self, answer: httpx.Response) -> Any:
        try:
            body = answer.json()
        except ValueError:
            body = None
        if answer.is_success:
            if body is None and answer.content:
                raise AgentError(
                    ERROR,
                    f"{self.api_url} answered {answer.status_code} with something that is not "
                    "JSON; is FLEETBOT_API_URL fleetbot's API?",
                    "not_json",
                    answer.status_code,
                )
            return body
        if body is None and answer.status_code == 404:
            body = {"error": "not_found", "detail": f"{self.api_url} has no such route"}
        raise explain(answer.status_code, body, answer.headers.get("Retry-After"))


def _retry_after(value: str | None) -> float:
    try:
        seconds = float(value) if value is not None else 1.0
    except ValueError:
        seconds = 1.0
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _reason(exc: httpx.TransportError) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__
