"""The agent HTTP API (`/api/v1`): a thin adapter from HTTP to the service facade.

Status codes come from the error tree: NotFound 404, InvalidInput 422, Conflict 409, Forbidden
403, TokenInvalid 401 (with the reason code in the body). Bad bodies are 422 naming each field.
"""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.api.guard import Caller, Guard
from core.api.schemas import (
    Claim,
    CommentOut,
    ErrorOut,
    Finish,
    Health,
    IssueDetail,
    IssueOut,
    IssuePatch,
    Me,
    NewComment,
    NewIssue,
    NewSummary,
    RunOut,
    SummaryOut,
    Usage,
)
from core.errors import (
    AgentNotFound,
    AmbiguousAssignee,
    Conflict,
    FleetbotError,
    Forbidden,
    InvalidInput,
    IssueNotFound,
    NotFound,
    NotYourRun,
    SkillDenied,
    TokenInvalid,
)
from core.metrics import Metrics
from core.models import Issue
from core.service import FleetService

log = logging.getLogger(__name__)

_STATUS: list[tuple[type[FleetbotError], int]] = [
    (TokenInvalid, 401),
    (NotFound, 404),
    (InvalidInput, 422),
    (Conflict, 409),
    (Forbidden, 403),
]
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "The token was refused; `error` says why."},
    403: {"model": ErrorOut, "description": "`skill_denied` or `not_your_run`."},
    404: {"model": ErrorOut, "description": "No such issue, run, agent or route."},
    409: {
        "model": ErrorOut,
        "description": "Refused by the current state, e.g. "
        "`invalid_transition`, `lease_conflict`, `run_not_active`, `max_turns_exceeded`.",
    },
    422: {
        "model": ErrorOut,
        "description": "The body (`invalid_body`) or a path id (`invalid_request`) is invalid; "
        "`detail` names the field.",
    },
}


def _error(status: int, code: str, detail: str, **extra: Any) -> JSONResponse:
    headers = {"WWW-Authenticate": f'Bearer error="{code}"'} if status == 401 else None
    return JSONResponse({"error": code, "detail": detail, **extra}, status, headers=headers)


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


async def _caller(request: Request) -> Caller:
    # The raw header, not a FastAPI Header() parameter: the guard gives every defect its own
    # reason code, and FastAPI's parameter validation was a tenth of an inbox request's CPU.
    # The OpenAPI document declares the bearer scheme instead (_document_bearer).
    guard: Guard = request.app.state.guard
    return await guard.authenticate(request.headers.get("authorization"))


Agent = Annotated[Caller, Depends(_caller)]
# Path ids are bounded so a hostile id is a 422 naming it, not a 404 echoing kilobytes of it.
IssueId = Annotated[str, Path(max_length=32, description="An issue id, e.g. ALI-12.")]
RunId = Annotated[str, Path(max_length=64, description="The run id the runtime gave you.")]
_NOT_AN_OBJECT = {"model_attributes_type", "dict_type", "model_type"}


def create_app(service: FleetService, guard: Guard, metrics: Metrics) -> FastAPI:
    app = FastAPI(
        title="fleetbot agent API",
        version="1",
        description="What agents call with their token: inbox, issues, runs, summaries.",
        responses=_ERRORS,
    )
    app.state.guard = guard

    @app.exception_handler(FleetbotError)
    async def _domain_error(_: Request, exc: FleetbotError) -> JSONResponse:
        for cls, status in _STATUS:
            if isinstance(exc, cls):
                extra = {"choices": exc.choices} if isinstance(exc, AmbiguousAssignee) else {}
                return _error(status, exc.code, exc.message, **extra)
        log.error("unmapped error %s: %s", type(exc).__name__, exc.message)
        return _error(400, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _bad_body(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ()) if p not in ("body",)]
            field = ".".join(loc) or "body"
            msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            kind = err.get("type")
            if kind == "json_invalid":
                # FastAPI puts the character offset where the field name would go.
                why = (err.get("ctx") or {}).get("error", "JSON decode error")
                at = f" at character {loc[0]}" if loc else ""
                field, msg = "body", f"not valid JSON{at}: {why}"
            elif field == "body" and (kind in _NOT_AN_OBJECT or kind == "missing"):
                msg = "send a JSON object ({...}) with Content-Type: application/json"
            problems.append({"field": field, "problem": msg})
        detail = "; ".join(f"{p['field']}: {p['problem']}" for p in problems)
        in_body = all(err.get("loc", ("body",))[:1] == ("body",) for err in exc.errors())
        code = "invalid_body" if in_body else "invalid_request"
        return _error(422, code, detail or "the request is invalid", errors=problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # FastAPI's only 400: a body it could not decode at all (bad charset, nesting
            # too deep). That is a bad body like any other.
            problem = "the body could not be read; send UTF-8 JSON (a JSON object)"
            errors = [{"field": "body", "problem": problem}]
            return _error(422, "invalid_body", f"body: {problem}", errors=errors)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail))

    async def own_issue(who: Caller, issue_id: str) -> Issue:
        issue = await service.issue(issue_id)
        if issue.company_id != who.agent.company_id:
            # Other companies' issues do not exist as far as this agent can tell.
            raise IssueNotFound(f"no issue {issue_id!r} in {who.agent.company_id}")
        return issue

    @app.get("/healthz", response_model=Health, tags=["ops"])
    async def healthz() -> Health:
        await service.db.scalar("SELECT 1")
        return Health(status="ok", schema_version=service.db.schema_version)

    @app.get("/metrics", tags=["ops"], response_class=Response)
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/api/v1/me", response_model=Me, tags=["agent"])
    async def me(who: Agent) -> Me:
        a, c = who.agent, who.claims
        return Me(
            agent_id=a.id,
            name=a.name,
            company_id=a.company_id,
            role=a.role,
            skills=list(a.skills),
            kid=c.kid,
            expires_at=c.exp,
            run_id=c.run,
            status=a.status.value,
        )

    @app.get("/api/v1/inbox", response_model=list[IssueOut], tags=["issues"])
    async def inbox(who: Agent) -> list[IssueOut]:
        return [IssueOut.of(i) for i in await service.inbox(who.agent.id)]

    @app.post("/api/v1/issues", response_model=IssueOut, status_code=201, tags=["issues"])
    async def file_issue(who: Agent, body: NewIssue) -> IssueOut:
        _need_skill(who, "issues.create")
        target = await service.resolve_assignee(body.assignee, who.agent.company_id)
        if target.company_id != who.agent.company_id:
            # `role@othercompany` names a scope; agents file work in their own company only.
            raise AgentNotFound(
                f"no agent or role {body.assignee!r} in {who.agent.company_id}; agents file "
                "issues in their own company"
            )
        issue = await service.file_issue(
            title=body.title,
            body=body.body,
            assignee=target.id,
            company=who.agent.company_id,
            actor=f"agent:{who.agent.id}",
            model=body.model,
        )
        return IssueOut.of(issue)

    @app.get("/api/v1/issues/{issue_id}", response_model=IssueDetail, tags=["issues"])
    async def get_issue(who: Agent, issue_id: IssueId) -> IssueDetail:
        issue = await own_issue(who, issue_id)
        comments = [CommentOut.of(c) for c in await service.comments(issue.id)]
        return IssueDetail(**IssueOut.of(issue).model_dump(), comments=comments)

    @app.patch("/api/v1/issues/{issue_id}", response_model=IssueOut, tags=["issues"])
    async def patch_issue(who: Agent, issue_id: IssueId, body: IssuePatch) -> IssueOut:
        issue = await own_issue(who, issue_id)
        moved = await service.move(issue.id, body.status, f"agent:{who.agent.id}", body.reason)
        return IssueOut.of(moved)

    @app.post("/api/v1/issues/{issue_id}/claim", response_model=IssueOut, tags=["issues"])
    async def claim(who: Agent, issue_id: IssueId, body: Claim) -> IssueOut:
        issue = await own_issue(who, issue_id)
        _check_run_token(who, body.run_id)
        return IssueOut.of(await service.runs.claim(issue.id, body.run_id, who.agent.id))

    @app.post(
        "/api/v1/issues/{issue_id}/comments",
        response_model=CommentOut,
        status_code=201,
        tags=["issues"],
    )
    async def comment(who: Agent, issue_id: IssueId, body: NewComment) -> CommentOut:
        issue = await own_issue(who, issue_id)
        return CommentOut.of(await service.comment(issue.id, body.body, f"agent:{who.agent.id}"))

    @app.post("/api/v1/runs/{run_id}/usage", response_model=RunOut, tags=["runs"])
    async def usage(who: Agent, run_id: RunId, body: Usage) -> RunOut:
        _check_run_token(who, run_id)
        run = await service.report_usage(
            run_id,
            who.agent.id,
            turns=body.turns,
            input_tokens=body.input_tokens,
            output_tokens=body.output_tokens,
            cost=body.cost,
            model=body.model,
        )
        return RunOut.of(run)

    @app.post("/api/v1/runs/{run_id}/finish", response_model=RunOut, tags=["runs"])
    async def finish(who: Agent, run_id: RunId, body: Finish) -> RunOut:
        _check_run_token(who, run_id)
        return RunOut.of(await service.finish_run(run_id, who.agent.id, body.outcome, body.summary))

    @app.post("/api/v1/summaries", response_model=SummaryOut, status_code=201, tags=["agent"])
    async def summaries(who: Agent, body: NewSummary) -> SummaryOut:
        _need_skill(who, "summaries.post")
        if body.issue_id is not None:
            await own_issue(who, body.issue_id)
        if body.run_id is not None:
            # A summary may only point at the caller's own run (else it would be relayed as
            # another agent's, or point at nothing).
            _check_run_token(who, body.run_id)
            run = await service.runs.get(body.run_id)
            if run.agent_id != who.agent.id:
                raise NotYourRun(f"run {body.run_id} belongs to another agent")
        summary_id = await service.post_summary(who.agent, body.body, body.issue_id, body.run_id)
        return SummaryOut(id=summary_id)

    app.add_middleware(_Measure, metrics=metrics)
    _document_bearer(app)
    return app


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


def _need_skill(who: Caller, skill: str) -> None:
    if skill not in who.agent.skills:
        raise SkillDenied(
            f"{who.agent.id} ({who.agent.role}) lacks the skill {skill}; the owner can add it "
            "to the role's allowlist (defaults.skills) or the agent's skills in the config"
        )


def _check_run_token(who: Caller, run_id: str) -> None:
    """A run token acts on its own run only; the run's agent is checked by the run book."""
    if who.claims.run is not None and who.claims.run != run_id:
        raise NotYourRun(f"this token belongs to run {who.claims.run}, not {run_id}")
