"""The agent HTTP API (`/api/v1`) assembled: a thin adapter from HTTP to the service facade.

`create_app` builds the FastAPI app around core.api.routes: the service, the guard and the
metrics go on `app.state` (core.api.dependencies reads them back per request), the error
answers come from core.api.errors, and every request is counted and timed per route.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.api import errors
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
    app.add_middleware(_Measure, metrics=metrics)
    _document_bearer(app)
    return app


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
