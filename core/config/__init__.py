"""The config file: YAML, validated by pydantic, overridden by `FLEETBOT_…` env vars."""

from __future__ import annotations

from core.config.loading import load_config, parse_config, resolve_paths
from core.config.safe_yaml import MAX_YAML_DEPTH, MAX_YAML_VALUES
from core.config.schema import (
    ApiConfig,
    AuthConfig,
    Config,
    Defaults,
    HttpRuntime,
    MonitorsConfig,
    OpenClawRuntime,
    ProcessRuntime,
    QuietHours,
    RuntimeConfig,
    SecretRef,
    SimulatedRuntime,
    TelegramConfig,
)

__all__ = [
    "MAX_YAML_DEPTH",
    "MAX_YAML_VALUES",
    "ApiConfig",
    "AuthConfig",
    "Config",
    "Defaults",
    "HttpRuntime",
    "MonitorsConfig",
    "OpenClawRuntime",
    "ProcessRuntime",
    "QuietHours",
    "RuntimeConfig",
    "SecretRef",
    "SimulatedRuntime",
    "TelegramConfig",
    "load_config",
    "parse_config",
    "resolve_paths",
]
