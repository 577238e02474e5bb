"""No secret leaks: after a full `fleetbot demo` session (commands, a token check, a rotation of
every key and token with its confirming tap, alerts, agent API calls with bad tokens) no key,
agent token, run token or bot token appears in the log, the terminal, any Bot API call, any API
error answer, or any column of any table of the database. Secrets live only in the key rings
and token files."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from fleetbot import terminal_chat
from fleetbot.demo import run_demo
from offline_botapi.server import OfflineBotAPI

# Shaped like a real BotFather token (35 characters after the colon), unlike the demo's default.
BOT_TOKEN = "7430012345:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw-x7"
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """run_demo points the root logger at its own file; put pytest's handlers back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def key_material(secrets_dir: Path) -> set[str]:
    """Every key of every key ring in the folder, in each encoding it could leak in."""
    found: set[str] = set()
    for ring in secrets_dir.glob("*keyring*.json"):
        for key in json.loads(ring.read_text())["keys"]:
            raw = base64.urlsafe_b64decode(key["secret"])
            for text in (
                base64.urlsafe_b64encode(raw).decode(),
                base64.b64encode(raw).decode(),
                raw.hex(),
            ):
                found |= {text, text.rstrip("=")}
            found.add(raw.decode("latin-1"))
    return found


def tokens(secrets_dir: Path) -> set[str]:
    """Every agent token, and its signature alone (a token cut short still leaks by it)."""
    found: set[str] = set()
    for path in (secrets_dir / "tokens").glob("*.jwt"):
        token = path.read_text().strip()
        found |= {token, token.rpartition(".")[2]}
    return found


def database_text(db: Path) -> Iterator[tuple[str, str]]:
    """(table.column, value) for every text or blob value in every table."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            cur = conn.execute(f'SELECT * FROM "{table}"')
            names = [d[0] for d in cur.description]
            for row in cur:
                for name, value in zip(names, row, strict=True):
                    if isinstance(value, bytes):
                        yield f"{table}.{name}", value.decode("latin-1")
                    elif isinstance(value, str):
                        yield f"{table}.{name}", value
    finally:
        conn.close()


async def test_a_demo_session_leaks_no_secret(
    tmp_path: Path, restore_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "demo"
    secrets_dir = folder / "secrets"
    out = io.StringIO()
    api = OfflineBotAPI(BOT_TOKEN, bot_username="fleetbot_demo_bot")
    seen_tokens: set[str] = set()
    answers: list[str] = []

    async def call_api(url: str) -> None:
        """The agent API with every kind of bad credential, and a good one misused."""
        good = (secrets_dir / "tokens" / "bishop.jwt").read_text().strip()
        stray = (secrets_dir / "tokens" / "ash.jwt").read_text().strip()  # another key ring
        head, _, sig = good.rpartition(".")
        attempts: list[tuple[str, str, dict[str, str], object]] = [
            ("GET", "/api/v1/me", {}, None),
            ("GET", "/api/v1/me", {"Authorization": "Bearer not-a-token"}, None),
            ("GET", "/api/v1/me", {"Authorization": f"Bearer {head}.{sig[::-1]}"}, None),
            ("GET", "/api/v1/me", {"Authorization": f"Bearer {stray}"}, None),
            ("GET", "/api/v1/me", {"Authorization": good}, None),  # no "Bearer "
            ("GET", "/api/v1/me", {"Authorization": f"Bearer {good}x"}, None),
            ("GET", "/api/v1/me", {"Authorization": f"Bearer {good} {good}"}, None),
            ("GET", "/api/v1/inbox", {"Authorization": f"Basic {good}"}, None),
            ("POST", "/api/v1/issues", {"Authorization": f"Bearer {stray}"}, {"title": "x"}),
            ("GET", f"/api/v1/issues/{good[:30]}", {"Authorization": f"Bearer {good}"}, None),
            ("POST", "/api/v1/runs/nope/finish", {"Authorization": f"Bearer {good}"}, {}),
            ("PATCH", "/api/v1/issues/ALI-1", {"Authorization": f"Bearer {good}"}, {"x": 1}),
        ]
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            for method, path, headers, body in attempts:
                r = await client.request(method, path, headers=headers, json=body)
                assert r.status_code < 500, (path, r.text)
                answers.append(f"{r.status_code} {r.headers} {r.text}")

    async def script() -> AsyncIterator[str]:
        found = re.search(r"agent API at (http://[\d.:]+)", out.getvalue())
        assert found, out.getvalue()
        seen_tokens.update(tokens(secrets_dir))
        for line in ("/status", "/agents", "/authcheck", "/alerts"):
            yield line
        await call_api(found.group(1))
        yield "/rotate all"
        button = re.compile(r"\[(\d+)\] 🔑 Rotate all")
        async with asyncio.timeout(5):
            while not (confirm := button.findall(out.getvalue())):  # noqa: ASYNC110 - the terminal
                await asyncio.sleep(0.02)
        yield confirm[-1]
        await api.wait_for_call(
            "answerCallbackQuery", lambda c: "Rotated" in str(c.params.get("text"))
        )
        yield "quit"

    # The terminal waits for 0.6 s of quiet after each line; the script waits for what it needs.
    monkeypatch.setattr(terminal_chat, "QUIET", 0.15)
    assert await run_demo(folder / "demo.db", lines=script(), out=out, api=api) == 0

    terminal = out.getvalue()
    seen_tokens |= tokens(secrets_dir)
    secrets = key_material(secrets_dir) | seen_tokens | {BOT_TOKEN, BOT_TOKEN.partition(":")[2]}
    assert len(seen_tokens) > 12  # the demo's agents, before and after the rotation
    places: list[tuple[str, str]] = [
        ("terminal", terminal),
        ("demo.log", (folder / "demo.log").read_text()),
        *(("API answer", a) for a in answers),
        *(
            (f"Bot API {c.method}", json.dumps([c.params, c.result], ensure_ascii=False))
            for c in api.sent_log
        ),
        *database_text(folder / "demo.db"),
    ]
    leaks = [
        f"{where}: {kind}"
        for where, text in places
        for kind, hit in (
            ("a run or agent token (JWT)", JWT.search(text)),
            ("a key, token or the bot token", any(s in text for s in secrets)),
        )
        if hit
    ]
    assert leaks == []
