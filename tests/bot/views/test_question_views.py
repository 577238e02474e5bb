"""What the bot shows of questions: the card in each state, its buttons' data, the pinned card,
and a question alert inside a backlog digest."""

from __future__ import annotations

from dataclasses import replace

from bot.views import keyboards
from bot.views.alerts import digest_keyboard
from bot.views.questions import pinned_card, question_keyboard, render_question
from core.alerting.book import Alert, AlertKind, AlertMember, AlertState, Severity
from core.models import Question, QuestionKind, QuestionStatus

T0 = 1_767_225_600.0
Q = Question(
    id=7,
    company_id="aliens",
    issue_id="ALI-3",
    agent_id="ripley",
    run_id=None,
    kind=QuestionKind.APPROVAL,
    text="Deploy <b>now</b>?",
    choices=("Approve", "Reject"),
    status=QuestionStatus.OPEN,
    answer=None,
    answered_by=None,
    asked_at=T0,
    answered_at=None,
)


def _data(markup: object) -> list[list[str]]:
    rows = getattr(markup, "inline_keyboard", ())
    return [[b.callback_data for b in row] for row in rows]


def test_the_card_in_each_state() -> None:
    text = render_question(Q, None, None, T0 + 60)
    assert text.startswith("🛂 <b>Q7</b> · ripley asks for approval")
    assert "Deploy &lt;b&gt;now&lt;/b&gt;?" in text, "what the agent wrote is escaped"
    assert "Tap Approve or Reject" in text and "00:00 UTC" in text
    assert _data(question_keyboard(Q, alert_id=42)) == [
        ["v1:q:7:ans:0", "v1:q:7:ans:1"],
        ["v1:a:42:ack"],
    ]
    assert _data(question_keyboard(Q, can_answer=False)) == []
    answered = replace(
        Q, status=QuestionStatus.ANSWERED, answer="Reject", answered_by="tg:1", answered_name="Ann"
    )
    text = render_question(answered, None, None, T0)
    assert text.startswith("✅ <b>Q7</b> · approval answered by Ann (tg:1): <b>Reject</b>")
    assert "Tap" not in text and question_keyboard(answered) is None
    cancelled = replace(Q, status=QuestionStatus.CANCELLED, answer="ALI-3 done")
    assert "cancelled: ALI-3 done" in render_question(cancelled, None, None, T0)
    for row in _data(question_keyboard(Q)):
        for data in row:
            press = keyboards.decode(data)
            assert (press.kind, press.ref, press.verb) == (keyboards.Kind.QUESTION, "7", "ans")


def test_the_pinned_card() -> None:
    text, markup = pinned_card([Q, replace(Q, id=8, kind=QuestionKind.QUESTION)], T0)
    assert text.startswith("📌 <b>Waiting on you</b>: 2")
    assert _data(markup) == [["v1:q:7:show", "v1:q:8:show"]]
    empty, none = pinned_card([], T0)
    assert "nothing" in empty and none is None


def test_a_question_in_a_digest_keeps_a_way_to_its_card() -> None:
    member = AlertMember("question:question:7", "question:7", "aliens", "Q7", "x", "", T0, T0, None)
    alert = Alert(
        1,
        AlertKind.QUESTION,
        "question:Q7",
        Severity.WARNING,
        AlertState.FIRING,
        "Waiting on you",
        (),
        T0,
        T0,
        1,
        None,
        None,
        None,
        (member,),
    )
    assert _data(digest_keyboard([alert])) == [["v1:q:7:show"]]
