"""A fake Anthropic Messages API on loopback, for the real Claude Code CLI (ANTHROPIC_BASE_URL).

Claude Code 2.1 sends `POST /v1/messages?beta=true` with `stream: true`, the Bash tool among
its `tools`, the system prompt as text blocks in `system` (and environment notes as a `system`
message inside `messages`), and the conversation so far in `messages`: the prompt as the user's
text, each tool result as a user `tool_result` block. This answers the way the API does over
SSE: `message_start` (with input usage), one content block — `text` with `text_delta`s, or
`tool_use` with `input_json_delta`s of the Bash input — then `message_delta` (stop reason and
output usage) and `message_stop`. A non-streamed request gets the same message as one JSON
body; `/v1/messages/count_tokens` a count. Anything else the CLI asks is logged and gets a
404 in the API's error shape, so a request this does not know shows up in the test's log.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

from tests.agents.agent_script import Call, Move, Say, Shell
from tests.agents.fake_server import FakeModelServer, Replier, rough_tokens, text_of

BASH = "Bash"


class FakeAnthropic(FakeModelServer):
    """ANTHROPIC_BASE_URL is `origin` (the CLI appends /v1/messages)."""

    def read_call(self, path: str, body: dict[str, Any]) -> Call | None:
        if not path.endswith("/v1/messages"):
            return None
        prompt: list[str] = []
        system = [text_of(body.get("system"))]
        results: list[str] = []
        for message in body.get("messages") or []:
            if not isinstance(message, dict):
                continue
            content = message.get("content")
            blocks = content if isinstance(content, list) else [{"type": "text", "text": content}]
            for block in blocks:
                if not isinstance(block, dict):
                    continue
                if block.get("type") == "tool_result":
                    results.append(text_of(block.get("content")))
                elif block.get("type") == "text" and message.get("role") == "user":
                    prompt.append(str(block.get("text") or ""))
                elif block.get("type") == "text" and message.get("role") == "system":
                    system.append(str(block.get("text") or ""))
        tools = [str(t.get("name")) for t in body.get("tools") or [] if isinstance(t, dict)]
        return Call(
            path=path,
            body=body,
            prompt="\n".join(prompt),
            system="\n".join(system),
            tool_results=results,
            tools=tools,
        )

    def answer(self, call: Call, move: Move, out: Replier) -> None:
        if isinstance(move, Shell) and BASH not in call.tools:
            move = call.move = Say(f"(no {BASH} tool offered; would have run: {move.command})")
        model = str(call.body.get("model") or "claude-fake")
        usage = {"input_tokens": rough_tokens(call.body.get("messages")), "output_tokens": 0}
        block, deltas = _content(move)
        usage["output_tokens"] = rough_tokens("".join(deltas))
        stop = "tool_use" if isinstance(move, Shell) else "end_turn"
        message = {
            "id": "msg_" + secrets.token_hex(12),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**usage, "output_tokens": 1},
        }
        if not call.body.get("stream"):
            whole = dict(block)
            if whole["type"] == "text":
                whole["text"] = "".join(deltas)
            else:
                whole["input"] = json.loads("".join(deltas))
            out.json(200, {**message, "content": [whole], "stop_reason": stop, "usage": usage})
            return
        out.sse(_events(message, block, deltas, stop, usage))

    def other(self, method: str, path: str, body: Any, out: Replier) -> None:
        if method == "POST" and path.endswith("/v1/messages/count_tokens"):
            out.json(200, {"input_tokens": rough_tokens(body)})
            return
        error = {"type": "not_found_error", "message": f"fake Anthropic: no {method} {path}"}
        out.json(404, {"type": "error", "error": error})


def _content(move: Move) -> tuple[dict[str, Any], list[str]]:
    """The content block to start, and the deltas that fill it."""
    if isinstance(move, Say):
        half = max(1, len(move.text) // 2)
        return {"type": "text", "text": ""}, [p for p in (move.text[:half], move.text[half:]) if p]
    tool_input = json.dumps({"command": move.command, "description": "Report to fleetbot"})
    block = {"type": "tool_use", "id": "toolu_" + secrets.token_hex(12), "name": BASH, "input": {}}
    cut = len(tool_input) // 2  # split mid-JSON, as the API does
    return block, [tool_input[:cut], tool_input[cut:]]


def _events(
    message: dict[str, Any],
    block: dict[str, Any],
    deltas: list[str],
    stop: str,
    usage: dict[str, int],
) -> Iterator[tuple[str, Any]]:
    yield "message_start", {"type": "message_start", "message": message}
    yield "content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}
    yield "ping", {"type": "ping"}
    for piece in deltas:
        delta = (
            {"type": "text_delta", "text": piece}
            if block["type"] == "text"
            else {"type": "input_json_delta", "partial_json": piece}
        )
        yield "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
    yield "content_block_stop", {"type": "content_block_stop", "index": 0}
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": usage["output_tokens"]},
        },
    )
    yield "message_stop", {"type": "message_stop"}
