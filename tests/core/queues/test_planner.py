"""The planner on a real stack: opt-in per company, one planning issue only once the queue stayed
empty with the backlog drained, never a second while one is open, not again within its period,
to the configured agent or the top of the reports_to chain, with goals and done work in its body."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from queue_stack import Priced, audit_rows, queue_config, watchdog
from stack_helpers import Stack, config_data, open_stack

from core.alerting.book import AlertKind
from core.clock import ManualClock
from core.config import parse_config
from core.config.schema import CompanyConfig
from core.errors import ConfigError
from core.models import PLANNER, Issue, IssueStatus
from core.queues.planner import Planner, planner_spec

DAY = 86400.0
TITLE = "The queue of Aliens Inc is empty: file the next work"
GOALS = ["Ship the v2 onboarding", "Keep churn under 3 %"]


def _planner(s: Stack) -> Planner:
    return Planner(s.service, s.db, s.config, s.clock, s.service.events)


async def _empty_beats(s: Stack, n: int = 3, agent_id: str = "ali-cmo") -> None:
    """`n` heartbeats that find nothing to do: the queue_empty condition."""
    for _ in range(n):
        await s.scheduler.heartbeat.beat(agent_id, forced=True)


async def _plan(s: Stack, planner: Planner) -> list[Issue]:
    filed = await planner.tick()
    await s.scheduler.drain()  # the planning issue is dispatched to its planner
    return filed


async def test_one_planning_issue_per_empty_period(tmp_path: Path, clock: ManualClock) -> None:
    config = queue_config(tmp_path, aliens={"planner": {"goals": GOALS, "every": "1d"}})
    behaviour = Priced(in_review={TITLE})  # the planner's run ends in review: still open
    async with open_stack(tmp_path, clock, config=config, behaviour=behaviour) as s:
        planner = _planner(s)
        await s.service.file_issue(title="Ship login", assignee="ali-cto", actor="al")
        await s.scheduler.drain()
        assert (await s.service.issue("ALI-1")).status is IssueStatus.DONE
        await s.service.pause("ali-qa-1", "al")
        later = await s.service.file_issue(
            title="Later", assignee="ali-qa-1", actor="al", backlog=True
        )
        await _empty_beats(s, 2)
        assert await _plan(s, planner) == []  # not empty for long enough yet
        await _empty_beats(s, 1)
        assert await _plan(s, planner) == []  # the backlog is not drained
        aliens = config.companies[0]
        assert (await planner.state(aliens)).note() == (
            "1 backlog item(s) wait on agents that are not idle (paused, in error, or outside "
            "active hours)"
        )
        await s.service.move(later.id, IssueStatus.CANCELLED, "al")
        [p1] = await _plan(s, planner)
        assert (p1.title, p1.assignee_id, p1.created_by, p1.company_id) == (
            TITLE,
            "ali-ceo",
            PLANNER,
            "aliens",
        )
        assert "Goals:\n- Ship the v2 onboarding\n- Keep churn under 3 %" in p1.body
        assert "Recently done:\n- ALI-1 Ship login" in p1.body
        assert "roles here: ceo, cmo, cto, qa" in p1.body
        assert ("fleetbot", "issue.file", p1.id) in await audit_rows(s.service, "issue.file")
        assert [j.issue["id"] for j in s.runtimes.calls if j.agent_id == "ali-ceo"] == [p1.id]
        assert (await s.service.issue(p1.id)).status is IssueStatus.IN_REVIEW
        # Its run is over and its issue waits in review: the queue is empty again.
        await _empty_beats(s)
        async with watchdog(s, planner) as w:
            [alert] = await w.alerts(AlertKind.QUEUE_EMPTY)
            assert alert.active_members[0].detail.endswith(
                f"; backlog empty; planning issue {p1.id} filed to ali-ceo at 01 Jan 00:00 UTC"
            )
        assert await _plan(s, planner) == []  # one is open
        clock.advance(3600)
        await s.service.move(p1.id, IssueStatus.DONE, "al")
        await _empty_beats(s)
        assert await _plan(s, planner) == []  # planned this period already
        assert (await planner.state(aliens)).note() == (
            "backlog empty; planned this period already: next at 02 Jan 00:00 UTC"
        )
        clock.advance(DAY - 3600)
        [p2] = await _plan(s, planner)
        assert f"Recently done:\n- {p1.id} {TITLE}\n- ALI-1 Ship login" in p2.body
        clock.advance(3 * DAY)  # periods pass, but p2 is still open (in review)
        await _empty_beats(s)
        assert await _plan(s, planner) == []
        await _empty_beats(s, agent_id="mat-ceo")  # matrix has no planner: it never plans
        assert await _plan(s, planner) == []
        filed = await s.db.fetchall(
            "SELECT id, company_id FROM issues WHERE created_by = ?", (PLANNER,)
        )
        assert [tuple(r) for r in filed] == [(p1.id, "aliens"), (p2.id, "aliens")]


async def test_work_in_any_inbox_means_no_planning(tmp_path: Path, clock: ManualClock) -> None:
    config = queue_config(tmp_path, aliens={"planner": {}})
    async with open_stack(tmp_path, clock, config=config, wake_on_assign=False) as s:
        await _empty_beats(s)
        await s.service.file_issue(title="queued", assignee="ali-qa-2", actor="al")
        assert await _plan(s, _planner(s)) == []  # arrived since the beats were counted
        await s.service.pause("ali-qa-2", "al")  # a paused agent's inbox is still work
        await _empty_beats(s)
        assert await _plan(s, _planner(s)) == []
        assert await s.db.scalar("SELECT count(*) FROM issues") == 1


@pytest.mark.parametrize(
    ("assignee", "expected"),
    [(None, "ali-ceo"), ("cmo", "ali-cmo"), ("ali-qa-2", "ali-qa-2")],
)
async def test_planning_goes_to_the_configured_planner_or_the_top(
    tmp_path: Path, clock: ManualClock, assignee: str | None, expected: str
) -> None:
    planner_cfg: dict[str, Any] = {} if assignee is None else {"assignee": assignee}
    config = queue_config(tmp_path, aliens={"planner": planner_cfg})
    async with open_stack(tmp_path, clock, config=config) as s:
        await _empty_beats(s)
        [issue] = await _plan(s, _planner(s))
        assert issue.assignee_id == expected
        assert [j.agent_id for j in s.runtimes.calls] == [expected]


def _matrix(
    tmp_path: Path, agents: list[dict[str, Any]], planner: dict[str, Any] | None
) -> CompanyConfig:
    data = config_data(tmp_path)
    data["companies"][1]["agents"] = agents
    if planner is not None:
        data["companies"][1]["planner"] = planner
    return parse_config(data, "test").companies[1]


@pytest.mark.parametrize(
    ("agents", "planner", "expected"),
    [
        # The root most agents report up to, not the first root.
        (
            [
                {"id": "solo", "role": "ceo"},
                {"id": "boss", "role": "coo"},
                {"id": "mid", "role": "cto", "reports_to": "boss"},
                {"id": "dev", "role": "dev", "reports_to": "mid"},
            ],
            {},
            "boss",
        ),
        ([{"id": "a", "role": "ceo"}, {"id": "b", "role": "cto"}], {}, "a"),  # a tie: first
        ([{"id": "a", "role": "ceo"}, {"id": "b", "role": "cto"}], {"assignee": "cto"}, "cto"),
        ([{"id": "a", "role": "ceo"}], None, None),  # no planner: opt-in
    ],
)
def test_planner_spec(
    tmp_path: Path, agents: list[dict[str, Any]], planner: dict[str, Any] | None, expected: str
) -> None:
    assert planner_spec(_matrix(tmp_path, agents, planner)) == expected


@pytest.mark.parametrize(
    ("planner", "says"),
    [
        ({"every": "5m"}, "plan at most every 10m"),
        ({"assignee": "nobody"}, "'nobody' is no agent id or role of aliens"),
    ],
)
def test_bad_planner_config(tmp_path: Path, planner: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError) as err:
        queue_config(tmp_path, aliens={"planner": planner})
    assert says in str(err.value)
