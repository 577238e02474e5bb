"""The service facade on a real store: assignee resolution, operator actions, audit, config sync."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from stack_helpers import config_data, force_status, make_auth

from core.clock import ManualClock
from core.config import Config, parse_config
from core.errors import (
    AgentNotFound,
    AmbiguousAssignee,
    CompanyNotFound,
    Conflict,
    InvalidInput,
    IssueNotFound,
)
from core.events import AgentStatusChanged, IssueAssigned, WakeRequested
from core.models import AgentStatus, AuthReason, IssueStatus
from core.service import FleetService, IssueFilter
from core.store.db import Database

# -- resolving assignees ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "company", "expected"),
    [
        ("ali-cto", None, "ali-cto"),
        ("ALI-CTO", None, "ali-cto"),
        ("@ali-cto", None, "ali-cto"),
        ("cto@aliens", None, "ali-cto"),
        ("CTO@Aliens", None, "ali-cto"),
        ("cto@ali", None, "ali-cto"),  # the company's issue prefix works too
        ("cto@matrix", None, "mat-cto"),
        ("cto", "matrix", "mat-cto"),
        ("Cto", "aliens", "ali-cto"),
        ("cmo", None, "ali-cmo"),  # a role held once in the whole fleet needs no company
        ("  ceo@MAT  ", None, "mat-ceo"),
    ],
)
async def test_resolve_assignee(
    service: FleetService, spec: str, company: str | None, expected: str
) -> None:
    assert (await service.resolve_assignee(spec, company)).id == expected


async def test_role_in_two_companies_is_ambiguous(service: FleetService) -> None:
    with pytest.raises(AmbiguousAssignee) as err:
        await service.resolve_assignee("ceo")
    assert err.value.choices == ["ali-ceo", "mat-ceo"]
    message = str(err.value)
    assert "ali-ceo (ceo@aliens)" in message and "mat-ceo (ceo@matrix)" in message
    assert "ceo@COMPANY" in message


async def test_two_agents_with_one_role_in_a_company_is_ambiguous(service: FleetService) -> None:
    for spec, company in (("qa@aliens", None), ("qa", "aliens"), ("QA", None)):
        with pytest.raises(AmbiguousAssignee) as err:
            await service.resolve_assignee(spec, company)
        assert err.value.choices == ["ali-qa-1", "ali-qa-2"]
        assert "ali-qa-1" in str(err.value) and "ali-qa-2" in str(err.value)


async def test_unknown_assignees(service: FleetService) -> None:
    with pytest.raises(AgentNotFound, match="'janitor'"):
        await service.resolve_assignee("janitor")
    with pytest.raises(AgentNotFound, match="in matrix"):
        await service.resolve_assignee("qa", "matrix")
    with pytest.raises(CompanyNotFound, match="aliens, matrix"):
        await service.resolve_assignee("cto@nowhere")
    with pytest.raises(InvalidInput):
        await service.resolve_assignee("   ")


async def test_agent_of_another_company_is_refused(service: FleetService) -> None:
    with pytest.raises(InvalidInput) as err:
        await service.resolve_assignee("mat-cto", "aliens")
    assert "mat-cto works for matrix, not aliens" in str(err.value)
    issue = await service.file_issue(title="t", assignee="ali-cto", actor="owner")
    with pytest.raises(InvalidInput):
        await service.assign(issue.id, "mat-cto", actor="owner")
    with pytest.raises(InvalidInput):
        await service.file_issue(title="t", assignee="mat-cto@aliens", actor="owner")


# -- issues ------------------------------------------------------------------------------------


async def _audit_rows(service: FleetService) -> list[tuple[str, str, str, str]]:
    return [(r["actor"], r["action"], r["target"], r["result"]) for r in await service.audit_log()]


async def test_file_assign_comment_move_with_audit(service: FleetService) -> None:
    seen: list[object] = []
    service.events.subscribe(seen.append)
    issue = await service.file_issue(
        title="  Fix   the\nlogin  ",
        assignee="cto@aliens",
        actor="tg:1",
        body=" it 500s ",
        model="strong-model",
    )
    assert (issue.id, issue.title, issue.body) == ("ALI-1", "Fix the login", "it 500s")
    assert (issue.status, issue.assignee_id, issue.created_by) == (
        IssueStatus.TODO,
        "ali-cto",
        "tg:1",
    )
    assert (issue.model, issue.attempts, issue.max_attempts) == ("strong-model", 0, 3)
    assert seen == [IssueAssigned("ALI-1", "ali-cto")]

    assigned = await service.assign("ali-1", "ali-qa-2", actor="tg:2")
    assert assigned.assignee_id == "ali-qa-2"
    assert seen[-1] == IssueAssigned("ALI-1", "ali-qa-2")

    comment = await service.comment("ALI-1", "  looks like a null deref ", author="tg:3")
    assert comment.body == "looks like a null deref"
    assert [c.body for c in await service.comments("ALI-1")] == ["looks like a null deref"]

    moved = await service.move("ALI-1", IssueStatus.CANCELLED, actor="tg:4", reason="dup")
    assert (moved.status, moved.reason) == (IssueStatus.CANCELLED, "dup")

    assert await _audit_rows(service) == [
        ("tg:4", "issue.move", "ALI-1", "ok"),
        ("tg:3", "issue.comment", "ALI-1", "ok"),
        ("tg:2", "issue.assign", "ALI-1", "ok"),
        ("tg:1", "issue.file", "ALI-1", "ok"),
    ]
    with pytest.raises(Conflict, match="cancelled"):
        await service.assign("ALI-1", "ali-cto", actor="tg:2")


async def test_bad_issue_input(service: FleetService) -> None:
    with pytest.raises(InvalidInput, match="title"):
        await service.file_issue(title="  \n ", assignee="ali-cto", actor="o")
    with pytest.raises(InvalidInput, match="200"):
        await service.file_issue(title="x" * 201, assignee="ali-cto", actor="o")
    with pytest.raises(InvalidInput, match="body"):
        await service.file_issue(title="t", body="x" * 20_001, assignee="ali-cto", actor="o")
    for bad in ("ALI-99", "", "ALI-1; DROP TABLE issues", "ali 1"):
        with pytest.raises(IssueNotFound):
            await service.issue(bad)
    issue = await service.file_issue(title="t", assignee="ali-cto", actor="o")
    with pytest.raises(InvalidInput):
        await service.comment(issue.id, "   ", author="o")
    assert await service.audit_log() and len(await service.audit_log()) == 1


async def test_issue_filters_and_inbox(service: FleetService) -> None:
    a = await service.file_issue(title="a", assignee="ali-cto", actor="o")
    service.clock.advance(1)  # type: ignore[attr-defined]
    b = await service.file_issue(title="b", assignee="ali-cto", actor="o")
    c = await service.file_issue(title="c", assignee="mat-cto", actor="o")
    await service.move(b.id, IssueStatus.BLOCKED, actor="o")
    assert [i.id for i in await service.inbox("ali-cto")] == [a.id]
    assert [i.id for i in await service.issues(IssueFilter(company_id="MAT"))] == [c.id]
    blocked = await service.issues(IssueFilter(statuses=(IssueStatus.BLOCKED,)))
    assert [i.id for i in blocked] == [b.id]
    assert [i.id for i in await service.issues(IssueFilter(assignee_id="ali-cto"))] == [
        b.id,
        a.id,
    ]


# -- agents ------------------------------------------------------------------------------------


async def test_set_role_survives_sync_and_moves_skills(service: FleetService) -> None:
    agent = await service.set_role("ali-qa-1", " CTO ", actor="owner")
    assert agent.role == "cto"
    assert agent.skills == ("issues.create", "summaries.post", "shell")
    assert (await service.resolve_assignee("qa@aliens")).id == "ali-qa-2"
    await service.sync_config()  # a restart re-reads the config, which still says qa
    after = await service.agent("ali-qa-1")
    assert after.role == "cto"
    assert after.skills == ("issues.create", "summaries.post", "shell")
    last = (await service.audit_log(1))[0]
    assert (last["actor"], last["action"], last["target"]) == ("owner", "agent.role", "ali-qa-1")
    assert json.loads(last["detail"]) == {"from": "qa", "to": "cto"}


async def test_set_role_keeps_explicit_skills(service: FleetService) -> None:
    agent = await service.set_role("ali-cmo", "cto", actor="owner")
    assert (agent.role, agent.skills) == ("cto", ("summaries.post", "ads"))
    await service.sync_config()
    assert (await service.agent("ali-cmo")).skills == ("summaries.post", "ads")


async def test_set_role_refuses_junk(service: FleetService) -> None:
    for bad in ("", "two words", "x" * 65, "c-t-o", "rm;"):
        with pytest.raises(InvalidInput):
            await service.set_role("ali-cto", bad, actor="owner")
    with pytest.raises(AgentNotFound):
        await service.set_role("ghost", "cto", actor="owner")
    assert (await service.agent("ali-cto")).role == "cto"


async def test_pause_resume_wake_reset(service: FleetService) -> None:
    seen: list[object] = []
    service.events.subscribe(seen.append)
    with pytest.raises(Conflict, match="not paused"):
        await service.resume("ali-ceo", actor="op")
    paused = await service.pause("ali-ceo", actor="op")
    assert (paused.status, paused.reason_code, paused.reason) == (
        AgentStatus.PAUSED,
        "paused_by_operator",
        "paused by op",
    )
    assert isinstance(seen[-1], AgentStatusChanged) and seen[-1].new is AgentStatus.PAUSED
    resumed = await service.resume("ALI-CEO", actor="op")
    assert (resumed.status, resumed.reason, resumed.reason_code) == (AgentStatus.IDLE, "", "")

    service.clock.advance(60)  # type: ignore[attr-defined]
    woken = await service.wake("ali-ceo", actor="op")
    assert woken.id == "ali-ceo"
    assert (await service.agent("ali-ceo")).next_heartbeat_at == service.clock.now()
    assert seen[-1] == WakeRequested("ali-ceo")

    await force_status(service, "ali-ceo", AgentStatus.RUNNING)
    with pytest.raises(Conflict, match="running"):
        await service.reset("ali-ceo", actor="op")
    await force_status(service, "ali-ceo", AgentStatus.ERROR, "run_timed_out")
    reset = await service.reset("ali-ceo", actor="op")
    assert (reset.status, reset.reason_code) == (AgentStatus.IDLE, "")
    assert seen[-1] == WakeRequested("ali-ceo"), "a reset also wakes the agent"

    assert await _audit_rows(service) == [
        ("op", "agent.reset", "ali-ceo", "ok"),
        ("op", "agent.wake", "ali-ceo", "ok"),
        ("op", "agent.resume", "ali-ceo", "ok"),
        ("op", "agent.pause", "ali-ceo", "ok"),
    ]


async def test_reset_refused_while_the_token_still_fails(
    tmp_path: Path, db: Database, config: Config, clock: ManualClock
) -> None:
    auth = make_auth(config, clock)
    service = FleetService(db, config, clock, token_check=auth.check_file)
    await service.sync_config()
    await force_status(service, "ali-cto", AgentStatus.ERROR)
    with pytest.raises(Conflict) as err:
        await service.reset("ali-cto", actor="op")
    assert "missing_file" in str(err.value) and "/rotate ali-cto" in str(err.value)
    agent = await service.agent("ali-cto")
    assert (agent.status, agent.reason_code) == (
        AgentStatus.UNAUTHENTICATED,
        AuthReason.MISSING_FILE.value,
    )
    assert (await _audit_rows(service))[0] == ("op", "agent.reset", "ali-cto", "refused")
    auth.issue(agent)
    assert (await service.reset("ali-cto", actor="op")).status is AgentStatus.IDLE


async def test_sync_config_soft_deletes_removed_agents(
    tmp_path: Path, service: FleetService, db: Database, clock: ManualClock
) -> None:
    await service.file_issue(title="old work", assignee="ali-qa-2", actor="o")
    data = config_data(tmp_path)
    data["companies"][0]["agents"] = [
        a for a in data["companies"][0]["agents"] if a["id"] != "ali-qa-2"
    ]
    smaller = FleetService(db, parse_config(data, "smaller"), clock)
    await smaller.sync_config()
    with pytest.raises(AgentNotFound):
        await smaller.agent("ali-qa-2")
    assert await smaller.maybe_agent("ali-qa-2") is None
    assert "ali-qa-2" not in {a.id for a in await smaller.agents()}
    # qa@aliens is no longer ambiguous, and the row (and its history) is kept.
    assert (await smaller.resolve_assignee("qa@aliens")).id == "ali-qa-1"
    assert await db.scalar("SELECT deleted_at FROM agents WHERE id = 'ali-qa-2'") == clock.now()
    assert (await smaller.issue("ALI-1")).assignee_id == "ali-qa-2"
    # Put back in the config, it comes back.
    await service.sync_config()
    assert (await service.agent("ali-qa-2")).id == "ali-qa-2"


async def test_sync_config_is_idempotent_and_updates_settings(
    tmp_path: Path, service: FleetService, db: Database, clock: ManualClock
) -> None:
    before = await service.agents()
    await service.sync_config()
    assert await service.agents() == before
    changed = FleetService(db, parse_config(config_data(tmp_path, model="new-model"), "x"), clock)
    await changed.sync_config()
    assert (await changed.agent("ali-ceo")).model == "new-model"
    assert (await changed.agent("mat-cto")).model == "strong-model", "per-agent override wins"
    assert [c.id for c in await changed.companies()] == ["aliens", "matrix"]
    assert (await changed.company("mat")).name == "Matrix Co"
