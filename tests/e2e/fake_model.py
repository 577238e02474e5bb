"""An OpenAI-compatible fake model on loopback, scripted per test, for the real-OpenClaw suite.

OpenClaw (provider `api: "openai-completions"`) calls `POST /v1/chat/completions` with
`stream: true` and `stream_options.include_usage`; this answers the way a provider does: SSE
chunks, then a usage chunk, then `[DONE]` (a plain JSON body when `stream` is false).

A test scripts a *scenario*: `tag = model.scenario(Reply("hi"))` returns a unique tag; the test
puts it in the issue's title, the wake message carries it into the prompt, and every model call
whose prompt holds it is answered by the scenario. Step *i* answers the call that follows the
turn's *i*-th tool call, so OpenClaw's retries of a failed call get the same answer, and what
OpenClaw appends after a tool result (an internal-context user message) does not matter. A
step is an answer, or a function of the `Call` that returns one (to build a command from the
prompt). Past its last step a scenario replies with the last tool output, so it never loops.

Answers: `Reply(text)`, `Exec(command)` (a tool call to OpenClaw's `exec`, which runs the command
in a shell on the gateway's host), `Fail(status)` (an HTTP error with an OpenAI error body);
each may wait `delay` seconds first. Calls without a known tag get `default`. Every call is
logged as a `Call`, with the wall-clock time its answer's last byte was sent.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

INTERNAL_CONTEXT = "<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>"


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer with this text and finish the turn."""

    text: str
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Exec:
    """Answer with a call to OpenClaw's `exec` tool running `command` in a shell."""

    command: str
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Fail:
    """Answer with an HTTP error and an OpenAI error body. How OpenClaw 2026.9.6 takes it:
    400 (or 422): a bad request, not retried; the turn fails within a second, reported as "LLM
    request failed: provider rejected the request schema or tool payload.". 5xx and 429: retried
    for 90 s or more before the turn fails. Never 401 or 403 on a shared gateway: OpenClaw then
    disables the provider's key for about a minute, and every turn fails without a call."""

    status: int = 400
    message: str = "the fake model refuses this request (scripted failure)"
    kind: str = "invalid_request_error"
    delay: float = 0.0


Answer = Reply | Exec | Fail


@dataclass(slots=True)
class Call:
    """One request the fake model received, and what it answered."""

    path: str
    tag: str | None  # the scenario it belonged to
    step: int  # tool calls earlier in this turn
    prompt: str  # the user message that carried the tag (else the last real user message)
    tool_results: list[str]  # the outputs of this turn's tool calls so far
    body: dict[str, Any] = field(repr=False)
    received_at: float  # wall clock, as every timestamp here
    answer: Answer | None = None
    status: int = 0
    final_chunk_at: float | None = None  # when the answer's last byte was written


Step = Answer | Callable[[Call], Answer]


def text_of(content: Any) -> str:
    """The text of a chat message's content: a string, or a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict):
                parts.append(str(part.get("text") or part.get("content") or ""))
            else:
                parts.append(str(part))
        return "".join(parts)
    return json.dumps(content)


class FakeModel:
    """`with FakeModel() as model:` serves on 127.0.0.1 (an ephemeral port) until closed."""

    def __init__(self, default: Answer = Reply("ok from the fake model")) -> None:
        self.default = default
        self._scenarios: dict[str, tuple[Step, ...]] = {}
        self._calls: list[Call] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        if self._server is not None:
            return self
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="fake-model")
        self._thread.start()
        return self

    def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the fake model first"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """What OpenClaw's provider config takes as `baseUrl`."""
        return f"http://127.0.0.1:{self.port}/v1"

    def scenario(self, *steps: Step, tag: str | None = None) -> str:
        """Register `steps` under a fresh tag (or `tag`) and return it."""
        if not steps:
            raise ValueError("a scenario needs at least one step")
        tag = tag or f"scenario-{secrets.token_hex(4)}"
        with self._lock:
            self._scenarios[tag] = steps
        return tag

    def calls(self, tag: str | None = None) -> list[Call]:
        """Every model call so far (those of one scenario with `tag`), oldest first."""
        with self._lock:
            return [c for c in self._calls if tag is None or c.tag == tag]

    def turns(self, tag: str) -> int:
        """How many turns of this scenario reached the model: each starts with a step-0 call
        (retries of a failed step-0 call are the same turn, so only answered ones count)."""
        return sum(1 for c in self.calls(tag) if c.step == 0 and c.status == 200)

    def _tags(self) -> list[str]:
        with self._lock:
            return list(self._scenarios)

    def classify(self, path: str, body: dict[str, Any]) -> Call:
        """The call a request body is: which scenario, which step, its prompt."""
        messages = _messages(body)
        tags = self._tags()
        at, tag = -1, None
        for i in range(len(messages) - 1, -1, -1):
            if messages[i].get("role") != "user":
                continue
            text = text_of(messages[i].get("content"))
            found = next((t for t in tags if t in text), None)
            if found is not None:
                at, tag = i, found
                break
        if tag is None:  # no scenario: the last user message that is not OpenClaw's own
            at = next(
                (
                    i
                    for i in range(len(messages) - 1, -1, -1)
                    if messages[i].get("role") == "user"
                    and not text_of(messages[i].get("content"))
                    .lstrip()
                    .startswith(INTERNAL_CONTEXT)
                ),
                -1,
            )
        after = messages[at + 1 :] if at >= 0 else []
        return Call(
            path=path,
            tag=tag,
            step=sum(1 for m in after if m.get("role") == "assistant" and m.get("tool_calls")),
            prompt=text_of(messages[at].get("content")) if at >= 0 else "",
            tool_results=[text_of(m.get("content")) for m in after if m.get("role") == "tool"],
            body=body,
            received_at=time.time(),
        )

    def answer(self, call: Call) -> Answer:
        if call.tag is None:
            return self.default
        with self._lock:
            steps = self._scenarios[call.tag]
        if call.step >= len(steps):
            last = call.tool_results[-1].strip() if call.tool_results else ""
            return Reply(f"done: {last}" if last else "done")
        step = steps[call.step]
        return step(call) if callable(step) else step

    def _record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []


def _usage(body: dict[str, Any], text: str) -> dict[str, int]:
    """Roughly four characters a token, so usage grows with the prompt as a real model's does."""
    prompt = max(1, len(json.dumps(body.get("messages") or "")) // 4)
    completion = max(1, len(text) // 4)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _chunks(model: str, answer: Reply | Exec, usage: dict[str, int] | None) -> Iterator[str]:
    """The SSE `data:` payloads of a streamed chat completion."""
    base = {
        "id": "chatcmpl-" + secrets.token_hex(6),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return json.dumps({**base, "choices": [choice]})

    yield chunk({"role": "assistant", "content": ""})
    if isinstance(answer, Reply):
        half = max(1, len(answer.text) // 2)
        for piece in (answer.text[:half], answer.text[half:]):
            if piece:
                yield chunk({"content": piece})
        yield chunk({}, "stop")
    else:
        call_id = "call_" + secrets.token_hex(5)
        yield chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": call_id,
                        "type": "function",
                        "function": {"name": "exec", "arguments": ""},
                    }
                ]
            }
        )
        arguments = json.dumps({"command": answer.command})
        yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments}}]})
        yield chunk({}, "tool_calls")
    if usage is not None:
        yield json.dumps({**base, "choices": [], "usage": usage})
    yield "[DONE]"


def _completion(model: str, answer: Reply | Exec, usage: dict[str, int]) -> dict[str, Any]:
    """A non-streamed chat completion."""
    message: dict[str, Any] = {"role": "assistant", "content": None}
    finish = "stop"
    if isinstance(answer, Reply):
        message["content"] = answer.text
    else:
        finish = "tool_calls"
        message["tool_calls"] = [
            {
                "id": "call_" + secrets.token_hex(5),
                "type": "function",
                "function": {"name": "exec", "arguments": json.dumps({"command": answer.command})},
            }
        ]
    return {
        "id": "chatcmpl-" + secrets.token_hex(6),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage,
    }


def _handler(model: FakeModel) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "fake-model/1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the call log is the record; stderr stays quiet

        def do_GET(self) -> None:
            if self.path.split("?")[0].rstrip("/") in ("/v1/models", "/models"):
                models = [{"id": "cheap", "object": "model", "owned_by": "fake"}]
                self._json(200, {"object": "list", "data": models})
            else:
                self._json(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                body = {}
            path = self.path.split("?")[0].rstrip("/")
            if not path.endswith("/chat/completions") or not isinstance(body, dict):
                self._json(404, {"error": {"message": f"no route {self.path}"}})
                return
            call = model.classify(path, body)
            model._record(call)
            try:
                answer = model.answer(call)
            except Exception as exc:  # a broken scenario: fail the turn at once (400)
                answer = Fail(400, f"the fake model's scenario raised {exc!r}")
            call.answer = answer
            if answer.delay:
                time.sleep(answer.delay)
            # OpenClaw may give up on the call (an abort, a timeout) while it is answered.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self._answer(call, answer, body)
            call.final_chunk_at = time.time()

        def _answer(self, call: Call, answer: Answer, body: dict[str, Any]) -> None:
            if isinstance(answer, Fail):
                call.status = answer.status
                error = {"message": answer.message, "type": answer.kind, "code": answer.kind}
                self._json(answer.status, {"error": error})
                return
            call.status = 200
            name = str(body.get("model") or "cheap")
            text = answer.text if isinstance(answer, Reply) else answer.command
            usage = _usage(body, text)
            if not body.get("stream"):
                self._json(200, _completion(name, answer, usage))
                return
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("cache-control", "no-cache")
            self.send_header("connection", "close")
            self.end_headers()
            self.close_connection = True
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            for data in _chunks(name, answer, usage if include_usage else None):
                self.wfile.write(f"data: {data}\n\n".encode())
                self.wfile.flush()

        def _json(self, status: int, obj: Any) -> None:
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler
