"""Who runs the fleet: the replicas of `fleetbot run` on a shared store, and which one leads."""

from __future__ import annotations

from collections.abc import Sequence

from bot.views.html import esc
from core import Replica


def replicas_line(replicas: Sequence[Replica]) -> list[str]:
    """/status's line about the replicas: none for a single one that leads (the usual case),
    else each by id, leading or standing by, with a warning when none leads."""
    if not replicas or (len(replicas) == 1 and replicas[0].leader):
        return []
    who = [f"<code>{esc(r.id)}</code> {'leads' if r.leader else 'stands by'}" for r in replicas]
    if not any(r.leader for r in replicas):
        who.insert(0, "⚠️ none leads right now")
    return ["Replicas: " + " · ".join(who)]
