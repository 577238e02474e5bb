"""The API against hostile clients and a failing store: bodies over `api.max_body` (413 before
they are read, before the token is), heads over `api.max_header` (431), heads sent too slowly
(`api.header_timeout`), idle keep-alive connections (`api.keep_alive`), and a database that is
locked, full or read-only (503 `store_unavailable` with `Retry-After`, one warning line), with
/healthz (liveness) and /readyz (readiness) telling the two apart.

The connection limits are the server's, so those tests talk to a real ApiServer on loopback
through raw sockets: they send what a well-behaved HTTP client never would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from core.api.server import ApiServer
from core.config.schema import ApiConfig
from core.store import sqlite as db_module
from tests.api_helpers import ApiStack, api_stack

# Short timeouts, so a test proves in about a second what production does in ten.
LIMITS = ApiConfig(listen="127.0.0.1:0", header_timeout="1s", keep_alive="1s")


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[ApiStack]:
    async with api_stack(tmp_path) as stack:
        yield stack


@pytest.fixture
async def server(api: ApiStack) -> AsyncIterator[ApiServer]:
    async with ApiServer(api.app, "127.0.0.1", 0, limits=LIMITS) as running:
        yield running


async def connect(server: ApiServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(server.host, server.port)


async def answer(
    reader: asyncio.StreamReader, within: float = 3.0
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of the one answer on a connection the server then closes."""
    raw = await asyncio.wait_for(reader.read(), within)  # to EOF: the server must close
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def error_of(body: bytes) -> str:
    data = json.loads(body)
    assert isinstance(data["detail"], str) and data["detail"]
    return str(data["error"])


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):  # the server may have reset it first
        await writer.wait_closed()


# -- bodies --------------------------------------------------------------------------------------


async def test_a_huge_declared_body_is_413_at_once_before_the_token_is_checked(
    api: ApiStack, server: ApiServer
) -> None:
    reader, writer = await connect(server)
    writer.write(
        b"POST /api/v1/issues HTTP/1.1\r\nHost: fleet\r\nContent-Type: application/json\r\n"
        b"Content-Length: 10000000000\r\n\r\n" + b'{"title": "' + b"x" * 1000
    )
    start = time.monotonic()
    status, headers, body = await answer(reader)
    assert time.monotonic() - start < 2
    assert status == 413 and error_of(body) == "body_too_large"  # not 401: no token was sent
    assert headers["content-type"] == "application/json"
    assert "api.max_body" in json.loads(body)["detail"]
    await close(writer)
    metrics = (await api.client.get("/metrics")).text
    assert 'fleetbot_api_requests_total{route="unmatched",status="413"} 1.0' in metrics


async def test_a_chunked_body_is_413_as_soon_as_it_passes_the_limit(server: ApiServer) -> None:
    reader, writer = await connect(server)
    writer.write(
        b"POST /api/v1/issues/ALI-1/comments HTTP/1.1\r\nHost: fleet\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"x" * 16 * 1024
    for _ in range(5):  # 80 KiB, and no last chunk: the body never ends
        writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    await writer.drain()
    status, _, body = await answer(reader)
    assert status == 413 and error_of(body) == "body_too_large"
    await close(writer)


async def test_a_chunked_body_within_the_limit_reaches_the_route(api: ApiStack) -> None:
    await api.service.file_issue(title="work", assignee="bishop", actor="owner")

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"body": '
        yield b'"in pieces"}'

    h = {**api.headers("ripley"), "content-type": "application/json"}
    r = await api.client.post("/api/v1/issues/ALI-1/comments", headers=h, content=chunks())
    assert r.status_code == 201, r.text
    assert r.json()["body"] == "in pieces"


async def test_the_body_limit_is_exact(api: ApiStack) -> None:
    limit = api.config.api.max_body
    h = {**api.headers("ripley"), "content-type": "application/json"}
    prefix, suffix = b'{"title": "', b'", "assignee": "bishop"}'
    for size, status in ((limit, 422), (limit + 1, 413)):  # 422: the title is over 200
        body = prefix + b"x" * (size - len(prefix) - len(suffix)) + suffix
        assert len(body) == size
        r = await api.client.post("/api/v1/issues", headers=h, content=body)
        assert r.status_code == status, (size, r.text[:200])


# -- request heads -------------------------------------------------------------------------------


async def test_headers_over_the_limit_are_431_whether_sent_at_once_or_in_pieces(
    server: ApiServer,
) -> None:
    big = b"X-Junk: " + b"a" * LIMITS.max_header + b"\r\n"
    for pieces in (1, 8):
        reader, writer = await connect(server)
        head = b"GET /healthz HTTP/1.1\r\nHost: fleet\r\n" + big + b"\r\n"
        step = len(head) // pieces + 1
        for i in range(0, len(head), step):
            writer.write(head[i : i + step])
            await writer.drain()
            await asyncio.sleep(0.01)
        status, headers, body = await answer(reader)
        assert status == 431 and error_of(body) == "headers_too_large", pieces
        assert headers["connection"] == "close"
        await close(writer)


async def test_a_head_within_the_limit_is_served_even_sharing_a_read_with_its_body(
    api: ApiStack, server: ApiServer
) -> None:
    await api.service.file_issue(title="work", assignee="bishop", actor="owner")
    body = json.dumps({"body": "y" * 19_000}).encode()  # head + body > max_header, head alone not
    token = api.token("ripley").encode()
    reader, writer = await connect(server)
    writer.write(
        b"POST /api/v1/issues/ALI-1/comments HTTP/1.1\r\nHost: fleet\r\nConnection: close\r\n"
        b"Authorization: Bearer " + token + b"\r\nContent-Type: application/json\r\n"
        b"X-Pad: " + b"p" * 8000 + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    )
    status, _, _ = await answer(reader)
    assert status == 201
    await close(writer)


async def test_slow_heads_are_closed_and_the_server_answers_meanwhile(server: ApiServer) -> None:
    """Slowloris, bounded: 4 sockets each sending one header byte every 0.3 s (forever, if let)
    and one that sends nothing are closed within header_timeout (1 s here), while a normal
    client is served at once."""

    async def dribble() -> tuple[float, bytes]:
        reader, writer = await connect(server)
        start = time.monotonic()
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: fleet\r\nX-Slow: ")
        got = b""
        try:
            while time.monotonic() - start < 5:
                writer.write(b"a")
                try:
                    got = await asyncio.wait_for(reader.read(), 0.3)
                except TimeoutError:
                    continue
                break  # EOF: the server closed it
        except ConnectionError:
            pass
        finally:
            await close(writer)
        return time.monotonic() - start, got

    async def silent() -> tuple[float, bytes]:
        reader, writer = await connect(server)
        start = time.monotonic()
        got = await asyncio.wait_for(reader.read(), 5)
        await close(writer)
        return time.monotonic() - start, got

    slow = [asyncio.create_task(dribble()) for _ in range(4)] + [asyncio.create_task(silent())]
    await asyncio.sleep(0.2)
    async with httpx.AsyncClient(base_url=server.url, timeout=2) as client:
        r = await client.get("/healthz")
        assert r.status_code == 200 and r.json()["status"] == "ok"
    for took, got in await asyncio.gather(*slow[:4]):
        assert 0.9 <= took < 2.0, took
        status = int(got.split(b" ")[1])
        assert status == 408 and error_of(got.partition(b"\r\n\r\n")[2]) == "request_timeout"
    took, got = await slow[4]
    assert 0.9 <= took < 2.0 and got == b""  # nothing asked, so no answer: just closed


async def test_an_idle_keep_alive_connection_is_closed(server: ApiServer) -> None:
    reader, writer = await connect(server)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: fleet\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
    assert head.startswith(b"HTTP/1.1 200")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    await reader.readexactly(length)
    start = time.monotonic()
    assert await asyncio.wait_for(reader.read(), 3) == b""  # closed, without a word
    assert 0.9 <= time.monotonic() - start < 2.0
    await close(writer)


def test_limits_in_the_config_are_sizes_and_durations() -> None:
    api = ApiConfig()
    assert (api.max_body, api.max_header, api.header_timeout, api.keep_alive) == (
        64 * 1024,
        16 * 1024,
        10.0,
        5.0,
    )
    assert ApiConfig(max_body="1MiB", max_header="8 KiB").max_body == 1024 * 1024
    assert ApiConfig(max_body=2048).max_body == 2048
    for bad in ("64KB", "lots", -1, 10, True):
        with pytest.raises(ValidationError, match="KiB"):
            ApiConfig(max_body=bad)
    with pytest.raises(ValidationError, match="at least 1s"):
        ApiConfig(keep_alive="200ms")


# -- the store in trouble ------------------------------------------------------------------------


@pytest.fixture
async def impatient(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ApiStack]:
    """An API whose store waits 50 ms, not 5 s, for another process's lock."""
    monkeypatch.setattr(db_module, "BUSY_TIMEOUT_MS", 50)
    async with api_stack(tmp_path) as stack:
        await stack.service.file_issue(title="work", assignee="bishop", actor="owner")
        yield stack


async def writes(api: ApiStack) -> list[httpx.Response]:
    """Three writes an agent might send."""
    h = api.headers("ripley")
    return [
        await api.client.post(
            "/api/v1/issues", headers=h, json={"title": "t", "assignee": "bishop"}
        ),
        await api.client.post(
            "/api/v1/issues/ALI-1/comments", headers=h, json={"body": "x" * 20_000}
        ),
        await api.client.patch("/api/v1/issues/ALI-1", headers=h, json={"status": "in_progress"}),
    ]


def assert_unavailable(r: httpx.Response, cause: str) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.headers["retry-after"] == "5"
    body: dict[str, Any] = r.json()
    assert body["error"] == "store_unavailable", body
    assert cause in body["detail"] and "retry" in body["detail"], body


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert bad == [], [r.getMessage() for r in bad]  # no traceback, no error line
    return [r for r in caplog.records if r.name == "core.api.errors"]


@pytest.mark.sqlite_only  # SQLite's file; PostgreSQL's trouble: tests/core/store/test_postgres.py
async def test_a_database_locked_by_another_process_is_503_not_500(
    impatient: ApiStack, caplog: pytest.LogCaptureFixture
) -> None:
    api = impatient
    other = sqlite3.connect(api.config.storage.path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        with caplog.at_level(logging.WARNING):
            for r in await writes(api):
                assert_unavailable(r, "locked by another process")
            # Liveness stands; readiness says why not, quickly.
            r = await api.client.get("/healthz")
            assert r.status_code == 200 and r.json()["status"] == "ok"
            start = time.monotonic()
            assert_unavailable(await api.client.get("/readyz"), "locked by another process")
            assert time.monotonic() - start < 1.5
            # Reads still work: WAL readers do not wait for writers.
            assert (
                await api.client.get("/api/v1/inbox", headers=api.headers("bishop"))
            ).status_code == 200
        # Nothing was written: no issue, no comment, no status change.
        assert [i.title for i in await api.service.inbox("bishop")] == ["work"]
        assert await api.service.comments("ALI-1") == []
        found = warnings_of(caplog)
        assert len(found) == 1, [r.getMessage() for r in found]  # one line, not one per request
        assert "locked by another process" in found[0].getMessage()
        assert "stop whatever holds its write lock" in found[0].getMessage()
    finally:
        other.close()
    r = await api.client.get("/readyz")
    assert r.status_code == 200 and r.json()["status"] == "ready"
    assert [r.status_code for r in await writes(api)] == [201, 201, 200]


@pytest.mark.sqlite_only  # SQLite's file; PostgreSQL's trouble: tests/core/store/test_postgres.py
async def test_a_full_disk_is_503_and_keeps_the_api_unready_until_a_write_succeeds(
    impatient: ApiStack, caplog: pytest.LogCaptureFixture
) -> None:
    api = impatient
    async with api.db.write() as conn:  # the file may not grow: what a full disk does
        pages = (await (await conn.execute("PRAGMA page_count")).fetchone())[0]
        await conn.execute(f"PRAGMA max_page_count = {pages}")
    with caplog.at_level(logging.WARNING):
        h = api.headers("ripley")
        for _ in range(3):
            r = await api.client.post(
                "/api/v1/issues/ALI-1/comments", headers=h, json={"body": "x" * 20_000}
            )
            assert_unavailable(r, "disk is full")
        assert (await api.client.get("/healthz")).status_code == 200
        # A write transaction can still start; the failed write is what readiness remembers.
        assert_unavailable(await api.client.get("/readyz"), "disk is full")
    assert len(warnings_of(caplog)) == 1
    async with api.db.write() as conn:  # space again
        await conn.execute("PRAGMA max_page_count = 1073741823")
    assert (await api.client.get("/readyz")).status_code == 200
    r = await api.client.post(
        "/api/v1/issues/ALI-1/comments", headers=h, json={"body": "x" * 20_000}
    )
    assert r.status_code == 201, r.text


@pytest.mark.sqlite_only  # SQLite's file; PostgreSQL's trouble: tests/core/store/test_postgres.py
async def test_a_read_only_database_is_503(
    impatient: ApiStack, caplog: pytest.LogCaptureFixture
) -> None:
    api = impatient
    async with api.db.write() as conn:  # what a read-only file or mount does to every write
        await conn.execute("PRAGMA query_only = ON")
    with caplog.at_level(logging.WARNING):
        for r in await writes(api):
            assert_unavailable(r, "read-only")
        assert_unavailable(await api.client.get("/readyz"), "read-only")
        assert (await api.client.get("/healthz")).status_code == 200
    assert len(warnings_of(caplog)) == 1


async def test_readyz_is_documented_next_to_healthz(api: ApiStack) -> None:
    r = await api.client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "schema_version": api.db.schema_version}
    doc = (await api.client.get("/openapi.json")).json()
    for path in ("/healthz", "/readyz"):
        operation = doc["paths"][path]["get"]
        assert operation["tags"] == ["ops"] and operation["summary"], path
        assert "Retry-After" in operation["responses"]["503"]["headers"], path
    assert "413" in doc["paths"]["/api/v1/issues"]["post"]["responses"]
