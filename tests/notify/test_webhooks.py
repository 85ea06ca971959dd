"""Outbound webhooks end to end: the outbox in the caller's transaction, signing, retries, 410, Retry-After, dead."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from app.audit.models import AuditEntry
from app.core.clock import ManualClock
from app.core.config import Settings
from app.core.db import Database, transaction
from app.directory.models import Employee
from app.notify import service
from app.notify.models import OutboxMessage
from app.notify.worker import BACKOFF, MAX_ATTEMPTS, Deliverer
from app.worker import run_once
from tests.support.receivers import Receiver, outbox

MakeDeliverer = Callable[..., Deliverer]


def emit(db: Database, clock: ManualClock, n: int = 1, event_type: str = "handover.created") -> None:
    with transaction(db) as s:
        for i in range(n):
            service.emit(s, event_type, {"handover_id": i + 1, "leaver": "e0"}, now=clock.now())


def test_delivered_signed_with_the_envelope(
    db: Database, clock: ManualClock, receiver: Receiver, make_endpoint: Any, deliverer: MakeDeliverer
) -> None:
    receiver.start()
    make_endpoint(receiver, ["handover.created"])
    emit(db, clock)
    emit(db, clock, event_type="handover.approved")  # not subscribed: no row
    [row] = outbox(db)
    assert row.message_id.startswith("msg_") and len(row.message_id) == 36
    assert deliverer().run() == 1
    [got] = receiver.received
    assert got.verified, got.error
    assert got.webhook_id == row.message_id
    assert got.timestamp == str(int(clock.now().timestamp()))
    assert got.headers["webhook-signature"].startswith("v1,")
    assert got.headers["content-type"] == "application/json"
    assert got.json == {
        "type": "handover.created",
        "timestamp": clock.now().isoformat(),
        "data": {"handover_id": 1, "leaver": "e0"},
    }
    [sent] = outbox(db)
    assert (sent.status, sent.attempts, sent.sent_at, sent.locked_until) == ("sent", 1, clock.now(), None)


def test_emit_fans_out_once_per_subscribed_endpoint(
    db: Database, clock: ManualClock, receiver: Receiver, make_endpoint: Any
) -> None:
    a = make_endpoint(receiver, ["*", "client.reassigned"])  # both match: still one row
    b = make_endpoint(receiver, ["client.reassigned"])
    make_endpoint(receiver, ["alert.raised"])
    with transaction(db) as s:
        n = service.emit_batches(
            s,
            "client.reassigned",
            "clients",
            [{"client": f"c{i}", "from": "e0", "to": "e1"} for i in range(1201)],
            common={"handover_id": 1},
            now=clock.now(),
        )
    assert n == 3
    rows = outbox(db)
    assert sorted(r.endpoint_id for r in rows) == sorted([a["id"]] * 3 + [b["id"]] * 3)
    assert len({r.message_id for r in rows}) == 6
    sizes = sorted(len(r.payload["data"]["clients"]) for r in rows if r.endpoint_id == a["id"])
    assert sizes == [201, 500, 500]
    assert {r.payload["data"]["batches"] for r in rows} == {3}


def test_unknown_event_type_is_a_bug(db: Database, clock: ManualClock) -> None:
    with pytest.raises(ValueError, match="unknown event type"), transaction(db) as s:
        service.emit(s, "handover.exploded", {}, now=clock.now())


def test_failure_before_commit_leaves_neither_change_nor_outbox_row(
    db: Database, clock: ManualClock, receiver: Receiver, make_endpoint: Any, client: TestClient, auth: Any
) -> None:
    make_endpoint(receiver, ["*"])
    r = client.put(
        "/v1/employees/e9",
        json={"name": "Before", "email": "e9@example.com", "seniority": 2, "clearance": 1, "capacity": 5},
        headers=auth("hr"),
    )
    assert r.status_code in (200, 201), r.text
    with pytest.raises(RuntimeError), transaction(db) as s:
        s.execute(update(Employee).where(Employee.external_id == "e9").values(name="After"))
        service.emit(s, "handover.created", {"handover_id": 9}, now=clock.now())
        s.flush()
        raise RuntimeError("crash between the change and the commit")
    with db.session(write=False) as s:
        assert s.scalar(select(Employee.name).where(Employee.external_id == "e9")) == "Before"
    assert outbox(db) == []
    with transaction(db) as s:  # and the same unit of work, committed, keeps both
        s.execute(update(Employee).where(Employee.external_id == "e9").values(name="After"))
        service.emit(s, "handover.created", {"handover_id": 9}, now=clock.now())
    assert len(outbox(db)) == 1


def test_refused_then_500_then_200_with_backoff(
    client: TestClient,
    auth: Any,
    db: Database,
    clock: ManualClock,
    receiver: Receiver,
    make_endpoint: Any,
    deliverer: MakeDeliverer,
) -> None:
    endpoint = make_endpoint(receiver, ["*"])  # nothing listens on its port yet: connection refused
    emit(db, clock)
    worker = deliverer()
    assert worker.run() == 1
    [row] = outbox(db)
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.next_attempt_at is not None
    wait = row.next_attempt_at - clock.now()
    assert BACKOFF[0] * 0.9 <= wait <= BACKOFF[0] * 1.1
    assert "ConnectError" in (row.last_error or "")

    receiver.script = [(500, {})]
    receiver.start()
    clock.advance(wait - dt.timedelta(seconds=1))
    assert worker.run() == 0  # not due yet: time is not up
    clock.advance(dt.timedelta(seconds=1))
    assert worker.run() == 1
    [row] = outbox(db)
    assert (row.status, row.attempts, row.last_error) == ("failed", 2, "HTTP 500")
    assert row.next_attempt_at is not None
    wait = row.next_attempt_at - clock.now()
    assert BACKOFF[1] * 0.9 <= wait <= BACKOFF[1] * 1.1

    clock.advance(wait)
    assert worker.run() == 1
    [row] = outbox(db)
    assert (row.status, row.attempts, row.last_error) == ("sent", 3, None)
    first, second = receiver.received
    assert first.webhook_id == second.webhook_id == row.message_id  # stable across retries
    assert first.timestamp != second.timestamp  # a fresh timestamp each time
    assert first.verified and second.verified

    r = client.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries", headers=auth())
    assert r.status_code == 200, r.text
    attempts = r.json()["items"]
    assert [a["attempt"] for a in attempts] == [3, 2, 1]
    assert [a["succeeded"] for a in attempts] == [True, False, False]
    assert [a["http_status"] for a in attempts] == [200, 500, None]
    assert {a["message_id"] for a in attempts} == {row.message_id}
    assert attempts[0]["response_excerpt"] == '{"ok": true}'


def test_410_disables_the_endpoint(
    client: TestClient,
    auth: Any,
    db: Database,
    clock: ManualClock,
    receiver: Receiver,
    make_endpoint: Any,
    deliverer: MakeDeliverer,
) -> None:
    receiver.script = [(410, {})]
    receiver.start()
    endpoint = make_endpoint(receiver, ["*"])
    emit(db, clock, n=3)
    deliverer().run()
    assert len(receiver.received) == 1  # the rest were not even tried
    assert [r.status for r in outbox(db)] == ["dead", "dead", "dead"]
    body = client.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=auth()).json()
    assert body["status"] == "disabled" and "410" in body["status_reason"]
    emit(db, clock)
    assert len(outbox(db)) == 3  # a disabled endpoint gets no new rows


def test_retry_after_is_honoured(
    db: Database, clock: ManualClock, receiver: Receiver, make_endpoint: Any, deliverer: MakeDeliverer
) -> None:
    receiver.script = [(503, {"Retry-After": "3600"}), (429, {"Retry-After": "1"})]
    receiver.start()
    make_endpoint(receiver, ["*"])
    emit(db, clock)
    worker = deliverer()
    worker.run()
    [row] = outbox(db)
    assert row.status == "failed" and row.next_attempt_at == clock.now() + dt.timedelta(hours=1)
    clock.advance(BACKOFF[0] * 2)
    assert worker.run() == 0
    clock.advance(dt.timedelta(hours=1))
    assert worker.run() == 1
    [row] = outbox(db)
    # A Retry-After shorter than the schedule does not shorten it.
    assert row.next_attempt_at is not None and row.next_attempt_at - clock.now() >= BACKOFF[1] * 0.9
    clock.advance(BACKOFF[1] * 1.2)
    worker.run()
    assert outbox(db)[0].status == "sent"
    assert len(receiver.received) == 3


def test_dead_after_the_last_try_then_retried_by_hand(
    client: TestClient,
    auth: Any,
    db: Database,
    clock: ManualClock,
    receiver: Receiver,
    make_endpoint: Any,
    deliverer: MakeDeliverer,
) -> None:
    receiver.script = [(500, {})] * MAX_ATTEMPTS
    receiver.start()
    endpoint = make_endpoint(receiver, ["handover.created"])
    emit(db, clock)
    worker = deliverer()
    for delay in (dt.timedelta(0), *BACKOFF):
        clock.advance(delay * 1.11)
        assert worker.run() == 1
    [row] = outbox(db)
    assert (row.status, row.attempts, row.next_attempt_at) == ("dead", MAX_ATTEMPTS, None)
    clock.advance(dt.timedelta(days=30))
    assert worker.run() == 0  # dead stays dead

    last = client.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries?limit=1", headers=auth()).json()["items"][0]
    assert last["attempt"] == MAX_ATTEMPTS and last["message_status"] == "dead"
    r = client.post(f"/v1/deliveries/{last['id']}/retry", headers=auth())
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "pending" and r.json()["message_id"] == row.message_id
    assert worker.run() == 1
    [row] = outbox(db)
    assert (row.status, row.attempts) == ("sent", MAX_ATTEMPTS + 1)
    assert {x.webhook_id for x in receiver.received} == {row.message_id}

    again = client.post(f"/v1/deliveries/{last['id']}/retry", headers=auth())
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")
    assert client.post("/v1/deliveries/999999/retry", headers=auth()).status_code == 404
    with db.session(write=False) as s:
        assert s.scalar(select(AuditEntry.action).where(AuditEntry.action == "delivery.retried")) is not None


def test_a_manual_retry_that_fails_is_dead_again(
    client: TestClient,
    auth: Any,
    db: Database,
    clock: ManualClock,
    receiver: Receiver,
    make_endpoint: Any,
    deliverer: MakeDeliverer,
) -> None:
    receiver.script = [(500, {})] * (MAX_ATTEMPTS + 1)
    receiver.start()
    endpoint = make_endpoint(receiver, ["*"])
    emit(db, clock)
    worker = deliverer()
    for delay in (dt.timedelta(0), *BACKOFF):
        clock.advance(delay * 1.11)
        worker.run()
    last = client.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries?limit=1", headers=auth()).json()["items"][0]
    assert client.post(f"/v1/deliveries/{last['id']}/retry", headers=auth()).status_code == 202
    worker.run()
    assert outbox(db)[0].status == "dead"


def test_private_target_refused_again_at_delivery_time(
    db: Database,
    clock: ManualClock,
    receiver: Receiver,
    make_endpoint: Any,
    deliverer: MakeDeliverer,
    notify_settings: Settings,
) -> None:
    """Allowed when created, refused when sent: the check runs on every delivery, not only at creation."""
    receiver.start()
    make_endpoint(receiver, ["*"])
    emit(db, clock)
    deliverer(settings=notify_settings.model_copy(update={"webhook_allow_private": False})).run()
    [row] = outbox(db)
    assert row.status == "failed" and "private" in (row.last_error or "")
    assert receiver.received == []


def test_deleting_an_endpoint_withdraws_what_it_did_not_get(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, receiver: Receiver, make_endpoint: Any
) -> None:
    endpoint = make_endpoint(receiver, ["*"])
    emit(db, clock, n=2)
    r = client.delete(f"/v1/webhook-endpoints/{endpoint['id']}", headers=auth())
    assert r.status_code == 204
    assert [row.status for row in outbox(db)] == ["withdrawn", "withdrawn"]
    listed = client.get("/v1/webhook-endpoints", headers=auth()).json()["items"]
    assert listed == []
    everything = client.get("/v1/webhook-endpoints?include_deleted=true", headers=auth()).json()["items"]
    assert [e["status"] for e in everything] == ["deleted"]
    assert client.delete(f"/v1/webhook-endpoints/{endpoint['id']}", headers=auth()).status_code == 404
    # Its sub-resources are gone with it (found by schemathesis's stateful use-after-free check).
    assert client.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries", headers=auth()).status_code == 404
    actions = set()
    with db.session(write=False) as s:
        actions = set(s.scalars(select(AuditEntry.action).where(AuditEntry.entity_type == "webhook_endpoint")))
    assert actions == {"webhook_endpoint.created", "webhook_endpoint.deleted"}


def test_the_worker_job_delivers(
    db: Database, clock: ManualClock, receiver: Receiver, make_endpoint: Any, notify_settings: Settings
) -> None:
    """`handover worker` runs the delivery loop as one of its jobs."""
    receiver.start()
    make_endpoint(receiver, ["*"])
    emit(db, clock, n=2)
    worker_db = Database(notify_settings)
    try:
        done = run_once(worker_db, clock)
    finally:
        worker_db.dispose()
    assert done["deliver_outbox"] == 2
    assert len(receiver.received) == 2
    with db.session(write=False) as s:
        assert set(s.scalars(select(OutboxMessage.status))) == {"sent"}
