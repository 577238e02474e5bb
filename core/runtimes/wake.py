"""The wake message: what an agent woken by text (OpenClaw, a CLI preset) reads to do one run.

Short and imperative, because it reaches the model as the user's turn: why it woke, what to work
on, and where the protocol is. The protocol itself lives in the agent skill (fleetbot/agent/
SKILL.md, printed by `fleetbot agent skill`), so the message only names it and shows the one
command every run must end with, plus a curl line for an agent with no fleetbot install (an
OpenClaw gateway on another host). It names no model: the runtime decides which model runs.

The run's token is valid for this run only. With `with_token=True` (OpenClaw: the message is all
the agent gets) it appears exactly once, in the `export` line every command starts with; with
`with_token=False` (a process runtime, which passes it as FLEETBOT_TOKEN) it does not appear.
"""

from __future__ import annotations

from core.runtimes.base import Dispatch

# 400 tokens at ~4 characters a token: the issue's body is cut to what the rest leaves (at least
# MIN_BODY_CHARS); `fleetbot agent show` has the whole issue.
MAX_CHARS = 1600
MIN_BODY_CHARS = 80
MAX_TITLE_CHARS = 120
MAX_NOTE_CHARS = 240
CUT = "… (the rest: `fleetbot agent show`)"

# Why the agent was woken, in its words; the wake note (when set) follows with the detail.
WHY = {
    "assigned": "It was just assigned to you.",
    "heartbeat": "It is waiting in your inbox.",
    "answer": "Your question was answered:",
    "approval": "Your approval request was decided:",
    "comment": "There is a new comment on this issue:",
}
FINISH = 'fleetbot agent finish --outcome done --summary "<what you did>"'


def wake_message(job: Dispatch, *, with_token: bool = True) -> str:
    """The message for `job`; with_token=True puts the run token in it: send that only to the
    agent's runtime."""
    url = job.api_url.rstrip("/")
    why = WHY.get(job.wake_reason, "")
    head = [f"fleetbot run {job.run_id}: please work on issue {job.issue_id}. {why}".rstrip()]
    note = _cut(" ".join(job.wake_note.split()), MAX_NOTE_CHARS, "…")
    if note:
        head.append(note)
    title = _cut(" ".join(str(job.issue.get("title") or "(untitled)").split()), MAX_TITLE_CHARS)
    if with_token:
        env = [
            "Report with `fleetbot agent` (see `fleetbot agent skill`); run this first in each "
            "shell:",
            f"export FLEETBOT_API_URL={url} FLEETBOT_RUN_ID={job.run_id} "
            f"FLEETBOT_ISSUE_ID={job.issue_id} FLEETBOT_TOKEN={job.token}",
        ]
    else:
        env = [
            "Report with `fleetbot agent` (see `fleetbot agent skill`); its FLEETBOT_* "
            "variables are set."
        ]
    tail = [
        "",
        *env,
        f"Done? {FINISH} (or blocked/failed, saying why).",
        f"""No fleetbot? curl -d '{{"outcome":"done","summary":"…"}}' -H "Authorization: """
        f"""Bearer $FLEETBOT_TOKEN" -H content-type:application/json """
        f"{url}/api/v1/runs/{job.run_id}/finish",
        f"API unreachable? Reply with your summary. Stop within {job.max_turns} turns.",
    ]
    frame = [*head, "", f"{job.issue_id}: {title}", *tail]
    room = MAX_CHARS - sum(len(line) + 1 for line in frame)
    body = str(job.issue.get("body") or "").strip() or "(no description)"
    body = _cut(body, max(room, MIN_BODY_CHARS), CUT)
    return "\n".join([*head, "", f"{job.issue_id}: {title}", body, *tail])


def _cut(text: str, limit: int, mark: str = "…") -> str:
    """`text`, or its start and `mark` in `limit` characters."""
    return text if len(text) <= limit else text[: max(limit - len(mark), 0)] + mark
