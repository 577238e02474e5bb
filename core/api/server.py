"""uvicorn serving the agent API inside the caller's event loop (next to the bot and core)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator
from types import TracebackType

import uvicorn
from fastapi import FastAPI

from core.errors import ConfigError


class _InLoopServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The composition root owns SIGINT/SIGTERM; uvicorn must not take them over.
        yield


class ApiServer:
    """`async with ApiServer(app, host, port) as server:` serves until the block ends."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._sock: socket.socket | None = None
        self._server = _InLoopServer(
            uvicorn.Config(
                app,
                host=host,
                port=port,
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
