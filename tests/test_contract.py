"""The committed contract and the migrations must match the code."""

from __future__ import annotations

import json
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app.cli import render_openapi
from app.core.config import Settings
from app.core.db import Database
from app.main import create_app
from app.metadata import metadata

ROOT = Path(__file__).resolve().parents[1]


def test_openapi_file_is_current() -> None:
    committed = (ROOT / "openapi" / "openapi.json").read_text(encoding="utf-8")
    current = render_openapi(create_app(Settings())) + "\n"
    assert committed == current, "openapi/openapi.json is stale: run `handover openapi` and commit it"


def test_no_operation_was_lost_or_renamed() -> None:
    """The operations as they were before the structural step (method, path, id): generated clients keep working.

    New operations may come; none of these may go or change its id."""
    before = {tuple(op) for op in json.loads((ROOT / "tests" / "contract" / "operations.json").read_text())}
    schema = json.loads(render_openapi(create_app(Settings())))
    now = {
        (method.upper(), path, op["operationId"])
        for path, item in schema["paths"].items()
        for method, op in item.items()
        if isinstance(op, dict) and "operationId" in op
    }
    assert sorted(before - now) == []


def test_every_operation_is_described_and_scoped() -> None:
    schema = json.loads(render_openapi(create_app(Settings())))
    public = {"/healthz", "/readyz", "/v1/hooks/hr", "/v1/notifications/{notification_id}/ack"}
    for path, item in schema["paths"].items():
        for method, op in item.items():
            assert op.get("summary"), f"{method} {path} has no summary"
            assert op["operationId"] and " " not in op["operationId"]
            if path not in public:
                scopes = op["security"][0]["bearerAuth"]
                assert scopes, f"{method} {path} names no scope"
                assert "401" in op["responses"] and "403" in op["responses"]
            else:
                assert op["security"] == [], f"{method} {path} is public: it says so with security: []"
            for code, response in op["responses"].items():
                if code[0] in "45":
                    assert "application/problem+json" in response.get("content", {}), (path, code)


def test_migrations_match_models(db: Database) -> None:
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == [], diff
