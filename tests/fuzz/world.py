"""The seeded company the fuzz tests run against, and how to put it back."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Table, select, update

from app.access.models import Alert
from app.core.auth import mint_token
from app.core.config import Settings
from app.metadata import metadata
from app.notify.models import Delivery, OutboxMessage
from tests.conftest import START
from tests.support.company import EFFECTIVE, clients, employees


def x_clients() -> list[dict[str, Any]]:
    """Two clients of x1 (the other team, under m2), so that x1's handover has items of its own."""
    return [{**row, "external_id": f"x{row['external_id']}"} for row in clients(2, owner="x1")]


def records() -> list[dict[str, Any]]:
    """A few records beside the clients: e0's open deal and closed task on c0, e0's own automation, x1's case."""
    return [
        {
            "kind": "deal",
            "external_id": "r-d0",
            "title": "Renewal",
            "owner": "e0",
            "client": "c0",
            "amount": 1000,
            "currency": "EUR",
        },
        {
            "kind": "task",
            "external_id": "r-t0",
            "title": "Call back",
            "owner": "e0",
            "client": "c0",
            "status": "closed",
            "stage": "done",
        },
        {"kind": "automation", "external_id": "r-a0", "title": "Weekly report", "owner": "e0"},
        {"kind": "case", "external_id": "r-k1", "title": "Complaint", "owner": "x1", "client": "xc0"},
    ]


def seed(client: TestClient, settings: Settings) -> dict[str, Any]:
    """The company of tests/company.py (leaver e0 under m1; x1 under m2) plus x1's two clients, a few records, a webhook
    endpoint, an alert; e0's handover planned and approved (items, grants, notifications, webhook messages and
    follow-ups exist; one message is dead after a failed delivery), x1's planned and awaiting approval."""

    def headers(role: str, emp: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint_token(settings, role=role, sub=f'seed-{role}', emp=emp)}"}

    hr, admin = headers("hr"), headers("admin")
    for path, rows in (
        ("/v1/employees/batch", employees()),
        ("/v1/clients/batch", clients() + x_clients()),
    ):
        r = client.post(path, json={"items": rows}, headers=hr)
        assert r.status_code == 200, r.text
    r = client.post("/v1/records/batch", json={"items": records()}, headers=hr)
    assert r.status_code == 200, r.text
    r = client.post(
        "/v1/webhook-endpoints",
        json={"url": "http://127.0.0.1:9/hooks", "event_types": ["*"]},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    ids: dict[str, Any] = {"endpoint": int(r.json()["id"])}
    for name, leaver in (("approved", "e0"), ("planned", "x1")):
        r = client.post(
            "/v1/handovers",
            json={"leaver": leaver, "reason": "resignation", "effective_at": EFFECTIVE.isoformat()},
            headers=hr,
        )
        assert r.status_code == 201, r.text
        ids[name] = int(r.json()["id"])
        r = client.post(f"/v1/handovers/{ids[name]}/plan", headers=hr)
        assert r.status_code == 200, r.text
    r = client.post(f"/v1/handovers/{ids['approved']}/approve", headers=headers("manager", "m1"))
    assert r.status_code == 200, r.text
    with client.app.state.db.engine.begin() as conn:  # type: ignore[attr-defined]
        # One webhook message that failed for good (dead), with its attempt: a delivery to look at and retry.
        message = conn.execute(
            select(OutboxMessage.id)
            .where(OutboxMessage.endpoint_id == ids["endpoint"])
            .order_by(OutboxMessage.id)
            .limit(1)
        ).scalar_one()
        conn.execute(update(OutboxMessage).where(OutboxMessage.id == message).values(status="dead", attempts=1))
        ids["delivery"] = conn.execute(
            Delivery.__table__.insert().returning(Delivery.__table__.c.id),
            {
                "message_pk": message,
                "endpoint_id": ids["endpoint"],
                "attempt": 1,
                "attempted_at": START,
                "duration_ms": 12,
                "succeeded": False,
                "http_status": 500,
                "error": "HTTP 500",
            },
        ).scalar_one()
        conn.execute(
            Alert.__table__.insert(),
            [
                {
                    "employee_id": "e0",
                    "kind": "mass_export",
                    "status": "open",
                    "score": 9.5,
                    "window_start": START,
                    "window_end": START,
                    "clients": ["c0"],
                    "details": {},
                    "created_at": START,
                    "updated_at": START,
                }
            ],
        )
    return ids


def empty(app: FastAPI) -> None:
    with app.state.db.engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(table.delete())


def _referenced_first(table: Table, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of a table that refers to itself (an employee's manager), each after the row it refers to."""
    links = [(fk.parent.name, fk.column.name) for fk in table.foreign_keys if fk.column.table is table]
    if not links:
        return rows
    done: set[tuple[str, Any]] = set()
    ordered: list[dict[str, Any]] = []
    pending = rows
    while pending:
        ready = [r for r in pending if all(r[c] is None or (k, r[c]) in done for c, k in links)]
        if not ready:  # a cycle: leave the rest as they are
            ordered.extend(pending)
            break
        ordered.extend(ready)
        done.update((k, r[k]) for r in ready for _, k in links)
        pending = [r for r in pending if r not in ready]
    return ordered


class World:
    """The seeded database, kept as rows so that it can be put back in a few milliseconds."""

    def __init__(self, app: FastAPI, ids: dict[str, Any]) -> None:
        self.app = app
        self.ids = ids
        with app.state.db.engine.connect() as conn:
            self.rows = {
                t.name: _referenced_first(t, [dict(r._mapping) for r in conn.execute(t.select())])
                for t in metadata.sorted_tables
            }

    dirty = True  # whether anything may have changed since the last reset (a test that writes says so)

    def reset(self) -> None:
        """Back to the seeded state: every operation (and every stateful scenario) starts from the same world."""
        self.dirty = False
        empty(self.app)
        with self.app.state.db.engine.begin() as conn:
            for table in metadata.sorted_tables:
                if self.rows[table.name]:
                    conn.execute(table.insert(), self.rows[table.name])
        self.app.state.clock.set(START)
