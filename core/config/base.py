"""What every config section builds on: the strict base model, durations, id patterns and
secret references."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, model_validator

from core.durations import duration_text, parse_duration

# JSON keeps the unit, so a runtime stored as JSON (core.store.sync) validates again.
Seconds = Annotated[
    float, BeforeValidator(parse_duration), PlainSerializer(duration_text, when_used="json")
]
DEFAULT_TELEGRAM_TOKEN_ENV = "FLEETBOT_TELEGRAM_TOKEN"

ID = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
PREFIX = r"^[A-Z][A-Z0-9]{0,7}$"
URL = r"^(https?|wss?)://"
PATH = r"^/"
# Each pattern in words, for the error message (core.config.explain): nobody should have to
# read a regex to fix their config.
PATTERN_WORDS = {
    ID: "ids are 1–64 lowercase letters, digits, dots, underscores and dashes, starting with "
    "a letter or a digit",
    PREFIX: "a prefix is 1–8 capital letters and digits, starting with a letter (issues are "
    "numbered PREFIX-1, PREFIX-2, …)",
    URL: "write a URL starting with http://, https://, ws:// or wss://",
    PATH: "write a path starting with /",
}

# auth.<key> names that would hold signing keys outside the key ring.
SECOND_KEY_SOURCES = frozenset(
    {
        "secret",
        "secrets",
        "key",
        "keys",
        "jwt_secret",
        "signing_key",
        "signing_keys",
        "hmac_secret",
        "keyrings",
        "keyring_paths",
        "extra_keyrings",
    }
)


class Model(BaseModel):
    """The base of every section: an unknown key (often a typo) is an error; values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(Model):
    """Where a secret lives: an env var or a file, never the config itself."""

    env: str | None = None
    file: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of `env: VAR_NAME` or `file: /path/to/secret`")
        return self

    def resolve(self, env: Mapping[str, str]) -> str | None:
        if self.env is not None:
            return env.get(self.env) or None
        assert self.file is not None
        try:
            return self.file.read_text().strip() or None
        except OSError:
            return None

    def describe(self) -> str:
        return f"env var {self.env}" if self.env else f"file {self.file}"


def host_port(v: str) -> str:
    host, sep, port = v.rpartition(":")
    # isascii: "²" passes isdigit() but not int().
    if not sep or not host or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise ValueError("write host:port, e.g. 127.0.0.1:8080")
    return v
