"""The loopback HTTP server both fake models stand on: a thread, a call log, JSON and SSE replies.

A subclass reads a request into a `Call` (`read_call`), and answers it (`answer`); everything
else — threading, the log, the bodies that are not model calls — is here. Every request is
kept in `requests` (method, path, body), model calls in `calls()`, so a test can assert on
exactly what a CLI sent.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

from tests.agents.agent_script import Call, Move, Say, next_move

Script = Callable[[Call], Move]


@dataclass(slots=True)
class Request:
    method: str
    path: str
    headers: dict[str, str] = field(repr=False)
    body: Any = field(repr=False)


class Replier:
    """What an answer writes to: a JSON body, or an SSE stream of events."""

    def __init__(self, handler: BaseHTTPRequestHandler) -> None:
        self._h = handler

    def json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self._h.send_response(status)
        self._h.send_header("content-type", "application/json")
        self._h.send_header("content-length", str(len(data)))
        self._h.end_headers()
        self._h.wfile.write(data)

    def sse(self, events: Iterable[tuple[str | None, Any]]) -> None:
        """`(event name or None, data)` pairs; data that is not a str is sent as JSON."""
        self._h.send_response(200)
        self._h.send_header("content-type", "text/event-stream")
        self._h.send_header("cache-control", "no-cache")
        self._h.send_header("connection", "close")
        self._h.end_headers()
        self._h.close_connection = True
        for name, data in events:
            text = data if isinstance(data, str) else json.dumps(data)
            head = f"event: {name}\n" if name else ""
            self._h.wfile.write(f"{head}data: {text}\n\n".encode())
            self._h.wfile.flush()


class FakeModelServer:
    """`with Sub(who) as model:` serves on 127.0.0.1 (an ephemeral port) until closed."""

    def __init__(self, who: str, script: Script | None = None) -> None:
        self.who = who  # how the fake agent signs its comment and summary
        self.script: Script = script or (lambda call: next_move(call, who))
        self.requests: list[Request] = []
        self._calls: list[Call] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # What a subclass provides.
    def read_call(self, path: str, body: dict[str, Any]) -> Call | None:
        """The model call this POST is, or None if it is not one (then `other` answers it)."""
        raise NotImplementedError

    def answer(self, call: Call, move: Move, out: Replier) -> None:
        raise NotImplementedError

    def other(self, method: str, path: str, body: Any, out: Replier) -> None:
        out.json(404, {"error": {"message": f"the fake model has no route {method} {path}"}})

    # The server.
    def start(self) -> Self:
        if self._server is None:
            server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
            server.daemon_threads = True
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever, name=type(self).__name__, daemon=True
            )
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
    def origin(self) -> str:
        assert self._server is not None, "start() the fake model first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def calls(self) -> list[Call]:
        """Every model call so far, oldest first."""
        with self._lock:
            return list(self._calls)

    def _serve(
        self, method: str, path: str, headers: dict[str, str], raw: bytes, out: Replier
    ) -> None:
        try:
            body: Any = json.loads(raw) if raw else {}
        except ValueError:
            body = raw.decode("utf-8", "replace")
        with self._lock:
            self.requests.append(Request(method, path, headers, body))
        route = path.split("?")[0].rstrip("/")
        call = self.read_call(route, body) if method == "POST" and isinstance(body, dict) else None
        if call is None:
            self.other(method, route, body, out)
            return
        with self._lock:
            self._calls.append(call)
        try:
            call.move = self.script(call)
        except Exception as exc:  # a broken script: say so, so the run's summary shows it
            call.move = Say(f"the fake model's script raised {exc!r}")
        self.answer(call, call.move, out)


def _handler(model: FakeModelServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "fake-model/1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the request log is the record; stderr stays quiet

        def _any(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            # The CLI may hang up (a timeout, its own exit) while it is answered.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                model._serve(self.command, self.path, dict(self.headers), raw, Replier(self))

        do_GET = do_POST = do_PUT = do_DELETE = _any

        def do_HEAD(self) -> None:
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

    return Handler


def text_of(content: Any) -> str:
    """The text of message content: a string, or a list of parts with `text`."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text") or "") if isinstance(part, dict) else str(part) for part in content
        )
    return json.dumps(content)


def rough_tokens(obj: Any) -> int:
    """About four characters a token, so usage grows with the conversation as a real model's."""
    return max(1, len(obj if isinstance(obj, str) else json.dumps(obj)) // 4)
