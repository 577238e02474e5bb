"""The `openclaw` runtime: an OpenClaw gateway, over its WebSocket protocol or its hooks.

`gateway` (the default) starts each turn with `agent` and learns its end, reply and usage from
`agent.wait`; `hooks` POSTs to `{url}{hook_path}` with `waitForCompletion` for gateways that
expose only hooks (no reply text, no usage). docs/runtimes.md compares the two.
"""

from __future__ import annotations

from collections.abc import Mapping

from core.config import OpenClawRuntime
from core.runtimes.base import Runtime
from core.runtimes.openclaw.gateway import OpenClawGatewayRuntime
from core.runtimes.openclaw.hooks import OpenClawHooksRuntime

__all__ = ["OpenClawGatewayRuntime", "OpenClawHooksRuntime", "build_openclaw"]


def build_openclaw(config: OpenClawRuntime, env: Mapping[str, str]) -> Runtime:
    if config.transport == "hooks":
        return OpenClawHooksRuntime(config, env)
    return OpenClawGatewayRuntime(config, env)
