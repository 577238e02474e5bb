"""Short human text for each answer of the agent API: what an LLM reads after a command.

A line or two each, ending with the next step where there is one. `--json` skips all of this
and prints the API's own JSON (the schemas in /openapi.json).
"""

from __future__ import annotations

import time
from typing import Any

END = "End your turn now."


def when(epoch: Any) -> str:
    if not isinstance(epoch, int | float):
        return "?"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch))


def me(d: dict[str, Any]) -> str:
    run = f"; run {d['run_id']}" if d.get("run_id") else ""
    skills = ", ".join(d.get("skills") or []) or "none"
    return (
        f"{d.get('agent_id')} ({d.get('name')}), {d.get('role')} at {d.get('company_id')}{run}\n"
        f"skills: {skills}; token key {d.get('kid')}, expires {when(d.get('expires_at'))}"
    )


def issue_line(d: dict[str, Any]) -> str:
    who = f" @{d['assignee_id']}" if d.get("assignee_id") else ""
    # Medium is the default: naming it on every line would only hide the ones that differ.
    prio = d.get("priority")
    tag = f" !{prio}" if prio and prio != "medium" else ""
    return f"{d.get('id')} [{d.get('status')}]{tag}{who} {d.get('title')}"


def inbox(items: list[dict[str, Any]]) -> str:
    if not items:
        return "Your inbox is empty: nothing to do."
    return "\n".join(issue_line(d) for d in items)


def issue(d: dict[str, Any]) -> str:
    lines = [issue_line(d)]
    facts = [f"attempt {d.get('attempts')}/{d.get('max_attempts')}"]
    if d.get("model"):
        facts.append(f"model {d['model']}")
    if d.get("reason"):
        facts.append(f"reason: {d['reason']}")
    lines.append(" · ".join(facts))
    lines.append((d.get("body") or "").strip() or "(no description)")
    comments = d.get("comments") or []
    if comments:
        lines.append(f"Comments ({len(comments)}):")
        lines += [f"- {c.get('author')}: {c.get('body')}" for c in comments]
    questions = d.get("questions") or []
    if questions:
        lines.append(f"Questions ({len(questions)}):")
        lines += [f"- {question(q)}" for q in questions]
    return "\n".join(lines)


def question(q: dict[str, Any]) -> str:
    qid, status = f"Q{q.get('id')}", q.get("status")
    text = f'"{q.get("text")}"'
    if status == "answered":
        return f"{qid} {text} answered by {q.get('answered_by')}: {q.get('answer')}"
    if status == "cancelled":
        return f"{qid} {text} was cancelled (the issue moved on); stop waiting for it"
    choices = q.get("choices") or []
    kind = "approval" if q.get("kind") == "approval" else "question"
    offered = f" (choices: {' / '.join(choices)})" if choices else ""
    return f"{qid} {text}: {kind} still open{offered}"


def asked(q: dict[str, Any]) -> str:
    qid = f"Q{q.get('id')}"
    return (
        f"Asked {qid} on {q.get('issue_id')}. Now either end this run and get woken with the "
        f'answer: `fleetbot agent finish --outcome waiting --summary "waiting on {qid}"`, '
        f"or wait here: `fleetbot agent wait-answer {qid}`."
    )


def no_answer(q: dict[str, Any], waited: float) -> str:
    qid = f"Q{q.get('id')}"
    return (
        f"No answer to {qid} after {waited:.0f} s. Wait longer (`fleetbot agent wait-answer "
        f"{qid}`), or end this run and get woken with the answer: `fleetbot agent finish "
        f'--outcome waiting --summary "waiting on {qid}"`.'
    )


def claimed(d: dict[str, Any], run: str) -> str:
    return f"Claimed {d.get('id')} for run {run}; it is {d.get('status')}."


def commented(d: dict[str, Any]) -> str:
    return f"Commented on {d.get('issue_id')} (comment {d.get('id')})."


def usage(d: dict[str, Any]) -> str:
    return (
        f"Run {d.get('id')}: {d.get('turns')}/{d.get('max_turns')} turns, "
        f"{d.get('input_tokens')} in + {d.get('output_tokens')} out tokens, "
        f"${float(d.get('cost') or 0):.4f}, model {d.get('model')}."
    )


def finished(d: dict[str, Any], outcome: str) -> str:
    if outcome == "waiting":
        return f"Run {d.get('id')} ended; fleetbot wakes you with the answer. {END}"
    return f"Run {d.get('id')} ended {d.get('status')} ({outcome}). {END}"


def filed(d: dict[str, Any]) -> str:
    return f"Filed {issue_line(d)}."


def posted(d: dict[str, Any]) -> str:
    return f"Posted summary {d.get('id')} to your team chat."
