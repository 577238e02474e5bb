"""A fake OpenAI Responses API on loopback, for the real Codex CLI (a custom model provider).

Codex 0.171 speaks only the Responses API to a provider (`wire_api = "responses"`): `POST
/v1/responses` with `stream: true`, its instructions as a `developer` message in `input`, the
prompt as a `user` message, each tool result as a `function_call_output` item, and its tools
in `tools` — the shell is `exec_command` (`{"cmd": "…"}`); older releases called it
`shell_command` (`{"command": "…"}`) or `shell` (`{"command": ["bash", "-lc", "…"]}`), and this
answers with whichever the request offers. The answer is the SSE stream the API sends:
`response.created`, `response.output_item.added`, the deltas (`response.output_text.delta` or
`response.function_call_arguments.delta`), `response.output_item.done`, and
`response.completed` with the usage Codex reports in its `turn.completed` event. `GET
/v1/models` lists one model; anything else is logged and gets a 404.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

from tests.agents.agent_script import Call, Move, Say, Shell
from tests.agents.fake_server import FakeModelServer, Replier, rough_tokens, text_of

MODEL = "fake-codex-model"
# The shell tools of Codex releases, newest first, and how each takes a command.
SHELL_TOOLS = {
    "exec_command": lambda cmd: {"cmd": cmd},
    "shell_command": lambda cmd: {"command": cmd},
    "shell": lambda cmd: {"command": ["bash", "-lc", cmd]},
}


class FakeOpenAI(FakeModelServer):
    """A provider's `base_url` is `base_url` (it ends in /v1)."""

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    def read_call(self, path: str, body: dict[str, Any]) -> Call | None:
        if not path.endswith("/v1/responses"):
            return None
        prompt: list[str] = []
        system = [text_of(body.get("instructions"))]
        results: list[str] = []
        for item in body.get("input") or []:
            if not isinstance(item, dict):
                continue
            kind = item.get("type", "message")
            if kind == "function_call_output":
                output = item.get("output")
                results.append(
                    text_of(output.get("content") if isinstance(output, dict) else output)
                )
            elif kind == "message" and item.get("role") == "user":
                prompt.append(text_of(item.get("content")))
            elif kind == "message" and item.get("role") in ("developer", "system"):
                system.append(text_of(item.get("content")))
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
        shell = next((name for name in SHELL_TOOLS if name in call.tools), None)
        if isinstance(move, Shell) and shell is None:
            move = call.move = Say(f"(no shell tool offered; would have run: {move.command})")
        item: dict[str, Any]
        if isinstance(move, Shell):
            assert shell is not None
            arguments = json.dumps(SHELL_TOOLS[shell](move.command))
            item = {
                "type": "function_call",
                "id": "fc_" + secrets.token_hex(12),
                "call_id": "call_" + secrets.token_hex(12),
                "name": shell,
                "arguments": arguments,
                "status": "completed",
            }
            said = arguments
        else:
            item = {
                "type": "message",
                "id": "msg_" + secrets.token_hex(12),
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": move.text, "annotations": []}],
            }
            said = move.text
        output_tokens = rough_tokens(said)
        input_tokens = rough_tokens(call.body.get("input"))
        usage = {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        }
        response = {
            "id": "resp_" + secrets.token_hex(12),
            "object": "response",
            "created_at": int(time.time()),
            "model": str(call.body.get("model") or MODEL),
            "status": "in_progress",
            "output": [],
        }
        out.sse(_events(response, item, usage))

    def other(self, method: str, path: str, body: Any, out: Replier) -> None:
        if method == "GET" and path.endswith("/v1/models"):
            out.json(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
            return
        error = {"message": f"fake OpenAI: no {method} {path}", "type": "invalid_request_error"}
        out.json(404, {"error": error})


def _events(
    response: dict[str, Any], item: dict[str, Any], usage: dict[str, Any]
) -> Iterator[tuple[str, Any]]:
    seq = iter(range(1_000_000))

    def event(kind: str, **fields: Any) -> tuple[str, Any]:
        return kind, {"type": kind, "sequence_number": next(seq), **fields}

    yield event("response.created", response=response)
    yield event("response.in_progress", response=response)
    if item["type"] == "function_call":
        yield event("response.output_item.added", output_index=0, item={**item, "arguments": ""})
        args = item["arguments"]
        cut = len(args) // 2
        for piece in (args[:cut], args[cut:]):
            yield event(
                "response.function_call_arguments.delta",
                item_id=item["id"],
                output_index=0,
                delta=piece,
            )
        yield event(
            "response.function_call_arguments.done",
            item_id=item["id"],
            output_index=0,
            arguments=args,
        )
    else:
        text = item["content"][0]["text"]
        yield event(
            "response.output_item.added",
            output_index=0,
            item={**item, "status": "in_progress", "content": []},
        )
        part = {"type": "output_text", "text": "", "annotations": []}
        yield event(
            "response.content_part.added",
            item_id=item["id"],
            output_index=0,
            content_index=0,
            part=part,
        )
        yield event(
            "response.output_text.delta",
            item_id=item["id"],
            output_index=0,
            content_index=0,
            delta=text,
        )
        yield event(
            "response.output_text.done",
            item_id=item["id"],
            output_index=0,
            content_index=0,
            text=text,
        )
        yield event(
            "response.content_part.done",
            item_id=item["id"],
            output_index=0,
            content_index=0,
            part={**part, "text": text},
        )
    yield event("response.output_item.done", output_index=0, item=item)
    done = {**response, "status": "completed", "output": [item], "usage": usage}
    yield event("response.completed", response=done)
