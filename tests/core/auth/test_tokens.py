"""Tokens: the claims they carry, and one reason code for every way they fail."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

import jwt
import pytest

import core.auth.tokens as tokens_module
from core.auth.agent_auth import AgentAuth, KeyRingFile
from core.auth.keyring import KeyRing
from core.auth.tokens import LEEWAY, TokenAuthority, read_token_file, write_token_file
from core.clock import ManualClock
from core.config import AuthConfig
from core.errors import NotYourRun, TokenInvalid
from core.models import Agent, AgentStatus, AuthReason

NOW = 1_767_225_600.0
DAY = 86400.0


def _agent(agent_id: str = "ripley", **kw: Any) -> Agent:
    base = Agent(
        id=agent_id,
        company_id="aliens",
        name=agent_id.title(),
        role="ceo",
        reports_to=None,
        status=AgentStatus.IDLE,
        reason="",
        reason_code="",
        status_changed_at=NOW,
        model="m",
        heartbeat_seconds=3600,
        next_heartbeat_at=NOW,
        token_version=0,
        skills=("issues.create", "summaries.post"),
        max_turns=50,
        run_timeout_seconds=1800,
    )
    return replace(base, **kw)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forge(header: dict[str, Any], claims: dict[str, Any], secret: bytes | None) -> str:
    """A JWT assembled by hand, the way an attacker would (no library checks in the way)."""
    head = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    if secret is None:
        return head + "."
    return head + "." + _b64(hmac.new(secret, head.encode(), hashlib.sha256).digest())


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    head, body, _ = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return (
        json.loads(base64.urlsafe_b64decode(pad(head))),
        json.loads(base64.urlsafe_b64decode(pad(body))),
    )


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    return KeyRing.create(tmp_path / "keyring.json", NOW)


@pytest.fixture
def authority(ring: KeyRing) -> TokenAuthority:
    return TokenAuthority(ring, issuer="fleetbot", audience="fleetbot-api")


def _code(authority: TokenAuthority, token: str, now: float = NOW) -> str:
    with pytest.raises(TokenInvalid) as err:
        authority.verify(token, now)
    return err.value.code


def test_a_token_carries_every_claim(authority: TokenAuthority, ring: KeyRing) -> None:
    token = authority.issue(_agent(token_version=3), NOW, 30 * DAY)
    header, claims = _parts(token)
    assert header == {"alg": "HS256", "typ": "JWT", "kid": ring.active.kid}
    assert claims == {
        "sub": "ripley",
        "company": "aliens",
        "role": "ceo",
        "skills": ["issues.create", "summaries.post"],
        "tv": 3,
        "iat": int(NOW),
        "exp": int(NOW + 30 * DAY),
        "iss": "fleetbot",
        "aud": "fleetbot-api",
    }
    got = authority.verify(token, NOW + DAY)
    assert (got.sub, got.company, got.role, got.tv, got.kid) == (
        "ripley",
        "aliens",
        "ceo",
        3,
        ring.active.kid,
    )
    assert got.skills == ("issues.create", "summaries.post") and got.run is None
    run = authority.verify(authority.issue(_agent(), NOW, 60, run_id="r-1"), NOW)
    assert run.run == "r-1"


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30.", "x" * 5000])
def test_missing_and_malformed(authority: TokenAuthority, token: str) -> None:
    assert _code(authority, token) == (
        AuthReason.MISSING_TOKEN if token == "" else AuthReason.MALFORMED
    )


def test_malformed_claims(authority: TokenAuthority, ring: KeyRing) -> None:
    kid, secret = ring.active.kid, ring.active.secret
    good = {
        "sub": "ripley",
        "company": "aliens",
        "role": "ceo",
        "skills": [],
        "tv": 0,
        "iat": int(NOW),
        "exp": int(NOW + 60),
        "iss": "fleetbot",
        "aud": "fleetbot-api",
    }
    head = {"alg": "HS256", "typ": "JWT", "kid": kid}
    assert authority.verify(_forge(head, good, secret), NOW).sub == "ripley"
    assert _code(authority, _forge({"alg": "HS256"}, good, secret)) == "malformed"  # no kid
    no_company = {k: v for k, v in good.items() if k != "company"}
    assert _code(authority, _forge(head, no_company, secret)) == "malformed"
    assert _code(authority, _forge(head, {**good, "tv": "0"}, secret)) == "malformed"
    future = {**good, "iat": int(NOW + 3600), "exp": int(NOW + 7200)}
    assert _code(authority, _forge(head, future, secret)) == "malformed"


def test_bad_signature_and_tampering(authority: TokenAuthority, ring: KeyRing) -> None:
    token = authority.issue(_agent(), NOW, DAY)
    header, claims = _parts(token)
    # The field notes' outage: a token under the right kid, signed with another secret.
    assert _code(authority, _forge(header, claims, b"w" * 32)) == "bad_signature"
    # Tampered claims keep the original signature: promote ripley's token to bishop's.
    head, _, sig = token.split(".")
    forged_body = _b64(json.dumps({**claims, "sub": "bishop"}).encode())
    assert _code(authority, f"{head}.{forged_body}.{sig}") == "bad_signature"
    assert _code(authority, token[:-4] + ("AAAA" if token[-4:] != "AAAA" else "BBBB")) in (
        "bad_signature",
        "malformed",
    )


def test_alg_none_is_refused(authority: TokenAuthority, ring: KeyRing) -> None:
    _, claims = _parts(authority.issue(_agent(), NOW, DAY))
    for alg in ("none", "None", "NONE"):
        token = _forge({"alg": alg, "kid": ring.active.kid}, claims, None)
        assert _code(authority, token) == "bad_signature"


def test_algorithm_confusion_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    ring = KeyRing.create(tmp_path / "ed.json", NOW, alg="EdDSA")
    authority = TokenAuthority(ring, issuer="fleetbot", audience="fleetbot-api")
    token = authority.issue(_agent(), NOW, DAY)
    assert _parts(token)[0]["alg"] == "EdDSA"
    assert authority.verify(token, NOW).sub == "ripley"
    # The classic attack: HS256 "signed" with the published public key as the HMAC secret.
    jwk = ring.public_jwks(NOW)["keys"][0]
    public = base64.urlsafe_b64decode(jwk["x"] + "==")
    _, claims = _parts(token)
    for secret in (public, jwk["x"].encode()):
        forged = _forge({"alg": "HS256", "kid": ring.active.kid}, claims, secret)
        assert _code(authority, forged) == "bad_signature"


def test_eddsa_tokens_verify_with_the_public_key_alone(tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    ring = KeyRing.create(tmp_path / "ed.json", NOW, alg="EdDSA")
    token = TokenAuthority(ring, issuer="fleetbot", audience="fleetbot-api").issue(
        _agent(), NOW, DAY
    )
    # What another service does with `fleetbot tokens jwks`: no access to the key ring.
    key = jwt.PyJWK(ring.public_jwks(NOW)["keys"][0])
    claims = jwt.decode(
        token, key, algorithms=["EdDSA"], audience="fleetbot-api", options={"verify_exp": False}
    )
    assert claims["sub"] == "ripley"


def test_unknown_key(authority: TokenAuthority, ring: KeyRing, tmp_path: Path) -> None:
    foreign = KeyRing.create(tmp_path / "other.json", NOW)
    stranger = TokenAuthority(foreign, issuer="fleetbot", audience="fleetbot-api")
    assert _code(authority, stranger.issue(_agent(), NOW, DAY)) == "unknown_key"
    old_token = authority.issue(_agent(), NOW, 30 * DAY)
    ring.rotate(NOW + 10, grace=600)
    assert authority.verify(old_token, NOW + 600).sub == "ripley"  # inside the grace
    assert _code(authority, old_token, NOW + 610) == "unknown_key"  # grace over
    ring.retire_expired(NOW + 610)
    assert _code(authority, old_token, NOW + 20) == "unknown_key"  # retired: never again


def test_resign_moves_a_token_onto_the_active_key_and_changes_nothing_else(
    authority: TokenAuthority, ring: KeyRing
) -> None:
    """What the retirement check does to a token file still signed by a key whose grace is
    ending: the same claims under the active key, and nothing for a token that key never
    signed."""
    old = ring.active
    token = authority.issue(_agent(token_version=3), NOW, 30 * DAY)
    expired = authority.issue(_agent(), NOW - 2 * DAY, DAY)
    forged = _forge(_parts(token)[0], _parts(token)[1], b"w" * 32)
    ring.rotate(NOW + 10, grace=600)
    on_active = authority.issue(_agent(), NOW + 10, DAY)
    assert authority.resign(on_active, {old.kid, ring.active.kid}) is None  # already there
    assert authority.resign(token, {"some-other-kid"}) is None
    assert authority.resign(forged, {old.kid}) is None  # never launders a forged signature
    assert authority.resign("not-a-jwt", {old.kid}) is None

    kid, moved = authority.resign(token, {old.kid}) or ("", "")
    assert kid == old.kid
    assert _parts(moved)[0] == {"alg": "HS256", "typ": "JWT", "kid": ring.active.kid}
    assert _parts(moved)[1] == _parts(token)[1]
    assert authority.verify(moved, NOW + 700).tv == 3  # past the old key's grace
    _, still_expired = authority.resign(expired, {old.kid}) or ("", "")
    assert _code(authority, still_expired) == "expired"  # grants no more than before

    ring.retire_expired(NOW + 610)
    assert authority.resign(token, {old.kid}) is None  # a retired key re-signs nothing


def test_expired(authority: TokenAuthority) -> None:
    token = authority.issue(_agent(), NOW, 3600)
    assert authority.verify(token, NOW + 3600 + LEEWAY).sub == "ripley"  # clock skew allowed
    assert _code(authority, token, NOW + 3600 + LEEWAY + 1) == "expired"


def test_wrong_audience_or_issuer(ring: KeyRing) -> None:
    ours = TokenAuthority(ring, issuer="fleetbot", audience="fleetbot-api")
    for iss, aud in (("fleetbot", "billing-api"), ("paperclip", "fleetbot-api")):
        theirs = TokenAuthority(ring, issuer=iss, audience=aud)
        assert _code(ours, theirs.issue(_agent(), NOW, DAY)) == "wrong_audience"


def _auth(tmp_path: Path, ring: KeyRing) -> AgentAuth:
    config = AuthConfig(keyring=ring.path, token_dir=tmp_path / "tokens")
    return AgentAuth(KeyRingFile(ring.path), config, ManualClock(NOW))


def test_revoked_version_and_deleted_agent(tmp_path: Path, ring: KeyRing) -> None:
    auth = _auth(tmp_path, ring)
    agent = _agent(token_version=2)
    claims = auth.verify(auth.authority.issue(agent, NOW, DAY))
    auth.check_current(claims, agent)
    for stale, why in ((replace(agent, token_version=3), "revoked"), (None, "no longer exists")):
        with pytest.raises(TokenInvalid, match=why) as err:
            auth.check_current(claims, stale)
        assert err.value.code == "revoked"
    moved = replace(agent, company_id="matrix")
    with pytest.raises(TokenInvalid):
        auth.check_current(claims, moved)


def test_a_token_acts_only_on_its_own_agents_run(tmp_path: Path, ring: KeyRing) -> None:
    auth = _auth(tmp_path, ring)
    ripley = auth.verify(auth.run_token(_agent(), "run-r", NOW + 600))
    auth.check_run(ripley, "ripley", "run-r")
    with pytest.raises(NotYourRun):
        auth.check_run(ripley, "bishop", "run-b")  # another agent's run
    with pytest.raises(NotYourRun):
        auth.check_run(ripley, "ripley", "run-r2")  # its own agent, but another run
    long_lived = auth.verify(auth.authority.issue(_agent(), NOW, DAY))
    auth.check_run(long_lived, "ripley", "run-r2")
    assert ripley.exp == int(NOW + 600 + 60)  # dies a minute after the run's deadline


def test_token_files_and_missing_file(tmp_path: Path, ring: KeyRing) -> None:
    auth = _auth(tmp_path, ring)
    agent = _agent()
    with pytest.raises(TokenInvalid) as err:
        read_token_file(auth.token_dir, "ripley")
    assert err.value.code == "missing_file"
    problem = auth.check_file(agent)
    assert problem is not None and problem.code == "missing_file"
    path = auth.issue(agent)
    assert path == tmp_path / "tokens" / "ripley.jwt"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert auth.check_file(agent) is None
    assert [p.name for p in path.parent.iterdir()] == ["ripley.jwt"]  # written atomically
    write_token_file(auth.token_dir, "ripley", "")
    problem = auth.check_file(agent)
    assert problem is not None and problem.code == "malformed"
    # Another agent's token in ripley's file, and a per-run token in it: both refused.
    write_token_file(auth.token_dir, "ripley", auth.authority.issue(_agent("bishop"), NOW, DAY))
    problem = auth.check_file(agent)
    assert problem is not None and problem.code == "revoked"
    write_token_file(auth.token_dir, "ripley", auth.run_token(agent, "r", NOW + 60))
    problem = auth.check_file(agent)
    assert problem is not None and problem.code == "revoked"


class _EvictedUnderfoot(dict):  # type: ignore[type-arg]
    """A cache whose oldest entry another thread evicts between `next(iter(...))` and `pop`:
    the interleaving that raised KeyError when rotation verified in a worker thread."""

    def __iter__(self):  # type: ignore[no-untyped-def]
        for key in list(super().__iter__()):
            super().pop(key, None)
            yield key


def test_a_full_cache_survives_an_eviction_by_another_thread(
    authority: TokenAuthority, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokens_module, "VERIFIED_CACHE", 2)
    authority._verified = _EvictedUnderfoot()
    for i in range(5):
        token = authority.issue(_agent(), NOW + i, 30 * DAY)
        assert authority.verify(token, NOW + 10).sub == "ripley"
    assert len(authority._verified) <= 2
