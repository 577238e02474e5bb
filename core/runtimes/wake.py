"""The wake message: what an agent woken by text (OpenClaw) reads to do one run of work.

Short and imperative, because it reaches the model as the user's turn: what to work on, how to
report, and a token that is valid for this run only, so an agent on another host or in a
container can call back and no agent ever learns where long-lived tokens live. It names no
model: the runtime decides which model runs the turn. The token appears once, in the one
command the agent must run; everything else about the API the agent can ask the API.
"""

from __future__ import annotations

from core.runtimes.base import Dispatch

MAX_BODY_CHARS = 1500  # the issue text; the agent can read the whole issue through the API

# Why the agent was woken, in its words; the other wake reasons of the design (answer, comment,
# approval, planner, routine) get their line when the features that wake for them land.
WHY = {
    "assigned": "This issue was just assigned to you.",
    "heartbeat": "This issue is waiting in your inbox.",
}


def wake_message(job: Dispatch) -> str:
    """The message for `job`. It contains the run token: send it only to the agent's runtime."""
    api = job.api_url.rstrip("/") + "/api/v1"
    issue = job.issue
    body = str(issue.get("body") or "").strip() or "(no description)"
    if len(body) > MAX_BODY_CHARS:
        body = body[: MAX_BODY_CHARS - 1] + f"… (the rest: GET {api}/issues/{job.issue_id})"
    why = WHY.get(job.wake_reason, "")
    return "\n".join(
        [
            f"fleetbot run {job.run_id}: please work on issue {job.issue_id}. {why}".rstrip(),
            "",
            f"{job.issue_id}: {issue.get('title', '(untitled)')}",
            body,
            "",
            "When you are done, report it (the token is valid for this run only; use it as "
            f"`Authorization: Bearer …` for any other call to {api}):",
            f"curl -s -X POST {api}/runs/{job.run_id}/finish -H 'Content-Type: application/json'"
            f" -H 'Authorization: Bearer {job.token}' -d "
            """'{"outcome":"done","summary":"<what you did, in a sentence or two>"}'""",
            'Say "blocked" (you need something) or "failed" (it cannot be done) when that is '
            "true. If you cannot reach the API, end your turn with that summary as your reply.",
            f"Stop within {job.max_turns} turns.",
        ]
    )
