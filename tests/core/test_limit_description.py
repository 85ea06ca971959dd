"""The contract's `limit` says the default a list really uses."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient


def test_limit_description_states_the_real_default(app: FastAPI, client: TestClient, auth: Any) -> None:
    settings = app.state.settings
    limits = [
        p
        for item in app.openapi()["paths"].values()
        for op in item.values()
        if isinstance(op, dict)
        for p in op.get("parameters", [])
        if p["name"] == "limit" and p["in"] == "query"
    ]
    assert len(limits) >= 10
    for param in limits:
        assert f"{settings.default_page_size} unless" in param["description"]
        assert f"at most {settings.max_page_size}" in param["description"]
    page = client.get("/v1/employees", headers=auth("admin")).json()
    assert page["limit"] == settings.default_page_size == 50
