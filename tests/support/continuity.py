"""What the continuity, leave and role-change tests share: the app with HR's webhook secret, access decisions over
HTTP, the owners as stored, a worker pass of the database jobs, and the harness that runs their state machines."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck
from hypothesis import settings as hsettings
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test
from sqlalchemy import select

from app.core.clock import ManualClock
from app.core.db import Database
from app.directory.models import Client
from app.main import create_app
from app.notify.models import OutboxMessage
from app.worker import DB_JOBS
from tests.conftest import make_settings
from tests.support.company import employees
from tests.support.hr import SECRET

S = dt.timedelta(seconds=1)
ACCESS_ADMIN = "access:check access:admin"


@pytest.fixture
def hook(database_url: str, clock: ManualClock, db: Database) -> Iterator[TestClient]:
    """The app with HR's webhook secret configured (same database and clock as `client`)."""
    app: FastAPI = create_app(make_settings(database_url, hr_webhook_secret=SECRET), clock=clock)
    try:
        with TestClient(app, raise_server_exceptions=False) as c:
            yield c
    finally:
        app.state.db.dispose()


def decide(client: TestClient, auth: Any, employee_id: str, cl: str, action: str, at: dt.datetime) -> dict[str, Any]:
    """The CRM's access decision at `at`, whole."""
    r = client.post(
        "/v1/access/check",
        json={"employee": employee_id, "client": cl, "action": action, "at": at.isoformat()},
        headers=auth("integration", scope=ACCESS_ADMIN),
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def check(client: TestClient, auth: Any, employee: str, cl: str, action: str, at: dt.datetime | None = None) -> bool:
    """Whether the CRM's access check allows it (now, unless `at` is given)."""
    body: dict[str, Any] = {"employee": employee, "client": cl, "action": action}
    if at is not None:
        body["at"] = at.isoformat()
    r = client.post("/v1/access/check", json=body, headers=auth("integration", scope=ACCESS_ADMIN))
    assert r.status_code == 200, r.text
    return bool(r.json()["allowed"])


def acts_for_all(
    client: TestClient, auth: Any, employee: str, clients: list[str], at: dt.datetime | None = None
) -> bool:
    return all(check(client, auth, employee, c, a, at) for c in clients for a in ("view", "edit"))


def owners(db: Database) -> dict[str, str]:
    with db.session(write=False) as s:
        return dict(s.execute(select(Client.external_id, Client.owner_id)).all())


def work(db: Database, clock: ManualClock) -> dict[str, int]:
    """One worker pass of the database jobs (the outbox delivery left out: it would send over the network)."""
    done = {}
    for name, job in DB_JOBS:
        if name in ("deliver_outbox", "run_jobs"):
            continue
        done[name] = job(db, clock, threading.Event())
    return done


def handovers_of(client: TestClient, auth: Any, leaver: str) -> list[dict[str, Any]]:
    r = client.get("/v1/handovers", params={"leaver": leaver}, headers=auth())
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def events(db: Database, event_type: str) -> list[dict[str, Any]]:
    """The payloads of the stored outbound events of one type."""
    with db.session(write=False) as s:
        rows = s.scalars(select(OutboxMessage.payload).where(OutboxMessage.event_type == event_type)).all()
        return [p["data"] for p in rows]


def record(eid: str, **changes: Any) -> dict[str, Any]:
    """The company's employee `eid` as a directory body, with `changes`."""
    row = next(e for e in employees() if e["external_id"] == eid)
    body = {k: v for k, v in row.items() if k != "external_id"}
    return {**body, **changes}


def run_machine(machine: type[RuleBasedStateMachine], *, max_examples: int) -> None:
    """Runs a state machine derandomized (its seed comes from the machine's source), 15 steps a sequence, with the
    function-scoped fixtures it was handed (`machine.ctx`)."""
    run_state_machine_as_test(
        machine,
        settings=hsettings(
            max_examples=max_examples,
            stateful_step_count=15,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )
