"""Who may do what: roles by Telegram user id, the command catalog, and what each button needs.

Owners can do everything; operators everything but rotating tokens, changing roles and (unless
telegram.approvers says operators) answering approvals; viewers only look; anyone else is a
stranger. A leaf module (nothing from bot/), so the desk can hold an
`Access` and the guard in bot.access can build on the desk.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from telegram.constants import ChatID

from core import QuestionKind, TelegramConfig

# The sender of every message an anonymous group admin writes (Telegram's GroupAnonymousBot):
# the group is in sender_chat and the person is hidden, so this id is nobody's and gets no role.
ANONYMOUS_ADMIN = int(ChatID.ANONYMOUS_ADMIN)


class Role(IntEnum):
    STRANGER = 0  # not in the config: refused, shown their id
    VIEWER = 1  # read-only
    OPERATOR = 2  # everything but /rotate and /role
    OWNER = 3  # everything

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    usage: str
    about: str  # the command menu's description
    need: Role


COMMANDS: tuple[Command, ...] = (
    Command("start", "/start", "Open the desk", Role.VIEWER),
    Command("help", "/help", "What you can do here", Role.VIEWER),
    Command("whoami", "/whoami", "Your Telegram user id and role", Role.STRANGER),
    Command("status", "/status", "The board: agents, work, alerts, spend", Role.VIEWER),
    Command("agents", "/agents [company]", "List agents and their status", Role.VIEWER),
    Command("agent", "/agent ID", "One agent's card, with buttons", Role.VIEWER),
    Command(
        "issues",
        "/issues [ISSUE-ID | status… company @agent]",
        "List issues (open by default) or show one",
        Role.VIEWER,
    ),
    Command(
        "issue",
        "/issue ASSIGNEE [!high|!low|…] [!backlog] TITLE [| body]",
        "File an issue (no arguments: step by step)",
        Role.OPERATOR,
    ),
    Command("assign", "/assign ISSUE ASSIGNEE", "Give an issue to another agent", Role.OPERATOR),
    Command(
        "priority",
        "/priority ISSUE critical|high|medium|low",
        "Change an issue's priority",
        Role.OPERATOR,
    ),
    Command(
        "backlog",
        "/backlog [company] · /backlog ISSUE",
        "The backlog, with Promote buttons; or park an issue there",
        Role.VIEWER,
    ),
    Command("promote", "/promote ISSUE", "Move a backlog issue to todo now", Role.OPERATOR),
    Command(
        "routines",
        "/routines [company] · add NAME ASSIGNEE [!high|!low|…] SCHEDULE [tz ZONE] | TITLE "
        "[| BODY] · pause|resume|run|remove REF",
        "Recurring issues on a schedule, with buttons",
        Role.VIEWER,
    ),
    Command("role", "/role AGENT ROLE", "Change an agent's role", Role.OWNER),
    Command("reset", "/reset AGENT|all", "Back to idle and woken", Role.OPERATOR),
    Command("pause", "/pause AGENT [reason]", "Stop an agent's heartbeats", Role.OPERATOR),
    Command("resume", "/resume AGENT", "Restart a paused agent's heartbeats", Role.OPERATOR),
    Command("wake", "/wake AGENT", "Run an agent's heartbeat now", Role.OPERATOR),
    Command("rotate", "/rotate AGENT|all", "New tokens (one agent, or every key)", Role.OWNER),
    Command("authcheck", "/authcheck", "Test every agent's token and runtime now", Role.OPERATOR),
    Command(
        "mute", "/mute TARGET DURATION [reason]", "Silence an alert for a while", Role.OPERATOR
    ),
    Command("unmute", "/unmute ID", "End a mute", Role.OPERATOR),
    Command("alerts", "/alerts", "Alerts firing now", Role.VIEWER),
    Command(
        "waiting", "/waiting", "Questions and approvals agents wait on, with buttons", Role.VIEWER
    ),
    Command(
        "costs",
        "/costs [company|AGENT]",
        "LLM calls and spend this month; an agent's heartbeat ROI",
        Role.VIEWER,
    ),
    Command("digest", "/digest", "The daily digest, now", Role.VIEWER),
)
BY_NAME = {c.name: c for c in COMMANDS}


# Role needed per button: (kind, verb) or (kind, verb, arg) for alert fixes.
_BUTTON_NEEDS: dict[tuple[str, ...], Role] = {
    ("g", "show"): Role.VIEWER,
    ("g", "runs"): Role.VIEWER,
    ("g", "reset"): Role.OPERATOR,
    ("g", "pause"): Role.OPERATOR,
    ("g", "resume"): Role.OPERATOR,
    ("g", "wake"): Role.OPERATOR,
    ("g", "rotate"): Role.OWNER,
    ("i", "show"): Role.VIEWER,
    ("i", "assign"): Role.OPERATOR,
    ("i", "to"): Role.OPERATOR,
    ("i", "cancel"): Role.OPERATOR,
    ("i", "retry"): Role.OPERATOR,
    ("i", "promote"): Role.OPERATOR,
    ("r", "list"): Role.VIEWER,
    ("r", "pause"): Role.OPERATOR,
    ("r", "resume"): Role.OPERATOR,
    ("r", "run"): Role.OPERATOR,
    ("r", "remove"): Role.OPERATOR,
    ("a", "show"): Role.VIEWER,
    ("a", "ack"): Role.OPERATOR,
    ("a", "mute"): Role.OPERATOR,
    ("a", "fix", "rotate"): Role.OWNER,
    ("a", "fix"): Role.OPERATOR,
    # A confirmation's buttons carry only its id: the floor here, then what its action needs,
    # looked up on the desk (bot.handlers.confirm.confirm_need).
    ("c",): Role.OPERATOR,
    ("c", "reset_all"): Role.OPERATOR,
    ("c", "rotate_all"): Role.OWNER,
    ("c", "remove_routine"): Role.OPERATOR,
    ("f",): Role.OPERATOR,
    # Answering needs the operator at least; an approval may need the owner, which the
    # question handler looks up on the question itself (answer_need).
    ("q", "show"): Role.VIEWER,
    ("q", "ans"): Role.OPERATOR,
}


def answer_need(kind: QuestionKind, config: TelegramConfig) -> Role:
    """Who may answer: a question, owners and operators; an approval, owners, or operators
    too when telegram.approvers is `operators`."""
    if kind is QuestionKind.APPROVAL and config.approvers == "owners":
        return Role.OWNER
    return Role.OPERATOR


def button_need(kind: str, verb: str, arg: str = "", ident: str = "") -> Role:
    """The role a button press needs; unknown buttons need the owner (fail closed)."""
    for key in ((kind, verb, arg), (kind, verb), (kind, ident), (kind,)):
        if key in _BUTTON_NEEDS:
            return _BUTTON_NEEDS[key]
    return Role.OWNER


class Access:
    """Roles by Telegram user id, from telegram.owners / operators / viewers."""

    def __init__(self, config: TelegramConfig) -> None:
        self._roles: dict[int, Role] = {}
        # Listed under several roles: the highest wins.
        for role, ids in (
            (Role.VIEWER, config.viewers),
            (Role.OPERATOR, config.operators),
            (Role.OWNER, config.owners),
        ):
            for uid in ids:
                self._roles[uid] = role

    def role(self, user_id: int | None) -> Role:
        if user_id is None or user_id == ANONYMOUS_ADMIN:
            return Role.STRANGER
        return self._roles.get(user_id, Role.STRANGER)

    @property
    def owners(self) -> list[int]:
        return [uid for uid, r in self._roles.items() if r is Role.OWNER]
