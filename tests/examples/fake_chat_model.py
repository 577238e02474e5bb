"""An OpenAI-compatible chat-completions server on loopback, scripted per test (and per bench).

`with FakeChatModel(script) as model:` serves `POST /v1/chat/completions` on 127.0.0.1 (an
ephemeral port) from a thread. `script(call)` returns the answer to each request: `Say(text)`
(a plain reply) or `Tools(ToolCall(name, args), …)` (tool calls), or `Refuse(status)`; the
`Call` it gets holds the request body, its headers and how many assistant turns the
conversation already has. Each answer carries `usage` like a real endpoint's (prompt tokens: the
request's characters / 4; completion tokens: the answer's / 4, at least 1) and echoes the model,
and every call is kept in `model.calls` with the usage it was given.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self


@dataclass(frozen=True, slots=True)
class Say:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Tools:
    calls: tuple[ToolCall, ...]

    def __init__(self, *calls: ToolCall) -> None:
        object.__setattr__(self, "calls", calls)


@dataclass(frozen=True, slots=True)
class Refuse:
    status: int = 500
    message: str = "the fake model refuses (scripted)"


Answer = Say | Tools | Refuse


@dataclass(slots=True)
class Call:
    body: dict[str, Any]
    headers: dict[str, str]
    answer: Answer | None = None
    usage: dict[str, int] = field(default_factory=dict)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages") or [])

    @property
    def turn(self) -> int:
        """Assistant messages already in the conversation: 0 on the first call of a run."""
        return sum(1 for m in self.messages if m.get("role") == "assistant")

    @property
    def prompt(self) -> str:
        """The first user message: the issue, as the agent put it."""
        return next((str(m.get("content")) for m in self.messages if m["role"] == "user"), "")

    def tool_results(self) -> list[str]:
        return [str(m.get("content")) for m in self.messages if m.get("role") == "tool"]


Script = Callable[[Call], Answer]


def finish_at_once(call: Call) -> Answer:
    """The cheapest good agent: one model call, answered with a finish."""
    if call.turn == 0:
        return Tools(ToolCall("finish", {"outcome": "done", "summary": "did it in one go"}))
    return Say("finished")


class FakeChatModel:
    def __init__(self, script: Script = finish_at_once) -> None:
        self.script = script
        self.calls: list[Call] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def answer(self, call: Call) -> tuple[int, dict[str, Any]]:
        answer = self.script(call)
        with self._lock:
            call.answer = answer
            self.calls.append(call)
            n = next(self._ids)
        if isinstance(answer, Refuse):
            error = {"message": answer.message, "type": "server_error"}
            return answer.status, {"error": error}
        message: dict[str, Any] = {"role": "assistant", "content": None}
        if isinstance(answer, Say):
            message["content"] = answer.text
            finish = "stop"
        else:
            message["tool_calls"] = [
                {
                    "id": f"call_{n}_{i}",
                    "type": "function",
                    "function": {"name": c.name, "arguments": json.dumps(c.args)},
                }
                for i, c in enumerate(answer.calls)
            ]
            finish = "tool_calls"
        prompt = len(json.dumps(call.body)) // 4
        completion = max(1, len(json.dumps(message)) // 4)
        call.usage = {"prompt_tokens": prompt, "completion_tokens": completion}
        return 200, {
            "id": f"chatcmpl-{n}",
            "object": "chat.completion",
            "model": call.body.get("model"),
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {**call.usage, "total_tokens": prompt + completion},
        }

    def totals(self) -> tuple[int, int]:
        """(prompt, completion) tokens answered so far."""
        with self._lock:
            return (
                sum(c.usage.get("prompt_tokens", 0) for c in self.calls),
                sum(c.usage.get("completion_tokens", 0) for c in self.calls),
            )


def _handler(model: FakeChatModel) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path.rstrip("/") != "/v1/chat/completions":
                return self._send(404, {"error": {"message": f"no route {self.path}"}})
            size = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(size) or b"{}")
            except ValueError:
                return self._send(400, {"error": {"message": "not JSON"}})
            call = Call(body=body, headers={k.lower(): v for k, v in self.headers.items()})
            self._send(*model.answer(call))

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the test reads `model.calls`

    return Handler
