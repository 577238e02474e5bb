"""Agent tokens: JWTs signed by the key ring's active key, verified with a machine reason.

`TokenAuthority.verify` checks what a token alone can prove (format, key, signature, expiry,
audience). Whether the agent still exists and the token's version is current needs the store:
see core.auth.agent_auth.
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from core.auth.keyring import Key, KeyRing, KeyState
from core.auth.secretfile import write_secret
from core.errors import TokenInvalid
from core.models import Agent, AuthReason

LEEWAY = 30.0  # seconds of clock skew tolerated on iat/exp
VERIFIED_CACHE = 4096  # verified tokens remembered per key ring (about a megabyte at most)


@dataclass(frozen=True, slots=True)
class Claims:
    sub: str
    company: str
    role: str
    skills: tuple[str, ...]
    tv: int
    iat: int
    exp: int
    kid: str
    run: str | None = None


def _fail(code: AuthReason, message: str) -> TokenInvalid:
    return TokenInvalid(message, code=code.value)


class TokenAuthority:
    """Signs and verifies agent tokens against one key ring."""

    def __init__(self, keyring: KeyRing, *, issuer: str, audience: str) -> None:
        self.keyring = keyring
        self.issuer = issuer
        self.audience = audience
        # Tokens that passed every check but the clock's, with the key that verified them: an
        # agent sends the same token on every call, and decoding plus HMAC was a fifth of an
        # API request's CPU. A hit still needs that very Key object (a rotation or retirement
        # replaces it) and is checked against `now` again; refusals are never cached.
        self._verified: dict[str, tuple[Claims, Key]] = {}
        # Rotation verifies in worker threads (asyncio.to_thread) while the API verifies on
        # the loop: evicting and inserting must not interleave (it raised KeyError once).
        self._cache_lock = threading.Lock()

    def issue(self, agent: Agent, now: float, ttl: float, run_id: str | None = None) -> str:
        key = self.keyring.active
        claims: dict[str, Any] = {
            "sub": agent.id,
            "company": agent.company_id,
            "role": agent.role,
            "skills": list(agent.skills),
            "tv": agent.token_version,
            "iat": int(now),
            "exp": int(now + ttl),
            "iss": self.issuer,
            "aud": self.audience,
        }
        if run_id is not None:
            claims["run"] = run_id
        return jwt.encode(claims, key.signing_key(), algorithm=key.alg, headers={"kid": key.kid})

    def verify(self, token: str, now: float) -> Claims:
        """Claims of a token that verifies; otherwise TokenInvalid with `.code` set."""
        if not token:
            raise _fail(AuthReason.MISSING_TOKEN, "no token was presented")
        hit = self._verified.get(token)
        if hit is not None and self.keyring.get(hit[1].kid) is hit[1]:
            if not hit[1].verifies_at(now):
                raise _unknown_key(hit[1].kid, hit[1])
            return _in_time(hit[0], now)
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.InvalidTokenError, ValueError, TypeError):
            raise _fail(AuthReason.MALFORMED, "the token is not a JWT") from None
        kid = header.get("kid")
        alg = header.get("alg")
        if not isinstance(kid, str) or not kid:
            raise _fail(AuthReason.MALFORMED, "the token has no key id (kid) in its header")
        key = self.keyring.get(kid)
        if key is None or not key.verifies_at(now):
            raise _unknown_key(kid, key)
        if alg != key.alg:
            # Covers alg=none and algorithm confusion (an HS256 token "signed" with an EdDSA
            # public key): the key ring decides the algorithm, never the token.
            raise _fail(
                AuthReason.BAD_SIGNATURE,
                f"the token claims algorithm {alg!r} but key {kid!r} is {key.alg}",
            )
        try:
            raw = jwt.decode(
                token,
                key.verifying_key(),
                algorithms=[key.alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY,
                options={
                    "require": ["sub", "exp", "iat", "iss", "aud"],
                    # Times are checked below against the injected clock, not the system's.
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.InvalidSignatureError:
            raise _fail(
                AuthReason.BAD_SIGNATURE,
                f"the token's signature does not match key {kid!r}: it was signed with "
                "another secret",
            ) from None
        except (jwt.InvalidAudienceError, jwt.InvalidIssuerError):
            raise _fail(AuthReason.WRONG_AUDIENCE, "the token is not meant for this API") from None
        except (jwt.InvalidTokenError, ValueError, TypeError):
            raise _fail(AuthReason.MALFORMED, "the token's claims are unreadable") from None
        try:
            claims = Claims(
                sub=_str(raw["sub"]),
                company=_str(raw["company"]),
                role=_str(raw["role"]),
                skills=tuple(_str(s) for s in _list(raw.get("skills", []))),
                tv=_int(raw["tv"]),
                iat=_int(raw["iat"]),
                exp=_int(raw["exp"]),
                kid=kid,
                run=_str(raw["run"]) if raw.get("run") is not None else None,
            )
        except (KeyError, TypeError):
            raise _fail(AuthReason.MALFORMED, "the token lacks fleetbot's claims") from None
        _in_time(claims, now)
        with self._cache_lock:
            while len(self._verified) >= VERIFIED_CACHE:
                # The oldest entry; None because a thread that verified without the lock's
                # help (an older build, a test) may have evicted it between the two calls.
                self._verified.pop(next(iter(self._verified)), None)
            self._verified[token] = (claims, key)
        return claims

    def resign(self, token: str, kids: Collection[str]) -> tuple[str, str] | None:
        """`token` signed again by the active key, its claims unchanged, when its header names
        one of `kids` and it carries that key's valid signature: (that kid, the new token).
        None for anything else: not a JWT, a forged or foreign signature, another key.

        Times and claims are not checked, on purpose: the new token grants exactly what the
        old one did (an expired or revoked token stays so), only under a key that goes on
        verifying. The old key's grace does not matter; a retired key re-signs nothing.
        """
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.InvalidTokenError, ValueError, TypeError):
            return None
        kid = header.get("kid")
        if not isinstance(kid, str) or kid not in kids:
            return None
        key, active = self.keyring.get(kid), self.keyring.active
        if key is None or key is active or key.state is KeyState.RETIRED:
            return None
        if header.get("alg") != key.alg:
            return None
        try:
            claims = jwt.decode(
                token,
                key.verifying_key(),
                algorithms=[key.alg],
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "verify_aud": False,
                    "verify_iss": False,
                },
            )
        except (jwt.InvalidTokenError, ValueError, TypeError):
            return None
        new = jwt.encode(
            claims, active.signing_key(), algorithm=active.alg, headers={"kid": active.kid}
        )
        return kid, new


def _unknown_key(kid: str, key: Key | None) -> TokenInvalid:
    return _fail(
        AuthReason.UNKNOWN_KEY,
        f"the token was signed with key {kid!r}, which this key ring "
        + ("does not hold" if key is None else "no longer accepts (past its grace)"),
    )


def _in_time(claims: Claims, now: float) -> Claims:
    if now > claims.exp + LEEWAY:
        raise _fail(AuthReason.EXPIRED, "the token has expired")
    if claims.iat > now + LEEWAY:
        raise _fail(AuthReason.MALFORMED, "the token was issued in the future")
    return claims


def _str(v: object) -> str:
    if not isinstance(v, str):
        raise TypeError
    return v


def _int(v: object) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise TypeError
    return v


def _list(v: object) -> list[object]:
    if not isinstance(v, list):
        raise TypeError
    return v


def token_path(token_dir: Path, agent_id: str) -> Path:
    return token_dir / f"{agent_id}.jwt"


def write_token_file(token_dir: Path, agent_id: str, token: str, *, fsync: bool = True) -> Path:
    path = token_path(token_dir, agent_id)
    write_secret(path, token + "\n", fsync=fsync)
    return path


def read_token_file(token_dir: Path, agent_id: str) -> str:
    path = token_path(token_dir, agent_id)
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        raise _fail(
            AuthReason.MISSING_FILE,
            f"no token file at {path}",
        ) from None
    except OSError as exc:
        raise _fail(
            AuthReason.MISSING_FILE,
            f"cannot read {path} ({exc.strerror}); check its owner and mode",
        ) from None
    if not text:
        raise _fail(AuthReason.MALFORMED, f"the token file {path} is empty")
    return text
