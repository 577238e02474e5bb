"""The least of the gateway's WebSocket protocol (v4) the harness needs, independent of fleetbot.

Frames are JSON text: `req {id, method, params}`, `res {id, ok, payload | error}`, `event`. The
server speaks first (`connect.challenge`); the client answers with `connect` as an operator
with the gateway token. `agent` starts a turn (its `idempotencyKey` becomes the run id) and
`agent.wait` reports its end; a bare `{status: "timeout"}` without `endedAt` means "still going".
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

SCOPES = ["operator.read", "operator.write"]


async def request(ws: ClientConnection, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """Send one request and return its first `res` frame (events in between are skipped)."""
    req_id = str(uuid.uuid4())
    await ws.send(json.dumps({"type": "req", "id": req_id, "method": method, "params": params}))
    while True:
        frame = json.loads(await ws.recv())
        if frame.get("type") == "res" and frame.get("id") == req_id:
            result: dict[str, Any] = frame
            return result


@asynccontextmanager
async def operator(ws_url: str, token: str) -> AsyncIterator[ClientConnection]:
    """A WebSocket connected as an operator: the challenge answered, hello-ok received."""
    async with websockets.connect(ws_url, open_timeout=10) as ws:
        challenge = json.loads(await ws.recv())
        assert challenge["event"] == "connect.challenge", challenge
        hello = await request(
            ws,
            "connect",
            {
                "minProtocol": 4,
                "maxProtocol": 4,
                "client": {"id": "cli", "version": "0.1.0", "platform": "linux", "mode": "cli"},
                "role": "operator",
                "scopes": SCOPES,
                "caps": [],
                "auth": {"token": token},
            },
        )
        assert hello["ok"], hello
        assert hello["payload"]["type"] == "hello-ok" and hello["payload"]["protocol"] == 4
        yield ws


async def run_turn(
    ws_url: str, token: str, message: str, *, session: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`agent` on a fresh session (or `session`), then `agent.wait` until the turn ends:
    (the acknowledgement's payload, the outcome's payload)."""
    async with operator(ws_url, token) as ws:
        accepted = await request(
            ws,
            "agent",
            {
                "message": message,
                "idempotencyKey": uuid.uuid4().hex,
                "agentId": "main",
                "sessionKey": session or f"agent:main:e2e-{uuid.uuid4().hex[:8]}",
                "deliver": False,
            },
        )
        assert accepted["ok"] and accepted["payload"]["status"] == "accepted", accepted
        run_id = accepted["payload"]["runId"]
        while True:
            waited = await request(ws, "agent.wait", {"runId": run_id, "timeoutMs": 30_000})
            assert waited["ok"], waited
            outcome: dict[str, Any] = waited["payload"]
            if outcome["status"] != "timeout" or "endedAt" in outcome:
                return accepted["payload"], outcome
