"""uvicorn serving the agent API inside the caller's event loop (next to the bot and core).

uvicorn's httptools protocol bounds neither the size of a request's head (request line and
headers) nor the time a client may take to send it: a client sending one header byte every few
seconds holds a connection forever. `_Protocol` adds both limits (`api.max_header`, a 431;
`api.header_timeout`, then a 408 and the connection closed); uvicorn's own keep-alive timeout
(`api.keep_alive`) closes idle connections between requests. Bodies are bounded by the app
(core.api.app, `api.max_body`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import socket
from collections.abc import Generator
from types import TracebackType
from typing import Any, cast

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from core.config.schema import ApiConfig
from core.errors import ConfigError

_END_OF_HEAD = b"\r\n\r\n"


class _InLoopServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The composition root owns SIGINT/SIGTERM; uvicorn must not take them over.
        yield


class _Config(uvicorn.Config):
    """uvicorn's config carrying the API's limits to each connection's protocol."""

    def __init__(self, app: FastAPI, limits: ApiConfig, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.limits = limits


class _Protocol(HttpToolsProtocol):
    """httptools' HTTP/1.1 protocol with a bounded request head: at most `max_header` bytes,
    sent within `header_timeout` of the connection opening or of the previous answer."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits = cast(_Config, config).limits
        self._max_head = limits.max_header
        self._head_timeout = limits.header_timeout
        self._head_timer: asyncio.TimerHandle | None = None
        self._awaiting = False  # the next bytes are (part of) a request head
        self._head_bytes = 0  # received since the awaited head began
        self._tail = b""  # the last 3 of them: the head's end may straddle two reads

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._awaiting:
            self._head_bytes += len(data)
            # Only measured exactly when it matters: a body may share the read with its head.
            if self._head_bytes > self._max_head and self._head_too_large(data):
                return
            self._tail = (self._tail + data)[-3:] if len(data) < 3 else data[-3:]
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._awaiting = False
        self._stop_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._await_head()  # the request is in; what follows is the next one's head

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._awaiting and not self.transport.is_closing():
            self._start_head_timer()

    def _await_head(self) -> None:
        self._awaiting = True
        self._head_bytes = 0
        self._tail = b""

    def _head_too_large(self, data: bytes) -> bool:
        """True (and the client refused) if the head being awaited is over `max_header`."""
        seen = self._tail + data
        end = seen.find(_END_OF_HEAD)
        before = self._head_bytes - len(data)
        if end >= 0 and before + end + len(_END_OF_HEAD) - len(self._tail) <= self._max_head:
            return False
        self._refuse(
            431,
            "headers_too_large",
            f"the request line and headers are over the API's limit of {self._max_head} "
            "bytes (api.max_header); send fewer or shorter headers",
        )
        return True

    def _start_head_timer(self) -> None:
        self._stop_head_timer()
        self._head_timer = self.loop.call_later(self._head_timeout, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if not self._head_bytes:
            self.transport.close()  # nothing asked: an idle connection, closed without a word
            return
        self._refuse(
            408,
            "request_timeout",
            f"the request line and headers did not arrive within {self._head_timeout:g} s "
            "(api.header_timeout); send the whole request head at once",
        )

    def _refuse(self, status: int, code: str, detail: str) -> None:
        """Answer `status` in the API's error shape and close; uvicorn's app never sees it."""
        self._awaiting = False
        if self.cycle is not None and not self.cycle.response_complete:
            # An answer is still being written on this connection: nothing can follow it.
            self.transport.close()
            return
        body = json.dumps({"error": code, "detail": detail}).encode()
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        ]
        self.transport.write(b"".join(head))
        self.transport.close()


class ApiServer:
    """`async with ApiServer(app, host, port) as server:` serves until the block ends.

    `limits`: the header, time and keep-alive limits (api.*); by default those of the config
    the app was built from (core.api.app.create_app keeps them on `app.state.limits`)."""

    def __init__(self, app: FastAPI, host: str, port: int, limits: ApiConfig | None = None) -> None:
        self.host = host
        self.port = port
        self._sock: socket.socket | None = None
        if limits is None:
            limits = getattr(app.state, "limits", None) or ApiConfig()
        self._server = _InLoopServer(
            _Config(
                app,
                limits,
                host=host,
                port=port,
                http=_Protocol,
                timeout_keep_alive=math.ceil(limits.keep_alive),
                log_config=None,
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=5,
            )
        )
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> ApiServer:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say TCP, and
        # without it Nagle + delayed ACKs add ~40 ms to every keep-alive request.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise ConfigError(
                f"cannot listen on {self.host}:{self.port} ({exc.strerror}); set api.listen "
                "to a free host:port"
            ) from None
        self.port = sock.getsockname()[1]  # port 0 picks a free one
        self._sock = sock
        self._task = asyncio.get_running_loop().create_task(self._server.serve([sock]))
        while not self._server.started:
            if self._task.done():
                await self._task
                raise RuntimeError("the API server stopped during startup")
            await asyncio.sleep(0.01)
        return self

    async def aclose(self) -> None:
        if self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def __aenter__(self) -> ApiServer:
        return await self.start()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
