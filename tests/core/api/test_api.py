"""The agent HTTP API through its ASGI app (and once over a real loopback socket): every route
with good and bad bodies, the error codes an agent relies on, and no 500 on hostile input."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from store_helpers import storage

from core.auth.keyring import KeyRing
from core.auth.tokens import read_token_file
from core.config import parse_config
from core.fleet import Fleet
from core.models import IssueStatus, Run, RunOutcome, RunStatus
from tests.api_helpers import FLEET_YAML, ApiStack, api_stack

# Every route of the design, with a body that would be accepted from the right caller.
AGENT_ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/v1/me", None),
    ("GET", "/api/v1/inbox", None),
    ("POST", "/api/v1/issues", {"title": "t", "assignee": "bishop"}),
    ("GET", "/api/v1/issues/ALI-1", None),
    ("PATCH", "/api/v1/issues/ALI-1", {"status": "in_progress"}),
    ("POST", "/api/v1/issues/ALI-1/claim", {"run_id": "r1"}),
    ("POST", "/api/v1/issues/ALI-1/comments", {"body": "hi"}),
    ("POST", "/api/v1/runs/r1/usage", {"turns": 1}),
    ("POST", "/api/v1/runs/r1/finish", {"outcome": "done"}),
    ("POST", "/api/v1/summaries", {"body": "hi"}),
]
BODY_ROUTES = [r for r in AGENT_ROUTES if r[2] is not None]


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[ApiStack]:
    async with api_stack(tmp_path) as stack:
        yield stack


async def file(api: ApiStack, by: str, assignee: str, title: str = "Fix it") -> dict[str, Any]:
    r = await api.client.post(
        "/api/v1/issues", headers=api.headers(by), json={"title": title, "assignee": assignee}
    )
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


async def issue_with_run(api: ApiStack, agent: str) -> tuple[str, Run]:
    """An issue filed for `agent` by the CEO, and the live run a heartbeat opened on it."""
    company_ceo = "morpheus" if agent in ("morpheus", "trinity") else "ripley"
    issue = await file(api, company_ceo, agent)
    return issue["id"], await api.open_run(agent)


def tamper(token: str) -> str:
    """The same token with its signature's first character changed (a wrong signature)."""
    head, payload, sig = token.split(".")
    return f"{head}.{payload}.{'B' if sig[0] == 'A' else 'A'}{sig[1:]}"


def assert_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = r.json()
    assert body["error"] == code, body
    assert isinstance(body["detail"], str) and body["detail"]
    return body


# -- ops routes --------------------------------------------------------------------------------


async def test_healthz_needs_no_token(api: ApiStack) -> None:
    r = await api.client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "schema_version": api.db.schema_version}


async def test_metrics_count_requests_and_auth_failures(api: ApiStack) -> None:
    await api.client.get("/api/v1/me", headers=api.headers("ripley"))
    tampered = tamper(api.token("ripley"))
    await api.client.get("/api/v1/me", headers={"Authorization": f"Bearer {tampered}"})
    await api.client.get("/api/v1/me", headers={"Authorization": "Bearer junk"})
    r = await api.client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'fleetbot_api_requests_total{route="/api/v1/me",status="200"} 1.0' in text
    assert 'fleetbot_api_requests_total{route="/api/v1/me",status="401"} 2.0' in text
    # Refused tokens whose signature did not verify name no agent (issue 11).
    assert 'fleetbot_api_auth_failures_total{agent="unverified",reason="bad_signature"} 1.0' in text
    assert 'fleetbot_api_auth_failures_total{agent="unverified",reason="malformed"} 1.0' in text
    assert "ripley" not in text


async def test_openapi_lists_every_route_and_documents_bodies(api: ApiStack) -> None:
    r = await api.client.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    listed = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    want = {
        ("GET", "/healthz"),
        ("GET", "/metrics"),
        ("GET", "/api/v1/me"),
        ("GET", "/api/v1/inbox"),
        ("POST", "/api/v1/issues"),
        ("GET", "/api/v1/issues/{issue_id}"),
        ("PATCH", "/api/v1/issues/{issue_id}"),
        ("POST", "/api/v1/issues/{issue_id}/claim"),
        ("POST", "/api/v1/issues/{issue_id}/comments"),
        ("POST", "/api/v1/runs/{run_id}/usage"),
        ("POST", "/api/v1/runs/{run_id}/finish"),
        ("POST", "/api/v1/summaries"),
    }
    assert want <= listed, want - listed
    schemas = doc["components"]["schemas"]
    documented = 0
    for ops in doc["paths"].values():
        for op in ops.values():
            body = op.get("requestBody")
            if body is None:
                continue
            ref = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
            for name, prop in schemas[ref]["properties"].items():
                assert prop.get("description"), f"{ref}.{name} has no description"
                documented += 1
    assert documented >= 15


# -- authentication ----------------------------------------------------------------------------


async def test_every_agent_route_wants_a_token(api: ApiStack) -> None:
    for method, path, body in AGENT_ROUTES:
        r = await api.client.request(method, path, json=body)
        assert_error(r, 401, "missing_token")
        assert r.headers["www-authenticate"] == 'Bearer error="missing_token"'
        r = await api.client.request(method, path, json=body, headers={"Authorization": "Basic x"})
        assert_error(r, 401, "malformed")


async def test_refused_tokens_say_why_and_never_echo_the_token(api: ApiStack) -> None:
    good = api.token("ripley")
    head, payload, sig = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged_payload = base64.urlsafe_b64encode(json.dumps({**claims, "sub": "bishop"}).encode())
    forged = f"{head}.{forged_payload.decode().rstrip('=')}.{sig}"
    cases = {
        f"Bearer {tamper(good)}": "bad_signature",
        f"Bearer {forged}": "bad_signature",
        f"Bearer {head}.{payload}": "malformed",
        f"Bearer {good}.extra": "malformed",
        f"Token {good}": "malformed",
        "Bearer ": "malformed",
    }
    for header, code in cases.items():
        r = await api.client.get("/api/v1/me", headers={"Authorization": header})
        assert_error(r, 401, code)
        for secret_part in (good, payload, sig):
            assert secret_part not in r.text
            assert secret_part not in r.headers.get("www-authenticate", "")


async def test_expired_token_is_refused(api: ApiStack) -> None:
    api.clock.advance(31 * 86400)
    r = await api.client.get("/api/v1/me", headers=api.headers("ripley"))
    assert_error(r, 401, "expired")


# -- me and inbox ------------------------------------------------------------------------------


async def test_me_says_who_the_token_is(api: ApiStack) -> None:
    r = await api.client.get("/api/v1/me", headers=api.headers("bishop"))
    assert r.status_code == 200
    me = r.json()
    assert me["agent_id"] == "bishop"
    assert me["company_id"] == "aliens"
    assert me["role"] == "cto"
    assert me["skills"] == ["issues.create", "summaries.post"]
    assert me["kid"] == KeyRing.load(api.config.auth.keyring).active.kid
    assert me["expires_at"] == int(api.clock.now() + api.config.auth.token_ttl)
    assert me["run_id"] is None
    assert me["status"] == "idle"


async def test_inbox_is_oldest_first_and_only_open_work(api: ApiStack) -> None:
    first = await file(api, "ripley", "bishop", "first")
    api.clock.advance(10)
    second = await file(api, "ripley", "bishop", "second")
    api.clock.advance(10)
    await file(api, "ripley", "ash", "not bishop's")
    third = await file(api, "ripley", "bishop", "third")
    await api.service.move(second["id"], IssueStatus.CANCELLED, "owner")
    r = await api.client.get("/api/v1/inbox", headers=api.headers("bishop"))
    assert r.status_code == 200
    assert [i["id"] for i in r.json()] == [first["id"], third["id"]]
    r = await api.client.get("/api/v1/inbox", headers=api.headers("morpheus"))
    assert r.json() == []


# -- filing issues -----------------------------------------------------------------------------


async def test_file_issue_by_agent_id_and_by_role(api: ApiStack) -> None:
    r = await api.client.post(
        "/api/v1/issues",
        headers=api.headers("ripley"),
        json={
            "title": "  Ship   the login page ",
            "assignee": "qa",
            "body": "details",
            "model": "m",
        },
    )
    assert r.status_code == 201, r.text
    issue = r.json()
    assert issue["id"] == "ALI-1"
    assert issue["assignee_id"] == "vasquez"
    assert issue["title"] == "Ship the login page"
    assert issue["status"] == "todo"
    assert issue["created_by"] == "agent:ripley"
    assert issue["model"] == "m"
    by_id = await file(api, "bishop", "ash")
    assert (by_id["id"], by_id["assignee_id"]) == ("ALI-2", "ash")
    by_scoped_role = await file(api, "bishop", "ceo@aliens")
    assert by_scoped_role["assignee_id"] == "ripley"


async def test_file_issue_with_a_priority_or_to_the_backlog(api: ApiStack) -> None:
    headers = api.headers("ripley")
    r = await api.client.post(
        "/api/v1/issues",
        headers=headers,
        json={"title": "Later", "assignee": "ash", "priority": "high", "backlog": True},
    )
    assert r.status_code == 201, r.text
    assert (r.json()["status"], r.json()["priority"]) == ("backlog", "high")
    r = await api.client.post(
        "/api/v1/issues", headers=headers, json={"title": "Now", "assignee": "ash"}
    )
    assert (r.json()["status"], r.json()["priority"]) == ("todo", "medium")
    r = await api.client.post(
        "/api/v1/issues",
        headers=headers,
        json={"title": "x", "assignee": "ash", "priority": "urgent"},
    )
    body = assert_error(r, 422, "invalid_body")
    assert "priority" in r.text and "critical" in r.text, body
    r = await api.client.post(
        "/api/v1/issues",
        headers=headers,
        json={"title": "x", "assignee": "ash", "backlog": "maybe"},
    )
    assert_error(r, 422, "invalid_body")
    assert len(await api.service.issues()) == 2


async def test_file_issue_needs_the_skill(api: ApiStack) -> None:
    r = await api.client.post(
        "/api/v1/issues", headers=api.headers("vasquez"), json={"title": "x", "assignee": "ceo"}
    )
    body = assert_error(r, 403, "skill_denied")
    assert "issues.create" in body["detail"]
    assert await api.service.issues() == []


async def test_file_issue_ambiguous_role_lists_choices(api: ApiStack) -> None:
    r = await api.client.post(
        "/api/v1/issues", headers=api.headers("ripley"), json={"title": "x", "assignee": "cto"}
    )
    body = assert_error(r, 422, "ambiguous_assignee")
    assert body["choices"] == ["ash", "bishop"]
    assert await api.service.issues() == []


@pytest.mark.parametrize("assignee", ["nobody", "cto@matrix", "ceo@nowhere"])
async def test_file_issue_unknown_or_foreign_assignee_is_404(api: ApiStack, assignee: str) -> None:
    r = await api.client.post(
        "/api/v1/issues", headers=api.headers("ripley"), json={"title": "x", "assignee": assignee}
    )
    assert r.status_code == 404, r.text
    assert await api.service.issues() == []  # nothing filed, in any company


# -- reading and moving issues -----------------------------------------------------------------


async def test_get_issue_with_comments(api: ApiStack) -> None:
    issue = await file(api, "ripley", "bishop")
    await api.client.post(
        f"/api/v1/issues/{issue['id']}/comments",
        headers=api.headers("bishop"),
        json={"body": "on it"},
    )
    r = await api.client.get("/api/v1/issues/ali-1", headers=api.headers("bishop"))
    assert r.status_code == 200
    got = r.json()
    assert got["id"] == "ALI-1"
    assert [(c["author"], c["body"]) for c in got["comments"]] == [("agent:bishop", "on it")]


async def test_other_companys_issue_does_not_exist(api: ApiStack) -> None:
    theirs = await file(api, "morpheus", "trinity")
    h = api.headers("ripley")
    path = f"/api/v1/issues/{theirs['id']}"
    for method, url, body in [
        ("GET", path, None),
        ("PATCH", path, {"status": "cancelled"}),
        ("POST", f"{path}/claim", {"run_id": "r"}),
        ("POST", f"{path}/comments", {"body": "hi"}),
        ("POST", "/api/v1/summaries", {"body": "hi", "issue_id": theirs["id"]}),
    ]:
        r = await api.client.request(method, url, headers=h, json=body)
        assert_error(r, 404, "issue_not_found")
    assert (await api.service.issue(theirs["id"])).status is IssueStatus.TODO
    assert await api.service.comments(theirs["id"]) == []


async def test_patch_moves_along_the_graph_only(api: ApiStack) -> None:
    issue = await file(api, "ripley", "bishop")
    url, h = f"/api/v1/issues/{issue['id']}", api.headers("bishop")
    r = await api.client.patch(url, headers=h, json={"status": "in_progress"})
    assert r.status_code == 200 and r.json()["status"] == "in_progress"
    r = await api.client.patch(url, headers=h, json={"status": "todo", "reason": "oops"})
    body = assert_error(r, 409, "invalid_transition")
    assert "in_progress" in body["detail"] and "in_review" in body["detail"]
    r = await api.client.patch(url, headers=h, json={"status": "blocked", "reason": "need keys"})
    assert r.json()["status"] == "blocked" and r.json()["reason"] == "need keys"


PATCH_BAD: list[tuple[dict[str, Any], str]] = [
    ({"status": "finished"}, "status"),
    ({"status": None}, "status"),
    ({"status": ["done"]}, "status"),
    ({}, "status"),
    ({"status": "done", "reason": "x" * 2001}, "reason"),
    ({"status": "done", "reason": 5}, "reason"),
]


async def test_patch_bad_bodies_name_the_field(api: ApiStack) -> None:
    issue = await file(api, "ripley", "bishop")
    for body, field in PATCH_BAD:
        r = await api.client.patch(
            f"/api/v1/issues/{issue['id']}", headers=api.headers("bishop"), json=body
        )
        got = assert_error(r, 422, "invalid_body")
        assert [e["field"] for e in got["errors"]] == [field], body
        assert got["detail"].startswith(f"{field}: ")
    assert (await api.service.issue(issue["id"])).status is IssueStatus.TODO


# -- claim -------------------------------------------------------------------------------------


async def test_claim_for_own_live_run(api: ApiStack) -> None:
    issue_id, run = await issue_with_run(api, "bishop")
    h = await api.run_token_headers("bishop", run)
    r = await api.client.post(
        f"/api/v1/issues/{issue_id}/claim", headers=h, json={"run_id": run.id}
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "in_progress"
    me = (await api.client.get("/api/v1/me", headers=h)).json()
    assert me["run_id"] == run.id


async def test_claim_conflicts(api: ApiStack) -> None:
    held, bishop_run = await issue_with_run(api, "bishop")
    _, ash_run = await issue_with_run(api, "ash")
    # Another live run holds the issue.
    r = await api.client.post(
        f"/api/v1/issues/{held}/claim", headers=api.headers("ash"), json={"run_id": ash_run.id}
    )
    assert_error(r, 409, "lease_conflict")
    # Another agent's run.
    r = await api.client.post(
        f"/api/v1/issues/{held}/claim", headers=api.headers("bishop"), json={"run_id": ash_run.id}
    )
    assert_error(r, 403, "not_your_run")
    # A run token acts on its own run only.
    h = await api.run_token_headers("bishop", bishop_run)
    r = await api.client.post(
        f"/api/v1/issues/{held}/claim", headers=h, json={"run_id": ash_run.id}
    )
    assert_error(r, 403, "not_your_run")
    # A run that does not exist, and a run that ended.
    r = await api.client.post(f"/api/v1/issues/{held}/claim", headers=h, json={"run_id": "f" * 32})
    assert_error(r, 403, "not_your_run")  # the run token names another run
    r = await api.client.post(
        f"/api/v1/issues/{held}/claim", headers=api.headers("bishop"), json={"run_id": "f" * 32}
    )
    assert_error(r, 404, "run_not_found")
    await api.service.finish_run(bishop_run.id, "bishop", RunOutcome.FAILED)
    r = await api.client.post(
        f"/api/v1/issues/{held}/claim",
        headers=api.headers("bishop"),
        json={"run_id": bishop_run.id},
    )
    assert_error(r, 409, "run_not_active")
    # The run token died with its run.
    r = await api.client.post(
        f"/api/v1/issues/{held}/claim", headers=h, json={"run_id": bishop_run.id}
    )
    assert_error(r, 401, "run_ended")


# -- comments ----------------------------------------------------------------------------------


async def test_comments(api: ApiStack) -> None:
    issue = await file(api, "ripley", "bishop")
    url = f"/api/v1/issues/{issue['id']}/comments"
    r = await api.client.post(url, headers=api.headers("ash"), json={"body": "looks good 👍"})
    assert r.status_code == 201
    assert r.json()["author"] == "agent:ash"
    bad: list[tuple[dict[str, Any], str]] = [
        ({"body": ""}, "invalid_body"),
        ({"body": "   \n "}, "invalid_body"),  # the schema's pattern: some text
        ({"body": "x" * 20_001}, "invalid_body"),
        ({"body": None}, "invalid_body"),
        ({}, "invalid_body"),
    ]
    for body, code in bad:
        got = assert_error(
            await api.client.post(url, headers=api.headers("ash"), json=body), 422, code
        )
        assert "body" in got["detail"] or "text" in got["detail"]
    assert [c.body for c in await api.service.comments(issue["id"])] == ["looks good 👍"]


# -- usage -------------------------------------------------------------------------------------


async def test_usage_is_recorded_and_the_turn_cap_stops_the_run(api: ApiStack) -> None:
    issue_id, run = await issue_with_run(api, "bishop")
    h = await api.run_token_headers("bishop", run)
    url = f"/api/v1/runs/{run.id}/usage"
    usage = {"turns": 2, "input_tokens": 1000, "output_tokens": 200, "cost": 0.01, "model": "big"}
    r = await api.client.post(url, headers=h, json=usage)
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["turns"], got["input_tokens"], got["cost"], got["model"]) == (2, 1000, 0.01, "big")
    r = await api.client.post(url, headers=h, json={"turns": 5})
    assert r.status_code == 200  # at the cap is fine
    r = await api.client.post(url, headers=h, json={"turns": 6})
    body = assert_error(r, 409, "max_turns_exceeded")
    assert "5" in body["detail"]
    ended = await api.service.runs.get(run.id)
    assert ended.status is RunStatus.FAILED and ended.reason_code == "max_turns_exceeded"
    r = await api.client.post(url, headers=api.headers("bishop"), json={"turns": 6})
    assert_error(r, 409, "run_not_active")
    r = await api.client.post(url, headers=h, json={"turns": 6})
    assert_error(r, 401, "run_ended")  # the run token died with its run
    assert (await api.service.issue(issue_id)).lease_run_id is None


async def test_usage_of_another_agents_run_is_403(api: ApiStack) -> None:
    _, run = await issue_with_run(api, "bishop")
    r = await api.client.post(
        f"/api/v1/runs/{run.id}/usage", headers=api.headers("ash"), json={"turns": 1}
    )
    assert_error(r, 403, "not_your_run")


USAGE_BAD: list[tuple[dict[str, Any], str]] = [
    ({"turns": -1}, "turns"),
    ({"turns": 1, "input_tokens": -5}, "input_tokens"),
    ({"turns": 1, "output_tokens": -5}, "output_tokens"),
    ({"turns": 1, "cost": -0.5}, "cost"),
    ({"turns": "3"}, "turns"),
    ({"turns": True}, "turns"),
    ({"turns": 1.5}, "turns"),
    ({"turns": 1, "cost": "0.1"}, "cost"),
    ({"turns": 10**40}, "turns"),
    ({"turns": 1, "input_tokens": 10**30}, "input_tokens"),
    ({"turns": 1, "cost": 1e308}, "cost"),
    ({"turns": 1, "model": "m" * 101}, "model"),
    ({}, "turns"),
]


async def test_usage_bad_numbers_name_the_field(api: ApiStack) -> None:
    _, run = await issue_with_run(api, "bishop")
    for body, field in USAGE_BAD:
        r = await api.client.post(
            f"/api/v1/runs/{run.id}/usage", headers=api.headers("bishop"), json=body
        )
        got = assert_error(r, 422, "invalid_body")
        assert [e["field"] for e in got["errors"]] == [field], body
    assert (await api.service.runs.get(run.id)).turns == 0


async def test_usage_refuses_nan_and_infinity(api: ApiStack) -> None:
    _, run = await issue_with_run(api, "bishop")
    h = {**api.headers("bishop"), "content-type": "application/json"}
    for raw in (b'{"turns": 1, "cost": NaN}', b'{"turns": 1, "cost": Infinity}'):
        r = await api.client.post(f"/api/v1/runs/{run.id}/usage", headers=h, content=raw)
        got = assert_error(r, 422, "invalid_body")
        assert got["errors"][0]["field"] == "cost"


# -- finish ------------------------------------------------------------------------------------


async def test_finish_is_idempotent_and_final(api: ApiStack) -> None:
    issue_id, run = await issue_with_run(api, "bishop")
    h = await api.run_token_headers("bishop", run)
    url = f"/api/v1/runs/{run.id}/finish"
    done = {"outcome": "done", "summary": "shipped"}
    r = await api.client.post(url, headers=h, json=done)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "succeeded"
    assert (await api.service.issue(issue_id)).status is IssueStatus.DONE
    again = await api.client.post(url, headers=h, json=done)
    assert again.status_code == 200 and again.json() == r.json()
    r = await api.client.post(url, headers=h, json={"outcome": "failed"})
    assert_error(r, 409, "run_not_active")
    r = await api.client.post(
        f"/api/v1/runs/{run.id}/finish", headers=api.headers("ash"), json=done
    )
    assert_error(r, 403, "not_your_run")


async def test_finish_blocked_blocks_the_issue(api: ApiStack) -> None:
    issue_id, run = await issue_with_run(api, "bishop")
    r = await api.client.post(
        f"/api/v1/runs/{run.id}/finish",
        headers=api.headers("bishop"),
        json={"outcome": "blocked", "summary": "needs a database password"},
    )
    assert r.status_code == 200
    issue = await api.service.issue(issue_id)
    assert issue.status is IssueStatus.BLOCKED
    assert issue.reason == "needs a database password"


FINISH_BAD: list[tuple[dict[str, Any], str]] = [
    ({"outcome": "succeeded"}, "outcome"),
    ({"outcome": None}, "outcome"),
    ({}, "outcome"),
    ({"outcome": "done", "summary": "x" * 20_001}, "summary"),
    ({"outcome": "done", "summary": ["a"]}, "summary"),
]


async def test_finish_bad_bodies(api: ApiStack) -> None:
    _, run = await issue_with_run(api, "bishop")
    for body, field in FINISH_BAD:
        r = await api.client.post(
            f"/api/v1/runs/{run.id}/finish", headers=api.headers("bishop"), json=body
        )
        got = assert_error(r, 422, "invalid_body")
        assert [e["field"] for e in got["errors"]] == [field], body
    assert (await api.service.runs.get(run.id)).status is RunStatus.RUNNING


# -- summaries ---------------------------------------------------------------------------------


async def test_summary_is_stored(api: ApiStack) -> None:
    issue_id, run = await issue_with_run(api, "bishop")
    r = await api.client.post(
        "/api/v1/summaries",
        headers=api.headers("bishop"),
        json={"body": "  Shipped the login page.  ", "issue_id": issue_id, "run_id": run.id},
    )
    assert r.status_code == 201, r.text
    row = await api.db.fetchone(
        "SELECT agent_id, issue_id, run_id, source, body FROM summaries WHERE id = ?",
        (r.json()["id"],),
    )
    assert row is not None
    assert tuple(row) == ("bishop", issue_id, run.id, "api", "Shipped the login page.")


async def test_summary_refusals(api: ApiStack) -> None:
    _, run = await issue_with_run(api, "bishop")
    r = await api.client.post("/api/v1/summaries", headers=api.headers("mute"), json={"body": "x"})
    assert "summaries.post" in assert_error(r, 403, "skill_denied")["detail"]
    r = await api.client.post(
        "/api/v1/summaries", headers=api.headers("ash"), json={"body": "x", "run_id": run.id}
    )
    assert_error(r, 403, "not_your_run")
    r = await api.client.post(
        "/api/v1/summaries", headers=api.headers("ash"), json={"body": "x", "run_id": "nope"}
    )
    assert_error(r, 404, "run_not_found")
    r = await api.client.post(
        "/api/v1/summaries", headers=api.headers("ash"), json={"body": "x", "issue_id": "ALI-99"}
    )
    assert_error(r, 404, "issue_not_found")
    r = await api.client.post("/api/v1/summaries", headers=api.headers("ash"), json={"body": ""})
    assert_error(r, 422, "invalid_body")
    assert await api.db.scalar("SELECT count(*) FROM summaries") == 0


# -- bad bodies on every route -----------------------------------------------------------------


async def test_extra_fields_are_refused_by_name(api: ApiStack) -> None:
    for method, path, body in BODY_ROUTES:
        assert body is not None
        r = await api.client.request(
            method, path, headers=api.headers("ripley"), json={**body, "urgency": "high"}
        )
        got = assert_error(r, 422, "invalid_body")
        want = [{"field": "urgency", "problem": "Extra inputs are not permitted"}]
        assert got["errors"] == want, (method, path)


MALFORMED: list[tuple[bytes, str]] = [
    (b'{"title": "a",}', "not valid JSON at character 14"),
    (b"{not json", "not valid JSON at character 1"),
    (b"", "send a JSON object"),
    (b"[]", "send a JSON object"),
    (b'"a string"', "send a JSON object"),
    (b"null", "send a JSON object"),
    (b"[" * 50_000, "could not be read"),
    (b'{"title": "\xff\xfe"}', "could not be read"),
]


async def test_malformed_bodies_are_422_naming_the_problem(api: ApiStack) -> None:
    h = {**api.headers("ripley"), "content-type": "application/json"}
    for raw, problem in MALFORMED:
        for method, path, _ in BODY_ROUTES:
            r = await api.client.request(method, path, headers=h, content=raw)
            got = assert_error(r, 422, "invalid_body")
            assert got["errors"][0]["field"] == "body"
            assert problem in got["detail"], (raw[:20], method, path, got)


async def test_a_body_without_json_content_type_says_so(api: ApiStack) -> None:
    r = await api.client.post(
        "/api/v1/issues",
        headers={**api.headers("ripley"), "content-type": "text/plain"},
        content=b'{"title": "a", "assignee": "bishop"}',
    )
    assert "Content-Type: application/json" in assert_error(r, 422, "invalid_body")["detail"]


async def test_unknown_routes_and_wrong_methods_are_json(api: ApiStack) -> None:
    h = api.headers("ripley")
    for path in ("/nope", "/api/v2/me", "/api/v1/issues/ALI-1/nope", "/api/v1/runs"):
        assert_error(await api.client.get(path, headers=h), 404, "not_found")
    for method, path in [
        ("DELETE", "/api/v1/me"),
        ("POST", "/api/v1/inbox"),
        ("GET", "/api/v1/summaries"),
        ("PUT", "/api/v1/issues/ALI-1"),
        ("GET", "/api/v1/runs/r1/finish"),
        ("POST", "/healthz"),
    ]:
        assert_error(await api.client.request(method, path, headers=h), 405, "method_not_allowed")


# Hostile inputs: each must get a deliberate 4xx (or a success), never a 500.
# (name, "METHOD path", JSON body / raw bytes / None, expected status)
ISSUES = "POST /api/v1/issues"
HOSTILE: list[tuple[str, str, Any, int]] = [
    ("long title", ISSUES, {"title": "x" * 10**4, "assignee": "bishop"}, 422),
    ("huge title", ISSUES, {"title": "x" * 10**6, "assignee": "bishop"}, 413),  # api.max_body
    ("null title", ISSUES, {"title": None, "assignee": "bishop"}, 422),
    ("array title", ISSUES, {"title": ["a"], "assignee": "bishop"}, 422),
    ("object title", ISSUES, {"title": {"a": 1}, "assignee": "bishop"}, 422),
    ("array body", ISSUES, [{"title": "a", "assignee": "bishop"}], 422),
    ("unicode", ISSUES, {"title": "🚀 ünïcødé 日本語 \u202ertl", "assignee": "bishop"}, 201),
    ("nul in title", ISSUES, {"title": "a\x00b", "assignee": "bishop"}, 201),
    ("lone surrogate", ISSUES, b'{"title": "a\\ud800", "assignee": "bishop"}', 422),
    ("path assignee", ISSUES, {"title": "a", "assignee": "../../etc/passwd"}, 404),
    ("nul assignee", ISSUES, {"title": "a", "assignee": "bishop\x00"}, 404),
    ("sql assignee", ISSUES, {"title": "a", "assignee": "' OR 1=1 --"}, 404),
    ("empty scope", ISSUES, {"title": "a", "assignee": "cto@"}, 404),
    ("long assignee", ISSUES, {"title": "a", "assignee": "a" * 101}, 422),
    ("dotdot id", "GET /api/v1/issues/..%2F..%2Fetc%2Fpasswd", None, 404),
    ("dot id", "GET /api/v1/issues/..", None, 404),
    ("nul id", "GET /api/v1/issues/ALI-1%00", None, 404),
    ("sql id", "GET /api/v1/issues/ALI-1'%20OR%20'1'='1", None, 404),
    ("unicode id", "GET /api/v1/issues/%F0%9F%9A%80", None, 404),
    ("long id", "GET /api/v1/issues/" + "A" * 5000, None, 422),
    ("long id patch", "PATCH /api/v1/issues/" + "A" * 5000, {"status": "done"}, 422),
    ("nul run", "POST /api/v1/runs/%00/usage", {"turns": 1}, 404),
    ("long run", "POST /api/v1/runs/" + "r" * 5000 + "/finish", {"outcome": "done"}, 422),
    ("huge turns", "POST /api/v1/runs/r1/usage", {"turns": 10**100}, 422),
    ("float overflow", "POST /api/v1/runs/r1/usage", b'{"turns": 1e999}', 422),
    ("null turns", "POST /api/v1/runs/r1/usage", {"turns": None}, 422),
    ("object status", "PATCH /api/v1/issues/ALI-1", {"status": {"a": 1}}, 422),
    ("numeric run", "POST /api/v1/issues/ALI-1/claim", {"run_id": 123}, 422),
    ("empty run", "POST /api/v1/issues/ALI-1/claim", {"run_id": ""}, 422),
    ("dotdot summary", "POST /api/v1/summaries", {"body": "x", "issue_id": "../ALI-1"}, 404),
    ("nested junk", "POST /api/v1/summaries", {"body": {"a": [[[[{}]]]]}}, 422),
]


async def test_hostile_inputs_never_500(api: ApiStack) -> None:
    await file(api, "ripley", "bishop")  # ALI-1 exists
    token = api.token("ripley")
    for name, route, body, status in HOSTILE:
        method, path = route.split(" ", 1)
        headers = {"Authorization": f"Bearer {token}"}
        kwargs: dict[str, Any] = {}
        if isinstance(body, bytes):
            headers["content-type"] = "application/json"
            kwargs["content"] = body
        elif body is not None:
            kwargs["json"] = body
        r = await api.client.request(method, path, headers=headers, **kwargs)
        assert r.status_code == status, (name, r.text[:500])
        if status >= 400:
            assert_error(r, status, r.json()["error"])
        assert token not in r.text


async def test_hostile_auth_headers_are_401(api: ApiStack) -> None:
    for value in (
        "Bearer " + "a" * 100_000,
        "Bearer eyJ" + "A" * 50 + "." + "B" * 50 + ".",
        "Bearer e30.e30.",  # {}.{}: no kid
        "Bearer eyJhbGciOiJub25lIiwia2lkIjpbMV19.e30.",  # alg none, kid a list
        "Bearer " + base64.urlsafe_b64encode(b'{"kid": "k1", "alg": "none"}').decode() + ".e30.",
        "Bearer \t",
        "bearer",
    ):
        r = await api.client.get("/api/v1/me", headers={"Authorization": value})
        assert r.status_code == 401, (value[:40], r.text)
        assert r.json()["error"] in ("malformed", "unknown_key", "bad_signature")
    r = await api.client.get("/api/v1/me", headers=[(b"Authorization", b"Bearer \xff\xfe")])
    assert r.status_code == 401


# -- a real server -----------------------------------------------------------------------------


async def test_real_server_on_a_free_port(tmp_path: Path) -> None:
    data = {
        **FLEET_YAML,
        "storage": storage(tmp_path),
        "auth": {
            "keyring": str(tmp_path / "keyring.json"),
            "token_dir": str(tmp_path / "tokens"),
        },
        "api": {"listen": "127.0.0.1:0"},
    }
    config = parse_config(data, "test")
    KeyRing.create(config.auth.keyring, 1_767_225_600.0)
    async with Fleet(config, {}, serve_api=True, periodic=False) as fleet:
        assert fleet.server is not None and fleet.server.port != 0
        assert fleet.api_url == f"http://127.0.0.1:{fleet.server.port}"
        for agent in await fleet.service.agents():
            fleet.auth.issue(agent, fsync=False)
        token = read_token_file(config.auth.token_dir, "ripley")
        h = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=fleet.api_url, timeout=5) as client:
            assert (await client.get("/healthz")).json()["status"] == "ok"
            assert (await client.get("/api/v1/me", headers=h)).json()["agent_id"] == "ripley"
            r = await client.post(
                "/api/v1/issues", headers=h, json={"title": "over TCP", "assignee": "vasquez"}
            )
            assert r.status_code == 201, r.text
            r = await client.post("/api/v1/issues", headers=h, content=b"{oops", timeout=5)
            assert r.status_code == 422
            r = await client.get("/api/v1/me")
            assert r.json()["error"] == "missing_token"
            metrics = (await client.get("/metrics")).text
            assert 'fleetbot_api_requests_total{route="/api/v1/issues",status="201"} 1.0' in metrics
        await fleet.scheduler.drain()


async def test_a_run_token_dies_with_its_run_but_may_repeat_its_finish_for_a_minute(
    api: ApiStack,
) -> None:
    _, run = await issue_with_run(api, "bishop")
    h = await api.run_token_headers("bishop", run)
    finish = {"outcome": "done", "summary": "did it"}
    r = await api.client.post(f"/api/v1/runs/{run.id}/finish", headers=h, json=finish)
    assert r.status_code == 200, r.text
    # Anything else with that token is refused at once: it was valid for that run only.
    r = await api.client.get("/api/v1/inbox", headers=h)
    assert_error(r, 401, "run_ended")
    # A finish whose answer was lost may be repeated (idempotent) for a minute…
    api.clock.advance(59)
    r = await api.client.post(f"/api/v1/runs/{run.id}/finish", headers=h, json=finish)
    assert r.status_code == 200 and r.json()["status"] == "succeeded"
    # …and no longer.
    api.clock.advance(2)
    r = await api.client.post(f"/api/v1/runs/{run.id}/finish", headers=h, json=finish)
    assert_error(r, 401, "run_ended")
