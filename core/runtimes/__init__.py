"""Agent runtimes: one small module per kind behind `Runtime`, built by `build_runtime`.

`base` holds `Runtime` and its lifecycle; `webhook` the POST the http and openclaw kinds share.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import assert_never

from core.config import HttpRuntime, OpenClawRuntime, ProcessRuntime, SimulatedRuntime
from core.runtimes.base import ACCEPTED, Dispatch, DispatchResult, RunReporter, Runtime
from core.runtimes.http import AgentReply, HttpAgentRuntime
from core.runtimes.openclaw import OpenClawGatewayRuntime, OpenClawHooksRuntime, build_openclaw
from core.runtimes.process import ProcessAgentRuntime
from core.runtimes.simulated import SimulatedAgentRuntime

__all__ = [
    "ACCEPTED",
    "AgentReply",
    "Dispatch",
    "DispatchResult",
    "HttpAgentRuntime",
    "OpenClawGatewayRuntime",
    "OpenClawHooksRuntime",
    "ProcessAgentRuntime",
    "RunReporter",
    "Runtime",
    "SimulatedAgentRuntime",
    "build_runtime",
]


def build_runtime(
    config: HttpRuntime | OpenClawRuntime | ProcessRuntime | SimulatedRuntime,
    env: Mapping[str, str],
    reporter: RunReporter,
) -> Runtime:
    """The runtime for one agent's `runtime:` config; the caller owns it and must `aclose()` it."""
    match config:
        case HttpRuntime():
            return HttpAgentRuntime(config, env)
        case OpenClawRuntime():
            return build_openclaw(config, env)
        case ProcessRuntime():
            return ProcessAgentRuntime(config, env)
        case SimulatedRuntime():
            return SimulatedAgentRuntime(config, reporter)
        case _:
            assert_never(config)
