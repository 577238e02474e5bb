"""What an endpoint can ask for, as typed `Annotated` parameters FastAPI resolves per request.

`create_app` puts the service, the guard and the metrics on `app.state`; these read them back,
so the endpoints in core.api.routes are plain module-level functions:

- `Authenticated`: an `AgentCall`, the agent a valid token names with its claims and the service
  to act through (the guard refuses any other token with a 401 saying why);
- `Service`, `AppMetrics`: the service and the metrics, for the routes that need no token;
- `IssueId`, `RunId`, `QuestionId`: path ids, bounded; `Wait`: a long poll's seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Query, Request

from core.api.guard import Guard
from core.auth.tokens import Claims
from core.metrics import Metrics
from core.models import Agent
from core.service import FleetService


@dataclass(frozen=True, slots=True)
class AgentCall:
    """A request whose token the guard accepted: who made it, and the service to act through."""

    agent: Agent
    claims: Claims
    service: FleetService


async def _authenticate(request: Request) -> AgentCall:
    # One dependency brings both the caller and the service: each FastAPI dependency costs
    # about 40 Python calls per request, a tenth of an inbox request. The raw header, not a
    # Header() parameter, for the same reason and because the guard gives every defect its
    # own reason code; the OpenAPI document declares the bearer scheme instead
    # (app._document_bearer).
    guard: Guard = request.app.state.guard
    source = request.client.host if request.client is not None else ""
    who = await guard.authenticate(request.headers.get("authorization"), request.url.path, source)
    service: FleetService = request.app.state.service
    return AgentCall(who.agent, who.claims, service)


async def _service(request: Request) -> FleetService:
    service: FleetService = request.app.state.service
    return service


async def _metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


Authenticated = Annotated[AgentCall, Depends(_authenticate)]
Service = Annotated[FleetService, Depends(_service)]
AppMetrics = Annotated[Metrics, Depends(_metrics)]
# Path ids are bounded so a hostile id is a 422 naming it, not a 404 echoing kilobytes of it.
IssueId = Annotated[str, Path(max_length=32, description="An issue id, e.g. ALI-12.")]
RunId = Annotated[str, Path(max_length=64, description="The run id the runtime gave you.")]
QuestionId = Annotated[
    str, Path(max_length=20, description="A question id: 7, or Q7 as people see it.")
]
Wait = Annotated[
    float,
    Query(
        ge=0,
        le=60,
        allow_inf_nan=False,
        description="Seconds to wait for an answer (long poll); 0 answers at once.",
    ),
]
