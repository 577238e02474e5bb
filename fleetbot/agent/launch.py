"""The `fleetbot` console script: `fleetbot agent …` starts here without loading the rest.

An agent runs `fleetbot agent` once per step, so its start-up is paid on every LLM tool call.
fleetbot.cli imports the core (pydantic, the runtimes, aiosqlite: over a second); this module
hands `agent` to fleetbot.agent.cli before any of that is imported, and everything else to
fleetbot.cli.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """The `fleetbot` command: its exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["agent"]:
        from fleetbot.agent.cli import main as agent_main

        return agent_main(args[1:])
    from fleetbot.cli import main as fleetbot_main

    return fleetbot_main(args)
