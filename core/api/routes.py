"""The agent API's endpoints, as one route table: ops, the caller, issues, questions, runs,
summaries.

Each endpoint is a thin adapter: it checks what only the API knows (the caller's company, its
skills, which run its token belongs to) and calls the service facade, whose errors
core.api.errors turns into answers. Endpoints have no docstrings: FastAPI would publish them as
the operations' descriptions in /openapi.json.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from core.api.dependencies import (
    AgentCall,
    AppMetrics,
    Authenticated,
    IssueId,
    QuestionId,
    RunId,
    Service,
    Wait,
)
from core.api.errors import RESPONSES
from core.api.schemas import (
    Claim,
    CommentOut,
    Finish,
    Health,
    IssueDetail,
    IssueOut,
    IssuePatch,
    Me,
    NewComment,
    NewIssue,
    NewQuestion,
    NewSummary,
    QuestionOut,
    Ready,
    RunOut,
    SummaryOut,
    Usage,
)
from core.errors import AgentNotFound, IssueNotFound, NotFound, NotYourRun, SkillDenied
from core.models import Issue

# Full paths, no prefix: the request metrics are labelled with the route's path.
router = APIRouter(responses=RESPONSES)


@router.get(
    "/healthz",
    response_model=Health,
    tags=["ops"],
    summary="Liveness: 200 while the process answers, whatever the store's state",
)
async def healthz(service: Service) -> Health:
    # No store round trip: a locked or full database must not get a live process restarted.
    return Health(status="ok", schema_version=service.schema_version)


@router.get(
    "/readyz",
    response_model=Ready,
    tags=["ops"],
    summary="Readiness: 200 when the store takes writes, else 503 store_unavailable saying why",
)
async def readyz(service: Service) -> Ready:
    # StoreUnavailable: a 503 naming the cause (core.api.errors)
    return Ready(status="ready", schema_version=await service.ready())


@router.get("/metrics", tags=["ops"], response_class=Response)
async def prometheus(metrics: AppMetrics) -> Response:
    return Response(metrics.render(), media_type="text/plain; version=0.0.4")


@router.get("/api/v1/me", response_model=Me, tags=["agent"])
async def me(call: Authenticated) -> Me:
    a, c = call.agent, call.claims
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


@router.get("/api/v1/inbox", response_model=list[IssueOut], tags=["issues"])
async def inbox(call: Authenticated) -> list[IssueOut]:
    return [IssueOut.of(i) for i in await call.service.inbox(call.agent.id)]


@router.post("/api/v1/issues", response_model=IssueOut, status_code=201, tags=["issues"])
async def file_issue(call: Authenticated, body: NewIssue) -> IssueOut:
    need_skill(call, "issues.create")
    company = call.agent.company_id
    target = await call.service.resolve_assignee(body.assignee, company)
    if target.company_id != company:
        # `role@othercompany` names a scope; agents file work in their own company only.
        raise AgentNotFound(
            f"no agent or role {body.assignee!r} in {company}; agents file "
            "issues in their own company"
        )
    issue = await call.service.file_issue(
        title=body.title,
        body=body.body,
        assignee=target.id,
        company=company,
        actor=f"agent:{call.agent.id}",
        model=body.model,
        priority=body.priority,
        backlog=body.backlog,
    )
    return IssueOut.of(issue)


@router.get("/api/v1/issues/{issue_id}", response_model=IssueDetail, tags=["issues"])
async def get_issue(call: Authenticated, issue_id: IssueId) -> IssueDetail:
    issue = await own_issue(call, issue_id)
    comments = [CommentOut.of(c) for c in await call.service.comments(issue.id)]
    questions = [QuestionOut.of(q) for q in await call.service.questions(issue.id)]
    return IssueDetail(**IssueOut.of(issue).model_dump(), comments=comments, questions=questions)


@router.patch("/api/v1/issues/{issue_id}", response_model=IssueOut, tags=["issues"])
async def patch_issue(call: Authenticated, issue_id: IssueId, body: IssuePatch) -> IssueOut:
    issue = await own_issue(call, issue_id)
    actor = f"agent:{call.agent.id}"
    return IssueOut.of(await call.service.move(issue.id, body.status, actor, body.reason))


@router.post("/api/v1/issues/{issue_id}/claim", response_model=IssueOut, tags=["issues"])
async def claim(call: Authenticated, issue_id: IssueId, body: Claim) -> IssueOut:
    issue = await own_issue(call, issue_id)
    check_run_token(call, body.run_id)
    return IssueOut.of(await call.service.claim(issue.id, body.run_id, call.agent.id))


@router.post(
    "/api/v1/issues/{issue_id}/comments",
    response_model=CommentOut,
    status_code=201,
    tags=["issues"],
)
async def comment(call: Authenticated, issue_id: IssueId, body: NewComment) -> CommentOut:
    issue = await own_issue(call, issue_id)
    actor = f"agent:{call.agent.id}"
    return CommentOut.of(await call.service.comment(issue.id, body.body, actor))


@router.post(
    "/api/v1/issues/{issue_id}/questions",
    response_model=QuestionOut,
    status_code=201,
    tags=["questions"],
)
async def ask(call: Authenticated, issue_id: IssueId, body: NewQuestion) -> QuestionOut:
    issue = await own_issue(call, issue_id)
    run_id = body.run_id if body.run_id is not None else call.claims.run
    if body.run_id is not None:
        check_run_token(call, body.run_id)
        if (await call.service.run(body.run_id)).agent_id != call.agent.id:
            raise NotYourRun(f"run {body.run_id} belongs to another agent")
    question = await call.service.ask(
        call.agent,
        issue.id,
        body.text,
        choices=body.choices,
        approval=body.approval,
        run_id=run_id,
    )
    return QuestionOut.of(question)


@router.get("/api/v1/questions/{question_id}", response_model=QuestionOut, tags=["questions"])
async def question(call: Authenticated, question_id: QuestionId, wait: Wait = 0) -> QuestionOut:
    found = await call.service.question(question_id)
    if found.company_id != call.agent.company_id:
        # Like issues: another company's questions do not exist for this agent.
        raise NotFound(f"no question {question_id!r}", code="question_not_found")
    return QuestionOut.of(await call.service.wait_question(found.id, wait))


@router.post("/api/v1/runs/{run_id}/usage", response_model=RunOut, tags=["runs"])
async def usage(call: Authenticated, run_id: RunId, body: Usage) -> RunOut:
    check_run_token(call, run_id)
    run = await call.service.report_usage(
        run_id,
        call.agent.id,
        turns=body.turns,
        input_tokens=body.input_tokens,
        output_tokens=body.output_tokens,
        cost=body.cost,
        model=body.model,
    )
    return RunOut.of(run)


@router.post("/api/v1/runs/{run_id}/finish", response_model=RunOut, tags=["runs"])
async def finish(call: Authenticated, run_id: RunId, body: Finish) -> RunOut:
    check_run_token(call, run_id)
    run = await call.service.finish_run(run_id, call.agent.id, body.outcome, body.summary)
    return RunOut.of(run)


@router.post("/api/v1/summaries", response_model=SummaryOut, status_code=201, tags=["agent"])
async def summaries(call: Authenticated, body: NewSummary) -> SummaryOut:
    need_skill(call, "summaries.post")
    if body.issue_id is not None:
        await own_issue(call, body.issue_id)
    if body.run_id is not None:
        # A summary may only point at the caller's own run (else it would be relayed as
        # another agent's, or point at nothing).
        check_run_token(call, body.run_id)
        run = await call.service.run(body.run_id)
        if run.agent_id != call.agent.id:
            raise NotYourRun(f"run {body.run_id} belongs to another agent")
    summary_id = await call.service.post_summary(call.agent, body.body, body.issue_id, body.run_id)
    return SummaryOut(id=summary_id)


async def own_issue(call: AgentCall, issue_id: str) -> Issue:
    """The issue, if it is in the caller's company; IssueNotFound otherwise."""
    issue = await call.service.issue(issue_id)
    if issue.company_id != call.agent.company_id:
        # Other companies' issues do not exist as far as this agent can tell.
        raise IssueNotFound(f"no issue {issue_id!r} in {call.agent.company_id}")
    return issue


def need_skill(call: AgentCall, skill: str) -> None:
    """SkillDenied unless the caller has `skill`."""
    if skill not in call.agent.skills:
        raise SkillDenied(
            f"{call.agent.id} ({call.agent.role}) lacks the skill {skill}; the owner can add "
            "it to the role's allowlist (defaults.skills) or the agent's skills in the config"
        )


def check_run_token(call: AgentCall, run_id: str) -> None:
    """A run token acts on its own run only; the run's agent is checked by the run book."""
    if call.claims.run is not None and call.claims.run != run_id:
        raise NotYourRun(f"this token belongs to run {call.claims.run}, not {run_id}")
