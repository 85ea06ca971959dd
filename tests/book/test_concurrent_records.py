"""Concurrent record writes on PostgreSQL: of concurrent creators of one record exactly one creates it (201), and
two batches of the same records in opposite orders neither deadlock nor lose a row."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.core.db import Database
from tests.directory.test_concurrent_writes import race
from tests.support.db import audit_count
from tests.support.directory import batch_employees, employee_item, ok

Auth = Callable[..., dict[str, str]]


@pytest.fixture(autouse=True)
def _postgresql_only(backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite serialises writers (BEGIN IMMEDIATE); these races need PostgreSQL")


def test_exactly_one_concurrent_put_creates(app: FastAPI, client: TestClient, auth: Auth, db: Database) -> None:
    batch_employees(client, auth("hr"), [employee_item("am1"), employee_item("am2")])
    hr = auth("hr")
    calls = [
        (lambda c, o=owner: c.put("/v1/records/deal/D-1", json={"title": "Deal", "owner": o}, headers=hr))
        for owner in ("am1", "am2") * 3
    ]
    answers = race(app, calls)
    assert sorted(r.status_code for r in answers) == [200] * 5 + [201]
    assert audit_count(db, "record.created") == 1
    assert audit_count(db, "record.updated") == 5


def test_batches_in_opposite_orders_do_not_deadlock(app: FastAPI, client: TestClient, auth: Auth) -> None:
    batch_employees(client, auth("hr"), [employee_item("am1")])
    hr = auth("hr")
    items = [{"kind": "task", "external_id": f"t{i}", "title": f"T {i}", "owner": "am1"} for i in range(200)]
    calls = [
        (lambda c, rows=rows: c.post("/v1/records/batch", json={"items": rows}, headers=hr))
        for rows in (items, items[::-1], items, items[::-1])
    ]
    answers = race(app, calls)
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
    assert sum(r.json()["created"] for r in answers) == 200
    page = ok(client.get("/v1/records", params={"limit": 200}, headers=auth()))
    assert len(page["items"]) == 200
