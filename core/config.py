"""The config file: YAML, validated by pydantic, overridden by `FLEETBOT_…` env vars.

`load_config(path, env)` is the only entry point. It takes the environment as an argument
(nothing in core reads os.environ on its own) and turns every problem into a ConfigError that
names the file, the key path and what to write instead.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from core.durations import USAGE as DURATION_USAGE
from core.durations import parse_duration
from core.errors import ConfigError

Seconds = Annotated[float, BeforeValidator(parse_duration)]
ENV_PREFIX = "FLEETBOT_"
DEFAULT_TELEGRAM_TOKEN_ENV = "FLEETBOT_TELEGRAM_TOKEN"

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
# auth.<key> names that would hold signing keys outside the key ring.
_SECOND_KEY_SOURCES = frozenset(
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
_SECRET_VALUE = re.compile(
    r"^(\d{6,12}:[A-Za-z0-9_-]{30,}"  # a Telegram bot token
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"  # a JWT
    r"|(?i:bearer)\s+\S{8,})$"  # an Authorization header value
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(_Model):
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


def _host_port(v: str) -> str:
    host, sep, port = v.rpartition(":")
    # isascii: "²" passes isdigit() but not int().
    if not sep or not host or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise ValueError("write host:port, e.g. 127.0.0.1:8080")
    return v


class WebhookConfig(_Model):
    url: str
    listen: str = "0.0.0.0:8443"
    secret_token_env: str = "FLEETBOT_WEBHOOK_SECRET"

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str) -> str:
        return _host_port(v)


class TelegramConfig(_Model):
    token_env: str = DEFAULT_TELEGRAM_TOKEN_ENV
    token_file: Path | None = None
    base_url: str = "https://api.telegram.org/bot"
    owners: list[int] = Field(default_factory=list)
    operators: list[int] = Field(default_factory=list)
    viewers: list[int] = Field(default_factory=list)
    mode: Literal["polling", "webhook"] = "polling"
    webhook: WebhookConfig | None = None
    run_summaries: Literal["chat", "digest"] = "chat"
    digest_at: str = "09:00"

    def token_ref(self) -> SecretRef:
        if self.token_file is not None:
            return SecretRef(file=self.token_file)
        return SecretRef(env=self.token_env)

    @field_validator("digest_at")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", v):
            raise ValueError("write a time of day as HH:MM, e.g. 09:00")
        return v


class StorageConfig(_Model):
    path: Path = Path("fleetbot.db")


class ApiConfig(_Model):
    listen: str = "127.0.0.1:8080"
    public_url: str | None = None

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str) -> str:
        return _host_port(v)

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @property
    def url(self) -> str:
        return self.public_url or f"http://{self.listen}"


class AuthConfig(_Model):
    keyring: Path = Path("secrets/keyring.json")
    token_dir: Path = Path("secrets/tokens")
    token_ttl: Seconds = 30 * 86400
    run_token_ttl: Seconds = 0  # 0: the run's own timeout plus a minute
    rotation_grace: Seconds = 3600
    algorithm: Literal["HS256", "EdDSA"] = "HS256"
    issuer: str = Field(default="fleetbot", min_length=1)
    audience: str = Field(default="fleetbot-api", min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _one_source(cls, data: Any) -> Any:
        # Keys next to auth.keyring would be a second source of signing keys: the mistake
        # behind the field notes' fleet-wide outages. Name both places, not "unknown key".
        if isinstance(data, Mapping):
            keyring = data.get("keyring", "secrets/keyring.json")
            if isinstance(keyring, list):
                raise ValueError(
                    "auth.keyring names one key ring file, not a list: two key rings are two "
                    "sources of signing keys. Keep one and move the others away."
                )
            for key in data:
                if str(key).lower() in _SECOND_KEY_SOURCES:
                    raise ValueError(
                        f"two sources of signing keys: the key ring {keyring} (auth.keyring) "
                        f"and auth.{key} in the config. Signing keys live only in the key ring: "
                        f"remove auth.{key} (make new keys with `fleetbot tokens rotate`)."
                    )
        return data

    @field_validator("algorithm")
    @classmethod
    def _algorithm_usable(cls, v: str) -> str:
        from core.auth.keyring import EDDSA_MISSING, eddsa_available

        if v == "EdDSA" and not eddsa_available():
            raise ValueError(EDDSA_MISSING)
        return v

    @field_validator("token_ttl")
    @classmethod
    def _ttl_positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError(f"must be more than zero: {DURATION_USAGE}")
        return v


class Defaults(_Model):
    heartbeat: Seconds = 4 * 3600
    model: str = "glm-5.2-cloud"
    max_turns_per_run: int = Field(default=50, ge=1, le=10_000)
    run_timeout: Seconds = 30 * 60
    max_attempts: int = Field(default=3, ge=1, le=100)
    retry_backoff: Seconds = 60
    wake_on_assign: bool = True
    # Allowlist per role; "*" applies to roles not listed.
    skills: dict[str, list[str]] = Field(
        default_factory=lambda: {"*": ["issues.create", "summaries.post"]}
    )

    @field_validator("heartbeat", "run_timeout")
    @classmethod
    def _positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError(f"must be more than zero: {DURATION_USAGE}")
        return v


class MonitorsConfig(_Model):
    interval: Seconds = 60
    stuck_after: Seconds = 30 * 60
    silent_after: Seconds = 2 * 3600
    queue_empty_heartbeats: int = Field(default=3, ge=1)
    budget_warn: float = Field(default=0.8, gt=0, le=1)
    recovery_loop_dispatches: int = Field(default=10, ge=2)
    recovery_loop_window: Seconds = 3600


class QuietHours(_Model):
    start: str
    end: str
    timezone: str = "UTC"

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", v):
            raise ValueError("write a time of day as HH:MM, e.g. 22:00")
        return v


class AlertsConfig(_Model):
    group_wait: Seconds = 30
    repeat_interval: Seconds = 4 * 3600
    quiet_hours: QuietHours | None = None
    auto_reset_after: Seconds | None = None
    auto_reset_max: Seconds = 6 * 3600


class HttpRuntime(_Model):
    kind: Literal["http"]
    url: str
    timeout: Seconds = 30
    headers: dict[str, str] = Field(default_factory=dict)
    secret_headers: dict[str, SecretRef] = Field(default_factory=dict)


class OpenClawRuntime(_Model):
    kind: Literal["openclaw"]
    url: str
    token_env: str | None = None
    token_file: Path | None = None
    agent_id: str | None = None  # the OpenClaw agentId; defaults to the fleetbot agent id
    timeout: Seconds = 30

    @model_validator(mode="after")
    def _one_token(self) -> OpenClawRuntime:
        if (self.token_env is None) == (self.token_file is None):
            raise ValueError("give exactly one of token_env (an env var name) or token_file")
        return self

    def token_ref(self) -> SecretRef:
        if self.token_file is not None:
            return SecretRef(file=self.token_file)
        return SecretRef(env=self.token_env)


class ProcessRuntime(_Model):
    kind: Literal["process"]
    command: list[str] = Field(min_length=1)
    cwd: Path | None = None
    env: dict[str, str] = Field(default_factory=dict)
    kill_grace: Seconds = 5


class SimulatedRuntime(_Model):
    kind: Literal["simulated"]
    latency: Seconds = 0.05
    failure_rate: float = Field(default=0.0, ge=0, le=1)
    unauthorized_rate: float = Field(default=0.0, ge=0, le=1)
    hang_rate: float = Field(default=0.0, ge=0, le=1)
    blocked_rate: float = Field(default=0.0, ge=0, le=1)  # finishes saying it is blocked
    turns: int = Field(default=3, ge=0)
    cost_per_turn: float = Field(default=0.002, ge=0)
    seed: int | None = None


RuntimeConfig = Annotated[
    HttpRuntime | OpenClawRuntime | ProcessRuntime | SimulatedRuntime,
    Field(discriminator="kind"),
]

_ID = r"^[a-z0-9][a-z0-9_.-]{0,63}$"


class AgentConfig(_Model):
    id: str = Field(pattern=_ID)
    name: str | None = None
    role: str = Field(min_length=1, max_length=64)
    reports_to: str | None = None
    runtime: RuntimeConfig = Field(default_factory=lambda: SimulatedRuntime(kind="simulated"))
    heartbeat: Seconds | None = None
    model: str | None = None
    max_turns_per_run: int | None = Field(default=None, ge=1, le=10_000)
    run_timeout: Seconds | None = None
    skills: list[str] | None = None
    monthly_budget: float | None = Field(default=None, ge=0)

    @field_validator("role")
    @classmethod
    def _lower(cls, v: str) -> str:
        return v.strip().lower()


class CompanyTopics(_Model):
    alerts: int | None = None
    summaries: int | None = None


class BudgetConfig(_Model):
    monthly_usd: float = Field(ge=0)


class CompanyConfig(_Model):
    id: str = Field(pattern=_ID)
    name: str
    prefix: str = Field(pattern=r"^[A-Z][A-Z0-9]{0,7}$")
    chat: int | str | None = None
    topics: CompanyTopics | None = None
    budget: BudgetConfig | None = None
    agents: list[AgentConfig] = Field(default_factory=list)


class Config(_Model):
    telegram: TelegramConfig = Field(default_factory=TelegramConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    defaults: Defaults = Field(default_factory=Defaults)
    monitors: MonitorsConfig = Field(default_factory=MonitorsConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    companies: list[CompanyConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        # Messages start with the key path (see parse_config): pydantic gives a model
        # validator's errors no location of their own.
        seen_agents: set[str] = set()
        seen_companies: set[str] = set()
        prefixes: set[str] = set()
        for i, c in enumerate(self.companies):
            at = f"companies[{i}] (id: {c.id})"
            if c.id in seen_companies:
                raise ValueError(f"{at}.id: company id {c.id!r} is used twice; ids must be unique")
            if c.prefix in prefixes:
                raise ValueError(f"{at}.prefix: {c.prefix!r} is another company's prefix; pick one")
            seen_companies.add(c.id)
            prefixes.add(c.prefix)
            for j, a in enumerate(c.agents):
                if a.id in seen_agents:
                    raise ValueError(
                        f"{at}.agents[{j}].id: agent id {a.id!r} is used twice; agent ids must "
                        "be unique"
                    )
                seen_agents.add(a.id)
        for i, c in enumerate(self.companies):
            ids = {a.id for a in c.agents}
            for j, a in enumerate(c.agents):
                if a.reports_to is not None and a.reports_to not in ids:
                    raise ValueError(
                        f"companies[{i}] (id: {c.id}).agents[{j}] (id: {a.id}).reports_to: "
                        f"{a.reports_to!r} is not an agent of company {c.id!r}; use one of: "
                        f"{', '.join(sorted(ids)) or '(none)'}"
                    )
        return self

    def skills_for(self, agent: AgentConfig) -> list[str]:
        if agent.skills is not None:
            return list(agent.skills)
        by_role = self.defaults.skills
        return list(by_role.get(agent.role, by_role.get("*", [])))

    def company_of(self, agent_id: str) -> CompanyConfig | None:
        for c in self.companies:
            if any(a.id == agent_id for a in c.agents):
                return c
        return None

    def agent(self, agent_id: str) -> AgentConfig | None:
        for c in self.companies:
            for a in c.agents:
                if a.id == agent_id:
                    return a
        return None


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


def _key_path(loc: tuple[int | str, ...], data: Any) -> str:
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            label = ""
            if isinstance(node, list) and 0 <= part < len(node) and isinstance(node[part], dict):
                ident = node[part].get("id")
                label = f" (id: {ident})" if ident else ""
            out += f"[{part}]{label}"
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
        elif part in {"http", "openclaw", "process", "simulated"} and isinstance(node, dict):
            continue  # pydantic's discriminator tag, not a key the user wrote
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out or "(top level)"


def _fix_hint(err: Any, allowed: list[str]) -> str:
    kind = err["type"]
    loc = err["loc"]
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        tip = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown key{tip} Allowed here: {', '.join(allowed)}"
    if kind == "missing":
        return "this key is required"
    if kind == "union_tag_invalid" or kind == "union_tag_not_found":
        return "set runtime.kind to one of: http, openclaw, process, simulated"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    model: Any = Config
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue
        if part in {"http", "openclaw", "process", "simulated"}:
            model = {
                "http": HttpRuntime,
                "openclaw": OpenClawRuntime,
                "process": ProcessRuntime,
                "simulated": SimulatedRuntime,
            }[str(part)]
            continue
        fields = getattr(model, "model_fields", {})
        field = fields.get(part)
        if field is None:
            return []
        model = _inner_model(field.annotation)
    return sorted(getattr(model, "model_fields", {}))


def _inner_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


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
        lines = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            hint = _fix_hint(err, _allowed_keys(loc))
            if not loc and hint.startswith("companies["):
                lines.append(f"  {hint}")  # a cross-check that names its own key path
            else:
                lines.append(f"  {_key_path(loc, data)}: {hint}")
        origin = f" (env overrides applied: {', '.join(applied)})" if applied else ""
        raise ConfigError(f"{source}{origin}: invalid config\n" + "\n".join(lines)) from None


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
        data = _read_yaml(text, p)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            f"{p}:{where}: not valid YAML ({problem}). Check the indentation and quoting there."
        ) from None
    return resolve_paths(parse_config(data, str(p), env), p.absolute().parent)


# A config is a few hundred values a few levels deep. These bounds refuse what only an attack or
# a generator gone wrong writes: an alias bomb (nine lines of `&a`/`*a` expanding to 9^9 values,
# which the checks after parsing would walk for minutes) and nesting deep enough to exhaust
# Python's recursion limit. Both are judged on the composed node graph, before anything expands.
MAX_YAML_VALUES = 200_000
MAX_YAML_DEPTH = 64


def _read_yaml(text: str, path: Path) -> Any:
    """yaml.safe_load, refusing documents too deep or too big once aliases are expanded."""
    # Depth first, from the parser's events (a loop, where composing the nodes is a recursion
    # that takes a second to hit Python's limit on 5,000 nested brackets).
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise _too_deep(path)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise _too_deep(path) from None
        if node is None:
            return None
        _measure(node, 0, {}, set(), path)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _too_deep(path: Path) -> ConfigError:
    return ConfigError(
        f"{path}: the YAML is nested deeper than {MAX_YAML_DEPTH} levels; a fleetbot config "
        "needs a handful."
    )


def _measure(
    node: yaml.Node, depth: int, sizes: dict[int, tuple[int, int]], open_: set[int], path: Path
) -> tuple[int, int]:
    """(values, height) of `node` with every alias expanded, each shared node measured once."""
    if depth > MAX_YAML_DEPTH:
        raise _too_deep(path)
    known = sizes.get(id(node))
    if known is not None:
        if depth + known[1] > MAX_YAML_DEPTH:
            return _measure(node, MAX_YAML_DEPTH + 1, sizes, open_, path)  # raises
        return known
    if id(node) in open_:
        raise ConfigError(
            f"{path}: an alias (*name) refers to itself: it sits inside the value its anchor "
            "(&name) marks. Write the value out instead."
        )
    if isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    else:
        children = []
    open_.add(id(node))
    values, height = 1, 0
    for child in children:
        size, below = _measure(child, depth + 1, sizes, open_, path)
        values, height = values + size, max(height, below + 1)
        if values > MAX_YAML_VALUES:
            raise ConfigError(
                f"{path}: the YAML holds more than {MAX_YAML_VALUES:,} values once its aliases "
                "(*name) are expanded: an alias bomb, not a config. Write the values out, or "
                "alias fewer times."
            )
    open_.discard(id(node))
    sizes[id(node)] = (values, height)
    return values, height


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
            "storage": config.storage.model_copy(update={"path": fix(config.storage.path)}),
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
