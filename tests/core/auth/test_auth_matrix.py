"""The auth matrix: every way an agent token can be wrong, in one table.

Each row builds one defective token (or a good one, as a control) against a real key ring under
tmp_path and asserts two things: the exact HTTP status and reason code a real API route answers
with, and the reason code the heartbeat records when the same token sits in an agent's token
file (`unauthenticated` with that code, or no token problem at all for the controls). Unit tests
of single checks live in test_tokens.py; this table is the complete list.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.auth.keyring import Key, KeyRing
from core.auth.rotation import retire_expired, rotate_agent
from core.auth.tokens import TokenAuthority, write_token_file
from core.clock import ManualClock
from core.engine.heartbeat import Heartbeat
from core.models import AgentStatus, HeartbeatOutcome, Run, RunOutcome
from tests.api_helpers import ApiStack, api_stack

DAY = 86400.0
USAGE = {"turns": 1, "input_tokens": 1, "output_tokens": 1, "cost": 0.0}
OK = "ok"  # the file check passes: the heartbeat finds no token problem
NO_BEAT = "no heartbeat"  # the agent no longer exists, so nothing beats for it


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(part: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return loaded


def forge(header: dict[str, Any], claims: dict[str, Any], secret: bytes | None, hash_: Any) -> str:
    """A JWT put together by hand, as an attacker would: no library refuses anything."""
    signing_input = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    if secret is None:
        return signing_input + "."
    return signing_input + "." + _b64(hmac.new(secret, signing_input.encode(), hash_).digest())


@dataclass
class Ctx:
    """What a row needs to build its token: the stack, and a live run of bishop's."""

    api: ApiStack
    run: Run
    other_run: Run  # a second live run, of trinity (another company)

    @property
    def key(self) -> Key:
        return self.api.auth.keyring.ring.active

    def token(self, agent_id: str) -> str:
        return self.api.token(agent_id)

    def claims(self, agent_id: str = "ripley") -> dict[str, Any]:
        """The claims of `agent_id`'s current token file, as issued."""
        return _unb64(self.token(agent_id).split(".")[1])

    def sign(
        self,
        claims: dict[str, Any],
        *,
        alg: str = "HS256",
        hash_: Any = hashlib.sha256,
        secret: bytes | None = None,
        kid: str | None = None,
    ) -> str:
        """Claims signed by hand with the active key's secret (or `secret`)."""
        header = {"alg": alg, "typ": "JWT", "kid": kid or self.key.kid}
        return forge(header, claims, secret if secret is not None else self.key.secret, hash_)

    def tamper(self, **changes: Any) -> str:
        """ripley's token with its claims edited and its original signature kept."""
        head, _, sig = self.token("ripley").split(".")
        return f"{head}.{_b64(json.dumps({**self.claims(), **changes}).encode())}.{sig}"

    def without(self, claim: str) -> str:
        """ripley's claims less one, properly signed with the active key."""
        return self.sign({k: v for k, v in self.claims().items() if k != claim})

    async def run_token(self, run: Run, agent_id: str = "bishop") -> str:
        return (await self.api.run_token_headers(agent_id, run))["Authorization"][7:]


@dataclass(frozen=True)
class Presented:
    """One defect as the API sees it (an Authorization header on a route) and as a token
    file holds it (`file_text` written to `file_agent`'s token file; None removes the file)."""

    header: str | None
    file_text: str | None = ""
    method: str = "GET"
    path: str = "/api/v1/inbox"
    body: dict[str, Any] | None = None
    file_agent: str = "ripley"

    @staticmethod
    def bearer(token: str, **kw: Any) -> Presented:
        return Presented(f"Bearer {token}", token, **kw)


Make = Callable[[Ctx], Awaitable[Presented]]


@dataclass(frozen=True)
class Row:
    name: str
    make: Make
    status: int
    code: str  # the body's `error`, or OK for a 2xx
    file_code: str  # the heartbeat's reason code, OK or NO_BEAT
    alg: str = "HS256"


def bearer(build: Callable[[Ctx], str], **kw: Any) -> Make:
    async def make(ctx: Ctx) -> Presented:
        return Presented.bearer(build(ctx), **kw)

    return make


def usage_of(run: str) -> dict[str, Any]:
    return {"method": "POST", "path": f"/api/v1/runs/{run}/usage", "body": USAGE}


async def _missing(ctx: Ctx) -> Presented:
    return Presented(None, file_text=None)


async def _not_bearer(ctx: Ctx) -> Presented:
    return Presented(f"Basic {ctx.token('ripley')}", file_text="\n")


async def _bad_signature(ctx: Ctx) -> Presented:
    # The field notes' outage: the right kid, another secret.
    return Presented.bearer(ctx.sign(ctx.claims(), secret=b"w" * 32))


async def _unknown_key(ctx: Ctx) -> Presented:
    foreign = KeyRing.create(
        ctx.api.config.auth.keyring.parent / "foreign.json", ctx.api.clock.now()
    )
    issuer = TokenAuthority(foreign, issuer="fleetbot", audience="fleetbot-api")
    agent = await ctx.api.service.agent("ripley")
    return Presented.bearer(issuer.issue(agent, ctx.api.clock.now(), DAY))


def _rotate(ctx: Ctx, grace: float) -> None:
    now = ctx.api.clock.now()
    ctx.api.auth.keyring.update(lambda ring: ring.rotate(now, grace))


async def _retired_key(ctx: Ctx) -> Presented:
    old = ctx.token("ripley")
    _rotate(ctx, grace=600)
    ctx.api.clock.advance(601)
    assert retire_expired(ctx.api.auth, ctx.api.clock.now())  # the old key is retired now
    return Presented.bearer(old)


async def _past_grace(ctx: Ctx) -> Presented:
    old = ctx.token("ripley")
    _rotate(ctx, grace=600)
    ctx.api.clock.advance(601)  # past the grace, not yet retired by the periodic job
    return Presented.bearer(old)


async def _in_grace(ctx: Ctx) -> Presented:
    old = ctx.token("ripley")
    _rotate(ctx, grace=600)
    ctx.api.clock.advance(599)
    return Presented.bearer(old)


async def _expired(ctx: Ctx) -> Presented:
    token = ctx.token("ripley")
    ctx.api.clock.advance(30 * DAY + 31)  # token_ttl is 30 days; 30 s of skew is allowed
    return Presented.bearer(token)


async def _revoked(ctx: Ctx) -> Presented:
    old = ctx.token("ripley")
    check = await rotate_agent(ctx.api.auth, ctx.api.service, "ripley", "owner")
    assert check.ok
    return Presented.bearer(old)


async def _deleted(ctx: Ctx) -> Presented:
    token = ctx.token("ripley")
    async with ctx.api.db.write() as conn:
        await conn.execute("UPDATE agents SET deleted_at = ? WHERE id = 'ripley'", (1.0,))
    return Presented.bearer(token)


async def _company_moved(ctx: Ctx) -> Presented:
    # The agent now belongs to another company (config change); its token names the old one.
    token = ctx.token("ripley")
    async with ctx.api.db.write() as conn:
        await conn.execute("UPDATE agents SET company_id = 'matrix' WHERE id = 'ripley'")
    return Presented.bearer(token)


def _audience(aud: str, iss: str) -> Make:
    async def make(ctx: Ctx) -> Presented:
        return Presented.bearer(ctx.sign({**ctx.claims(), "aud": aud, "iss": iss}))

    return make


async def _alg_none(ctx: Ctx) -> Presented:
    header = {"alg": "none", "typ": "JWT", "kid": ctx.key.kid}
    return Presented.bearer(forge(header, ctx.claims(), None, None))


async def _eddsa_confused(ctx: Ctx) -> Presented:
    # The classic confusion: HS256 "signed" with the published Ed25519 public key as secret.
    jwk = ctx.api.auth.keyring.ring.public_jwks(ctx.api.clock.now())["keys"][0]
    public = base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
    return Presented.bearer(ctx.sign(ctx.claims(), secret=public))


async def _eddsa_good(ctx: Ctx) -> Presented:
    return Presented.bearer(ctx.token("ripley"))


async def _other_agents_run(ctx: Ctx) -> Presented:
    # ripley's own valid token on bishop's run; in a file: ripley's token in ash's file.
    return Presented.bearer(ctx.token("ripley"), file_agent="ash", **usage_of(ctx.run.id))


async def _other_companys_run(ctx: Ctx) -> Presented:
    return Presented.bearer(ctx.token("bishop"), file_agent="ash", **usage_of(ctx.other_run.id))


async def _run_token_other_run(ctx: Ctx) -> Presented:
    # bishop's run token of its first run, on its next run (the first one done, new work).
    first = await ctx.run_token(ctx.run)
    await ctx.api.service.finish_run(ctx.run.id, "bishop", RunOutcome.DONE, "done")
    await ctx.api.service.file_issue(title="more work", assignee="bishop", actor="owner")
    second = await ctx.api.open_run("bishop")
    return Presented.bearer(first, file_agent="ash", **usage_of(second.id))


async def _run_token_own_run(ctx: Ctx) -> Presented:
    token = await ctx.run_token(ctx.run)
    # In a file a run token is refused: it dies with its run, a token file must not.
    return Presented.bearer(token, file_agent="ash", **usage_of(ctx.run.id))


async def _run_token_after_end(ctx: Ctx) -> Presented:
    token = await ctx.run_token(ctx.run)
    await ctx.api.service.finish_run(ctx.run.id, "bishop", RunOutcome.DONE, "done")
    return Presented.bearer(token, file_agent="ash", **usage_of(ctx.run.id))


async def _run_token_past_deadline(ctx: Ctx) -> Presented:
    token = await ctx.run_token(ctx.run)
    ctx.api.clock.set(ctx.run.deadline + 60 + 31)  # it dies a minute after the deadline
    return Presented.bearer(token, file_agent="ash", **usage_of(ctx.run.id))


def _claims_edit(**changes: Any) -> Make:
    return bearer(lambda ctx: ctx.sign({**ctx.claims(), **changes}))


def _tampered(**changes: Any) -> Make:
    return bearer(lambda ctx: ctx.tamper(**changes))


def _no_kid(ctx: Ctx) -> str:
    header = {"alg": "HS256", "typ": "JWT"}
    return forge(header, ctx.claims(), ctx.key.secret, hashlib.sha256)


NOW = int(ManualClock().now())  # every stack's clock starts here

ROWS: list[Row] = [
    # controls: what must keep working
    Row("valid", bearer(lambda c: c.token("ripley")), 200, OK, OK),
    Row("previous key within its grace", _in_grace, 200, OK, OK),
    Row("no skills claim (optional)", bearer(lambda c: c.without("skills")), 200, OK, OK),
    Row("run token on its own run", _run_token_own_run, 200, OK, "revoked"),
    Row("EdDSA ring, EdDSA token", _eddsa_good, 200, OK, OK, alg="EdDSA"),
    # presence and shape
    Row("missing", _missing, 401, "missing_token", "missing_file"),
    Row("not a bearer header / empty file", _not_bearer, 401, "malformed", "malformed"),
    Row("malformed", bearer(lambda c: "not-a-jwt"), 401, "malformed", "malformed"),
    Row(
        "two segments",
        bearer(lambda c: c.token("ripley").rsplit(".", 1)[0]),
        401,
        "malformed",
        "malformed",
    ),
    Row("no kid in the header", bearer(_no_kid), 401, "malformed", "malformed"),
    # keys and signatures
    Row("bad signature", _bad_signature, 401, "bad_signature", "bad_signature"),
    Row("unknown key", _unknown_key, 401, "unknown_key", "unknown_key"),
    Row("retired key", _retired_key, 401, "unknown_key", "unknown_key"),
    Row("key past its grace", _past_grace, 401, "unknown_key", "unknown_key"),
    Row("alg none", _alg_none, 401, "bad_signature", "bad_signature"),
    Row(
        "HS256 token claiming HS512",
        bearer(lambda c: c.sign(c.claims(), alg="HS512", hash_=hashlib.sha512)),
        401,
        "bad_signature",
        "bad_signature",
    ),
    Row(
        "HS256 token claiming RS256",
        bearer(lambda c: c.sign(c.claims(), alg="RS256")),
        401,
        "bad_signature",
        "bad_signature",
    ),
    Row(
        "EdDSA ring given an HS256 token",
        _eddsa_confused,
        401,
        "bad_signature",
        "bad_signature",
        alg="EdDSA",
    ),
    # claims edited without re-signing
    Row("tampered sub", _tampered(sub="bishop"), 401, "bad_signature", "bad_signature"),
    Row("tampered company", _tampered(company="matrix"), 401, "bad_signature", "bad_signature"),
    Row("tampered role", _tampered(role="cto"), 401, "bad_signature", "bad_signature"),
    Row("tampered skills", _tampered(skills=["shell"]), 401, "bad_signature", "bad_signature"),
    Row("tampered tv", _tampered(tv=7), 401, "bad_signature", "bad_signature"),
    Row("tampered exp", _tampered(exp=NOW + 999 * int(DAY)), 401, "bad_signature", "bad_signature"),
    # time
    Row("expired", _expired, 401, "expired", "expired"),
    Row(
        "iat in the future",
        _claims_edit(iat=NOW + 3600, exp=NOW + 7200),
        401,
        "malformed",
        "malformed",
    ),
    Row("iat within the skew", _claims_edit(iat=NOW + 20), 200, OK, OK),
    # audience
    Row(
        "wrong audience",
        _audience("billing-api", "fleetbot"),
        401,
        "wrong_audience",
        "wrong_audience",
    ),
    Row(
        "wrong issuer",
        _audience("fleetbot-api", "paperclip"),
        401,
        "wrong_audience",
        "wrong_audience",
    ),
    # signed properly but missing a claim fleetbot needs
    *[
        Row(
            f"missing claim {claim}",
            bearer(lambda c, x=claim: c.without(x)),
            401,
            "malformed",
            "malformed",
        )
        for claim in ("sub", "company", "role", "tv", "iat", "exp", "iss", "aud")
    ],
    Row("claim of the wrong type", _claims_edit(tv="1"), 401, "malformed", "malformed"),
    # the agent's state
    Row("revoked (token version bumped)", _revoked, 401, "revoked", "revoked"),
    Row("token of a deleted agent", _deleted, 401, "revoked", NO_BEAT),
    Row("agent moved to another company", _company_moved, 401, "revoked", "revoked"),
    Row(
        "token version ahead of the agent's",
        bearer(lambda c: c.sign({**c.claims(), "tv": c.claims()["tv"] + 1})),
        401,
        "revoked",
        "revoked",
    ),
    # runs
    Row(
        "one agent's token on another agent's run",
        _other_agents_run,
        403,
        "not_your_run",
        "revoked",
    ),
    Row("a token on another company's run", _other_companys_run, 403, "not_your_run", "revoked"),
    Row(
        # Its run is over, so the token died with it (issue 11: run tokens die with their run).
        "run token on another run of its agent",
        _run_token_other_run,
        401,
        "run_ended",
        "revoked",
    ),
    Row("run token after its run ended", _run_token_after_end, 401, "run_ended", "revoked"),
    Row("run token past its deadline", _run_token_past_deadline, 401, "expired", "expired"),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
async def test_auth_matrix(tmp_path: Path, row: Row) -> None:
    if row.alg == "EdDSA":
        pytest.importorskip("cryptography")
    async with api_stack(tmp_path, row.alg) as api:
        # bishop works on ALI-1 and trinity on MAT-1: live runs for the run rows.
        await api.service.file_issue(title="work", assignee="bishop", actor="owner")
        await api.service.file_issue(title="work", assignee="trinity", actor="owner")
        ctx = Ctx(api, await api.open_run("bishop"), await api.open_run("trinity"))
        presented = await row.make(ctx)

        headers = {} if presented.header is None else {"Authorization": presented.header}
        r = await api.client.request(
            presented.method, presented.path, headers=headers, json=presented.body
        )
        assert r.status_code == row.status, r.text
        if row.code == OK:
            assert r.json() is not None
        else:
            body = r.json()
            assert body["error"] == row.code, body
            assert body["detail"]
            if presented.header is not None and len(presented.header) > 20:
                assert presented.header.split(" ", 1)[1] not in r.text  # never echoed
            if row.status == 401:
                assert r.headers["www-authenticate"] == f'Bearer error="{row.code}"'

        # The same token in a token file, found by the agent's next heartbeat.
        agent_id = presented.file_agent
        path = api.auth.token_file(agent_id)
        if presented.file_text is None:
            path.unlink()
        else:
            write_token_file(api.auth.token_dir, agent_id, presented.file_text.strip(), fsync=False)
        beat = await Heartbeat(api.service, api.auth, api.clock).beat(agent_id, forced=True)
        if row.file_code == NO_BEAT:
            assert beat is None
            return
        assert beat is not None
        agent = await api.service.agent(agent_id)
        if row.file_code == OK:
            assert beat.outcome is HeartbeatOutcome.NO_WORK, beat
            assert agent.status is AgentStatus.IDLE
        else:
            assert beat.outcome is HeartbeatOutcome.UNAUTHENTICATED, beat
            assert (agent.status, agent.reason_code) == (AgentStatus.UNAUTHENTICATED, row.file_code)
            assert agent.reason  # a sentence for the operator, not just a code


def test_the_matrix_covers_every_reason_code() -> None:
    """Each reason an agent can be refused for appears in the table, both ways."""
    from core.models import AuthReason

    http = {r.code for r in ROWS}
    files = {r.file_code for r in ROWS}
    for reason in AuthReason:
        assert reason.value in http | files, reason
    assert {"not_your_run", "run_ended"} <= http
