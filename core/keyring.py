"""The key ring: the one and only place signing keys live.

A JSON file (mode 0600, written atomically) holding keys with a `kid`, a creation time and a state:
exactly one `active` key signs; `verify_only` keys still verify until `verify_until` (the rotation
grace, so tokens signed a moment before a rotation keep working); `retired` keys verify nothing.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from core.errors import KeyRingError
from core.secretfile import loose_permissions, write_secret

FORMAT_VERSION = 1
# Env vars that other tools (and past setups) use for a signing secret. Any of them being set
# next to the key ring is the "two sources of keys" mistake behind the field notes' outages.
SECOND_SOURCE_ENV = (
    "FLEETBOT_JWT_SECRET",
    "FLEETBOT_SIGNING_KEY",
    "FLEETBOT_AUTH__SECRET",
    "FLEETBOT_AUTH__KEYS",
    "JWT_SECRET",
    "PAPERCLIP_AGENT_JWT_SECRET",
)


class KeyState(StrEnum):
    ACTIVE = "active"  # signs new tokens and verifies
    VERIFY_ONLY = "verify_only"  # verifies until verify_until, signs nothing
    RETIRED = "retired"  # verifies nothing


@dataclass(frozen=True, slots=True)
class Key:
    kid: str
    secret: bytes
    alg: str
    created_at: float
    state: KeyState
    verify_until: float | None = None

    def verifies_at(self, now: float) -> bool:
        if self.state is KeyState.ACTIVE:
            return True
        if self.state is KeyState.VERIFY_ONLY:
            return self.verify_until is None or now < self.verify_until
        return False

    def to_json(self) -> dict[str, Any]:
        return {
            "kid": self.kid,
            "secret": base64.urlsafe_b64encode(self.secret).decode(),
            "alg": self.alg,
            "created_at": self.created_at,
            "state": self.state.value,
            "verify_until": self.verify_until,
        }

    def __repr__(self) -> str:  # never print the secret, not even in a traceback
        return f"Key(kid={self.kid!r}, alg={self.alg!r}, state={self.state.value!r})"


def _new_key(now: float, alg: str) -> Key:
    return Key(
        kid=f"k{int(now)}-{secrets.token_hex(3)}",
        secret=secrets.token_bytes(32),
        alg=alg,
        created_at=now,
        state=KeyState.ACTIVE,
    )


class KeyRing:
    """Keys by kid. Load with `KeyRing.load(path)`; every change is saved before it returns."""

    def __init__(self, path: Path, keys: list[Key]) -> None:
        self.path = path
        self._keys = {k.kid: k for k in keys}
        self._check()

    def _check(self) -> None:
        active = [k for k in self._keys.values() if k.state is KeyState.ACTIVE]
        if len(active) != 1:
            raise KeyRingError(
                f"{self.path}: a key ring needs exactly one active key, found {len(active)}. "
                "Run `fleetbot tokens rotate` to make a fresh active key."
            )

    @property
    def keys(self) -> list[Key]:
        return sorted(self._keys.values(), key=lambda k: k.created_at)

    @property
    def active(self) -> Key:
        return next(k for k in self._keys.values() if k.state is KeyState.ACTIVE)

    def get(self, kid: str) -> Key | None:
        return self._keys.get(kid)

    @classmethod
    def create(cls, path: Path, now: float, alg: str = "HS256") -> KeyRing:
        """A new key ring with one active key; refuses to overwrite an existing one."""
        if path.exists():
            raise KeyRingError(
                f"{path}: a key ring already exists; rotate it with `fleetbot tokens rotate` "
                "instead of creating a new one."
            )
        ring = cls(path, [_new_key(now, alg)])
        ring.save()
        return ring

    @classmethod
    def load(cls, path: Path) -> KeyRing:
        try:
            if loose_permissions(path):
                raise KeyRingError(
                    f"{path}: the key ring is readable by other users; fix it with "
                    f"`chmod 600 {path}`."
                )
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise KeyRingError(
                f"{path}: no key ring here. Create one with `fleetbot init`, or point "
                "auth.keyring at the right file."
            ) from None
        except (OSError, ValueError) as exc:
            raise KeyRingError(
                f"{path}: cannot read the key ring ({type(exc).__name__}). Restore it from a "
                "backup, or move it away and run `fleetbot init` to start over."
            ) from None
        try:
            if raw.get("version") != FORMAT_VERSION:
                raise ValueError("unsupported version")
            keys = [
                Key(
                    kid=str(k["kid"]),
                    secret=base64.urlsafe_b64decode(k["secret"]),
                    alg=str(k.get("alg", "HS256")),
                    created_at=float(k["created_at"]),
                    state=KeyState(k["state"]),
                    verify_until=k.get("verify_until"),
                )
                for k in raw["keys"]
            ]
        except (KeyError, TypeError, ValueError, AttributeError):
            raise KeyRingError(
                f"{path}: the key ring file is not in fleetbot's format (version "
                f"{FORMAT_VERSION}). Restore it from a backup."
            ) from None
        return cls(path, keys)

    def save(self) -> None:
        doc = {"version": FORMAT_VERSION, "keys": [k.to_json() for k in self.keys]}
        write_secret(self.path, json.dumps(doc, indent=2) + "\n")

    def rotate(self, now: float, grace: float, alg: str | None = None) -> Key:
        """Make a new active key; the old one verifies for `grace` seconds more."""
        old = self.active
        new = _new_key(now, alg or old.alg)
        while new.kid in self._keys:
            new = _new_key(now, alg or old.alg)
        self._keys[old.kid] = replace(old, state=KeyState.VERIFY_ONLY, verify_until=now + grace)
        self._keys[new.kid] = new
        self.save()
        return new

    def retire_expired(self, now: float) -> list[str]:
        """Retire verify-only keys past their grace; returns their kids."""
        done = []
        for key in list(self._keys.values()):
            if key.state is KeyState.VERIFY_ONLY and not key.verifies_at(now):
                self._keys[key.kid] = replace(key, state=KeyState.RETIRED)
                done.append(key.kid)
        if done:
            self.save()
        return done


def check_single_source(keyring_path: Path, env: Mapping[str, str]) -> None:
    """Refuse to start when a signing secret also sits somewhere other than the key ring."""
    for name in SECOND_SOURCE_ENV:
        if env.get(name):
            raise KeyRingError(
                f"two sources of signing keys: the key ring {keyring_path} and the env var "
                f"{name}. The key ring is the only source; unset {name}."
            )
