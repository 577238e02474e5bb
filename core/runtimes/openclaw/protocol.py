"""One operator connection to an OpenClaw gateway over its WebSocket protocol (v4).

Frames are JSON text: `req {type, id, method, params}`, `res {type, id, ok, payload|error}` and
`event {type, event, payload}`. The gateway speaks first (`connect.challenge`); the client
answers with a `connect` request carrying the gateway token; then any method may be called.
`agent` answers twice on one request id: at admission, and again when the turn settles (with
its usage and cost), so `request()` keeps the second answer for `final()`.

websockets' and the socket's errors are translated here, once:

    refused, reset, DNS, TLS, handshake, a close mid-request → GatewayClosed (try again)
    a `res` with ok: false                                   → GatewayError(code, details code)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidURI, WebSocketException

PROTOCOL = 4
SCOPES = ("operator.read", "operator.write")
# The gateway accepts only client ids and modes from its own list; an orchestrator driving
# turns is a backend gateway client.
CLIENT = {"id": "gateway-client", "mode": "backend", "platform": "linux", "displayName": "fleetbot"}
MAX_FRAME = 32 * 1024 * 1024


class GatewayClosed(Exception):
    """The connection could not be made or was lost; nothing says the request failed."""


@dataclass(frozen=True, slots=True)
class GatewayError(Exception):
    """The gateway answered a request with ok: false."""

    method: str
    code: str  # INVALID_REQUEST, UNAVAILABLE, FORBIDDEN, NOT_PAIRED, …
    detail: str  # details.code: AUTH_TOKEN_MISMATCH, AUTH_RATE_LIMITED, …, or ""
    message: str
    retry_after: float | None  # seconds, from retryAfterMs

    def __str__(self) -> str:
        return f"{self.method}: {self.code} {self.detail} {self.message}".strip()

    @classmethod
    def of(cls, method: str, error: object) -> GatewayError:
        err = error if isinstance(error, dict) else {}
        details = err.get("details") if isinstance(err.get("details"), dict) else {}
        after = err.get("retryAfterMs")
        return cls(
            method=method,
            code=str(err.get("code") or "UNKNOWN"),
            detail=str(details.get("code") or "") if details else "",
            message=str(err.get("message") or "no message"),
            retry_after=after / 1000 if isinstance(after, int | float) and after >= 0 else None,
        )


def ws_url(url: str) -> str:
    """The gateway serves HTTP and WebSocket on one port: http(s):// names it as well."""
    if url.startswith("http://"):
        return "ws://" + url[len("http://") :]
    if url.startswith("https://"):
        return "wss://" + url[len("https://") :]
    return url


class GatewayConnection:
    """`async with GatewayConnection(url, token, timeout) as gw:` — connected and authenticated."""

    def __init__(self, url: str, token: str, *, timeout: float, version: str = "0") -> None:
        self.url = ws_url(url)
        self._token = token
        self._timeout = timeout
        self._version = version
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._finals: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._lost: GatewayClosed | None = None
        self.hello: dict[str, Any] = {}

    async def __aenter__(self) -> Self:
        try:
            await asyncio.wait_for(self._open(), self._timeout)
        except TimeoutError:
            await self.aclose()
            raise GatewayClosed(f"no answer within {self._timeout:g}s while connecting") from None
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _open(self) -> None:
        try:
            self._ws = await connect(
                self.url, open_timeout=self._timeout, max_size=MAX_FRAME, ping_interval=20
            )
        except InvalidURI as exc:
            raise GatewayClosed(f"the URL is not a WebSocket URL ({exc})") from None
        except (OSError, InvalidHandshake, WebSocketException) as exc:
            raise GatewayClosed(_describe(exc)) from None
        # The server's first frame is the challenge; `connect` must be the first request.
        await self._recv_event("connect.challenge")
        self._reader = asyncio.create_task(self._read(), name="openclaw-gateway-reader")
        self.hello = await self.request(
            "connect",
            {
                "minProtocol": PROTOCOL,
                "maxProtocol": PROTOCOL,
                "client": {**CLIENT, "version": self._version},
                "role": "operator",
                "scopes": list(SCOPES),
                "caps": [],
                "auth": {"token": self._token},
            },
        )

    async def _recv_event(self, name: str) -> dict[str, Any]:
        assert self._ws is not None
        while True:
            frame = await self._recv()
            if frame.get("type") == "event" and frame.get("event") == name:
                payload = frame.get("payload")
                return payload if isinstance(payload, dict) else {}

    async def _recv(self) -> dict[str, Any]:
        assert self._ws is not None
        try:
            raw = await self._ws.recv()
        except WebSocketException as exc:
            raise GatewayClosed(_describe(exc)) from None
        try:
            frame = json.loads(raw)
        except ValueError:
            return {}
        return frame if isinstance(frame, dict) else {}

    async def _read(self) -> None:
        try:
            while True:
                frame = await self._recv()
                if frame.get("type") != "res":
                    continue  # events: the outcome is asked for with agent.wait, not streamed
                rid = str(frame.get("id"))
                future = self._pending.pop(rid, None) or self._finals.get(rid)
                if future is not None and not future.done():
                    future.set_result(frame)
        except GatewayClosed as exc:
            self._lost = exc
        finally:
            lost = self._lost or GatewayClosed("the gateway closed the connection")
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(lost)
            self._pending.clear()
            for future in self._finals.values():
                future.cancel()  # nobody need hear of a settling answer that cannot come

    async def request(
        self, method: str, params: dict[str, Any], *, within: float | None = None
    ) -> dict[str, Any]:
        """Send `method`; the payload of its answer, or GatewayError / GatewayClosed."""
        _, payload = await self._call(method, params, within, final=False)
        return payload

    async def agent(self, params: dict[str, Any], *, within: float) -> tuple[dict[str, Any], str]:
        """Start a turn: its admission payload, and the request id whose settling answer
        (usage, cost, reply) `final()` returns."""
        request_id, payload = await self._call("agent", params, within, final=True)
        return payload, request_id

    async def _call(
        self, method: str, params: dict[str, Any], within: float | None, *, final: bool
    ) -> tuple[str, dict[str, Any]]:
        if self._ws is None or self._lost is not None:
            raise self._lost or GatewayClosed("not connected")
        rid = str(uuid.uuid4())
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._pending[rid] = answer
        if final:
            self._finals[rid] = loop.create_future()
        frame = {"type": "req", "id": rid, "method": method, "params": params}
        try:
            await self._ws.send(json.dumps(frame))
        except WebSocketException as exc:
            self._pending.pop(rid, None)
            self._finals.pop(rid, None)
            raise GatewayClosed(_describe(exc)) from None
        try:
            res = await asyncio.wait_for(answer, within)
        except TimeoutError:
            self._pending.pop(rid, None)
            self._finals.pop(rid, None)
            raise
        if not res.get("ok"):
            self._finals.pop(rid, None)
            raise GatewayError.of(method, res.get("error"))
        payload = res.get("payload")
        return rid, payload if isinstance(payload, dict) else {}

    async def final(self, request_id: str, within: float) -> dict[str, Any] | None:
        """The settling answer of an `agent` request, if it comes within `timeout`."""
        future = self._finals.get(request_id)
        if future is None:
            return None
        try:
            res = await asyncio.wait_for(asyncio.shield(future), within)
        except TimeoutError:
            return None
        except asyncio.CancelledError:
            if future.cancelled():
                return None  # the connection was lost: the answer will not come
            raise
        self._finals.pop(request_id, None)
        return res

    @property
    def methods(self) -> set[str]:
        features = self.hello.get("features")
        names = features.get("methods") if isinstance(features, dict) else None
        return {str(m) for m in names} if isinstance(names, list) else set()

    async def aclose(self) -> None:
        """Close the socket and stop reading (idempotent)."""
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 2)
            # A peer that never answers the close (a stalled proxy, a dying gateway) must not
            # keep the socket: drop it whatever state the handshake reached.
            with contextlib.suppress(Exception):
                ws.transport.abort()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
            self._reader = None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the gateway running on that port?)"
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())[:200]
