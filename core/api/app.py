"""The agent HTTP API (`/api/v1`) assembled: a thin adapter from HTTP to the service facade.

`create_app` builds the FastAPI app around core.api.routes: the service, the guard and the
metrics go on `app.state` (core.api.dependencies reads them back per request), the error
answers come from core.api.errors, and every request is counted and timed per route. A body
over `api.max_body` is refused with 413 before anything else reads it, the guard included.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.api import errors
from core.api.errors import error_response
from core.api.guard import Guard
from core.api.routes import router
from core.metrics import Metrics
from core.service import FleetService


def create_app(service: FleetService, guard: Guard, metrics: Metrics) -> FastAPI:
    app = FastAPI(
        title="fleetbot agent API",
        version="1",
        description="What agents call with their token: inbox, issues, runs, summaries.",
        exception_handlers=errors.HANDLERS,
        # The route table as it is: include_router would wrap it in a lazy layer that FastAPI
        # matches twice per request, a sixth more Python calls for an inbox request.
        routes=router.routes,
    )
    app.state.service = service
    app.state.guard = guard
    app.state.metrics = metrics
    app.state.limits = service.config.api  # core.api.server serves with these too
    app.state.store_warnings = errors.Throttle(errors.STORE_WARNING_EVERY)
    app.add_middleware(_LimitBody, limit=service.config.api.max_body)
    app.add_middleware(_Measure, metrics=metrics)  # outermost: 413s are counted too
    _document_bearer(app)
    return app


class _LimitBody:
    """413 for a body over `limit` bytes, before the app reads any of it: at once by its
    Content-Length, or for a chunked body as soon as the bytes received pass the limit (the
    body is then read here and handed on whole). The server holds a body to its
    Content-Length, so a declared length needs no counting."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length: bytes | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = True
        if chunked:
            replay = await self._read_chunked(scope, receive, send)
            if replay is None:
                return
            receive = replay
        elif length is not None and length.isdigit() and int(length) > self.limit:
            await self._refuse(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _read_chunked(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """The whole body, if within the limit, as a `receive` that replays it; else None
        (after a 413, or when the client left)."""
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None  # the client left: nobody to answer
            part = message.get("body", b"")
            size += len(part)
            if size > self.limit:
                await self._refuse(scope, receive, send)
                return None
            parts.append(part)
            if not message.get("more_body", False):
                break
        whole: Message | None = {"type": "http.request", "body": b"".join(parts)}

        async def replay() -> Message:
            nonlocal whole
            if whole is None:
                return await receive()  # after the body: a disconnect, when it comes
            message, whole = whole, None
            return message

        return replay

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413,
            "body_too_large",
            f"the body is over the API's limit of {self.limit} bytes (api.max_body); send "
            "less: no field of any request needs that much",
        )
        # The rest of the body is never read, so the connection cannot carry another request.
        response.headers["connection"] = "close"
        await response(scope, receive, send)


class _Measure:
    """Counts and times requests per route template (plain ASGI: no per-request overhead of
    BaseHTTPMiddleware)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(name, str(status)).inc()
            self.metrics.latency.labels(name).observe(time.perf_counter() - start)


def _document_bearer(app: FastAPI) -> None:
    """Declare the agent token as the bearer scheme of every /api/v1 operation."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = build()  # FastAPI keeps it as app.openapi_schema; completed here in place
        doc.setdefault("components", {})["securitySchemes"] = {
            "agentToken": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "The agent's token: the contents of its token file, or the "
                "per-run token its runtime was given.",
            }
        }
        for path, operations in doc["paths"].items():
            if path.startswith("/api/v1/"):
                for operation in operations.values():
                    operation["security"] = [{"agentToken": []}]
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
