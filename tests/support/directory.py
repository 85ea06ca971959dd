"""Directory payload builders and snapshots."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi.testclient import TestClient
from httpx import Response

from app.core.db import Database
from tests.support.db import Snapshot
from tests.support.db import snapshot as db_snapshot
from tests.support.problems import assert_problem

SNAPSHOT_TABLES = ("employee", "client", "client_contact", "account_team_member", "audit_entry")


def employee_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "title": "Account manager",
        "seniority": 2,
        "manager": None,
        "skills": ["banking"],
        "regions": ["emea"],
        "languages": ["en"],
        "clearance": 2,
        "capacity": 20,
        "status": "active",
        "exit_at": None,
    }
    body.update(overrides)
    return body


def employee_item(external_id: str, **overrides: Any) -> dict[str, Any]:
    defaults: dict[str, Any] = {"name": f"Employee {external_id}", "email": f"{external_id}@example.com"}
    defaults.update(overrides)
    return {"external_id": external_id, **employee_body(**defaults)}


def client_body(owner: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Acme Corp",
        "tier": "key",
        "annual_value": 125000.5,
        "industry": "banking",
        "region": "emea",
        "language": "en-GB",
        "sensitivity": 2,
        "owner": owner,
        "relationship_since": "2020-01-15",
        "last_contact_at": "2026-10-01T12:00:00Z",
        "satisfaction": 7.5,
        "renewal_at": "2027-03-01",
        "open_issues": 1,
        "status": "active",
        "contacts": [
            {
                "name": "Jane Roe",
                "email": "Jane@Acme.example",
                "phone": "+44 20 7946 0000",
                "locale": "en-GB",
                "preferred_channel": "email",
                "primary": True,
            },
        ],
        "account_team": [],
    }
    body.update(overrides)
    return body


def client_item(external_id: str, owner: str, **overrides: Any) -> dict[str, Any]:
    defaults: dict[str, Any] = {"name": f"Client {external_id}"}
    defaults.update(overrides)
    return {"external_id": external_id, **client_body(owner, **defaults)}


def ok(response: Response, *statuses: int) -> dict[str, Any]:
    expected = statuses or (200,)
    assert response.status_code in expected, (response.status_code, response.text)
    data: dict[str, Any] = response.json()
    return data


def batch_employees(client: TestClient, headers: dict[str, str], items: list[dict[str, Any]]) -> dict[str, Any]:
    return ok(client.post("/v1/employees/batch", json={"items": items}, headers=headers))


def batch_clients(client: TestClient, headers: dict[str, str], items: list[dict[str, Any]]) -> dict[str, Any]:
    return ok(client.post("/v1/clients/batch", json={"items": items}, headers=headers))


def snapshot(db: Database) -> Snapshot:
    """Every row of the directory and audit tables, in primary-key order."""
    return db_snapshot(db, SNAPSHOT_TABLES)


def parse_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def audit_entries(client: TestClient, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    """All matching audit entries, oldest first."""
    entries: list[dict[str, Any]] = []
    offset: int | None = 0
    while offset is not None:
        page = ok(client.get("/v1/audit", params={**params, "limit": 200, "offset": offset}, headers=headers))
        entries.extend(page["items"])
        offset = page["next_offset"]
    return sorted(entries, key=lambda e: e["seq"])


__all__ = ["assert_problem"]  # re-exported: the directory tests import it from here
