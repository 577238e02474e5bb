"""Every heartbeat outcome, against a real store and a runtime that counts its calls."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest
from stack_helpers import Stack, force_status, heartbeat_counts, make_auth, make_config, open_stack

from core.auth.tokens import read_token_file, write_token_file
from core.clock import ManualClock
from core.engine.heartbeat import Heartbeat
from core.models import AgentStatus, AuthReason, HeartbeatOutcome, IssueStatus, RunStatus

FOUR_HOURS = 4 * 3600


async def _beat_due(s: Stack) -> dict[HeartbeatOutcome, int]:
    """Advance to the next heartbeat and sweep, like the periodic job would."""
    s.clock.advance(FOUR_HOURS)
    report = await s.scheduler.tick()
    await s.scheduler.drain()
    return report.beats


async def test_empty_inbox_never_calls_a_runtime(stack: Stack) -> None:
    agents = await stack.service.agents()
    for _ in range(5):
        beats = await _beat_due(stack)
        assert beats == {HeartbeatOutcome.NO_WORK: len(agents)}
    assert stack.runtimes.calls == [], "no work: zero LLM calls"
    assert stack.runtimes.by_agent == {}, "no runtime was even built"
    for agent in agents:
        assert await heartbeat_counts(stack.service, agent.id) == {"no_work": 5}
        assert (await stack.service.agent(agent.id)).status is AgentStatus.IDLE
    assert await stack.db.scalar("SELECT count(*) FROM runs") == 0


async def test_dispatch_opens_a_leased_run(tmp_path: Path, clock: ManualClock) -> None:
    async with open_stack(tmp_path, clock, wake_on_assign=False) as s:
        plain = await s.service.file_issue(title="plain", assignee="ali-cto", actor="o")
        strong = await s.service.file_issue(
            title="hard", assignee="ali-ceo", actor="o", model="opus-x"
        )
        hb = s.scheduler.heartbeat
        for issue, agent_id, model in (
            (plain, "ali-cto", "cheap-model"),
            (strong, "ali-ceo", "opus-x"),
        ):
            beat = await hb.beat(agent_id, forced=True)
            assert beat is not None and beat.run is not None and beat.issue is not None
            assert beat.outcome is HeartbeatOutcome.DISPATCHED
            run = beat.run
            assert (run.status, run.agent_id, run.issue_id) == (
                RunStatus.RUNNING,
                agent_id,
                issue.id,
            )
            assert run.deadline == clock.now() + 30 * 60
            assert (run.max_turns, run.model) == (5, model)
            now = await s.service.issue(issue.id)
            assert (now.status, now.attempts) == (IssueStatus.IN_PROGRESS, 1)
            assert (now.lease_run_id, now.lease_until) == (run.id, run.deadline)
            agent = await s.service.agent(agent_id)
            assert agent.status is AgentStatus.RUNNING
            assert agent.next_heartbeat_at == clock.now() + FOUR_HOURS
            assert await heartbeat_counts(s.service, agent_id) == {"dispatched": 1}
        # The heartbeat itself never calls a runtime; the scheduler does.
        assert s.runtimes.calls == []


async def test_mat_cto_model_is_its_own(tmp_path: Path, clock: ManualClock) -> None:
    async with open_stack(tmp_path, clock) as s:
        await s.service.file_issue(title="x", assignee="mat-cto", actor="o")
        await s.scheduler.drain()
        (job,) = s.runtimes.calls
        assert (job.agent_id, job.model, job.issue["id"]) == ("mat-cto", "strong-model", "MAT-1")


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (AgentStatus.PAUSED, HeartbeatOutcome.PAUSED),
        (AgentStatus.ERROR, HeartbeatOutcome.ERROR),
        (AgentStatus.RUNNING, HeartbeatOutcome.BUSY),
    ],
)
async def test_skipped_agents_are_never_dispatched(
    tmp_path: Path, clock: ManualClock, status: AgentStatus, outcome: HeartbeatOutcome
) -> None:
    async with open_stack(tmp_path, clock, wake_on_assign=False) as s:
        await force_status(s.service, "ali-cto", status)
        issue = await s.service.file_issue(title="waiting", assignee="ali-cto", actor="o")
        for _ in range(3):
            await _beat_due(s)
        s.scheduler.wake("ali-cto")
        await s.scheduler.drain()
        assert s.runtimes.calls_for(agent_id="ali-cto") == 0
        assert await heartbeat_counts(s.service, "ali-cto") == {outcome.value: 4}
        after = await s.service.issue(issue.id)
        assert (after.status, after.attempts, after.lease_run_id) == (IssueStatus.TODO, 0, None)
        assert (await s.service.agent("ali-cto")).status is status


async def test_busy_while_its_run_is_live(tmp_path: Path, clock: ManualClock) -> None:
    async with open_stack(tmp_path, clock) as s:
        await s.service.file_issue(title="first", assignee="ali-cto", actor="o")
        await s.service.file_issue(title="second", assignee="ali-cto", actor="o")
        await s.scheduler.drain()
        assert s.runtimes.calls_for(agent_id="ali-cto") == 1
        counts = await heartbeat_counts(s.service, "ali-cto")
        assert counts == {"dispatched": 1, "busy": 1}


async def test_not_due_is_not_beaten_unless_forced(stack: Stack) -> None:
    hb = stack.scheduler.heartbeat
    agent = await stack.service.agent("ali-cto")
    assert agent.next_heartbeat_at == stack.clock.now() + FOUR_HOURS
    assert await hb.due(stack.clock.now()) == []
    assert await hb.beat("ali-cto") is None
    stack.clock.advance(FOUR_HOURS - 1)
    assert await hb.beat("ali-cto") is None
    assert (await stack.scheduler.tick()).beats == {}
    assert await heartbeat_counts(stack.service, "ali-cto") == {}

    forced = await hb.beat("ali-cto", forced=True)
    assert forced is not None and forced.outcome is HeartbeatOutcome.NO_WORK
    assert (await stack.service.agent("ali-cto")).next_heartbeat_at == (
        stack.clock.now() + FOUR_HOURS
    )
    stack.clock.advance(1)  # due now had it not been forced; the forced beat moved it on
    due = await hb.due(stack.clock.now())
    assert "ali-cto" not in due and len(due) == 6
    assert await hb.next_due_at() == stack.clock.now()
    assert await hb.beat("missing-agent", forced=True) is None


async def test_next_heartbeat_advances_by_the_interval(stack: Stack) -> None:
    hb = stack.scheduler.heartbeat
    start = stack.clock.now()
    assert await hb.next_due_at() == start + FOUR_HOURS
    for n in range(1, 4):
        stack.clock.set(start + n * FOUR_HOURS + 7)  # a late sweep
        due = await hb.due(stack.clock.now())
        assert len(due) == 7
        for agent_id in due:
            beat = await hb.beat(agent_id)
            assert beat is not None and beat.outcome is HeartbeatOutcome.NO_WORK
        agent = await stack.service.agent("ali-ceo")
        assert agent.next_heartbeat_at == stack.clock.now() + FOUR_HOURS
        assert await hb.due(stack.clock.now()) == []


async def test_heartbeat_interval_is_per_agent(tmp_path: Path, clock: ManualClock) -> None:
    config = make_config(tmp_path)
    agents = config.companies[1].agents
    fast = agents[0].model_copy(update={"heartbeat": 600.0})
    companies = [
        config.companies[0],
        config.companies[1].model_copy(update={"agents": [fast, agents[1]]}),
    ]
    config = config.model_copy(update={"companies": companies})
    async with open_stack(tmp_path, clock, config=config) as s:
        clock.advance(600)
        assert await s.scheduler.heartbeat.due(clock.now()) == ["mat-ceo"]
        assert (await s.scheduler.tick()).beats == {HeartbeatOutcome.NO_WORK: 1}


async def test_unauthenticated_agent_is_never_woken_and_heals_itself(
    tmp_path: Path, clock: ManualClock
) -> None:
    config = make_config(tmp_path)
    auth = make_auth(config, clock)
    async with open_stack(tmp_path, clock, config=config, auth=auth, wake_on_assign=False) as s:
        for agent in await s.service.agents():
            auth.issue(agent, fsync=False)
        cto = await s.service.agent("ali-cto")
        good = read_token_file(config.auth.token_dir, "ali-cto")
        await s.service.file_issue(title="needs a token", assignee="ali-cto", actor="o")
        hb = s.scheduler.heartbeat

        auth.token_file("ali-cto").unlink()
        beat = await hb.beat("ali-cto", forced=True)
        assert beat is not None and beat.outcome is HeartbeatOutcome.UNAUTHENTICATED
        agent = await s.service.agent("ali-cto")
        assert (agent.status, agent.reason_code) == (
            AgentStatus.UNAUTHENTICATED,
            AuthReason.MISSING_FILE.value,
        )
        assert "ali-cto.jwt" in agent.reason, "the reason names the file"

        # A token signed with some other secret under the same key id: the classic outage.
        claims = jwt.decode(good, options={"verify_signature": False})
        kid = jwt.get_unverified_header(good)["kid"]
        forged = jwt.encode(claims, b"a-different-secret-32-bytes-long!", "HS256", {"kid": kid})
        write_token_file(config.auth.token_dir, "ali-cto", forged, fsync=False)
        beat = await _beat_due_one(s, "ali-cto")
        assert beat is HeartbeatOutcome.UNAUTHENTICATED
        agent = await s.service.agent("ali-cto")
        assert (agent.status, agent.reason_code) == (
            AgentStatus.UNAUTHENTICATED,
            AuthReason.BAD_SIGNATURE.value,
        )
        assert s.runtimes.calls == [], "an agent whose token fails costs zero runtime calls"
        assert good not in agent.reason and forged not in agent.reason
        assert (await s.service.issue("ALI-1")).attempts == 0

        auth.issue(cto, fsync=False)
        assert await _beat_due_one(s, "ali-cto") is HeartbeatOutcome.DISPATCHED
        assert s.runtimes.calls_for(agent_id="ali-cto") == 1
        assert (await s.service.agent("ali-cto")).status is AgentStatus.RUNNING
        assert await heartbeat_counts(s.service, "ali-cto") == {
            "unauthenticated": 2,
            "dispatched": 1,
        }


async def test_restored_token_returns_idle_agent_with_no_work(
    tmp_path: Path, clock: ManualClock
) -> None:
    config = make_config(tmp_path)
    auth = make_auth(config, clock)
    async with open_stack(tmp_path, clock, config=config, auth=auth) as s:
        ceo = await s.service.agent("ali-ceo")
        hb: Heartbeat = s.scheduler.heartbeat
        beat = await hb.beat("ali-ceo", forced=True)
        assert beat is not None and beat.outcome is HeartbeatOutcome.UNAUTHENTICATED
        auth.issue(ceo, fsync=False)
        beat = await hb.beat("ali-ceo", forced=True)
        assert beat is not None and beat.outcome is HeartbeatOutcome.NO_WORK
        agent = await s.service.agent("ali-ceo")
        assert (agent.status, agent.reason, agent.reason_code) == (AgentStatus.IDLE, "", "")


async def _beat_due_one(s: Stack, agent_id: str) -> HeartbeatOutcome:
    """Sweep at the next heartbeat; the outcome recorded for `agent_id`."""
    before = await heartbeat_counts(s.service, agent_id)
    s.clock.advance(FOUR_HOURS)
    await s.scheduler.tick()
    await s.scheduler.drain()
    after = await heartbeat_counts(s.service, agent_id)
    (grown,) = [k for k, n in after.items() if n != before.get(k, 0)]
    return HeartbeatOutcome(grown)
