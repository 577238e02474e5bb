"""The key ring: the one and only place signing keys live.

A JSON file (mode 0600, written atomically) holding keys with a `kid`, a creation time and a state:
exactly one `active` key signs; `verify_only` keys still verify until `verify_until` (the rotation
grace, so tokens signed a moment before a rotation keep working); `retired` keys verify nothing.

HS256 keys are 32+ random bytes shared by signer and verifier. EdDSA keys (Ed25519, for setups
where other services verify tokens with the public key) store the 32-byte private seed and need
the optional `cryptography` package (`pip install 'fleetbot[eddsa]'`).

A second source of keys next to the key ring (a secret in an env var, a key ring in another known
place) is the mistake behind the field notes' outages, so `check_single_source` refuses to start.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import os
import re
import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.auth.secretfile import link_target, loose_permissions, write_secret
from core.errors import KeyRingError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

FORMAT_VERSION = 1
ALGORITHMS = ("HS256", "EdDSA")
MIN_HMAC_BYTES = 32  # RFC 7518 §3.2: an HS256 key at least as long as the hash
_KID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
EDDSA_MISSING = (
    "auth.algorithm EdDSA needs the optional package `cryptography`: install it with "
    "`pip install 'fleetbot[eddsa]'`, or use algorithm HS256"
)

# Env vars that other tools (and past setups) use for a signing secret. Any of them being set
# next to the key ring is the "two sources of keys" mistake behind the field notes' outages.
SECOND_SOURCE_ENV = (
    "FLEETBOT_JWT_SECRET",
    "FLEETBOT_SIGNING_KEY",
    "FLEETBOT_SECRET_KEY",
    "FLEETBOT_AUTH__SECRET",
    "FLEETBOT_AUTH__KEYS",
    "FLEETBOT_AUTH__SIGNING_KEY",
    "JWT_SECRET",
    "JWT_SECRET_KEY",
    "PAPERCLIP_AGENT_JWT_SECRET",
)
# Env vars that name a key ring file outside the config. FLEETBOT_AUTH__KEYRING is not one: it
# overrides auth.keyring, so it *is* the configured key ring.
KEYRING_PATH_ENV = ("FLEETBOT_KEYRING", "FLEETBOT_KEYRING_PATH", "FLEETBOT_KEYRING_FILE")


class KeyState(StrEnum):
    ACTIVE = "active"  # signs new tokens and verifies
    VERIFY_ONLY = "verify_only"  # verifies until verify_until, signs nothing
    RETIRED = "retired"  # verifies nothing


def eddsa_available() -> bool:
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: F401
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=64)
def _ed25519(seed: bytes) -> tuple[Ed25519PrivateKey, Ed25519PublicKey]:
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    except ImportError:
        raise KeyRingError(EDDSA_MISSING) from None
    private = Ed25519PrivateKey.from_private_bytes(seed)
    return private, private.public_key()


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
            return self.verify_until is not None and now < self.verify_until
        return False

    def signing_key(self) -> bytes | Ed25519PrivateKey:
        return _ed25519(self.secret)[0] if self.alg == "EdDSA" else self.secret

    def verifying_key(self) -> bytes | Ed25519PublicKey:
        return _ed25519(self.secret)[1] if self.alg == "EdDSA" else self.secret

    def public_jwk(self) -> dict[str, str] | None:
        """The public half as a JWK (EdDSA only: an HMAC key has no public half)."""
        if self.alg != "EdDSA":
            return None
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        raw = _ed25519(self.secret)[1].public_bytes(Encoding.Raw, PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": self.kid, "alg": "EdDSA"}

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
    if alg not in ALGORITHMS:
        raise KeyRingError(f"unknown signing algorithm {alg!r}; use one of {', '.join(ALGORITHMS)}")
    if alg == "EdDSA" and not eddsa_available():
        raise KeyRingError(EDDSA_MISSING)
    return Key(
        kid=f"k{int(now)}-{secrets.token_hex(4)}",
        secret=secrets.token_bytes(32),
        alg=alg,
        created_at=now,
        state=KeyState.ACTIVE,
    )


def _key_problem(key: Key) -> str | None:
    if not _KID.match(key.kid):
        return f"key id {key.kid!r} is not a plain id (letters, digits, . _ -)"
    if key.alg not in ALGORITHMS:
        return f"key {key.kid} has unknown algorithm {key.alg!r}"
    if key.alg == "HS256" and len(key.secret) < MIN_HMAC_BYTES:
        return f"key {key.kid} is {len(key.secret)} bytes; HS256 keys need at least 32"
    if key.alg == "EdDSA" and len(key.secret) != 32:
        return f"key {key.kid} is not a 32-byte Ed25519 seed"
    if key.state is KeyState.VERIFY_ONLY and key.verify_until is None:
        return f"verify-only key {key.kid} has no verify_until"
    return None


class KeyRing:
    """Keys by kid. Load with `KeyRing.load(path)`; every change is saved before it returns.

    Change a ring that a running process verifies with through
    `core.auth.agent_auth.KeyRingFile.update`, which locks the file, changes a fresh copy and
    swaps it in whole.
    """

    def __init__(self, path: Path, keys: list[Key]) -> None:
        self.path = path
        self._keys: dict[str, Key] = {}
        for key in keys:
            problem = _key_problem(key)
            if problem is None and key.kid in self._keys:
                problem = f"key id {key.kid} appears twice"
            if problem is not None:
                raise KeyRingError(
                    f"{path}: {problem}. Restore the key ring from a backup, or run "
                    "`fleetbot tokens rotate` after fixing the file by hand."
                )
            self._keys[key.kid] = key
        active = [k for k in self._keys.values() if k.state is KeyState.ACTIVE]
        if len(active) != 1:
            raise KeyRingError(
                f"{path}: a key ring needs exactly one active key, found {len(active)}. "
                "Restore it from a backup; with none, move it away and run `fleetbot init` "
                "and then `fleetbot tokens rotate`."
            )
        self._active = active[0]
        live = [k for k in self._keys.values() if k.state is not KeyState.RETIRED]
        if any(k.alg == "EdDSA" for k in live) and not eddsa_available():
            raise KeyRingError(f"{path}: the key ring holds EdDSA keys; {EDDSA_MISSING}")

    @property
    def keys(self) -> list[Key]:
        return sorted(self._keys.values(), key=lambda k: (k.created_at, k.kid))

    @property
    def active(self) -> Key:
        return self._active

    def get(self, kid: str) -> Key | None:
        return self._keys.get(kid)

    def verifying(self, now: float) -> list[Key]:
        """Keys a token may be signed with right now: the active one and those in grace."""
        return [k for k in self.keys if k.verifies_at(now)]

    def public_jwks(self, now: float) -> dict[str, list[dict[str, str]]]:
        """The public keys other services need to verify EdDSA tokens (a JWKS document)."""
        found = [k.public_jwk() for k in self.verifying(now)]
        return {"keys": [jwk for jwk in found if jwk is not None]}

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
            problem = keyring_problem(path)
            if problem is not None:
                raise KeyRingError(problem)
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
                    kid=_text(k["kid"]),
                    secret=base64.urlsafe_b64decode(_text(k["secret"])),
                    alg=_text(k.get("alg", "HS256")),
                    created_at=_number(k["created_at"]),
                    state=KeyState(k["state"]),
                    verify_until=(
                        None if k.get("verify_until") is None else _number(k["verify_until"])
                    ),
                )
                for k in raw["keys"]
            ]
        except (KeyError, TypeError, ValueError, AttributeError, binascii.Error):
            raise KeyRingError(
                f"{path}: the key ring file is not in fleetbot's format (version "
                f"{FORMAT_VERSION}). Restore it from a backup."
            ) from None
        return cls(path, keys)

    def save(self) -> None:
        target = link_target(self.path)
        if target is not None:  # replacing the link would leave its target with the old keys
            raise KeyRingError(_link_problem(self.path, target))
        doc = {"version": FORMAT_VERSION, "keys": [k.to_json() for k in self.keys]}
        write_secret(self.path, json.dumps(doc, indent=2) + "\n")

    def rotate(self, now: float, grace: float, alg: str | None = None) -> Key:
        """Make a new active key; the old one verifies for `grace` seconds more."""
        old = self._active
        new = _new_key(now, alg or old.alg)
        while new.kid in self._keys:
            new = _new_key(now, alg or old.alg)
        self._keys[old.kid] = replace(old, state=KeyState.VERIFY_ONLY, verify_until=now + grace)
        self._keys[new.kid] = new
        self._active = new
        self.save()
        return new

    def retire_expired(self, now: float, keep: Collection[str] = ()) -> list[str]:
        """Retire verify-only keys past their grace, except those in `keep`; returns their kids.

        A running fleet retires through `core.auth.retirement.retire_expired`, which first makes
        sure no token file is still signed by the key.
        """
        done = []
        for key in list(self._keys.values()):
            if (
                key.state is KeyState.VERIFY_ONLY
                and not key.verifies_at(now)
                and key.kid not in keep
            ):
                self._keys[key.kid] = replace(key, state=KeyState.RETIRED)
                done.append(key.kid)
        if done:
            self.save()
        return done

    def hold(self, kid: str, until: float) -> bool:
        """Keep the verify-only key `kid` verifying until at least `until`; True if it changed.

        For a key that a token file is still signed by and could not be rewritten with the
        active key: retiring it would lock that agent out.
        """
        key = self._keys.get(kid)
        if key is None or key.state is not KeyState.VERIFY_ONLY:
            return False
        if key.verify_until is not None and key.verify_until >= until:
            return False
        self._keys[kid] = replace(key, verify_until=until)
        self.save()
        return True


def keyring_problem(path: Path) -> str | None:
    """Why the key ring file at `path` must not be used as it is, with the fix; None when fine.

    A symbolic link is refused rather than followed: every save replaces the file atomically,
    which would replace the link with a regular file and leave its target (which another
    process, a backup or a second link may still read) with the old keys: one key ring split
    in two. Raises FileNotFoundError when there is no file at all.
    """
    target = link_target(path)
    if target is not None:
        return _link_problem(path, target)
    if loose_permissions(path):
        return (
            f"{path}: the key ring is readable or writable by other users; fix it with "
            f"`chmod 600 {path}`."
        )
    return None


def _link_problem(path: Path, target: Path) -> str:
    return (
        f"{path}: the key ring is a symbolic link to {target}; a rotation would replace the "
        f"link with a new file and leave {target} with the old keys. Point auth.keyring at "
        f"the real file ({target}) instead of the link."
    )


def _text(v: object) -> str:
    if not isinstance(v, str):
        raise TypeError
    return v


def _number(v: object) -> float:
    if not isinstance(v, int | float) or isinstance(v, bool):
        raise TypeError
    return float(v)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.absolute() == b.absolute()


def second_sources(
    keyring: Path, env: Mapping[str, str], *, token_dir: Path | None = None
) -> list[str]:
    """Every place other than the key ring where signing keys could come from, described."""
    found = [f"the env var {name}" for name in SECOND_SOURCE_ENV if env.get(name)]
    for name in KEYRING_PATH_ENV:
        value = env.get(name)
        if value and not _same_file(Path(value), keyring):
            found.append(f"the key ring {value} named by the env var {name}")
    # Known places a key ring is left behind: beside the token folder (the default layout, when
    # auth.keyring was later pointed elsewhere), beside the configured one under the default
    # name, and the per-user config folder.
    places: list[Path] = []
    if token_dir is not None:
        places.append(token_dir.parent / "keyring.json")
    places.append(keyring.parent / "keyring.json")
    config_home = env.get("XDG_CONFIG_HOME") or (
        str(Path(env["HOME"]) / ".config") if env.get("HOME") else None
    )
    if config_home:
        places.append(Path(config_home) / "fleetbot" / "keyring.json")
    seen: list[Path] = []
    for place in places:
        if (
            place.is_file()
            and not _same_file(place, keyring)
            and not any(_same_file(place, s) for s in seen)
        ):
            seen.append(place)
            found.append(f"a second key ring at {place}")
    return found


def check_single_source(
    keyring: Path, env: Mapping[str, str], *, token_dir: Path | None = None
) -> None:
    """Refuse to start when signing keys could also come from somewhere other than the key ring."""
    others = second_sources(keyring, env, token_dir=token_dir)
    if others:
        raise KeyRingError(
            f"two sources of signing keys: the key ring {keyring} (auth.keyring) and "
            f"{'; and '.join(others)}. The key ring is the only source: unset those env vars "
            "and move stray key ring files away (or point auth.keyring at the one you mean)."
        )
