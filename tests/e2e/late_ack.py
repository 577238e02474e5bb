"""A loopback TCP proxy in front of the gateway that delivers its acknowledgement late.

Everything passes through unchanged, except that the first WebSocket frame from the gateway
whose payload holds `"status":"accepted"` (the `agent` request's acknowledgement) is held back
for `delay` seconds, and with it whatever follows on that connection. The proxy strips the
client's `Sec-WebSocket-Extensions` offer, so no frame is compressed and the payload can be
read. `async with LateAckProxy(gateway_port, delay=4.0) as proxy:` then point the runtime at
`proxy.ws_url`; `proxy.held` counts the frames it held back.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Self

ACCEPTED = b'"status":"accepted"'


async def _headers(reader: asyncio.StreamReader) -> bytes:
    """An HTTP head, up to and including its blank line."""
    return await reader.readuntil(b"\r\n\r\n")


def _without_extensions(head: bytes) -> bytes:
    lines = head.split(b"\r\n")
    kept = [line for line in lines if not line.lower().startswith(b"sec-websocket-extensions:")]
    return b"\r\n".join(kept)


async def _frame(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One WebSocket frame from the server (unmasked): its raw bytes and its payload."""
    head = await reader.readexactly(2)
    length = head[1] & 0x7F
    extra = b""
    if length == 126:
        extra = await reader.readexactly(2)
        length = int.from_bytes(extra, "big")
    elif length == 127:
        extra = await reader.readexactly(8)
        length = int.from_bytes(extra, "big")
    mask = await reader.readexactly(4) if head[1] & 0x80 else b""
    payload = await reader.readexactly(length)
    return head + extra + mask + payload, payload


class LateAckProxy:
    def __init__(self, target_port: int, *, delay: float) -> None:
        self.target_port = target_port
        self.delay = delay
        self.held = 0  # frames held back (at most one)
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        assert self._server is not None, "enter the proxy first"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in list(self._writers):
            await _close(writer)
        await server.wait_closed()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(client_w)
        self.connections += 1
        server_w: asyncio.StreamWriter | None = None
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
            self._writers.add(server_w)
            server_w.write(_without_extensions(await _headers(client_r)))
            await server_w.drain()
            upstream = asyncio.create_task(_pipe(client_r, server_w))
            try:
                await self._downstream(server_r, client_w)
            finally:
                upstream.cancel()
                await asyncio.gather(upstream, return_exceptions=True)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # either side went away: so does the other
        finally:
            self._tasks.discard(task)
            for writer in (client_w, server_w):
                if writer is not None:
                    self._writers.discard(writer)
                    await _close(writer)

    async def _downstream(
        self, server_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
    ) -> None:
        client_w.write(await _headers(server_r))
        await client_w.drain()
        while True:
            raw, payload = await _frame(server_r)
            if self.held == 0 and ACCEPTED in payload:
                self.held += 1
                await asyncio.sleep(self.delay)
            client_w.write(raw)
            await client_w.drain()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError):
        writer.close()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
