"""The wake message: what an agent woken by text (OpenClaw) reads to do one run of work.

Short and imperative, because it reaches the model as the user's turn: what to work on, how to
report, and a token that is valid for this run only, so an agent on another host or in a
container can call back and no agent ever learns where long-lived tokens live. It names no
model: the runtime decides which model runs the turn. The protocol itself is in the agent
skill (`fleetbot agent skill`); the message carries only what this run needs.
"""

from __future__ import annotations

from core.runtimes.base import Dispatch

MAX_BODY_CHARS = 1500  # the issue text; the agent can read the whole issue through the API

WHY = {
    "assigned": "This issue was just assigned to you.",
    "heartbeat": "This issue is waiting in your inbox.",
    "answer": "The owner answered your question; the answer is in the issue's comments.",
    "comment": "Someone commented on this issue.",
    "approval": "The owner decided on your approval request; it is in the issue's comments.",
    "planner": "Your company's queue is empty: file the next work.",
    "routine": "This is a recurring routine.",
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
            f"fleetbot API {api}, header `Authorization: Bearer {job.token}` (valid for this "
            "run only). When you are done, call:",
            f"curl -s -X POST {api}/runs/{job.run_id}/finish -H 'Authorization: Bearer "
            f"{job.token}' -H 'Content-Type: application/json' -d "
            """'{"outcome":"done","summary":"<what you did, in one or two sentences>"}'""",
            'Use "blocked" (you need something) or "failed" (it cannot be done) instead of '
            '"done" when that is the truth. If you cannot reach the API, end your turn with the '
            "summary as your reply: fleetbot records it and sends the work to review.",
            f"Stop within {job.max_turns} turns. With the fleetbot CLI installed, "
            "`fleetbot agent skill` shows the whole protocol.",
        ]
    )
