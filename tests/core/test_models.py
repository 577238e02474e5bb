"""The issue status graph, enforced by the service on a real store, and human durations."""

from __future__ import annotations

import itertools
import math

import pytest

from core.durations import USAGE, format_duration, parse_duration
from core.errors import InvalidTransition
from core.events import IssueAssigned
from core.models import (
    ISSUE_TRANSITIONS,
    OPEN_ISSUE_STATUSES,
    TERMINAL_ISSUE_STATUSES,
    IssueStatus,
    transition_allowed,
)
from core.service import FleetService

S = IssueStatus
# Legal paths from a freshly filed issue (todo) into each status.
PATH_TO = {
    S.BACKLOG: [S.BACKLOG],
    S.TODO: [],
    S.IN_PROGRESS: [S.IN_PROGRESS],
    S.IN_REVIEW: [S.IN_PROGRESS, S.IN_REVIEW],
    S.DONE: [S.IN_PROGRESS, S.DONE],
    S.BLOCKED: [S.BLOCKED],
    S.CANCELLED: [S.CANCELLED],
}
ALL_PAIRS = list(itertools.product(IssueStatus, IssueStatus))
ALLOWED = [(a, b) for a, b in ALL_PAIRS if b in ISSUE_TRANSITIONS[a]]
REFUSED = [(a, b) for a, b in ALL_PAIRS if b not in ISSUE_TRANSITIONS[a]]


def _pair_id(pair: tuple[IssueStatus, IssueStatus]) -> str:
    return f"{pair[0].value}->{pair[1].value}"


async def _issue_in(service: FleetService, status: IssueStatus) -> str:
    issue = await service.file_issue(title="Ship it", assignee="ali-cto", actor="owner")
    for step in PATH_TO[status]:
        await service.move(issue.id, step, actor="owner")
    assert (await service.issue(issue.id)).status is status
    return issue.id


def test_graph_shape_matches_the_design() -> None:
    assert set(ISSUE_TRANSITIONS) == set(IssueStatus)
    assert {S.DONE, S.CANCELLED} == TERMINAL_ISSUE_STATUSES
    for status in IssueStatus:
        assert status.terminal == (status in TERMINAL_ISSUE_STATUSES)
        assert status not in ISSUE_TRANSITIONS[status], "no self-loops"
    for terminal in TERMINAL_ISSUE_STATUSES:
        assert ISSUE_TRANSITIONS[terminal] == frozenset()
    for open_status in OPEN_ISSUE_STATUSES:
        assert S.CANCELLED in ISSUE_TRANSITIONS[open_status]
        if open_status is not S.BLOCKED:
            assert S.BLOCKED in ISSUE_TRANSITIONS[open_status]
    assert len(ALLOWED) == 17 and len(REFUSED) == 32


@pytest.mark.parametrize("pair", REFUSED, ids=_pair_id)
async def test_refused_transition(service: FleetService, pair: tuple[IssueStatus, IssueStatus]):
    start, target = pair
    assert not transition_allowed(start, target)
    issue_id = await _issue_in(service, start)
    audit_before = len(await service.audit_log(500))
    with pytest.raises(InvalidTransition) as err:
        await service.move(issue_id, target, actor="owner")
    message = str(err.value)
    assert issue_id in message
    if start.terminal:
        assert "final" in message and "file a new issue" in message
    else:
        # The refusal names every status the issue can go to from here.
        assert f"it can go to: {', '.join(sorted(s.value for s in ISSUE_TRANSITIONS[start]))}" in (
            message
        )
    after = await service.issue(issue_id)
    assert after.status is start, "a refused move changes nothing"
    assert len(await service.audit_log(500)) == audit_before, "and audits nothing"


@pytest.mark.parametrize("pair", ALLOWED, ids=_pair_id)
async def test_allowed_transition(service: FleetService, pair: tuple[IssueStatus, IssueStatus]):
    start, target = pair
    issue_id = await _issue_in(service, start)
    moved = await service.move(issue_id, target, actor="owner", reason="because")
    assert moved.status is target
    assert (await service.issue(issue_id)).status is target
    last = (await service.audit_log(1))[0]
    assert (last["actor"], last["action"], last["target"]) == ("owner", "issue.move", issue_id)


async def test_retry_from_blocked_resets_budget_and_wakes_the_assignee(service: FleetService):
    issue_id = await _issue_in(service, S.BLOCKED)
    async with service.db.write() as conn:
        await conn.execute(
            "UPDATE issues SET attempts = 3, not_before = ? WHERE id = ?",
            (service.clock.now() + 999, issue_id),
        )
    seen: list[object] = []
    service.events.subscribe(seen.append)
    retried = await service.move(issue_id, S.TODO, actor="owner")
    assert (retried.attempts, retried.not_before) == (0, None)
    assert IssueAssigned(issue_id, "ali-cto") in seen


# -- durations ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("15m", 900),
        ("4h", 14_400),
        ("1h30m", 5_400),
        ("30d", 2_592_000),
        ("1w", 604_800),
        ("250ms", 0.25),
        ("1.5h", 5_400),
        ("90s", 90),
        ("0", 0),
        (" 4 H ", 14_400),
        ("2d12h", 216_000),
        ("1m30s", 90),
        ("1.5s", 1.5),
        (0, 0),
    ],
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "abc",
        "4x",
        "h",
        "4h-",
        "-5",
        "1e3",
        "4h 30",
        "--1s",
        -5,
        -0.5,
        True,
        None,
        [],
        {},
        math.nan,
        math.inf,
    ],
)
def test_parse_duration_refuses_with_usage(bad: object) -> None:
    with pytest.raises(ValueError) as err:
        parse_duration(bad)
    assert USAGE in str(err.value)
    assert repr(bad) in str(err.value), "the message quotes what was written"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.25, "250ms"),
        (0.9996, "1s"),
        (1, "1s"),
        (59.6, "1m"),
        (90, "1m30s"),
        (3_600, "1h"),
        (5_400, "1h30m"),
        (14_400, "4h"),
        (86_400, "1d"),
        (2_592_000, "30d"),
        (90_061, "1d1h"),  # two units at most: readable beats exact
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [0.5, 1, 45, 60, 61, 3_599, 3_600, 7_260, 86_400, 97_200])
def test_format_then_parse_round_trips(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)
