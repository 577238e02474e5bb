"""The retry policy as a table: attempts, budget, status, backoff and now in; retry or block out."""

from __future__ import annotations

import pytest

from core.engine.retry import Block, Retry, after_failure
from core.models import IssueStatus

NOW = 1_000_000.0
TODO, IN_PROGRESS, IN_REVIEW, BLOCKED = (
    IssueStatus.TODO,
    IssueStatus.IN_PROGRESS,
    IssueStatus.IN_REVIEW,
    IssueStatus.BLOCKED,
)
SPENT = Block("attempt budget spent: 3 of 3 runs failed")


@pytest.mark.parametrize(
    "attempts,max_attempts,status,backoff,expected",
    [
        # Each retry waits twice as long as the one before: 1, 2, 4 … backoffs.
        (1, 3, IN_PROGRESS, 60, Retry(NOW + 60)),
        (2, 3, IN_PROGRESS, 60, Retry(NOW + 120)),
        (2, 5, IN_PROGRESS, 60, Retry(NOW + 120)),
        (4, 5, IN_PROGRESS, 60, Retry(NOW + 480)),
        (1, 3, IN_PROGRESS, 1.5, Retry(NOW + 1.5)),
        # A run that never counted an attempt (a claim) waits one backoff, not half of one.
        (0, 3, IN_PROGRESS, 60, Retry(NOW + 60)),
        (1, 3, IN_PROGRESS, 0, Retry(NOW)),
        # The budget spent: work its agent was doing is blocked, with a reason that says so.
        (3, 3, IN_PROGRESS, 60, SPENT),
        (3, 3, TODO, 60, SPENT),
        (4, 3, IN_PROGRESS, 60, Block("attempt budget spent: 4 of 3 runs failed")),
        (1, 1, IN_PROGRESS, 60, Block("attempt budget spent: 1 of 1 runs failed")),
        # An issue in review or already blocked is not blocked again: it only backs off.
        (3, 3, IN_REVIEW, 60, Retry(NOW + 240)),
        (3, 3, BLOCKED, 60, Retry(NOW + 240)),
    ],
)
def test_after_failure(
    attempts: int,
    max_attempts: int,
    status: IssueStatus,
    backoff: float,
    expected: Retry | Block,
) -> None:
    assert after_failure(attempts, max_attempts, status, backoff, NOW) == expected
