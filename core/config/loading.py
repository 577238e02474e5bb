"""Reading the config: the file, the `FLEETBOT_…` env overrides, validation, relative paths."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from core.config.explain import explain
from core.config.safe_yaml import read_yaml
from core.config.schema import Config, HttpRuntime, OpenClawRuntime, ProcessRuntime
from core.errors import ConfigError

ENV_PREFIX = "FLEETBOT_"

# Keys whose inline values would be secrets; each maps to what to write instead.
_SECRET_KEYS = {
    "token": "token_env (the name of an env var) or token_file (a path)",
    "bot_token": "token_env (the name of an env var) or token_file (a path)",
    "hooks_token": "token_env or token_file",
    "secret": "the key ring file (auth.keyring); run `fleetbot tokens rotate` to make keys",
    "jwt_secret": "the key ring file (auth.keyring); run `fleetbot tokens rotate` to make keys",
    "signing_key": "the key ring file (auth.keyring); run `fleetbot tokens rotate` to make keys",
    "password": "an env var named by a *_env key",
    "api_key": "an env var named by a *_env key",
    "secret_token": "secret_token_env (the name of an env var)",
}
_SECRET_VALUE = re.compile(
    r"^(\d{6,12}:[A-Za-z0-9_-]{30,}"  # a Telegram bot token
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"  # a JWT
    r"|(?i:bearer)\s+\S{8,})$"  # an Authorization header value
)


def _find_inline_secrets(node: Any, path: str, found: list[tuple[str, str]]) -> None:
    if isinstance(node, Mapping):
        for key, value in node.items():
            sub = f"{path}.{key}" if path else str(key)
            hint = _SECRET_KEYS.get(str(key).lower())
            if hint is not None and isinstance(value, str | int) and str(value).strip():
                found.append((sub, hint))
            else:
                _find_inline_secrets(value, sub, found)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            _find_inline_secrets(item, f"{path}[{i}]", found)
    elif isinstance(node, str) and _SECRET_VALUE.match(node.strip()):
        found.append((path, "an env var or a file named in the config (e.g. a *_env key)"))


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> list[str]:
    """Overlay FLEETBOT_SECTION__KEY=value onto the parsed YAML; returns the keys applied."""
    applied = []
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        if not all(parts):
            continue
        node: dict[str, Any] = data
        for part in parts[:-1]:
            child = node.get(part)
            # Copy on the way down: the caller's parsed YAML is never changed.
            child = dict(child) if isinstance(child, dict) else {}
            node[part] = child
            node = child
        try:
            value = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            value = raw  # not YAML (e.g. a model name like @cf/x): validated as plain text
        node[parts[-1]] = value
        applied.append(name)
    return applied


def parse_config(data: Any, source: str, env: Mapping[str, str] | None = None) -> Config:
    """Validate already-parsed YAML; `source` names the file in error messages."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: the top level must be a mapping of sections (telegram:, storage:, "
            f"companies: …), not {type(data).__name__}"
        )
    secrets: list[tuple[str, str]] = []
    _find_inline_secrets(data, "", secrets)
    if secrets:
        lines = [f"  {p}: secrets are not read from the config; use {hint}" for p, hint in secrets]
        raise ConfigError(f"{source}: inline secret refused\n" + "\n".join(lines))
    data = dict(data)
    applied = _apply_env(data, env or {})
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise explain(exc, data, source, applied) from None


# The environment comes in as an argument: nothing in core reads os.environ on its own.
def load_config(path: Path | str | None, env: Mapping[str, str] | None = None) -> Config:
    """Read, merge env overrides, validate. `path=None` means built-in defaults only."""
    env = env or {}
    if path is None:
        return parse_config({}, "(defaults)", env)
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{p}: no such file. Create one with `fleetbot init` or pass -c PATH."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read the file ({exc}).") from None
    try:
        data = read_yaml(text, p)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            f"{p}:{where}: not valid YAML ({problem}). Check the indentation and quoting there."
        ) from None
    return resolve_paths(parse_config(data, str(p), env), p.absolute().parent)


def resolve_paths(config: Config, base: Path) -> Config:
    """Relative paths in the config are relative to the config file's folder, not to
    wherever fleetbot happens to be started from."""

    def fix(path: Path) -> Path:
        return path if path.is_absolute() else base / path

    companies = []
    for c in config.companies:
        agents = []
        for a in c.agents:
            rt = a.runtime
            if isinstance(rt, ProcessRuntime) and rt.cwd is not None:
                rt = rt.model_copy(update={"cwd": fix(rt.cwd)})
            elif isinstance(rt, OpenClawRuntime) and rt.token_file is not None:
                rt = rt.model_copy(update={"token_file": fix(rt.token_file)})
            elif isinstance(rt, HttpRuntime) and rt.secret_headers:
                refs = {
                    name: ref.model_copy(update={"file": fix(ref.file)}) if ref.file else ref
                    for name, ref in rt.secret_headers.items()
                }
                rt = rt.model_copy(update={"secret_headers": refs})
            agents.append(a.model_copy(update={"runtime": rt}))
        companies.append(c.model_copy(update={"agents": agents}))
    tg = config.telegram
    if tg.token_file is not None:
        tg = tg.model_copy(update={"token_file": fix(tg.token_file)})
    return config.model_copy(
        update={
            "storage": config.storage.model_copy(
                update={
                    "path": fix(config.storage.path),
                    "password": (
                        pw.model_copy(update={"file": fix(pw.file)})
                        if (pw := config.storage.password) and pw.file
                        else pw
                    ),
                }
            ),
            "auth": config.auth.model_copy(
                update={
                    "keyring": fix(config.auth.keyring),
                    "token_dir": fix(config.auth.token_dir),
                }
            ),
            "telegram": tg,
            "companies": companies,
        }
    )
