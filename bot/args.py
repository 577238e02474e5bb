"""Command arguments: the text after `/cmd`, split into words, an optional `| body`, durations.

Pure functions of a string. Every problem is a UsageError whose message says what was wrong;
the command handler adds the command's usage line. Words are split on whitespace only (no
quoting): phone keyboards turn quotes into curly ones, and nothing here needs a space inside
a word, because the one free-text part of each command comes last.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core import (
    DURATION_USAGE,
    OPEN_ISSUE_STATUSES,
    PRIORITY_USAGE,
    SCHEDULE_USAGE,
    TERMINAL_ISSUE_STATUSES,
    FleetbotError,
    IssueStatus,
    Priority,
    parse_duration,
    parse_priority,
    parse_schedule,
)

# A /command as Telegram marks it: the name and, in groups, @botname.
_COMMAND = re.compile(r"^/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{1,64})?(?=\s|$)")
ISSUE_ID = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,7}-\d{1,9}$")
MAX_MUTE = 30 * 86400.0
# An issue's limits, as the service enforces them (FleetService.file_issue); checked here first
# so that the answer is a usage line, or in the guided form a request to type it again.
MAX_TITLE = 200
MAX_BODY = 20_000

# Words /issues understands as statuses; "open" is the default.
STATUS_WORDS: dict[str, frozenset[IssueStatus]] = {
    "open": OPEN_ISSUE_STATUSES,
    "closed": TERMINAL_ISSUE_STATUSES,
    "all": frozenset(IssueStatus),
    "todo": frozenset({IssueStatus.TODO}),
    "doing": frozenset({IssueStatus.IN_PROGRESS}),
    "in_progress": frozenset({IssueStatus.IN_PROGRESS}),
    "in-progress": frozenset({IssueStatus.IN_PROGRESS}),
    "review": frozenset({IssueStatus.IN_REVIEW}),
    "in_review": frozenset({IssueStatus.IN_REVIEW}),
    "in-review": frozenset({IssueStatus.IN_REVIEW}),
    "blocked": frozenset({IssueStatus.BLOCKED}),
    "backlog": frozenset({IssueStatus.BACKLOG}),
    "done": frozenset({IssueStatus.DONE}),
    "cancelled": frozenset({IssueStatus.CANCELLED}),
    "canceled": frozenset({IssueStatus.CANCELLED}),
}


class UsageError(Exception):
    """The arguments do not fit the command; `problem` says how."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def command_rest(text: str) -> str:
    """The text after the leading `/command[@bot]`, stripped; the whole text if none."""
    stripped = text.strip()
    match = _COMMAND.match(stripped)
    return stripped[match.end() :].strip() if match else stripped


def words(rest: str) -> list[str]:
    return rest.split()


def split_body(rest: str) -> tuple[str, str]:
    """`head | body` → (head, body), both stripped; no `|` means no body."""
    head, _, body = rest.partition("|")
    return head.strip(), body.strip()


def no_args(rest: str) -> None:
    if rest.strip():
        raise UsageError("this command takes no arguments")


def one_word(rest: str, what: str) -> str:
    found = words(rest)
    if not found:
        raise UsageError(f"name the {what}")
    if len(found) > 1:
        raise UsageError(f"name one {what}, not {len(found)} words")
    return found[0]


def optional_word(rest: str, what: str) -> str | None:
    found = words(rest)
    if len(found) > 1:
        raise UsageError(f"give at most one {what}")
    return found[0] if found else None


def word_and_rest(rest: str, what: str) -> tuple[str, str]:
    """The first word (required) and the free text after it (maybe empty)."""
    parts = rest.split(maxsplit=1)
    if not parts:
        raise UsageError(f"name the {what}")
    return parts[0], parts[1].strip() if len(parts) > 1 else ""


def two_words(rest: str, first: str, second: str) -> tuple[str, str]:
    found = words(rest)
    if len(found) != 2:
        got = "nothing" if not found else f"{len(found)} word{'s' if len(found) != 1 else ''}"
        raise UsageError(f"give the {first} and the {second} (got {got})")
    return found[0], found[1]


@dataclass(frozen=True, slots=True)
class IssueArgs:
    assignee: str
    title: str
    body: str = ""
    priority: Priority = Priority.MEDIUM
    backlog: bool = False


def priority_word(word: str) -> Priority:
    try:
        return parse_priority(word)
    except FleetbotError as exc:
        raise UsageError(exc.message) from None


def take_flags(words_: list[str]) -> tuple[Priority, bool, list[str]]:
    """Leading `!critical|!high|!medium|!low` and `!backlog` words, and the words after them.
    A `!` word is a flag only before the title, so a title may still say "!important"."""
    priority, backlog, seen = Priority.MEDIUM, False, False
    while words_ and words_[0].startswith("!") and len(words_[0]) > 1:
        word = words_[0].lower()
        if word == "!backlog":
            backlog = True
        elif seen:
            raise UsageError("give one priority")
        else:
            try:
                priority = parse_priority(word)
            except FleetbotError:
                raise UsageError(
                    f"{words_[0]!r} is not a flag: use !backlog or a priority ({PRIORITY_USAGE})"
                ) from None
            seen = True
        words_ = words_[1:]
    return priority, backlog, words_


def parse_issue(rest: str) -> IssueArgs | None:
    """`ASSIGNEE [!priority] [!backlog] TITLE [| body]`; None for no arguments at all (the
    guided flow)."""
    if not rest.strip():
        return None
    head, body = split_body(rest)
    parts = head.split()
    if not parts:
        raise UsageError("name an assignee and a title before the |")
    priority, backlog, rest_words = take_flags(parts[1:])
    if not rest_words:
        raise UsageError(f"the issue for {parts[0]} needs a title")
    title = " ".join(rest_words)
    if len(title) > MAX_TITLE:
        raise UsageError(f"keep the title under {MAX_TITLE} characters (it has {len(title)})")
    return IssueArgs(parts[0], title, body, priority, backlog)


@dataclass(frozen=True, slots=True)
class RoutineArgs:
    name: str
    assignee: str
    schedule: str
    title: str
    body: str = ""
    priority: Priority = Priority.MEDIUM
    timezone: str | None = None


def parse_routine(rest: str) -> RoutineArgs:
    """`NAME ASSIGNEE [!priority] SCHEDULE… [tz ZONE] | TITLE [| BODY]` (after `add`)."""
    head, _, tail = rest.partition("|")
    title, _, body = tail.partition("|")
    parts = head.split()
    if len(parts) < 2:
        raise UsageError("name the routine and its assignee, then its schedule")
    name, assignee = parts[0], parts[1]
    priority, backlog, sched = take_flags(parts[2:])
    if backlog:
        raise UsageError("a routine's issues are work for now; !backlog does not apply")
    timezone = None
    if len(sched) >= 2 and sched[-2].lower() == "tz":
        timezone, sched = sched[-1], sched[:-2]
    if not sched:
        raise UsageError(f"routine {name} needs a schedule, e.g. daily 09:00")
    title = " ".join(title.split())
    if not title:
        raise UsageError("write the title after a |, e.g. | Weekly review {date}")
    if len(title) > MAX_TITLE:
        raise UsageError(f"keep the title under {MAX_TITLE} characters (it has {len(title)})")
    schedule = " ".join(sched)
    # The core checks both again when it adds the routine; checked here first so that a
    # wrong schedule is answered with the forms there are.
    try:
        parse_schedule(schedule)
    except ValueError as exc:
        forms = "" if SCHEDULE_USAGE in str(exc) else f" (schedules: {SCHEDULE_USAGE})"
        raise UsageError(f"{exc}{forms}") from None
    if timezone is not None:
        try:
            parse_schedule(schedule, timezone)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    return RoutineArgs(name, assignee, schedule, title, body.strip(), priority, timezone)


def parse_duration_word(text: str) -> float:
    """A positive duration of at most 30 days, from one word like 4h or 1h30m."""
    try:
        seconds = parse_duration(text)
    except ValueError:
        raise UsageError(f"{text!r} is not {DURATION_USAGE}") from None
    if seconds <= 0:
        raise UsageError(f"the duration must be more than zero: {DURATION_USAGE}")
    if seconds > MAX_MUTE:
        raise UsageError("mute for at most 30d")
    return seconds


@dataclass(frozen=True, slots=True)
class MuteArgs:
    target: str
    seconds: float
    reason: str = ""


def parse_mute(rest: str) -> MuteArgs:
    """`TARGET DURATION [reason]`."""
    parts = rest.split(maxsplit=2)
    if len(parts) < 2:
        raise UsageError("name what to mute and for how long, e.g. /mute 12 4h")
    reason = parts[2].strip() if len(parts) > 2 else ""
    return MuteArgs(parts[0], parse_duration_word(parts[1]), reason)


@dataclass(frozen=True, slots=True)
class IssueQuery:
    """What /issues asked for. `names` are bare words the command resolves against the store
    (an issue id shows that issue's card; else a company; else an agent)."""

    statuses: frozenset[IssueStatus] = OPEN_ISSUE_STATUSES
    company: str | None = None
    assignee: str | None = None
    names: tuple[str, ...] = ()


def parse_issue_query(rest: str) -> IssueQuery:
    """`[status…] [company] [@agent]`, also as `status:x company:x agent:x`."""
    statuses: set[IssueStatus] = set()
    company = assignee = None
    names: list[str] = []
    for word in words(rest):
        key, sep, value = word.partition(":")
        low = word.lower()
        if sep and key.lower() in ("status", "company", "agent", "assignee"):
            if not value:
                raise UsageError(f"{key}: needs a value, e.g. {key}:{_example(key.lower())}")
            key = key.lower()
            if key == "status":
                statuses |= _status(value)
            elif key == "company":
                company = _only(company, value, "company")
            else:
                assignee = _only(assignee, value.lstrip("@"), "agent")
        elif low in STATUS_WORDS:
            statuses |= STATUS_WORDS[low]
        elif word.startswith("@") and len(word) > 1:
            assignee = _only(assignee, word[1:], "agent")
        elif sep:
            raise UsageError(f"unknown filter {key}: — use status:, company: or agent:")
        else:
            names.append(word)
    if len(names) > 2:
        raise UsageError("name at most a company and an agent (or one issue id)")
    return IssueQuery(frozenset(statuses) or OPEN_ISSUE_STATUSES, company, assignee, tuple(names))


def _status(value: str) -> frozenset[IssueStatus]:
    found = STATUS_WORDS.get(value.lower())
    if found is None:
        raise UsageError(f"unknown status {value!r}; use one of: {', '.join(STATUS_WORDS)}")
    return found


def _only(current: str | None, value: str, what: str) -> str:
    if current is not None and current.lower() != value.lower():
        raise UsageError(f"name one {what}, not both {current} and {value}")
    return value


def _example(key: str) -> str:
    return {"status": "blocked", "company": "aliens"}.get(key, "bishop")
