"""POST /v1/hooks/hr over HTTP: signatures, idempotency by webhook-id, the three event types, concurrency."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select

from app.core.clock import ManualClock
from app.core.db import Database
from app.core.routes import iter_api_routes
from app.intake import service as hooks_service
from app.intake.models import InboundEvent
from app.intake.router import router as hooks_router
from app.main import create_app
from app.metadata import metadata
from app.transfer import service as transfer_service
from app.transfer.models import Handover
from tests.conftest import make_settings
from tests.support.company import EFFECTIVE
from tests.support.db import count, employee, handovers, snapshot
from tests.support.hr import OLD_SECRET, SECRET, URL, deliver, exit_event, new_secret, ok, signed
from tests.support.problems import assert_problem

SNAPSHOT_TABLES = ("handover", "handover_item", "inbound_event", "audit_entry", "employee")


def _with_hooks(app: FastAPI) -> FastAPI:
    """Until app.main includes the router, tests include it themselves."""
    if not any(r.path == URL for r in iter_api_routes(app)):
        app.include_router(hooks_router)
    return app


@pytest.fixture
def hook_app(database_url: str, clock: ManualClock) -> Iterator[FastAPI]:
    app = _with_hooks(create_app(make_settings(database_url, hr_webhook_secret=f"{SECRET} {OLD_SECRET}"), clock=clock))
    yield app
    app.state.db.dispose()


@pytest.fixture
def hook(hook_app: FastAPI, db: Database) -> Iterator[TestClient]:
    with TestClient(hook_app, raise_server_exceptions=False) as c:
        yield c


# ---- employee.exit and replays ----------------------------------------------------------------


def test_exit_opens_a_handover(hook: TestClient, db: Database, clock: ManualClock, company: Any) -> None:
    body = ok(deliver(hook, exit_event(), clock=clock, msg_id="msg_exit_1"))
    assert body["webhook_id"] == "msg_exit_1"
    assert body["type"] == "employee.exit"
    assert body["replayed"] is False
    [h] = handovers(db)
    assert body["handover_id"] == h.id
    assert (h.status, h.source, h.reason, h.effective_at) == ("draft", "hr_webhook", "resignation", EFFECTIVE)
    assert h.destination_competitor is True
    assert h.created_by == "hr_webhook"
    leaver = employee(db, "e0")
    assert leaver is not None and leaver.status == "leaving" and leaver.exit_at == EFFECTIVE
    with db.session(write=False) as session:
        row = session.get(InboundEvent, "msg_exit_1")
        assert row is not None
        assert (row.source, row.event_type, row.received_at) == ("hr", "employee.exit", clock.now())
        assert row.result == {"handover_id": h.id}


def test_replay_changes_nothing(hook: TestClient, db: Database, clock: ManualClock, company: Any) -> None:
    body, headers = signed(exit_event(), clock=clock)
    first = ok(hook.post(URL, content=body, headers=headers))
    before = snapshot(db, SNAPSHOT_TABLES)
    clock.advance(dt.timedelta(minutes=1))
    again = ok(hook.post(URL, content=body, headers=headers))
    assert again == {**first, "replayed": True}
    assert len(handovers(db)) == 1
    assert snapshot(db, SNAPSHOT_TABLES) == before


def test_replay_of_an_id_with_another_body_answers_the_first_result(
    hook: TestClient, db: Database, clock: ManualClock, company: Any
) -> None:
    first = ok(deliver(hook, exit_event(), clock=clock, msg_id="msg_same"))
    before = snapshot(db, SNAPSHOT_TABLES)
    later = EFFECTIVE + dt.timedelta(days=3)
    again = ok(deliver(hook, exit_event(effective_at=later), clock=clock, msg_id="msg_same"))
    assert again == {**first, "replayed": True}
    assert snapshot(db, SNAPSHOT_TABLES) == before


def test_second_exit_with_a_new_id_moves_the_effective_time(
    hook: TestClient, db: Database, clock: ManualClock, company: Any
) -> None:
    first = ok(deliver(hook, exit_event(), clock=clock))
    later = EFFECTIVE + dt.timedelta(days=7)
    second = ok(deliver(hook, exit_event(effective_at=later), clock=clock))
    assert second["replayed"] is False
    assert second["handover_id"] == first["handover_id"]
    [h] = handovers(db)
    assert h.effective_at == later
    leaver = employee(db, "e0")
    assert leaver is not None and leaver.exit_at == later
    assert count(db, "inbound_event") == 2


def test_exit_of_an_unknown_employee_writes_nothing_and_a_retry_succeeds_later(
    hook: TestClient, db: Database, clock: ManualClock, company: Any
) -> None:
    event = exit_event(employee="newbie")
    before = snapshot(db, SNAPSHOT_TABLES)
    r = deliver(hook, event, clock=clock, msg_id="msg_early")
    assert_problem(r, 422, loc=["body", "data", "employee"])
    assert snapshot(db, SNAPSHOT_TABLES) == before
    # HR sends the record, then its retry of the exit is processed afresh (the id was not consumed).
    updated = {
        "type": "employee.updated",
        "timestamp": "2026-11-02T09:00:00Z",
        "data": {"employee": "newbie", "name": "New Bie", "email": "newbie@example.com", "seniority": 1},
    }
    ok(deliver(hook, updated, clock=clock))
    retried = ok(deliver(hook, event, clock=clock, msg_id="msg_early"))
    assert retried["replayed"] is False
    assert len(handovers(db, "newbie")) == 1


# ---- signature rejections ---------------------------------------------------------------------


def test_tampered_body_is_refused_and_writes_nothing(
    hook: TestClient, db: Database, clock: ManualClock, company: Any
) -> None:
    body, headers = signed(exit_event(), clock=clock)
    tampered = body.replace(b"resignation", b"retirement!")
    before = snapshot(db, SNAPSHOT_TABLES)
    r = hook.post(URL, content=tampered, headers=headers)
    problem = assert_problem(r, 401)
    assert "no matching signature" in problem["detail"]
    assert snapshot(db, SNAPSHOT_TABLES) == before


def test_wrong_secret_is_refused(hook: TestClient, db: Database, clock: ManualClock, company: Any) -> None:
    before = snapshot(db, SNAPSHOT_TABLES)
    assert_problem(deliver(hook, exit_event(), clock=clock, secret=new_secret()), 401)
    assert snapshot(db, SNAPSHOT_TABLES) == before


def test_stale_delivery_is_refused(hook: TestClient, db: Database, clock: ManualClock, company: Any) -> None:
    body, headers = signed(exit_event(), clock=clock)
    clock.advance(dt.timedelta(minutes=6))
    before = snapshot(db, SNAPSHOT_TABLES)
    problem = assert_problem(hook.post(URL, content=body, headers=headers), 401)
    assert "too old" in problem["detail"]
    assert snapshot(db, SNAPSHOT_TABLES) == before


def test_future_delivery_is_refused(hook: TestClient, db: Database, clock: ManualClock, company: Any) -> None:
    ts = int((clock.now() + dt.timedelta(minutes=6)).timestamp())
    before = snapshot(db, SNAPSHOT_TABLES)
    problem = assert_problem(deliver(hook, exit_event(), clock=clock, ts=ts), 401)
    assert "future" in problem["detail"]
    assert snapshot(db, SNAPSHOT_TABLES) == before


def test_delivery_within_tolerance_is_accepted(hook: TestClient, clock: ManualClock, company: Any) -> None:
    body, headers = signed(exit_event(), clock=clock)
    clock.advance(dt.timedelta(minutes=4, seconds=59))
    ok(hook.post(URL, content=body, headers=headers))


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_is_refused(
    hook: TestClient, db: Database, clock: ManualClock, company: Any, missing: str
) -> None:
    body, headers = signed(exit_event(), clock=clock)
    del headers[missing]
    before = snapshot(db, SNAPSHOT_TABLES)
    problem = assert_problem(hook.post(URL, content=body, headers=headers), 401)
    assert missing in problem["detail"]
    assert snapshot(db, SNAPSHOT_TABLES) == before


def test_a_bearer_token_is_not_a_signature(hook: TestClient, clock: ManualClock, auth: Any, company: Any) -> None:
    body = json.dumps(exit_event()).encode()
    r = hook.post(URL, content=body, headers={"content-type": "application/json", **auth("admin")})
    assert_problem(r, 401)


def test_rotated_secret_is_accepted(hook: TestClient, db: Database, clock: ManualClock, company: Any) -> None:
    ok(deliver(hook, exit_event(), clock=clock, secret=OLD_SECRET))
    assert len(handovers(db)) == 1


def test_unconfigured_secret_answers_503(database_url: str, clock: ManualClock, db: Database) -> None:
    app = _with_hooks(create_app(make_settings(database_url), clock=clock))
    try:
        with TestClient(app, raise_server_exceptions=False) as c:
            problem = assert_problem(deliver(c, exit_event(), clock=clock), 503)
        assert "not configured" in problem["detail"]
    finally:
        app.state.db.dispose()


# ---- body validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (b'{"type": "employee.exit", ', ["body"]),
        (b"[]", ["body"]),
        (b'{"type": "employee.fired", "timestamp": "2026-11-02T09:00:00Z", "data": {}}', ["body"]),
        (json.dumps(exit_event(reason="bored")).encode(), ["body", "data", "reason"]),
        (json.dumps(exit_event(effective_at=dt.datetime(2026, 12, 1))).encode(), ["body", "data", "effective_at"]),
        (
            json.dumps(exit_event(effective_at=dt.datetime(9999, 12, 31, tzinfo=dt.UTC))).encode(),
            ["body", "data", "effective_at"],
        ),
        (json.dumps(exit_event(surprise=1)).encode(), ["body", "data", "surprise"]),
        (json.dumps({**exit_event(), "timestamp": "yesterday"}).encode(), ["body", "timestamp"]),
        (
            json.dumps(
                {
                    "type": "employee.exit_cancelled",
                    "timestamp": "2026-11-02T09:00:00Z",
                    "data": {"employee": "e0", "reason": "a\x00b"},
                }
            ).encode(),
            ["body", "data", "reason"],
        ),
    ],
)
def test_invalid_event_with_a_valid_signature_is_422(
    hook: TestClient, db: Database, clock: ManualClock, company: Any, body: bytes, loc: list[str | int]
) -> None:
    before = snapshot(db, SNAPSHOT_TABLES)
    assert_problem(deliver(hook, body, clock=clock), 422, loc=loc)
    assert snapshot(db, SNAPSHOT_TABLES) == before


def test_overlong_webhook_id_is_422(hook: TestClient, db: Database, clock: ManualClock, company: Any) -> None:
    before = snapshot(db, SNAPSHOT_TABLES)
    assert_problem(deliver(hook, exit_event(), clock=clock, msg_id="m" * 201), 422, loc=["header", "webhook-id"])
    assert snapshot(db, SNAPSHOT_TABLES) == before


# ---- employee.exit_cancelled and employee.updated ---------------------------------------------


def test_exit_cancelled_cancels_the_open_handover(
    hook: TestClient, db: Database, clock: ManualClock, company: Any
) -> None:
    opened = ok(deliver(hook, exit_event(), clock=clock))
    cancel = {
        "type": "employee.exit_cancelled",
        "timestamp": "2026-11-02T09:01:00Z",
        "data": {"employee": "e0", "reason": "counter-offer accepted"},
    }
    body = ok(deliver(hook, cancel, clock=clock))
    assert body["handover_id"] == opened["handover_id"]
    assert body["type"] == "employee.exit_cancelled"
    [h] = handovers(db)
    assert (h.status, h.cancelled_by, h.cancel_reason) == ("cancelled", "hr_webhook", "counter-offer accepted")
    leaver = employee(db, "e0")
    assert leaver is not None and leaver.status == "active" and leaver.exit_at is None


def test_exit_cancelled_without_a_handover_is_a_no_op(
    hook: TestClient, db: Database, clock: ManualClock, company: Any
) -> None:
    cancel = {"type": "employee.exit_cancelled", "timestamp": "2026-11-02T09:01:00Z", "data": {"employee": "e1"}}
    body = ok(deliver(hook, cancel, clock=clock))
    assert body["handover_id"] is None
    assert count(db, "handover") == 0
    assert count(db, "inbound_event") == 1


def test_employee_updated_creates_then_replaces_the_record(
    hook: TestClient, db: Database, clock: ManualClock, company: Any
) -> None:
    data = {"employee": "n1", "name": "Nia New", "email": "Nia@Example.com", "seniority": 2, "manager": "m1"}
    event = {"type": "employee.updated", "timestamp": "2026-11-02T09:00:00Z", "data": data}
    body = ok(deliver(hook, event, clock=clock))
    assert body == {
        "webhook_id": body["webhook_id"],
        "type": "employee.updated",
        "replayed": False,
        "handover_id": None,
        "ignored": None,
    }
    created = employee(db, "n1")
    assert created is not None
    assert (created.name, created.email, created.manager_id, created.seniority) == (
        "Nia New",
        "nia@example.com",
        "m1",
        2,
    )
    event["data"] = {**data, "title": "Account director", "seniority": 3}
    ok(deliver(hook, event, clock=clock))
    updated = employee(db, "n1")
    assert updated is not None and (updated.title, updated.seniority) == ("Account director", 3)
    with db.session(write=False) as session:
        actors = session.execute(
            select(metadata.tables["audit_entry"].c.actor, metadata.tables["audit_entry"].c.action).where(
                metadata.tables["audit_entry"].c.entity_id == "n1"
            )
        ).all()
    assert [tuple(a) for a in actors] == [("hr_webhook", "employee.created"), ("hr_webhook", "employee.updated")]


def test_employee_updated_with_an_unknown_manager_is_422(
    hook: TestClient, db: Database, clock: ManualClock, company: Any
) -> None:
    data = {"employee": "n1", "name": "Nia New", "email": "nia@example.com", "seniority": 2, "manager": "ghost"}
    before = snapshot(db, SNAPSHOT_TABLES)
    r = deliver(hook, {"type": "employee.updated", "timestamp": "2026-11-02T09:00:00Z", "data": data}, clock=clock)
    assert_problem(r, 422, loc=["body", "data", "manager"])
    assert snapshot(db, SNAPSHOT_TABLES) == before


def test_employee_updated_that_makes_a_management_cycle_is_422(
    hook: TestClient, db: Database, clock: ManualClock, company: Any
) -> None:
    """The CEO under e0, who is under m1, who is under the CEO: refused like any bad record, nothing written."""
    before = snapshot(db, SNAPSHOT_TABLES)
    for who, manager, msg in (
        ("ceo", "e0", "would make a management cycle: ceo → e0 → m1 → ceo"),
        ("m1", "m1", "an employee cannot manage themselves"),
    ):
        data = {"employee": who, "name": "X", "email": "x@example.com", "seniority": 4, "manager": manager}
        event = {"type": "employee.updated", "timestamp": "2026-11-02T09:00:00Z", "data": data}
        body = assert_problem(deliver(hook, event, clock=clock), 422, loc=["body", "data", "manager"])
        assert [e["msg"] for e in body["errors"]] == [msg]
        assert snapshot(db, SNAPSHOT_TABLES) == before


# ---- contract and concurrency -----------------------------------------------------------------


def test_openapi_documents_the_route(hook_app: FastAPI) -> None:
    document = hook_app.openapi()
    op = document["paths"][URL]["post"]
    assert op["operationId"] == "hr-events-receive"
    assert op["summary"] and op["description"]
    assert op["security"] == []  # signed, not a bearer token
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    # Each event is a named component (HrExitEvent, …): a generated client names its classes after them.
    branches = [document["components"]["schemas"][b["$ref"].rsplit("/", 1)[1]] for b in schema["oneOf"]]
    assert {branch["properties"]["type"]["const"] for branch in branches} == {
        "employee.exit",
        "employee.exit_cancelled",
        "employee.updated",
    }
    assert "$defs" not in json.dumps(schema)
    assert {p["name"] for p in op["parameters"]} == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    for code in ("401", "422", "503"):
        assert "application/problem+json" in op["responses"][code]["content"], code
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/HrEventResult")


def test_concurrent_deliveries_of_one_id_apply_once(
    hook_app: FastAPI,
    db: Database,
    clock: ManualClock,
    company: Any,
    backend: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite serialises writers (BEGIN IMMEDIATE); the race needs PostgreSQL")
    original_open = transfer_service.open_from_exit
    original_claim = hooks_service._claim
    claims: list[bool] = []

    def slow_open(*args: Any, **kwargs: Any) -> Handover:
        # Hold the inbound_event row uncommitted so the other delivery has to wait on its primary key.
        h = original_open(*args, **kwargs)
        threading.Event().wait(1.0)
        return h

    def spy_claim(*args: Any, **kwargs: Any) -> InboundEvent | None:
        row = original_claim(*args, **kwargs)
        claims.append(row is not None)
        return row

    monkeypatch.setattr(transfer_service, "open_from_exit", slow_open)
    monkeypatch.setattr(hooks_service, "_claim", spy_claim)
    body, headers = signed(exit_event(), clock=clock)
    clients = [TestClient(hook_app, raise_server_exceptions=False) for _ in range(2)]
    barrier = threading.Barrier(2)
    responses: list[Response] = []

    def post(c: TestClient) -> None:
        barrier.wait()
        responses.append(c.post(URL, content=body, headers=headers))

    threads = [threading.Thread(target=post, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for c in clients:
        c.close()
    assert len(responses) == 2
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    assert sorted(r.json()["replayed"] for r in responses) == [False, True]
    assert len({r.json()["handover_id"] for r in responses}) == 1
    assert sorted(claims) == [False, True], "the second delivery should have lost the primary-key race"
    assert len(handovers(db)) == 1
    assert count(db, "inbound_event") == 1
