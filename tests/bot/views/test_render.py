"""Rendering: everything escaped, and long answers split into valid messages under the limit."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from bot.views import render
from core.models import Agent, AgentStatus, Company, Issue, IssueStatus
from offline_botapi.parse_mode import parse_html, utf16_len

NOW = 1_767_225_600.0
EVIL = '<b>&amp; "quoted" </i> & <script>'


def styled(source: str) -> list[tuple[str, frozenset[str]]]:
    """Each visible non-space character with the entity types covering it."""
    parsed = parse_html(source)
    spans = [(e["offset"], e["offset"] + e["length"], e["type"]) for e in parsed.entities]
    out, pos = [], 0
    for ch in parsed.text:
        if not ch.isspace():
            out.append((ch, frozenset(t for a, b, t in spans if a <= pos < b)))
        pos += utf16_len(ch)
    return out


TEXT = st.text(
    st.sampled_from(list("ab cd\n<>&\"'😀é")) | st.characters(blacklist_categories=("Cs",)),
    max_size=40,
)


@st.composite
def html_docs(draw: Any, depth: int = 0) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 6))):
        choice = draw(st.integers(0, 5 if depth < 3 else 1))
        if choice <= 1:
            parts.append(render.esc(draw(TEXT)))
        elif choice == 2:
            parts.append("\n")
        else:
            tag = draw(st.sampled_from(["b", "i", "code", "u", "s", "blockquote", "tg-spoiler"]))
            inner = draw(html_docs(depth + 1))
            parts.append(f"<{tag}>{inner}</{tag}>")
    if draw(st.booleans()):
        parts.append('<a href="https://example.com/?a=1&amp;b=2">link</a>')
    return "".join(parts)


@settings(max_examples=150, deadline=None)
@given(html_docs(), st.integers(2, 60))
def test_split_html_keeps_content_and_validity(doc: str, limit: int) -> None:
    chunks = render.split_html(doc, limit)
    for chunk in chunks:
        parsed = parse_html(chunk)  # raises on any broken tag or entity
        assert utf16_len(parsed.text) <= limit
        assert parsed.text.strip(), "an empty message would be refused"
    assert [x for c in chunks for x in styled(c)] == styled(doc)


def test_split_prefers_line_breaks_and_fits_telegram() -> None:
    lines = [f"<b>line {i}</b> " + render.esc("x < y & z " * 20) for i in range(200)]
    doc = "\n".join(lines)
    chunks = render.split_html(doc)
    assert len(chunks) > 1
    for chunk in chunks:
        assert utf16_len(parse_html(chunk).text) <= 4096
        assert chunk.startswith("<b>line ")  # every chunk starts on a line of its own
    assert render.split_html("short") == ["short"]
    assert render.split_html("  \n ") == []


def test_split_never_cuts_a_surrogate_pair_or_entity() -> None:
    doc = "<i>" + "😀&amp;" * 50 + "</i>"
    for limit in (2, 3, 5, 7):
        chunks = render.split_html(doc, limit)
        assert "".join(parse_html(c).text for c in chunks) == "😀&" * 50


def agent(**changes: Any) -> Agent:
    base: dict[str, Any] = dict(
        id="ripley",
        company_id="aliens",
        name=EVIL,
        role="ceo",
        reports_to=None,
        status=AgentStatus.ERROR,
        reason=EVIL,
        reason_code="agent_unauthorized",
        status_changed_at=NOW - 300,
        model="m<1>",
        heartbeat_seconds=14400,
        next_heartbeat_at=NOW + 3600,
        token_version=2,
        skills=(),
        max_turns=50,
        run_timeout_seconds=1800,
    )
    base.update(changes)
    return Agent(**base)


def issue(**changes: Any) -> Issue:
    base: dict[str, Any] = dict(
        id="ALI-3",
        company_id="aliens",
        number=3,
        title=EVIL,
        body=EVIL * 3,
        status=IssueStatus.BLOCKED,
        assignee_id="bishop",
        created_by="tg:1",
        model=None,
        attempts=3,
        max_attempts=3,
        lease_run_id=None,
        lease_until=None,
        not_before=None,
        reason=EVIL,
        created_at=NOW - 60,
        updated_at=NOW,
    )
    base.update(changes)
    return Issue(**base)


@pytest.mark.parametrize(
    "html",
    [
        render.agent_card(agent(), Company("aliens", EVIL, "ALI"), 2, None, NOW),
        render.agent_list([agent(), agent(id="b", status=AgentStatus.IDLE)], []),
        render.issue_card(issue(), [], NOW),
        render.issue_list([issue(), issue(id="ALI-4", status=IssueStatus.TODO)], EVIL, True),
    ],
)
def test_outside_text_is_escaped(html: str) -> None:
    parsed = parse_html(html)
    assert EVIL in parsed.text or render.clip(EVIL, 80) in parsed.text
    assert "script" not in {e["type"] for e in parsed.entities}


def test_agent_card_tells_why_and_when() -> None:
    text = parse_html(render.agent_card(agent(), None, 2, None, NOW)).text
    assert "Status: error for 5m" in text
    assert "(agent_unauthorized)" in text
    assert "Inbox: 2 open issues" in text
    assert "Token version 2" in text


def test_counts_and_money() -> None:
    assert render.count(1, "company") == "1 company"
    assert render.count(2, "company") == "2 companies"
    assert render.count(0, "day") == "0 days"
    assert render.money(0) == "$0.00"
    assert render.money(0.006) == "$0.0060"
    assert render.money(1234.5) == "$1,234.50"
    assert render.ago(NOW - 90, NOW) == "1m30s ago"
    assert render.ago(None, NOW) == "never"


def test_long_lists_are_capped() -> None:
    many = [agent(id=f"agent-{i}", status=AgentStatus.IDLE) for i in range(400)]
    text = render.agent_list(many, [])
    assert "agent-299" in text and "agent-300" not in text
    assert "… and 100 more: /agents COMPANY narrows the list." in text


def test_a_run_line_shows_the_runtime_turn_id() -> None:
    from dataclasses import replace

    from bot.views.render import run_line
    from core import Run, RunStatus

    run = Run(
        id="r1",
        agent_id="bishop",
        issue_id="ALI-1",
        status=RunStatus.SUCCEEDED,
        reason="",
        reason_code="",
        started_at=0.0,
        deadline=60.0,
        ended_at=10.0,
        turns=1,
        max_turns=5,
        input_tokens=0,
        output_tokens=0,
        cost=0.0,
        model="m",
        summary="",
        last_progress_at=0.0,
    )
    assert "turn <code>" not in run_line(run, 20.0)
    assert "turn <code>oc-run-7</code>" in run_line(replace(run, external_id="oc-run-7"), 20.0)


def test_status_names_the_replicas_when_there_are_several_or_none_leads() -> None:
    from core import Replica

    lead = Replica("db1:41:ab12cd", "db1", 41, 0.0, 1.0, True)
    standby = Replica("db2:77:ef34ab", "db2", 77, 0.0, 1.0, False)
    assert "Replicas" not in render.status_board([], {}, 0.0, None, [lead])
    both = render.status_board([], {}, 0.0, None, [lead, standby])
    assert "Replicas: <code>db1:41:ab12cd</code> leads · <code>db2:77:ef34ab</code> stands by" in (
        both
    )
    alone = render.status_board([], {}, 0.0, None, [standby])
    assert "none leads right now" in alone
