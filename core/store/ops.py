"""Old names, kept only while tests/conftest.py imports them: use core.store.agents instead.

Nothing in core, bot or fleetbot imports this module; delete it once tests/conftest.py calls
`agents.get` and `agents.set_status`.
"""

from __future__ import annotations

from core.store.agents import get as fetch_agent, set_status as set_agent_status

__all__ = ["fetch_agent", "set_agent_status"]
