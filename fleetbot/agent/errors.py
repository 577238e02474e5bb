"""What can go wrong in `fleetbot agent`, as one exception with the exit code and the next step.

An agent reads our error messages as its next instruction, so each one says what happened and
what to do next, and carries the exit code the command ends with:

    AgentError(exit, message, code)   code: the API's machine code, or one of ours
        exit 1  ERROR        anything else (an answer we do not understand)
        exit 2  USAGE        bad arguments or missing settings; a 422 or 413 from the API
        exit 3  AUTH         401 (the reason code decides the advice), 403, no token
        exit 4  NOT_FOUND    404
        exit 5  CONFLICT     409: the run is over, another run holds the issue, a refused move;
                             also a question cancelled while waiting for it
        exit 6  UNREACHABLE  no connection, no answer in time, or 503 after the client's retries
        exit 7  NO_ANSWER    a question still open when the wait ran out

`explain` maps the API's refusals (`{"error": code, "detail": sentence}`, core/api/errors.py).
No httpx here: `--help`, `skill` and argument errors never load it.
"""

from __future__ import annotations

from typing import Any

OK, ERROR, USAGE, AUTH, NOT_FOUND, CONFLICT, UNREACHABLE, NO_ANSWER = range(8)

END_TURN = "end your turn with your summary as the reply (fleetbot records it when the turn ends)"


class AgentError(Exception):
    """A command that did not work: `message` says what to do next; `exit` is the exit code."""

    def __init__(self, exit: int, message: str, code: str = "", status: int = 0) -> None:
        super().__init__(message)
        self.exit = exit
        self.message = message
        self.code = code
        self.status = status

    def json(self) -> dict[str, Any]:
        return {
            "ok": False,
            "error": self.code,
            "status": self.status or None,
            "message": self.message,
            "exit": self.exit,
        }


# 401 reason codes (core.models.AuthReason): what the agent should do about each.
_AUTH_ADVICE = {
    "run_ended": "this run is over; stop working and end your turn (a new run brings a new token)",
    "expired": f"your token expired; stop working and {END_TURN}",
    "revoked": f"your token was revoked (the owner rotated it); stop working and {END_TURN}",
    "missing_token": "no token was sent; set FLEETBOT_TOKEN or pass --token-file FILE",
    "malformed": "FLEETBOT_TOKEN is not a token; use the exact one your wake gave you",
}
_CONFLICT_ADVICE = {
    "run_not_active": "this run has already ended; stop working and end your turn",
    "max_turns_exceeded": "this run reached its turn cap and was stopped; stop working and end "
    "your turn",
    "lease_conflict": "another live run holds this issue (another agent's, or an earlier run of "
    "yours): it is being worked on elsewhere. Leave it alone in this run and end your turn",
    "no_open_question": "this issue has no open question, so the run cannot wait for one; ask "
    "first (`fleetbot agent ask`), or finish done, blocked or failed",
}


def explain(status: int, body: Any, retry_after: str | None = None) -> AgentError:
    """The AgentError for an API refusal: its status, and the `{"error", "detail"}` body."""
    body = body if isinstance(body, dict) else {}
    code = str(body.get("error") or "")
    detail = str(body.get("detail") or "").strip().rstrip(".")
    said = f"{detail}; " if detail else ""
    if status == 401:
        advice = _AUTH_ADVICE.get(code) or (
            f"fleetbot refused the token ({code or 'no reason given'}); check that "
            f"FLEETBOT_TOKEN is the one your wake gave you, else {END_TURN}"
        )
        # Our advice replaces the server's sentence, which speaks to an operator.
        return AgentError(AUTH, advice, code or "unauthorized", status)
    if status == 403:
        if code == "not_your_run":
            advice = "use the run id your wake gave you (FLEETBOT_RUN_ID)"
        else:
            advice = (
                "you may not do this; carry on without it, or say in your summary what you need"
            )
        return AgentError(AUTH, f"{said}{advice}", code or "forbidden", status)
    if status == 404:
        hint = {
            "issue_not_found": "check the issue id; `fleetbot agent inbox` lists yours",
            "run_not_found": "check the run id (FLEETBOT_RUN_ID)",
            "question_not_found": "check the question id (Q7 or 7)",
        }.get(code, "check the id")
        return AgentError(NOT_FOUND, f"{said}{hint}", code or "not_found", status)
    if status == 409:
        known = _CONFLICT_ADVICE.get(code)
        if known is None:
            text = f"{said}`fleetbot agent show` shows the issue as it is now"
        else:
            text = f"{known} ({detail})" if detail else known
        return AgentError(CONFLICT, text, code or "conflict", status)
    if status in (413, 422):
        choices = body.get("choices")
        if code == "ambiguous_assignee" and isinstance(choices, list):
            what = f"pick one agent id with --to: {', '.join(map(str, choices))}"
        else:
            what = "too long; shorten it" if status == 413 else "fix the arguments and try again"
        return AgentError(USAGE, f"{said}{what}", code or "invalid", status)
    if status == 503:
        wait = f" (it asked for {retry_after} s)" if retry_after else ""
        return AgentError(
            UNREACHABLE,
            f"{said}fleetbot cannot serve this now{wait}; try once more in a minute, else "
            f"{END_TURN}",
            code or "unavailable",
            status,
        )
    return AgentError(
        ERROR, f"the API answered {status}: {detail or 'no detail'}", code or "http", status
    )
