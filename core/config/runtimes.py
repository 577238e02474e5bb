"""How the config names an agent's runtime: http, openclaw, process or simulated."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from core.config.base import PATH, URL, Model, Seconds, SecretRef
from core.config.process_checks import process_problem


class HttpRuntime(Model):
    kind: Literal["http"]
    url: str
    timeout: Seconds = 30
    headers: dict[str, str] = Field(default_factory=dict)
    secret_headers: dict[str, SecretRef] = Field(default_factory=dict)

    def secret_refs(self) -> list[SecretRef]:
        """Every secret this runtime reads when it wakes an agent."""
        return list(self.secret_headers.values())


class OpenClawRuntime(Model):
    kind: Literal["openclaw"]
    # The gateway; it serves the WebSocket protocol and the hooks on one port, so http(s)://
    # and ws(s):// name the same place.
    url: str = Field(pattern=URL)
    # gateway: the WebSocket protocol (v4), which reports every turn's end, reply and usage.
    # hooks: POST {url}{hook_path} with waitForCompletion, for gateways that only expose hooks.
    transport: Literal["gateway", "hooks"] = "gateway"
    # The gateway token (gateway.auth.token) for `gateway`; the hooks token for `hooks`.
    token_env: str | None = None
    token_file: Path | None = None
    agent_id: str | None = None  # the OpenClaw agentId; defaults to the fleetbot agent id
    # issue: one OpenClaw session per issue, so a retry keeps its context; run: a fresh one.
    session: Literal["issue", "run"] = "issue"
    # How long to wait for the gateway to connect and acknowledge a turn, per attempt. A late
    # acknowledgement is retried with the same idempotency key: it never starts a second turn.
    timeout: Seconds = 30
    hook_path: str = Field(default="/hooks/agent", pattern=PATH)

    @model_validator(mode="after")
    def _one_token(self) -> OpenClawRuntime:
        if (self.token_env is None) == (self.token_file is None):
            raise ValueError("give exactly one of token_env (an env var name) or token_file")
        return self

    def token_ref(self) -> SecretRef:
        if self.token_file is not None:
            return SecretRef(file=self.token_file)
        return SecretRef(env=self.token_env)

    def secret_refs(self) -> list[SecretRef]:
        """Every secret this runtime reads when it wakes an agent."""
        return [self.token_ref()]


class ProcessRuntime(Model):
    kind: Literal["process"]
    # A ready-made command for a coding-agent CLI (core/runtimes/presets.py); with one,
    # `command` only names the program (default claude / codex) and `args` adds flags.
    preset: Literal["claude-code", "codex"] | None = None
    command: Annotated[list[str], Field(min_length=1)] | None = None
    args: list[str] = Field(default_factory=list)
    cwd: Path | None = None
    env: dict[str, str] = Field(default_factory=dict)
    secret_env: dict[str, SecretRef] = Field(default_factory=dict)  # e.g. a model's API key
    kill_grace: Seconds = 5

    @model_validator(mode="after")
    def _runnable(self) -> ProcessRuntime:
        problem = process_problem(self.preset, self.command, self.args, self.env, self.secret_env)
        if problem:
            raise ValueError(problem)
        return self

    def secret_refs(self) -> list[SecretRef]:
        """Every secret this runtime reads when it wakes an agent (besides the run token)."""
        return list(self.secret_env.values())


class SimulatedRuntime(Model):
    kind: Literal["simulated"]
    latency: Seconds = 0.05
    failure_rate: float = Field(default=0.0, ge=0, le=1)
    unauthorized_rate: float = Field(default=0.0, ge=0, le=1)
    hang_rate: float = Field(default=0.0, ge=0, le=1)
    blocked_rate: float = Field(default=0.0, ge=0, le=1)  # finishes saying it is blocked
    turns: int = Field(default=3, ge=0)
    cost_per_turn: float = Field(default=0.002, ge=0)
    seed: int | None = None

    def secret_refs(self) -> list[SecretRef]:
        return []


RuntimeConfig = Annotated[
    HttpRuntime | OpenClawRuntime | ProcessRuntime | SimulatedRuntime,
    Field(discriminator="kind"),
]
