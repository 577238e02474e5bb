"""The agent CLI's client against httpx.MockTransport: every refusal of the API becomes the exit
code and the next step the agent reads, and only what cannot double up is retried."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from fleetbot.agent.client import Client
from fleetbot.agent.errors import AgentError

Handler = Any


def client(handler: Handler, sleeps: list[float] | None = None) -> Client:
    waits = sleeps if sleeps is not None else []
    return Client(
        "http://fleet.test:8080/api/v1/",
        "the-token",
        transport=httpx.MockTransport(handler),
        sleep=waits.append,
    )


def refusal(status: int, code: str, detail: str = "", **extra: Any) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"error": code, "detail": detail, **extra})

    return handle


def fail(status: int, code: str, detail: str = "", **extra: Any) -> AgentError:
    with client(refusal(status, code, detail, **extra)) as api, pytest.raises(AgentError) as e:
        api.call("POST", "/runs/r1/finish", {"outcome": "done"})
    return e.value


@pytest.mark.parametrize(
    ("status", "code", "exit", "says"),
    [
        (401, "run_ended", 3, "this run is over; stop working and end your turn"),
        (401, "expired", 3, "your token expired; stop working and end your turn with your "),
        (401, "revoked", 3, "revoked"),
        (401, "missing_token", 3, "set FLEETBOT_TOKEN or pass --token-file FILE"),
        (401, "bad_signature", 3, "refused the token (bad_signature)"),
        (403, "skill_denied", 3, "carry on without it"),
        (403, "not_your_run", 3, "use the run id your wake gave you (FLEETBOT_RUN_ID)"),
        (404, "issue_not_found", 4, "`fleetbot agent inbox` lists yours"),
        (404, "question_not_found", 4, "check the question id (Q7 or 7)"),
        (409, "lease_conflict", 5, "another live run holds this issue"),
        (409, "run_not_active", 5, "this run has already ended; stop working"),
        (409, "max_turns_exceeded", 5, "reached its turn cap and was stopped"),
        (409, "no_open_question", 5, "ask first (`fleetbot agent ask`)"),
        (409, "invalid_transition", 5, "`fleetbot agent show` shows the issue as it is now"),
        (409, "issue_closed", 5, "`fleetbot agent show` shows the issue as it is now"),
        (422, "invalid_body", 2, "fix the arguments and try again"),
        (413, "body_too_large", 2, "too long; shorten it"),
        (500, "boom", 1, "the API answered 500"),
    ],
)
def test_each_refusal_maps_to_an_exit_code_and_a_next_step(
    status: int, code: str, exit: int, says: str
) -> None:
    error = fail(status, code, "the server's own sentence.")
    assert (error.exit, error.code, error.status) == (exit, code, status)
    assert says in error.message
    # 401s speak to an operator (the agent gets our advice instead); the rest keep the detail.
    assert ("the server's own sentence" in error.message) is (status != 401)
    assert error.json()["exit"] == exit and error.json()["error"] == code


def test_an_ambiguous_assignee_lists_whom_to_pick() -> None:
    error = fail(422, "ambiguous_assignee", "'cto' matches 2 agents", choices=["ash", "bishop"])
    assert error.exit == 2
    assert error.message == "'cto' matches 2 agents; pick one agent id with --to: ash, bishop"


def test_the_token_goes_in_the_header_and_paths_under_api_v1() -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"agent_id": "bishop"})

    with client(handle) as api:
        assert api.call("GET", "/me") == {"agent_id": "bishop"}
    assert str(seen[0].url) == "http://fleet.test:8080/api/v1/me"
    assert seen[0].headers["authorization"] == "Bearer the-token"


def test_a_refused_connection_is_retried_then_reported_unreachable() -> None:
    tries: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        tries.append(request)
        raise httpx.ConnectError("[Errno 111] Connection refused")

    sleeps: list[float] = []
    with client(handle, sleeps) as api, pytest.raises(AgentError) as e:
        api.call("POST", "/issues/ALI-1/comments", {"body": "hi"})
    assert len(tries) == 3 and sleeps == [0.5, 1.5]
    assert e.value.exit == 6 and e.value.code == "unreachable"
    assert e.value.message == (
        "cannot reach fleetbot's API at http://fleet.test:8080 (no connection: [Errno 111] "
        "Connection refused); end your turn with your summary as the reply (fleetbot records "
        "it when the turn ends)"
    )


def test_fleetbot_coming_back_within_the_retries_is_no_error() -> None:
    answers = iter([httpx.ConnectError("refused"), httpx.Response(201, json={"id": 4})])

    def handle(request: httpx.Request) -> httpx.Response:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    with client(handle) as api:
        assert api.call("POST", "/summaries", {"body": "x"}) == {"id": 4}


def test_a_timeout_is_not_retried_since_the_request_may_have_landed() -> None:
    tries: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        tries.append(request)
        raise httpx.ReadTimeout("timed out")

    with client(handle) as api, pytest.raises(AgentError) as e:
        api.call("POST", "/issues/ALI-1/comments", {"body": "hi"})
    assert len(tries) == 1 and e.value.exit == 6
    assert "may or may not have been recorded (`fleetbot agent show` tells)" in e.value.message


def test_a_busy_store_is_retried_after_its_retry_after() -> None:
    tries: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        tries.append(request)
        body = {"error": "store_unavailable", "detail": "the database is locked"}
        return httpx.Response(503, json=body, headers={"Retry-After": "30"})

    sleeps: list[float] = []
    with client(handle, sleeps) as api, pytest.raises(AgentError) as e:
        api.call("GET", "/inbox")
    assert len(tries) == 3 and sleeps == [5.0, 5.0]  # Retry-After, capped
    assert e.value.exit == 6 and e.value.code == "store_unavailable"
    assert e.value.message.startswith("the database is locked; fleetbot cannot serve this now")


def test_something_that_is_not_fleetbot() -> None:
    def html(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>hello</html>")

    def no_route(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, text="Not Found")

    with client(html) as api, pytest.raises(AgentError) as e:
        api.call("GET", "/me")
    assert e.value.exit == 1 and "is FLEETBOT_API_URL fleetbot's API?" in e.value.message
    with client(no_route) as api, pytest.raises(AgentError) as e:
        api.call("GET", "/me")
    assert e.value.exit == 4 and "has no such route" in e.value.message
