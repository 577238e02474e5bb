"""The command argument parser: pure functions, checked on examples and on arbitrary text."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, strategies as st

from bot import args
from bot.args import UsageError
from core.durations import format_duration
from core.models import OPEN_ISSUE_STATUSES, IssueStatus, Priority

WORD = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="|"), min_size=1
).filter(lambda w: w.strip() == w and " " not in w and w.split() == [w])


@pytest.mark.parametrize(
    ("text", "rest"),
    [
        ("/issue cto Fix it", "cto Fix it"),
        ("/issue@fleetbot_test_bot cto Fix it", "cto Fix it"),
        ("  /status  ", ""),
        ("/agents@bot\naliens", "aliens"),
        ("no command here", "no command here"),
        ("/issue|x", "/issue|x"),  # not a command token: kept whole
    ],
)
def test_command_rest(text: str, rest: str) -> None:
    assert args.command_rest(text) == rest


def test_parse_issue_examples() -> None:
    assert args.parse_issue("") is None
    assert args.parse_issue("   ") is None
    assert args.parse_issue("cto Fix the   login | Steps:\n1. open") == args.IssueArgs(
        "cto", "Fix the login", "Steps:\n1. open"
    )
    assert args.parse_issue("cto@aliens Title with | pipes | inside") == args.IssueArgs(
        "cto@aliens", "Title with", "pipes | inside"
    )
    for bad, problem in [
        ("cto", "needs a title"),
        ("| body only", "assignee and a title"),
        ("cto " + "x" * 201, "under 200"),
    ]:
        with pytest.raises(UsageError, match=problem):
            args.parse_issue(bad)


def test_issue_flags() -> None:
    assert args.parse_issue("cto !high !backlog Fix it | b") == args.IssueArgs(
        "cto", "Fix it", "b", Priority.HIGH, True
    )
    assert args.parse_issue("cto !backlog !c Fix !now") == args.IssueArgs(
        "cto", "Fix !now", "", Priority.CRITICAL, True
    )
    assert args.parse_issue("cto ! Fix") == args.IssueArgs("cto", "! Fix")
    for bad, problem in [
        ("cto !urgent Fix", "'!urgent' is not a flag: use !backlog or a priority"),
        ("cto !low !high Fix", "give one priority"),
        ("cto !low !backlog", "needs a title"),
    ]:
        with pytest.raises(UsageError, match=problem):
            args.parse_issue(bad)


def test_parse_routine_examples() -> None:
    assert args.parse_routine(
        "standup ceo@aliens !high weekdays 09:00 tz Europe/Berlin | Standup {date} | notes"
    ) == args.RoutineArgs(
        "standup",
        "ceo@aliens",
        "weekdays 09:00",
        "Standup {date}",
        "notes",
        Priority.HIGH,
        "Europe/Berlin",
    )
    assert args.parse_routine("r cto cron 0 9 * * 1-5 | T") == args.RoutineArgs(
        "r", "cto", "cron 0 9 * * 1-5", "T"
    )
    for bad, problem in [
        ("standup", "name the routine and its assignee"),
        ("standup ceo | T", "needs a schedule"),
        ("standup ceo tz UTC | T", "needs a schedule"),
        ("standup ceo daily 09:00", "write the title after a |"),
        ("standup ceo !backlog daily 09:00 | T", "!backlog does not apply"),
        ("standup ceo daily 25:00 | T", r"not a time of day.*\(schedules: every 4h"),
        ("standup ceo hourly | T", "is not a schedule; write one of: every 4h"),
        ("standup ceo daily 09:00 tz Mars/Base | T", "'Mars/Base' is not a time zone"),
        ("standup ceo daily 09:00 | " + "x" * 201, "under 200"),
    ]:
        with pytest.raises(UsageError, match=problem):
            args.parse_routine(bad)


@given(WORD, st.lists(WORD, min_size=1, max_size=8), st.text())
def test_parse_issue_splits_any_words(assignee: str, title: list[str], body: str) -> None:
    assume(not title[0].startswith("!"))  # a leading `!word` is a flag (test_issue_flags)
    text = f"{assignee} {' '.join(title)}"
    if "|" in body or body.strip():
        text += f" | {body}"
    try:
        parsed = args.parse_issue(text)
    except UsageError as exc:
        assert "200" in exc.problem
        return
    assert parsed is not None
    assert parsed.assignee == assignee
    assert parsed.title == " ".join(title)
    assert parsed.body == body.strip()


@given(st.text())
def test_parsers_raise_only_usage_errors(text: str) -> None:
    for parse in (
        args.parse_issue,
        args.parse_routine,
        args.parse_mute,
        args.parse_issue_query,
        lambda t: args.one_word(t, "agent"),
        lambda t: args.two_words(t, "issue", "assignee"),
        lambda t: args.word_and_rest(t, "agent"),
        lambda t: args.optional_word(t, "company"),
        args.no_args,
        args.command_rest,
    ):
        try:
            parse(text)
        except UsageError as exc:
            assert exc.problem


@given(st.integers(min_value=1, max_value=30 * 86400))
def test_durations_round_trip(seconds: int) -> None:
    text = format_duration(seconds)
    parsed = args.parse_duration_word(text)
    # format_duration keeps the two biggest units: within a minute for spans over an hour
    assert abs(parsed - seconds) < (3600 if seconds >= 86400 else 60)


@pytest.mark.parametrize(
    ("text", "problem"),
    [("0", "more than zero"), ("31d", "at most 30d"), ("soon", "not a duration"), ("-4h", "not")],
)
def test_bad_durations(text: str, problem: str) -> None:
    with pytest.raises(UsageError, match=problem):
        args.parse_duration_word(text)


def test_parse_mute() -> None:
    assert args.parse_mute("12 4h") == args.MuteArgs("12", 14400.0, "")
    assert args.parse_mute("agent:ripley 1h30m  on leave today ") == args.MuteArgs(
        "agent:ripley", 5400.0, "on leave today"
    )
    with pytest.raises(UsageError, match="how long"):
        args.parse_mute("12")


def test_issue_query() -> None:
    q = args.parse_issue_query("")
    assert q.statuses == OPEN_ISSUE_STATUSES and q.names == ()
    q = args.parse_issue_query("blocked todo aliens @bishop")
    assert q.statuses == {IssueStatus.BLOCKED, IssueStatus.TODO}
    assert (q.assignee, q.names) == ("bishop", ("aliens",))
    q = args.parse_issue_query("status:done company:ALI agent:@ripley")
    assert (q.statuses, q.company, q.assignee) == ({IssueStatus.DONE}, "ALI", "ripley")
    assert args.parse_issue_query("all").statuses == set(IssueStatus)
    assert args.parse_issue_query("ALI-3").names == ("ALI-3",)
    for bad, problem in [
        ("status:nope", "unknown status"),
        ("status:", "needs a value"),
        ("@a @b", "not both"),
        ("color:red", "unknown filter"),
        ("a b c", "at most"),
    ]:
        with pytest.raises(UsageError, match=problem):
            args.parse_issue_query(bad)


def test_word_helpers() -> None:
    assert args.one_word(" ripley ", "agent") == "ripley"
    assert args.two_words("ALI-1 cto", "issue", "assignee") == ("ALI-1", "cto")
    assert args.word_and_rest("ripley on leave", "agent") == ("ripley", "on leave")
    assert args.optional_word("", "company") is None
    with pytest.raises(UsageError, match="name the agent"):
        args.one_word("", "agent")
    with pytest.raises(UsageError, match="not 2 words"):
        args.one_word("a b", "agent")
    with pytest.raises(UsageError, match=r"got 1 word\)"):
        args.two_words("a", "issue", "assignee")
    with pytest.raises(UsageError, match="no arguments"):
        args.no_args("x")


def test_a_mute_needs_a_unit() -> None:
    with pytest.raises(UsageError, match="not a duration"):
        args.parse_mute("12 90")
    assert args.parse_mute("12 90s").seconds == 90
