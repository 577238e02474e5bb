"""fleetbot's `openclaw` runtime against a real gateway: the whole stack, the way a user runs it.

Each test builds a `Fleet` (store, auth, scheduler, the agent API on a real loopback port) with
one company whose agents are OpenClaw agents, files an issue (which wakes its agent at once),
and watches the store until the run ends. The gateway's model is the fake model, scripted per
test through a tag in the issue's title. What is checked is what the owner would see: the
run's status, reason and summary, the issue's status, and how many turns the model really ran.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from store_helpers import storage

from core.auth.keyring import KeyRing
from core.config import parse_config
from core.fleet import Fleet
from core.models import IssueStatus, Run, RunStatus
from core.runtimes.openclaw.protocol import GatewayConnection
from tests.e2e.conftest import E2E_TIMEOUT, STRICT_MAX_ATTEMPTS
from tests.e2e.fake_model import Call, Exec, Fail, Reply
from tests.e2e.gateway import Gateway, free_port
from tests.e2e.late_ack import LateAckProxy

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(E2E_TIMEOUT)]

COMPANY = "lab"
RUN_WAIT = 90.0  # a turn on the fake model takes seconds; this only bounds a broken one
OUTCOME_LAG = 2.0  # the design's promise: a run's outcome is known this soon after its turn
# Each fleet's issue ids are new to the shared gateway (E1-1, E2-1, …), so with `session: issue`
# no test's turn lands in a session an earlier test left behind.
_PREFIXES = (f"E{n}" for n in itertools.count(1))


def openclaw_runtime(url: str, **overrides: Any) -> dict[str, Any]:
    """An agent's `runtime:` for the gateway at `url` (token from $OC_TOKEN)."""
    return {
        "kind": "openclaw",
        "url": url,
        "transport": "gateway",
        "token_env": "OC_TOKEN",
        "agent_id": "main",
        "session": "issue",
        "timeout": "10s",
        **overrides,
    }


@asynccontextmanager
async def open_fleet(
    tmp_path: Path, runtimes: Mapping[str, dict[str, Any]], env: Mapping[str, str]
) -> AsyncIterator[Fleet]:
    """A fleet with one company, one agent per entry of `runtimes`, its API on a free port."""
    data = {
        "storage": storage(tmp_path),
        "auth": {
            "keyring": str(tmp_path / "secrets" / "keyring.json"),
            "token_dir": str(tmp_path / "secrets" / "tokens"),
        },
        "api": {"listen": "127.0.0.1:0"},
        "defaults": {"run_timeout": "5m", "max_turns_per_run": 10, "wake_on_assign": True},
        "companies": [
            {
                "id": COMPANY,
                "name": "E2E Lab",
                "prefix": next(_PREFIXES),
                "agents": [
                    {"id": agent_id, "role": f"role-{agent_id}", "runtime": runtime}
                    for agent_id, runtime in runtimes.items()
                ],
            }
        ],
    }
    config = parse_config(data, "e2e config")
    KeyRing.create(config.auth.keyring, time.time())
    async with Fleet(config, dict(env), serve_api=True, periodic=False) as fleet:
        try:
            yield fleet
        finally:
            await fleet.scheduler.drain()


async def dispatch(fleet: Fleet, agent_id: str, title: str, body: str = "") -> str:
    """File an issue for `agent_id` (filing wakes it); the issue's id."""
    issue = await fleet.service.file_issue(
        title=title, assignee=agent_id, actor="e2e", company=COMPANY, body=body
    )
    return issue.id


async def ended_run(fleet: Fleet, agent_id: str, issue_id: str) -> Run:
    """The issue's run once it has ended (polled, as a person refreshing the board would)."""
    end = time.monotonic() + RUN_WAIT
    seen: Run | None = None
    while time.monotonic() < end:
        runs = [r for r in await fleet.service.recent_runs(agent_id, 50) if r.issue_id == issue_id]
        if runs:
            seen = runs[0]
            if seen.status is not RunStatus.RUNNING:
                return seen
        await asyncio.sleep(0.05)
    state = f"its run is still {seen.status.value}" if seen else "no run was ever opened"
    raise AssertionError(f"{issue_id} did not end within {RUN_WAIT:.0f} s: {state}")


async def gateway_turn_end(gateway: Gateway, run: Run) -> float:
    """When the gateway says the run's turn ended (agent.wait's endedAt, epoch seconds): the
    turn's end includes OpenClaw's own wrap-up after the model's last byte, which takes from a
    few tenths of a second to several seconds on a loaded machine."""
    assert run.external_id, "the gateway's run id is kept on the run"
    async with GatewayConnection(gateway.ws_url, gateway.token, timeout=10) as gw:
        waited = await gw.request("agent.wait", {"runId": run.external_id, "timeoutMs": 0})
    ended = waited.get("endedAt")
    assert isinstance(ended, int | float), waited
    return float(ended) / 1000


def last_answered(calls: list[Call]) -> Call:
    answered = [c for c in calls if c.final_chunk_at is not None]
    assert answered, "the fake model was never called for this scenario"
    return answered[-1]


def finish_from_wake(call: Call) -> Exec | Reply:
    """What a good agent does with the wake message: call the finish route with its run token.
    The API, the run id and the token are read from the prompt OpenClaw gave the model."""
    api = re.search(r"https?://[\w.:\[\]-]+/api/v1", call.prompt)
    run = re.search(r"/runs/([0-9a-f]{32})/finish", call.prompt) or re.search(
        r"\b([0-9a-f]{32})\b", call.prompt
    )
    token = re.search(r"\beyJ[\w-]+\.[\w-]+\.[\w-]+", call.prompt)
    if not (api and run and token):  # the run's summary will say so
        return Reply(f"no API, run id or run token in the wake message: {call.prompt!r}")
    body = '{"outcome":"done","summary":"fixed by the e2e agent"}'
    return Exec(
        f"curl -sS -w ' HTTP %{{http_code}}' -X POST {api.group(0)}/runs/{run.group(1)}/finish "
        f"-H 'Authorization: Bearer {token.group(0)}' -H 'Content-Type: application/json' "
        f"-d '{body}'"
    )


async def test_a_turn_that_only_replies_succeeds_and_goes_to_review(
    gateway: Gateway, tmp_path: Path
) -> None:
    tag = gateway.model.scenario(Reply("Looked into it: the login page works again."))
    async with open_fleet(
        tmp_path, {"worker": openclaw_runtime(gateway.ws_url)}, {"OC_TOKEN": gateway.token}
    ) as fleet:
        issue_id = await dispatch(fleet, "worker", f"Fix the login page {tag}")
        run = await ended_run(fleet, "worker", issue_id)
        issue = await fleet.service.issue(issue_id)
    assert run.status is RunStatus.SUCCEEDED, run
    assert issue.status is IssueStatus.IN_REVIEW
    assert run.summary == "Looked into it: the login page works again."
    assert run.external_id, "the gateway's run id is kept on the run"
    assert run.ended_at is not None
    turn_end = await gateway_turn_end(gateway, run)
    assert run.ended_at - turn_end <= OUTCOME_LAG, f"known {run.ended_at - turn_end:.2f} s late"
    assert last_answered(gateway.model.calls(tag)).final_chunk_at is not None
    assert gateway.model.turns(tag) == 1


async def test_a_model_error_fails_the_run_with_the_gateways_reason(
    gateway: Gateway, tmp_path: Path
) -> None:
    # A 400 ends the turn at once; a 5xx would be retried by OpenClaw for about 90 s.
    tag = gateway.model.scenario(Fail(400, "the fake model refuses this request"))
    async with open_fleet(
        tmp_path, {"worker": openclaw_runtime(gateway.ws_url)}, {"OC_TOKEN": gateway.token}
    ) as fleet:
        issue_id = await dispatch(fleet, "worker", f"Break the model {tag}")
        run = await ended_run(fleet, "worker", issue_id)
    assert run.status is RunStatus.FAILED, run
    # The gateway's own words for a provider 400, as agent.wait reports them.
    assert "provider rejected the request" in run.reason, run.reason
    assert run.reason_code, run
    assert run.ended_at is not None
    turn_end = await gateway_turn_end(gateway, run)
    assert run.ended_at - turn_end <= OUTCOME_LAG, f"known {run.ended_at - turn_end:.2f} s late"
    assert last_answered(gateway.model.calls(tag)).final_chunk_at is not None


async def test_the_agent_finishes_the_issue_through_the_api_from_its_tool_call(
    gateway: Gateway, tmp_path: Path
) -> None:
    tag = gateway.model.scenario(finish_from_wake, Reply("Reported to fleetbot."))
    async with open_fleet(
        tmp_path, {"worker": openclaw_runtime(gateway.ws_url)}, {"OC_TOKEN": gateway.token}
    ) as fleet:
        issue_id = await dispatch(fleet, "worker", f"Close the loop {tag}")
        run = await ended_run(fleet, "worker", issue_id)
        issue = await fleet.service.issue(issue_id)
    tool_output = [c.tool_results for c in gateway.model.calls(tag)]
    assert issue.status is IssueStatus.DONE, (issue.status, run.summary, tool_output)
    assert run.status is RunStatus.SUCCEEDED, run
    assert run.summary == "fixed by the e2e agent"  # the agent's own finish wins
    assert gateway.model.turns(tag) == 1


async def test_a_wrong_gateway_token_fails_the_run_pointing_at_the_token(
    gateway: Gateway, tmp_path: Path
) -> None:
    async with open_fleet(
        tmp_path, {"worker": openclaw_runtime(gateway.ws_url)}, {"OC_TOKEN": "not-the-token"}
    ) as fleet:
        issue_id = await dispatch(fleet, "worker", "Never reaches the model")
        run = await ended_run(fleet, "worker", issue_id)
    assert run.status is RunStatus.FAILED, run
    assert run.reason_code == "runtime_auth", run
    assert "OC_TOKEN" in run.reason, run.reason  # where the token comes from: what to fix


async def test_a_gateway_that_is_down_fails_the_run_as_unreachable(tmp_path: Path) -> None:
    closed = f"ws://127.0.0.1:{free_port()}"  # nothing listens there
    async with open_fleet(
        tmp_path, {"worker": openclaw_runtime(closed)}, {"OC_TOKEN": "whatever-it-is"}
    ) as fleet:
        issue_id = await dispatch(fleet, "worker", "Nobody home")
        run = await ended_run(fleet, "worker", issue_id)
    assert run.status is RunStatus.FAILED, run
    assert run.reason_code == "runtime_unreachable", run


async def test_a_late_acknowledgement_never_starts_a_second_turn(
    gateway: Gateway, tmp_path: Path
) -> None:
    tag = gateway.model.scenario(Reply("Done once."))
    # The acknowledgement arrives 4 s late, past the runtime's 2 s timeout.
    async with LateAckProxy(gateway.port, delay=4.0) as proxy:
        runtime = openclaw_runtime(proxy.ws_url, timeout="2s")
        async with open_fleet(tmp_path, {"worker": runtime}, {"OC_TOKEN": gateway.token}) as fleet:
            issue_id = await dispatch(fleet, "worker", f"Do it exactly once {tag}")
            run = await ended_run(fleet, "worker", issue_id)
            await asyncio.sleep(3)  # a second turn, had one been started, would show by now
    assert proxy.held == 1, "the proxy never saw the acknowledgement: the test proved nothing"
    assert run.status is RunStatus.SUCCEEDED, run
    assert gateway.model.turns(tag) == 1, gateway.model.calls(tag)
    assert len(gateway.model.calls(tag)) == 1


async def test_a_lockout_after_bad_logins_is_reported_as_one(
    strict_gateway: Gateway, tmp_path: Path
) -> None:
    # One agent per bad login: an agent whose run failed sits in `error` and is not woken again.
    intruders = [f"intruder-{n}" for n in range(STRICT_MAX_ATTEMPTS)]
    runtimes = {
        **{i: openclaw_runtime(strict_gateway.ws_url, token_env="OC_BAD_TOKEN") for i in intruders},
        "worker": openclaw_runtime(strict_gateway.ws_url),
    }
    env = {"OC_TOKEN": strict_gateway.token, "OC_BAD_TOKEN": "a-stale-token"}
    async with open_fleet(tmp_path, runtimes, env) as fleet:
        codes = []
        for intruder in intruders:
            issue_id = await dispatch(fleet, intruder, f"Bad login by {intruder}")
            codes.append((await ended_run(fleet, intruder, issue_id)).reason_code)
        issue_id = await dispatch(fleet, "worker", "Locked out with the right token")
        run = await ended_run(fleet, "worker", issue_id)
    # Whether the first bad logins are refused or already locked out depends on how many the
    # runtime self-test spent at start-up; either way, each says what it is.
    assert set(codes) <= {"runtime_auth", "runtime_locked_out"}, codes
    assert run.status is RunStatus.FAILED, run
    assert run.reason_code == "runtime_locked_out", run
    assert "token" in run.reason.lower(), run.reason


async def test_the_hooks_transport_runs_one_turn_and_succeeds(
    gateway: Gateway, tmp_path: Path
) -> None:
    tag = gateway.model.scenario(Reply("Handled through the hook."))
    runtime = openclaw_runtime(gateway.http_url, transport="hooks", token_env="OC_HOOKS_TOKEN")
    async with open_fleet(
        tmp_path, {"worker": runtime}, {"OC_HOOKS_TOKEN": gateway.hooks_token}
    ) as fleet:
        issue_id = await dispatch(fleet, "worker", f"Through the hook {tag}")
        run = await ended_run(fleet, "worker", issue_id)
        issue = await fleet.service.issue(issue_id)
    assert run.status is RunStatus.SUCCEEDED, run  # hooks report the end, not the reply text
    assert issue.status is IssueStatus.IN_REVIEW
    assert gateway.model.turns(tag) == 1
