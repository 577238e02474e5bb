"""Mutes: who silenced what, until when, and why; and which alerts a mute covers.

Targets are stored in one canonical form: `alert:42`, `kind:agent_error`, `agent:ripley`,
`company:aliens` or `issue:ALI-12`. core.alerting.book documents the forms a person may type.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from core.errors import AlertNotFound, InvalidInput
from core.store import (
    agents as agent_store,
    alerts as alert_store,
    companies as company_store,
    issues as issue_store,
)
from core.store.conn import Conn

_KINDS = (
    "agent_error",
    "agent_unauthenticated",
    "agent_stuck",
    "agent_silent",
    "queue_empty",
    "issue_blocked",
    "recovery_loop",
    "budget",
    "runtime_unreachable",
    "delivery",
    "question",
)
_SUBJECTS = ("agent", "company", "issue")


class _Member(Protocol):
    @property
    def subject(self) -> str: ...
    @property
    def company_id(self) -> str | None: ...
    @property
    def active(self) -> bool: ...


MembersOf = Callable[[Conn, int], Awaitable[Sequence[Any]]]


@dataclass(frozen=True, slots=True)
class Mute:
    id: int
    target: str  # canonical: "alert:42", "kind:agent_error", "agent:ripley", …
    until: float
    author: str
    reason: str
    created_at: float = 0.0
    lifted_at: float | None = None
    lifted_by: str | None = None

    @property
    def on_subject(self) -> bool:
        return self.target.partition(":")[0] in _SUBJECTS

    def active(self, now: float) -> bool:
        return self.lifted_at is None and self.until > now


def _on_alert(mute: Mute, alert_id: int, kind: str) -> bool:
    head, _, value = mute.target.partition(":")
    return (head == "alert" and value == str(alert_id)) or (head == "kind" and value == kind)


def _on_member(mute: Mute, member: _Member) -> bool:
    head, _, value = mute.target.partition(":")
    return member.subject == mute.target or (head == "company" and member.company_id == value)


def touching(
    mutes: Sequence[Mute], alert_id: int, kind: str, members: Sequence[_Member]
) -> list[Mute]:
    """Mutes on this alert, its kind, or any of its live members."""
    live = [m for m in members if m.active]
    return [m for m in mutes if _on_alert(m, alert_id, kind) or any(_on_member(m, x) for x in live)]


def covering(
    mutes: Sequence[Mute], alert_id: int, kind: str, members: Sequence[_Member]
) -> list[Mute]:
    """The mutes that silence this alert, [] if none does: a mute on the alert or its kind
    alone, or subject mutes that together cover every live member."""
    direct = [m for m in mutes if _on_alert(m, alert_id, kind)]
    if direct:
        return direct
    live = [m for m in members if m.active]
    subject = [m for m in mutes if any(_on_member(m, x) for x in live)]
    if live and all(any(_on_member(m, x) for m in subject) for x in live):
        return subject
    return []


async def load_mutes(conn: Conn, now: float | None) -> list[Mute]:
    """Active mutes at `now`, newest first; every mute ever made when `now` is None."""
    return [Mute(*r) for r in await alert_store.mutes(conn, now)]


async def parse_target(conn: Conn, text: str) -> str:
    """Turn what a person typed into a canonical target, checking that it exists."""
    raw = text.strip()
    low = raw.lower()
    if not raw or len(raw) > 100:
        raise InvalidInput(_TARGET_HELP)
    match = re.fullmatch(r"(?:alert:|#)?(\d{1,12})", low)
    if match:
        if await alert_store.get(conn, int(match[1])) is None:
            raise AlertNotFound(f"no alert #{match[1]}; /alerts lists the open ones")
        return f"alert:{int(match[1])}"
    head, sep, value = low.partition(":")
    if (sep and head == "kind") or low in _KINDS:
        kind = value if sep else low
        if kind not in _KINDS:
            raise InvalidInput(f"no alert kind {kind!r}; kinds: {', '.join(_KINDS)}")
        return f"kind:{kind}"
    if sep and head not in _SUBJECTS:
        raise InvalidInput(_TARGET_HELP)
    value = value.strip() if sep else low
    if (not sep or head == "agent") and await agent_store.get(conn, value.lstrip("@")):
        return f"agent:{value.lstrip('@')}"
    if not sep or head == "company":
        company = await company_store.lookup(conn, value)
        if company is not None:
            return f"company:{company.id}"
    if (not sep or head == "issue") and await issue_store.get(conn, value.upper()):
        return f"issue:{value.upper()}"
    raise InvalidInput(f"nothing to mute called {raw!r}. {_TARGET_HELP}")


_TARGET_HELP = (
    "Mute an alert id (42), an alert kind (agent_error, queue_empty, …), an agent id, "
    "a company id or an issue id (ALI-12)."
)


async def lift_mutes(
    conn: Conn, spec: str, actor: str, now: float, members_of: MembersOf
) -> list[Mute]:
    """Lift the active mutes `spec` names (a mute id, an alert, or a target); returns them."""
    active = await load_mutes(conn, now)
    match = re.fullmatch(r"(?:m|mute:)(\d{1,12})", spec.strip().lower())
    if match:
        chosen = [m for m in active if m.id == int(match[1])]
    else:
        target = await parse_target(conn, spec)
        if target.startswith("alert:"):
            alert_id = int(target.partition(":")[2])
            kind = await alert_store.kind_of(conn, alert_id)
            assert kind is not None  # parse_target checked
            chosen = touching(active, alert_id, kind, await members_of(conn, alert_id))
        else:
            chosen = [m for m in active if m.target == target]
    for m in chosen:
        await alert_store.lift_mute(conn, m.id, actor, now)
    return [
        Mute(m.id, m.target, m.until, m.author, m.reason, m.created_at, now, actor) for m in chosen
    ]
