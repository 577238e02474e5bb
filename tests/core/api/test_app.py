"""How create_app assembles the API: module-level routes reading each app's own state, and the
error answers and bearer scheme documented on every operation."""

from __future__ import annotations

from pathlib import Path

from tests.api_helpers import api_stack


async def test_two_apps_answer_from_their_own_state(tmp_path: Path) -> None:
    async with (
        api_stack(tmp_path / "one") as one,
        api_stack(tmp_path / "two") as two,
    ):
        r = await one.client.post(
            "/api/v1/issues",
            headers=one.headers("ripley"),
            json={"title": "Only here", "assignee": "bishop"},
        )
        assert r.status_code == 201, r.text
        inbox_one = await one.client.get("/api/v1/inbox", headers=one.headers("bishop"))
        inbox_two = await two.client.get("/api/v1/inbox", headers=two.headers("bishop"))
        assert [i["title"] for i in inbox_one.json()] == ["Only here"]
        assert inbox_two.json() == []
        # A token of one fleet means nothing to the other: each has its own key ring.
        foreign = await two.client.get("/api/v1/me", headers=one.headers("bishop"))
        assert foreign.status_code == 401
        metrics_one = (await one.client.get("/metrics")).text
        metrics_two = (await two.client.get("/metrics")).text
    assert 'route="/api/v1/issues",status="201"} 1.0' in metrics_one
    assert 'route="/api/v1/issues"' not in metrics_two
    assert 'fleetbot_api_requests_total{route="/api/v1/me",status="401"} 1.0' in metrics_two


async def test_every_operation_documents_its_error_answers(tmp_path: Path) -> None:
    async with api_stack(tmp_path) as api:
        doc = (await api.client.get("/openapi.json")).json()
    assert doc["components"]["securitySchemes"]["agentToken"]["scheme"] == "bearer"
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            assert {"401", "403", "404", "409", "422"} <= set(operation["responses"]), where
            error = operation["responses"]["401"]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/ErrorOut"}, where
            bearer = [{"agentToken": []}] if path.startswith("/api/v1/") else None
            assert operation.get("security") == bearer, where
