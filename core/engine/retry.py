"""What follows a failed run of an issue: a retry after a backoff, or a block.

`after_failure` is a pure function of the issue's attempts and status, the backoff and `now`;
core.runs applies its answer in the transaction that ends the run. Each issue has a budget of
`max_attempts` runs (defaults.max_attempts): once they are spent, an issue its agent was working
on (todo, in_progress) is blocked and escalated instead of looping. Until then, retry number n
waits `retry_backoff * 2^(n-1)`: 1, 2, 4, 8 … backoffs.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.models import WORKABLE_ISSUE_STATUSES, IssueStatus


@dataclass(frozen=True, slots=True)
class Retry:
    at: float  # the issue is workable again from then (its not_before)


@dataclass(frozen=True, slots=True)
class Block:
    reason: str  # the issue's reason, as the owner reads it


def after_failure(
    attempts: int, max_attempts: int, status: IssueStatus, backoff: float, now: float
) -> Retry | Block:
    """The next step for an issue whose run number `attempts` just failed."""
    if attempts >= max_attempts and status in WORKABLE_ISSUE_STATUSES:
        return Block(f"attempt budget spent: {attempts} of {max_attempts} runs failed")
    return Retry(now + backoff * (2 ** max(0, attempts - 1)))
