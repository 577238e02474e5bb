"""Transient failures are retried inside the run's deadline with the identical request (through
the http runtime; the openclaw hooks share the machinery). The clock moves only when the runtime
sleeps, so minutes of backoff take no time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from runtime_fakes import FakeTime, Loopback, Seen, job, serving

from core.config import HttpRuntime
from core.errors import AgentBadStatus, AgentTimeout, AgentUnreachable
from core.models import RunOutcome
from core.runtimes.base import ACCEPTED, DispatchResult
from core.runtimes.http import HttpAgentRuntime
from core.runtimes.webhook import backoff, retry_after

DONE = httpx.Response(200, json={"status": "done", "summary": "Fixed it"})
FIXED = DispatchResult(finished=True, outcome=RunOutcome.DONE, summary="Fixed it")


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
async def loopback() -> AsyncIterator[Loopback]:
    async with serving() as srv:
        yield srv


def scripted(*steps: httpx.Response | Exception) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport that plays `steps` in order (the last one repeats) and records requests."""
    seen: list[httpx.Request] = []
    plays: Iterator[httpx.Response | Exception] = iter(steps)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        step = next(plays, steps[-1])
        if isinstance(step, Exception):
            raise step
        return httpx.Response(step.status_code, headers=step.headers, content=step.content)

    return httpx.MockTransport(handler), seen


def runtime(
    transport: httpx.AsyncBaseTransport | None, clock: FakeTime, **kw: Any
) -> HttpAgentRuntime:
    config = HttpRuntime(kind="http", url=kw.pop("url", "http://agent.test/wake"), **kw)
    return HttpAgentRuntime(config, {}, transport=transport, clock=clock.clock, sleep=clock.sleep)


def same_request(seen: list[httpx.Request]) -> None:
    """Every attempt sent the same bytes under the same idempotency key."""
    assert len({request.content for request in seen}) == 1
    assert {request.headers["idempotency-key"] for request in seen} == {"run-42"}


@pytest.mark.parametrize(
    "first",
    [
        httpx.Response(503),
        httpx.Response(502),
        httpx.Response(504),
        httpx.ConnectError("[Errno 111] Connection refused"),
        httpx.ReadError("[Errno 104] Connection reset by peer"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ConnectTimeout("slow to connect"),
        httpx.ReadTimeout("the answer was lost"),
    ],
    ids=lambda step: getattr(step, "status_code", type(step).__name__),
)
async def test_a_transient_failure_is_retried_with_the_identical_request(
    fake_time: FakeTime, first: httpx.Response | Exception
) -> None:
    transport, seen = scripted(first, first, DONE)
    async with runtime(transport, fake_time) as rt:
        assert await rt.dispatch(job(deadline=fake_time.now + 60)) == FIXED
    assert len(seen) == 3
    same_request(seen)
    assert fake_time.slept == [0.5, 1.0]


async def test_backoff_doubles_to_a_cap_and_stops_before_the_deadline(fake_time: FakeTime) -> None:
    transport, seen = scripted(httpx.Response(503, content=b"overloaded"))
    async with runtime(transport, fake_time) as rt:
        with pytest.raises(AgentBadStatus) as info:
            await rt.dispatch(job(deadline=fake_time.now + 40))
    assert fake_time.slept == [0.5, 1, 2, 4, 8, 8, 8, 8]
    assert sum(fake_time.slept) < 40  # never slept past the deadline
    assert len(seen) == 9
    same_request(seen)
    assert info.value.code == "runtime_bad_status"
    assert str(info.value) == (
        "agent at http://agent.test/wake answered 503 Service Unavailable (overloaded) (tried 9 "
        "times over 39.5 s; the run's deadline is too near to try again); check its logs and load."
    )


def test_backoff_table() -> None:
    assert [backoff(n) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 8, 8]


async def test_refused_until_the_deadline_says_so(fake_time: FakeTime) -> None:
    transport, seen = scripted(httpx.ConnectError("[Errno 111] Connection refused"))
    async with runtime(transport, fake_time) as rt:
        with pytest.raises(AgentUnreachable) as info:
            await rt.dispatch(job(deadline=fake_time.now + 3))
    assert len(seen) == 3 and fake_time.slept == [0.5, 1.0]
    assert str(info.value).startswith(
        "cannot reach agent at http://agent.test/wake ([Errno 111] Connection refused) "
        "(tried 3 times over 1.5 s; the run's deadline is too near to try again)"
    )


async def test_429_with_retry_after_waits_as_asked(fake_time: FakeTime) -> None:
    busy = httpx.Response(429, headers={"Retry-After": "7"})
    transport, seen = scripted(busy, DONE)
    async with runtime(transport, fake_time) as rt:
        assert await rt.dispatch(job(deadline=fake_time.now + 60)) == FIXED
    assert fake_time.slept == [7.0] and len(seen) == 2
    same_request(seen)


async def test_retry_after_zero_does_not_spin(fake_time: FakeTime) -> None:
    now = httpx.Response(429, headers={"Retry-After": "0"})
    transport, seen = scripted(now, now, DONE)
    async with runtime(transport, fake_time) as rt:
        assert await rt.dispatch(job(deadline=fake_time.now + 60)) == FIXED
    assert fake_time.slept == [0.5, 1.0] and len(seen) == 3


async def test_429_retry_after_as_an_http_date(fake_time: FakeTime) -> None:
    when = datetime.fromtimestamp(int(fake_time.now) + 5, tz=UTC)
    busy = httpx.Response(429, headers={"Retry-After": format_datetime(when, usegmt=True)})
    transport, _ = scripted(busy, DONE)
    async with runtime(transport, fake_time) as rt:
        assert await rt.dispatch(job(deadline=fake_time.now + 60)) == FIXED
    [slept] = fake_time.slept
    assert 4 <= slept <= 5


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("12", 12.0), ("0", 0.0), ("soon", None), ("", None), ("-3", None)],
)
def test_retry_after_parsing(value: str, seconds: float | None) -> None:
    response = httpx.Response(429, headers={"Retry-After": value} if value else {})
    assert retry_after(response, 0.0) == seconds


async def test_retry_after_past_the_deadline_fails_at_once(fake_time: FakeTime) -> None:
    transport, seen = scripted(httpx.Response(429, headers={"Retry-After": "60"}))
    async with runtime(transport, fake_time) as rt:
        with pytest.raises(AgentBadStatus) as info:
            await rt.dispatch(job(deadline=fake_time.now + 10))
    assert len(seen) == 1 and fake_time.slept == []
    assert "answered 429 Too Many Requests asking to retry in 60 s" in str(info.value)
    assert "the run's deadline is too near to try again" in str(info.value)


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(429),  # no Retry-After: nothing says when it would help
        httpx.Response(500, content=b"oops"),
        httpx.Response(400),
        httpx.Response(401),
        httpx.Response(404),
    ],
    ids=lambda r: str(r.status_code),
)
async def test_other_answers_are_final(fake_time: FakeTime, answer: httpx.Response) -> None:
    transport, seen = scripted(answer)
    async with runtime(transport, fake_time) as rt:
        with pytest.raises(AgentBadStatus, match=f"answered {answer.status_code} "):
            await rt.dispatch(job(deadline=fake_time.now + 60))
    assert len(seen) == 1 and fake_time.slept == []


async def test_an_unusable_url_is_not_retried(fake_time: FakeTime) -> None:
    async with runtime(None, fake_time, url="ftp://agent.test/wake") as rt:
        with pytest.raises(AgentUnreachable, match="unusable URL"):
            await rt.dispatch(job(deadline=fake_time.now + 60))
    assert fake_time.slept == []


async def test_an_answer_later_than_the_timeout_is_waited_for(loopback: Loopback) -> None:
    """The per-attempt timeout bounds connecting; the answer may come as late as the deadline."""

    async def late(_: Seen) -> tuple[int, dict[str, str], bytes]:
        await asyncio.sleep(0.2)
        return 200, {"Content-Type": "application/json"}, b'{"status": "done", "summary": "ok"}'

    loopback.answer = late
    config = HttpRuntime(kind="http", url=loopback.url + "/wake", timeout="50ms")
    async with HttpAgentRuntime(config, {}) as rt:
        result = await rt.dispatch(job(deadline_in=5))
    assert result == DispatchResult(finished=True, outcome=RunOutcome.DONE, summary="ok")
    assert len(loopback.seen) == 1


async def test_a_dropped_connection_is_retried_and_the_agent_sees_one_key(
    loopback: Loopback,
) -> None:
    """A real server that drops the first request unanswered: the retry is byte-identical."""
    answers: list[tuple[int, dict[str, str], bytes] | None] = [None, (202, {}, b"")]

    async def flaky(_: Seen) -> tuple[int, dict[str, str], bytes] | None:
        return answers.pop(0)

    loopback.answer = flaky
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    config = HttpRuntime(kind="http", url=loopback.url + "/wake")
    async with HttpAgentRuntime(config, {}, sleep=sleep) as rt:
        assert await rt.dispatch(job()) is ACCEPTED
    first, second = loopback.seen
    assert first.body == second.body and first.headers["idempotency-key"] == "run-42"
    assert second.headers["idempotency-key"] == "run-42" and slept == [0.5]


async def test_the_deadline_ends_a_wait_for_an_answer() -> None:
    async def stall(_: httpx.Request) -> httpx.Response:
        await asyncio.sleep(10)
        return httpx.Response(204)

    rt = HttpAgentRuntime(
        HttpRuntime(kind="http", url="http://agent.test/"), {}, transport=httpx.MockTransport(stall)
    )
    async with rt:
        with pytest.raises(AgentTimeout, match="when the run's deadline came"):
            await rt.dispatch(job(deadline_in=0.2))
