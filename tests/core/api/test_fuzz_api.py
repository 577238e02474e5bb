"""schemathesis against the running agent API: no 5xx, and every answer matches the OpenAPI
document the API serves.

A real Fleet (store, auth, scheduler, API served by uvicorn on a free loopback port) runs in a
thread of its own; schemathesis builds requests for every operation from `/openapi.json`, valid
ones and invalid ones (negative mode), with a valid agent token in the header so the
authenticated routes are exercised past the guard, and with real issue and run ids some of the
time so the handlers behind them run too. Every accepted request is replayed without the token
and with a made-up one (schemathesis's ignored_auth check), which must be refused.

Examples per operation and mode: FLEETBOT_FUZZ_EXAMPLES (default 10, deterministic: the same
cases every run). The long run for the reliability figures:

    FLEETBOT_FUZZ_EXAMPLES=500 pytest tests/test_fuzz_api.py -p no:cacheprovider
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings, strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance
from store_helpers import storage

from core.api.schemas import HAS_TEXT, NewComment
from core.auth.keyring import KeyRing
from core.config import parse_config
from core.fleet import Fleet
from core.models import RunStatus
from tests.api_helpers import FLEET_YAML, api_stack

EXAMPLES = int(os.environ.get("FLEETBOT_FUZZ_EXAMPLES", "10"))
# Every operation the API serves; test_every_operation_is_fuzzed keeps this list honest.
OPERATIONS = [
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/api/v1/me"),
    ("GET", "/api/v1/inbox"),
    ("POST", "/api/v1/issues"),
    ("GET", "/api/v1/issues/{issue_id}"),
    ("PATCH", "/api/v1/issues/{issue_id}"),
    ("POST", "/api/v1/issues/{issue_id}/claim"),
    ("POST", "/api/v1/issues/{issue_id}/comments"),
    ("POST", "/api/v1/issues/{issue_id}/questions"),
    ("GET", "/api/v1/questions/{question_id}"),
    ("POST", "/api/v1/runs/{run_id}/usage"),
    ("POST", "/api/v1/runs/{run_id}/finish"),
    ("POST", "/api/v1/summaries"),
]
# The one 422 a schema-valid request may get: a role several agents hold (documented).
SEMANTIC_422 = {"ambiguous_assignee"}


@schemathesis.check
def valid_data_is_accepted(ctx: Any, response: schemathesis.Response, case: Any) -> bool | None:
    """schemathesis's positive_data_acceptance, less the documented `ambiguous_assignee`: any
    other 4xx-for-a-bad-request on data the schema allows means the document says too little."""
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return None
    if response.status_code in (400, 422):
        code = response.json().get("error")
        assert code in SEMANTIC_422, f"schema-valid request refused: {response.text[:300]}"
    return True


@dataclass
class Live:
    url: str
    token: str
    issue_id: str  # an issue of the token's company
    run_id: str  # a live run of the token's agent (its runtime hangs, so it stays live)
    schema: Any
    session: requests.Session


def _config(tmp: Path) -> Any:
    data: dict[str, Any] = copy.deepcopy(FLEET_YAML)
    for company in data["companies"]:
        for agent in company["agents"]:
            # ripley's runs hang, so the fuzzer always has a live run; the others finish at once.
            hang = 1 if agent["id"] == "ripley" else 0
            agent["runtime"] = {"kind": "simulated", "latency": 0, "hang_rate": hang}
    data["storage"] = storage(tmp)
    data["auth"] = {"keyring": str(tmp / "keyring.json"), "token_dir": str(tmp / "tokens")}
    data["api"] = {"listen": "127.0.0.1:0"}
    return parse_config(data, "fuzz")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A Fleet serving on loopback from its own thread and event loop, until the module ends."""
    config = _config(tmp_path_factory.mktemp("fuzz"))
    KeyRing.create(config.auth.keyring, 1_767_225_600.0)
    ready = threading.Event()
    found: dict[str, Any] = {}
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        try:
            async with Fleet(config, {}, serve_api=True, periodic=False) as fleet:
                issue = await fleet.service.file_issue(
                    title="fuzz target", assignee="ripley", actor="owner"
                )
                for _ in range(500):
                    runs = await fleet.service.recent_runs("ripley", limit=1)
                    if runs and runs[0].status is RunStatus.RUNNING:
                        break
                    await asyncio.sleep(0.01)
                found.update(url=fleet.api_url, issue=issue.id, run=runs[0].id)
                found["token"] = fleet.auth.token_file("ripley").read_text().strip()
                ready.set()
                await stop.wait()  # leaving the block cancels ripley's hanging run
        except BaseException as exc:
            found["error"] = repr(exc)
            raise
        finally:
            ready.set()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    try:
        assert ready.wait(30) and "url" in found, f"the fleet did not start: {found}"
        with requests.Session() as session:
            doc = session.get(found["url"] + "/openapi.json", timeout=10).json()
            schema = schemathesis.openapi.from_dict(doc)
            yield Live(found["url"], found["token"], found["issue"], found["run"], schema, session)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()


def test_every_operation_is_fuzzed(live: Live) -> None:
    served = {
        (method.upper(), path)
        for path, item in live.schema.raw_schema["paths"].items()
        for method in item
    }
    assert served == set(OPERATIONS)


@pytest.mark.timeout(30 + EXAMPLES)  # the long run takes minutes
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_no_5xx_and_answers_match_the_schema(live: Live, method: str, path: str) -> None:
    operation = live.schema[path][method]
    auth = {"Authorization": f"Bearer {live.token}"}
    known = {"issue_id": live.issue_id, "run_id": live.run_id}
    ids = {k: v for k, v in known.items() if "{" + k + "}" in path}
    strategies = [
        operation.as_strategy(mode, path_parameters=fixed)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        for fixed in ([ids, None] if ids else [None])
    ]

    @settings(
        max_examples=EXAMPLES * 2,
        derandomize=True,  # the same cases every run: CI is deterministic
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=st.one_of(strategies))
    def fuzz(case: schemathesis.Case) -> None:
        wait = (case.query or {}).get("wait")
        if isinstance(wait, int | float) and not isinstance(wait, bool) and wait > 1:
            # A valid long poll on an open question (the fuzzer asks some) holds the answer
            # for `wait` seconds, past the request's timeout; a second says the same.
            case.query = {**(case.query or {}), "wait": 1}
        # The token is sent explicitly, so schemathesis's ignored_auth check also replays the
        # request without it and with a made-up one, and wants a 401 for both.
        response = case.call(base_url=live.url, session=live.session, headers=auth, timeout=10)
        case.validate_response(
            response,
            headers=auth,
            excluded_checks=[positive_data_acceptance],
            additional_checks=[valid_data_is_accepted],
        )
        assert live.token not in response.text  # a token is never echoed

    fuzz()


# -- what the fuzzer found, pinned -------------------------------------------------------------


async def test_an_integral_float_is_a_count(tmp_path: Path) -> None:
    """Found by schemathesis: `{"turns": 54424.0}` is a JSON Schema integer but was a 422."""
    async with api_stack(tmp_path) as api:
        await api.service.file_issue(title="work", assignee="bishop", actor="owner")
        run = await api.open_run("bishop")
        url = f"/api/v1/runs/{run.id}/usage"
        r = await api.client.post(url, headers=api.headers("bishop"), json={"turns": 2.0})
        assert r.status_code == 200 and r.json()["turns"] == 2, r.text
        for bad in (2.5, "2", True, float("inf")):
            body = json.dumps({"turns": bad}).replace("Infinity", "1e999")
            h = {**api.headers("bishop"), "content-type": "application/json"}
            r = await api.client.post(url, headers=h, content=body)
            assert r.status_code == 422 and r.json()["errors"][0]["field"] == "turns", bad


async def test_text_that_is_only_whitespace_is_a_422_naming_the_field(tmp_path: Path) -> None:
    """Found by schemathesis: a comment or summary of "\\t" (or "\\x1d", which Python strips
    too) passed the schema's minLength but the service refused it, unnamed."""
    async with api_stack(tmp_path) as api:
        await api.service.file_issue(title="work", assignee="bishop", actor="owner")
        h = api.headers("ripley")
        cases = [
            ("/api/v1/issues/ALI-1/comments", {"body": "\t"}, "body"),
            ("/api/v1/issues/ALI-1/comments", {"body": "\x1d\u3000"}, "body"),
            ("/api/v1/summaries", {"body": "\x85 "}, "body"),
            ("/api/v1/issues", {"title": "\u2028", "assignee": "bishop"}, "title"),
            ("/api/v1/issues", {"title": "t", "assignee": "@ "}, "assignee"),
        ]
        for url, body, field in cases:
            r = await api.client.post(url, headers=h, json=body)
            assert r.status_code == 422, (body, r.text)
            assert r.json()["error"] == "invalid_body"
            assert [e["field"] for e in r.json()["errors"]] == [field]
        # Not whitespace to Python, so not to the schema either: accepted.
        r = await api.client.post(
            "/api/v1/issues/ALI-1/comments", headers=h, json={"body": "\ufeff"}
        )
        assert r.status_code == 201, r.text


def test_the_schema_and_python_agree_on_whitespace() -> None:
    """The documented pattern, Python's str.strip() and the JSON Schema validator schemathesis
    uses (Rust regex) all draw the same line, for every code point."""
    text = re.compile(HAS_TEXT)
    for code in range(sys.maxunicode + 1):
        c = chr(code)
        assert (text.search(c) is None) == c.isspace(), hex(code)
    validator = jsonschema_rs.validator_for(NewComment.model_json_schema())
    spaces = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]
    assert not any(validator.is_valid({"body": c}) for c in spaces)
    assert all(validator.is_valid({"body": c}) for c in ("x", "\ufeff", "\x00", " é "))
