"""The config file's sections as pydantic models: frozen, unknown keys refused, durations parsed.

The building blocks are in core.config.base, the runtimes in core.config.runtimes and the
queues' sections (active hours, routines, the planner, the breaker) in core.config.queues.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from core.auth.keyring import EDDSA_MISSING, eddsa_available
from core.config.base import (
    DEFAULT_TELEGRAM_TOKEN_ENV,
    ID,
    PATTERN_WORDS,
    PREFIX,
    SECOND_KEY_SOURCES,
    Model,
    Seconds,
    SecretRef,
    host_port,
)
from core.config.queues import ActiveHours, PlannerConfig, RoutineConfig, SpendVelocity
from core.config.runtimes import (
    HttpRuntime,
    OpenClawRuntime,
    ProcessRuntime,
    RuntimeConfig,
    SimulatedRuntime,
)
from core.durations import USAGE as DURATION_USAGE
from core.queues.schedule import zone

__all__ = [
    "DEFAULT_TELEGRAM_TOKEN_ENV",
    "PATTERN_WORDS",
    "HttpRuntime",
    "OpenClawRuntime",
    "ProcessRuntime",
    "RuntimeConfig",
    "Seconds",
    "SecretRef",
    "SimulatedRuntime",
]


class WebhookConfig(Model):
    url: str
    listen: str = "0.0.0.0:8443"
    secret_token_env: str = "FLEETBOT_WEBHOOK_SECRET"

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str) -> str:
        return host_port(v)


class TelegramConfig(Model):
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
    # Who may answer an agent's approval (Approve/Reject): owners only, or operators too.
    # Plain questions: owners and operators always; viewers never.
    approvers: Literal["owners", "operators"] = "owners"

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

    @field_validator("owners", "operators", "viewers")
    @classmethod
    def _people(cls, v: list[int]) -> list[int]:
        if 1087968824 in v:  # Telegram's GroupAnonymousBot
            raise ValueError(
                "1087968824 is not a person but Telegram's GroupAnonymousBot, the sender it "
                "shows for every anonymous group admin, so it names nobody; send /whoami to "
                "the bot in private to see your own id"
            )
        return v


class StorageConfig(Model):
    """Where the store lives: a SQLite file (`path`, the default) or, with `url`, a SQLite file
    (`sqlite:///relative` or `sqlite:////absolute`) or a PostgreSQL database
    (`postgresql://user@host:5432/db`, its password from `password: {env|file}`)."""

    path: Path = Path("fleetbot.db")
    url: str | None = None
    # PostgreSQL's password; never in the URL. Unset: libpq's PGPASSWORD or ~/.pgpass.
    password: SecretRef | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if v.startswith(("postgresql://", "postgres://")):
            if urlsplit(v).password is not None:
                raise ValueError(
                    "keep the password out of the URL (it would show in logs and backups): "
                    "put it in a file or env var and write `password: {file: PATH}` or "
                    "`password: {env: VAR}` under storage"
                )
            return v
        raise ValueError(
            "write sqlite:///relative/path.db, sqlite:////absolute/path.db or "
            f"postgresql://user@host:5432/database; got {v!r}"
        )

    @model_validator(mode="before")
    @classmethod
    def _sqlite_url(cls, data: Any) -> Any:
        # The rest of fleetbot (the instance lock, relative paths) knows SQLite by its path.
        url = data.get("url") if isinstance(data, dict) else None
        if isinstance(url, str) and url.startswith("sqlite:///") and len(url) > 10:
            return {**data, "path": url[len("sqlite:///") :], "url": None}
        return data

    @model_validator(mode="after")
    def _password_needs_url(self) -> StorageConfig:
        if self.password is not None and not self.is_postgres:
            raise ValueError("storage.password is PostgreSQL's: give storage.url too")
        return self

    @property
    def is_postgres(self) -> bool:
        return self.url is not None

    @property
    def target(self) -> Path | str:
        """What core.store.db.Database opens: the PostgreSQL URL, else the SQLite path."""
        return self.url if self.url is not None else self.path


class ApiConfig(Model):
    listen: str = "127.0.0.1:8080"
    public_url: str | None = None
    # What a client may send, and for how long (core.api.server, core.api.app).
    max_body: int = 64 * 1024  # a request body; more is a 413 before it is read
    max_header: int = 16 * 1024  # the request line and headers together; more is a 431
    header_timeout: Seconds = 10.0  # to send the request line and headers, else closed
    keep_alive: Seconds = 5.0  # an idle keep-alive connection is closed after this

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str) -> str:
        return host_port(v)

    @field_validator("max_body", "max_header", mode="before")
    @classmethod
    def _size(cls, v: Any) -> int:
        """Bytes as a number or with a unit: 65536, 64KiB, 1MiB."""
        units = {"": 1, "b": 1, "kib": 1024, "mib": 1024 * 1024}
        found = re.fullmatch(r"(\d+)\s*([a-z]*)", str(v).strip().lower())
        if isinstance(v, bool) or found is None or found[2] not in units:
            raise ValueError(f"write a size in bytes or with KiB or MiB, e.g. 64KiB; got {v!r}")
        size = int(found[1]) * units[found[2]]
        if size < 1024:
            raise ValueError(f"{v!r} is too small to carry a request; give at least 1KiB")
        return size

    @field_validator("header_timeout", "keep_alive")
    @classmethod
    def _at_least_a_second(cls, v: float) -> float:
        if v < 1:
            raise ValueError("give at least 1s")
        return v

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @property
    def url(self) -> str:
        return self.public_url or f"http://{self.listen}"


class AuthConfig(Model):
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
                if str(key).lower() in SECOND_KEY_SOURCES:
                    raise ValueError(
                        f"two sources of signing keys: the key ring {keyring} (auth.keyring) "
                        f"and auth.{key} in the config. Signing keys live only in the key ring: "
                        f"remove auth.{key} (make new keys with `fleetbot tokens rotate`)."
                    )
        return data

    @field_validator("algorithm")
    @classmethod
    def _algorithm_usable(cls, v: str) -> str:
        if v == "EdDSA" and not eddsa_available():
            raise ValueError(EDDSA_MISSING)
        return v

    @field_validator("token_ttl")
    @classmethod
    def _ttl_positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError(f"must be more than zero: {DURATION_USAGE}")
        return v


class Defaults(Model):
    heartbeat: Seconds = 4 * 3600
    model: str = "glm-5.2-cloud"
    max_turns_per_run: int = Field(default=50, ge=1, le=10_000)
    run_timeout: Seconds = 30 * 60
    max_attempts: int = Field(default=3, ge=1, le=100)
    retry_backoff: Seconds = 60
    wake_on_assign: bool = True
    # Hours in which heartbeats may wake a model (core.queues.hours); none: always.
    active_hours: ActiveHours | None = None
    # Backlog items promoted to todo when an agent's inbox runs empty (0: never).
    backlog_promote: int = Field(default=1, ge=0, le=20)
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


class MonitorsConfig(Model):
    interval: Seconds = 60
    stuck_after: Seconds = 30 * 60
    silent_after: Seconds = 2 * 3600
    queue_empty_heartbeats: int = Field(default=3, ge=1)
    budget_warn: float = Field(default=0.8, gt=0, le=1)
    recovery_loop_dispatches: int = Field(default=10, ge=2)
    recovery_loop_window: Seconds = 3600
    # The spend-velocity breaker (core.queues.breaker); null turns it off.
    spend_velocity: SpendVelocity | None = Field(default_factory=SpendVelocity)


class QuietHours(Model):
    start: str
    end: str
    timezone: str = "UTC"

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", v):
            raise ValueError("write a time of day as HH:MM, e.g. 22:00")
        return v


class AlertsConfig(Model):
    group_wait: Seconds = 30
    repeat_interval: Seconds = 4 * 3600
    quiet_hours: QuietHours | None = None
    auto_reset_after: Seconds | None = None
    auto_reset_max: Seconds = 6 * 3600


class AgentConfig(Model):
    id: str = Field(pattern=ID)
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
    active_hours: ActiveHours | None = None  # overrides the company's and defaults'

    @field_validator("role")
    @classmethod
    def _lower(cls, v: str) -> str:
        return v.strip().lower()


class CompanyTopics(Model):
    alerts: int | None = None
    summaries: int | None = None


class BudgetConfig(Model):
    monthly_usd: float = Field(ge=0)


class CompanyConfig(Model):
    id: str = Field(pattern=ID)
    name: str
    prefix: str = Field(pattern=PREFIX)
    chat: int | str | None = None
    topics: CompanyTopics | None = None
    budget: BudgetConfig | None = None
    # The zone routines and active hours are read in, unless they name their own.
    timezone: str = "UTC"
    active_hours: ActiveHours | None = None  # for its agents, over defaults.active_hours
    planner: PlannerConfig | None = None  # opt-in (core.queues.planner)
    routines: list[RoutineConfig] = Field(default_factory=list)
    agents: list[AgentConfig] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        zone(v)
        return v


class Config(Model):
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
            _check_queue_targets(i, c)
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


def _check_queue_targets(i: int, c: CompanyConfig) -> None:
    """Routines and the planner name agents or roles the company has; routine names are unique."""
    at = f"companies[{i}] (id: {c.id})"
    known = {a.id for a in c.agents} | {a.role for a in c.agents}
    names: set[str] = set()
    for k, r in enumerate(c.routines):
        if r.name in names:
            raise ValueError(f"{at}.routines[{k}].name: {r.name!r} is used twice in {c.id}")
        names.add(r.name)
        if r.assignee.lower().lstrip("@") not in known:
            raise ValueError(
                f"{at}.routines[{k}] (name: {r.name}).assignee: {r.assignee!r} is no agent id "
                f"or role of {c.id}; use one of: {', '.join(sorted(known)) or '(none)'}"
            )
    target = c.planner.assignee if c.planner is not None else None
    if target is not None and target.lower().lstrip("@") not in known:
        raise ValueError(
            f"{at}.planner.assignee: {target!r} is no agent id or role of {c.id}; use one "
            f"of: {', '.join(sorted(known)) or '(none)'}"
        )
