"""Inline keyboards and their callback data: `v1:<kind>:<id>:<verb>[:<arg>]`, at most 64 bytes.

The data only names what was pressed; it grants nothing. The button handler re-authorises the
person pressing and looks the id up in the store. The version prefix lets a future fleetbot
change the layout and still answer presses on old messages politely instead of misreading them.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from enum import StrEnum

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from core import Agent, AgentStatus, Issue, IssueStatus, Routine

VERSION = "v1"
MAX_DATA_BYTES = 64  # Telegram's limit on callback_data
_HASHED = "~"  # prefix of an id too long to fit, replaced by a digest of it


class Kind(StrEnum):
    AGENT = "g"  # an agent card
    ISSUE = "i"  # an issue card
    ALERT = "a"  # an alert message (rendered by bot.views.alerts)
    CONFIRM = "c"  # "are you sure?" for bulk actions
    FORM = "f"  # the guided /issue form
    QUESTION = "q"  # an agent's question card: `v1:q:<id>:ans:<choice>`, `v1:q:<id>:show`
    ROUTINE = "r"  # the /routines list: `v1:r:R3:pause:<company or *>`


class StaleButton(Exception):
    """The callback data cannot be read (another version, or not ours), or what it names is
    gone or changed; `reason` says so, and the press is audited as `result`."""

    result = "stale"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RefusedButton(StaleButton):
    """The press names something fleetbot never offered there (a made-up id or choice), or
    the person may not do it: nothing is done, and the press is audited as refused."""

    result = "refused"


@dataclass(frozen=True, slots=True)
class Press:
    kind: Kind
    ref: str  # the id, or `~digest` of an id too long to fit
    verb: str
    arg: str = ""

    def names(self, ident: str) -> bool:
        """Whether this press refers to `ident` (works for digested ids too)."""
        return self.ref == ident or (self.ref.startswith(_HASHED) and self.ref == _digest(ident))


def _digest(ident: str) -> str:
    raw = hashlib.sha256(ident.encode()).digest()[:8]
    return _HASHED + base64.b32encode(raw).decode().rstrip("=").lower()


def encode(kind: Kind, ident: str, verb: str, arg: str = "") -> str:
    """Callback data for one button; an id that would not fit is replaced by its digest."""
    for part, what in ((verb, "verb"), (arg, "arg")):
        if ":" in part:
            raise ValueError(f"callback {what} {part!r} must not contain ':'")
    data = _join(kind, ident, verb, arg)
    if ":" in ident or len(data.encode()) > MAX_DATA_BYTES:
        data = _join(kind, _digest(ident), verb, arg)
    if len(data.encode()) > MAX_DATA_BYTES:
        raise ValueError(f"callback data {data!r} is over {MAX_DATA_BYTES} bytes")
    return data


def _join(kind: Kind, ident: str, verb: str, arg: str) -> str:
    return ":".join([VERSION, kind.value, ident, verb] + ([arg] if arg else []))


def decode(data: str | None) -> Press:
    parts = (data or "").split(":")
    if not parts or not parts[0].startswith("v") or not parts[0][1:].isdigit():
        raise StaleButton("This button is not one of fleetbot's. Send the command again.")
    if parts[0] != VERSION:
        raise StaleButton(
            "This button is from another fleetbot version. Send the command again for fresh ones."
        )
    if len(parts) not in (4, 5) or not parts[2] or not parts[3]:
        raise StaleButton("This button's data is damaged. Send the command again.")
    try:
        kind = Kind(parts[1])
    except ValueError:
        raise StaleButton("This button is of a kind this fleetbot no longer has.") from None
    return Press(kind, parts[2], parts[3], parts[4] if len(parts) == 5 else "")


def pattern(kind: Kind, verb: str | None = None, arg: str | None = None) -> str:
    """A regex matching the callback data of `kind`'s buttons (with that verb and arg), for
    python-telegram-bot's `CallbackQueryHandler(pattern=…)`."""
    head = f"^{re.escape(VERSION)}:{kind.value}:"
    if verb is None:
        return head
    return head + f"[^:]+:{re.escape(verb)}" + (f":{re.escape(arg)}" if arg else "") + "$"


def button(text: str, kind: Kind, ident: str, verb: str, arg: str = "") -> InlineKeyboardButton:
    return InlineKeyboardButton(text, callback_data=encode(kind, ident, verb, arg))


def markup(rows: list[list[InlineKeyboardButton]]) -> InlineKeyboardMarkup | None:
    kept = [r for r in rows if r]
    return InlineKeyboardMarkup(kept) if kept else None


# -- cards -----------------------------------------------------------------------------------


def agent_keyboard(agent: Agent, *, can_act: bool, can_rotate: bool) -> InlineKeyboardMarkup:
    a = agent.id
    rows: list[list[InlineKeyboardButton]] = []
    if can_act:
        toggle = (
            button("▶️ Resume", Kind.AGENT, a, "resume")
            if agent.status is AgentStatus.PAUSED
            else button("⏸ Pause", Kind.AGENT, a, "pause")
        )
        rows.append([button("♻️ Reset", Kind.AGENT, a, "reset"), toggle])
        rows.append([button("⏰ Wake", Kind.AGENT, a, "wake")])
        if can_rotate:
            rows[-1].append(button("🔑 Rotate token", Kind.AGENT, a, "rotate"))
    rows.append(
        [
            button("📜 Recent runs", Kind.AGENT, a, "runs"),
            button("↻ Refresh", Kind.AGENT, a, "show"),
        ]
    )
    return InlineKeyboardMarkup(rows)


def runs_keyboard(agent: Agent) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[button("◀️ Agent card", Kind.AGENT, agent.id, "show")]])


def issue_keyboard(issue: Issue, *, can_act: bool) -> InlineKeyboardMarkup | None:
    i = issue.id
    row: list[InlineKeyboardButton] = []
    if can_act and not issue.status.terminal:
        row.append(button("👤 Assign", Kind.ISSUE, i, "assign"))
        if issue.status is IssueStatus.BLOCKED:
            row.append(button("🔁 Retry", Kind.ISSUE, i, "retry"))
        if issue.status is IssueStatus.BACKLOG:
            row.append(button("⬆️ Promote", Kind.ISSUE, i, "promote"))
        row.append(button("✖️ Cancel", Kind.ISSUE, i, "cancel"))
    return markup([row, [button("↻ Refresh", Kind.ISSUE, i, "show")]])


def assign_keyboard(issue: Issue, agents: list[Agent]) -> InlineKeyboardMarkup:
    """One button per agent of the issue's company, two to a row."""
    buttons = [
        button(f"{a.name} · {a.role}", Kind.ISSUE, issue.id, "to", _agent_arg(issue.id, a.id))
        for a in agents
    ]
    rows = [buttons[k : k + 2] for k in range(0, len(buttons), 2)]
    rows.append([button("◀️ Back", Kind.ISSUE, issue.id, "show")])
    return InlineKeyboardMarkup(rows)


def _agent_arg(issue_id: str, agent_id: str) -> str:
    # The agent rides in the arg; when issue and agent together are too long, its digest does.
    plain = _join(Kind.ISSUE, issue_id, "to", agent_id)
    return agent_id if len(plain.encode()) <= MAX_DATA_BYTES else _digest(agent_id)


def arg_names(arg: str, ident: str) -> bool:
    return arg == ident or (arg.startswith(_HASHED) and arg == _digest(ident))


def confirm_keyboard(confirm_id: str, yes: str) -> InlineKeyboardMarkup:
    """A "yes" and a "cancel" for a bulk action: `v1:c:<confirmation id>:yes|no`. What is
    confirmed, by whom, where and until when is kept by the bot (bot.confirmations)."""
    return InlineKeyboardMarkup(
        [
            [
                button(yes, Kind.CONFIRM, confirm_id, "yes"),
                button("Cancel", Kind.CONFIRM, confirm_id, "no"),
            ]
        ]
    )


def scoped(text: str, kind: Kind, ident: str, verb: str, scope: str) -> InlineKeyboardButton:
    """A button on a list of one company (or `*`, all): the scope rides in the arg so a press
    redraws the same list; a company id too long to fit rides as its digest (`arg_names`)."""
    plain = _join(kind, ident, verb, scope)
    arg = scope if len(plain.encode()) <= MAX_DATA_BYTES else _digest(scope)
    return button(text, kind, ident, verb, arg)


def backlog_keyboard(issues: list[Issue], scope: str) -> InlineKeyboardMarkup | None:
    """A Promote button per backlog issue shown, three to a row; `scope` (a company id or
    `*`) tells the press to redraw this list rather than open the issue's card."""
    buttons = [scoped(f"⬆️ {i.id}", Kind.ISSUE, i.id, "promote", scope) for i in issues]
    return markup([buttons[k : k + 3] for k in range(0, len(buttons), 3)])


def routines_keyboard(
    routines: list[Routine],
    scope: str,
    *,
    can_act: bool,
    removing: tuple[str, str] | None = None,
) -> InlineKeyboardMarkup | None:
    """Per routine: Pause or Resume, Run now, Remove. `scope` (a company id, or `*`) rides
    along so the list redrawn after a press is the same list. `removing` is (routine ref,
    confirmation id): that routine's row becomes the "are you sure?" (bot.confirmations)."""
    rows: list[list[InlineKeyboardButton]] = []
    for r in routines if can_act else []:
        ref = r.ref
        if removing is not None and removing[0] == ref:
            rows.append(
                [
                    button(f"🗑 Yes, remove {ref}", Kind.CONFIRM, removing[1], "yes"),
                    button("◀️ Keep it", Kind.CONFIRM, removing[1], "no"),
                ]
            )
            continue
        toggle = (
            scoped(f"▶️ Resume {ref}", Kind.ROUTINE, ref, "resume", scope)
            if r.paused
            else scoped(f"⏸ Pause {ref}", Kind.ROUTINE, ref, "pause", scope)
        )
        row = [toggle, scoped(f"⏩ Run {ref}", Kind.ROUTINE, ref, "run", scope)]
        if r.source == "chat":  # config routines are removed in the config
            row.append(scoped(f"🗑 {ref}", Kind.ROUTINE, ref, "remove", scope))
        rows.append(row)
    if routines:
        rows.append([scoped("↻ Refresh", Kind.ROUTINE, routines[0].ref, "list", scope)])
    return markup(rows)
