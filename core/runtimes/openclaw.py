"""The `openclaw` runtime: wake an agent through an OpenClaw gateway's `POST /hooks/agent`.

The gateway starts an isolated agent turn with a plain-text message and answers at once; the
agent then works through the fleetbot API like any other. OpenClaw may log hook messages, so the
message names the file that holds the run token, never the token itself.
"""

from __future__ import annotations

import json

from core.config import OpenClawRuntime
from core.errors import AgentBadReply
from core.runtimes.base import ACCEPTED, Dispatch, DispatchResult
from core.runtimes.webhook import WebhookRuntime, excerpt, public_url, status_line


def hook_message(job: Dispatch) -> str:
    """The instructions the agent reads: its run, issue, API, token file and how to report."""
    issue = job.issue
    api = job.api_url.rstrip("/")
    run = f"{api}/api/v1/runs/{job.run_id}"
    if job.token_file is not None:
        token_line = (
            f"your FLEETBOT token is in the file {job.token_file}; read it from there when you "
            "call the API and never paste it into a message, log or file"
        )
    else:
        token_line = "use the FLEETBOT token the operator gave you; never paste it anywhere"
    body = str(issue.get("body") or "").strip() or "(no description)"
    return "\n".join(
        [
            f"You have work from fleetbot: run {job.run_id}.",
            "",
            f"Issue {issue.get('id', '?')}: {issue.get('title', '(untitled)')}",
            body,
            "",
            f"Work on this issue through the fleetbot API ({api}/api/v1).",
            f"Authenticate every call with `Authorization: Bearer <token>`: {token_line}.",
            f"Use the model {job.model} and stop after at most {job.max_turns} turns.",
            "",
            "Report back:",
            f"- usage as you go: POST {run}/usage with JSON "
            '{"turns": N, "input_tokens": N, "output_tokens": N, "cost": USD, '
            f'"model": "{job.model}"}}',
            f"- when you stop: POST {run}/finish with JSON "
            '{"outcome": "done" | "failed" | "blocked", "summary": "one or two sentences"}',
        ]
    )


class OpenClawAgentRuntime(WebhookRuntime[OpenClawRuntime]):
    """Hands each dispatch to an OpenClaw gateway as an isolated, undelivered agent turn."""

    kind = "openclaw"

    async def dispatch(self, job: Dispatch) -> DispatchResult:
        """POST the hook; any 2xx hands the run over unless the gateway says `ok: false`."""
        self._check_open()
        url = self._config.url.rstrip("/") + "/hooks/agent"
        who = f"the OpenClaw gateway at {public_url(url)}"
        ref = self._config.token_ref()
        note = " (it must equal hooks.token in the gateway's config)"
        token = self._secret(ref, f"the hooks token for {who}", note)
        left = self._time_left(job, who)
        payload = {
            "message": hook_message(job),
            "agentId": self._config.agent_id or job.agent_id,
            "name": job.agent_name,
            "deliver": False,  # the run's outcome goes to fleetbot, not to a chat channel
            "timeoutSeconds": max(1, int(left)),
        }
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": job.run_id}
        secrets = [token, job.token]
        response, body = await self._post(
            url,
            payload,
            left=left,
            headers=headers,
            secrets=secrets,
            who=who,
            refused_hint=(
                f"the hooks token was refused. Check that {ref.describe()} holds the same "
                "value as hooks.token in the gateway's config."
            ),
        )
        try:
            data = json.loads(body) if body.strip() else None
        except ValueError:
            data = None  # the contract is "any 2xx"; a non-JSON acknowledgement is still one
        if isinstance(data, dict) and data.get("ok") is False:
            raise AgentBadReply(
                f"{who} answered {status_line(response)} but refused the hook "
                f'("{excerpt(body, secrets)}"); check the gateway\'s logs and hooks settings '
                "(e.g. hooks.allowedAgentIds)."
            )
        return ACCEPTED
