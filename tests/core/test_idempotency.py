"""Idempotency-Key: one effect per key, replays answer the same, another body is refused, keys are per principal."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.access.models import AccessGrant
from app.audit.models import AuditEntry
from app.core.clock import ManualClock
from app.core.db import Database
from app.core.idempotency import IdempotencyKey
from app.transfer.models import Handover
from app.worker import run_once
from tests.support.company import EFFECTIVE


def count(db: Database, model: Any) -> int:
    with db.session(write=False) as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


BODY = {"leaver": "e0", "reason": "resignation", "effective_at": EFFECTIVE.isoformat()}


def test_same_key_same_body_replays_with_one_effect(client: TestClient, auth: Any, db: Database, company: Any) -> None:
    h = {**auth("hr"), "Idempotency-Key": "create-e0-1"}
    first = client.post("/v1/handovers", json=BODY, headers=h)
    assert first.status_code == 201
    audits = count(db, AuditEntry)
    again = client.post("/v1/handovers", json=BODY, headers=h)
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true" and again.headers["location"] == first.headers["location"]
    assert count(db, Handover) == 1 and count(db, AuditEntry) == audits


def test_same_key_other_body_is_refused(client: TestClient, auth: Any, db: Database, company: Any) -> None:
    h = {**auth("hr"), "Idempotency-Key": "k-2"}
    assert client.post("/v1/handovers", json=BODY, headers=h).status_code == 201
    other = client.post("/v1/handovers", json={**BODY, "reason": "retirement"}, headers=h)
    assert other.status_code == 422 and other.headers["content-type"].startswith("application/problem+json")
    assert count(db, Handover) == 1


def test_a_refused_request_is_replayed_and_writes_nothing(
    client: TestClient, auth: Any, db: Database, company: Any
) -> None:
    h = {**auth("hr"), "Idempotency-Key": "bad-1"}
    body = {**BODY, "leaver": "ghost"}
    first = client.post("/v1/handovers", json=body, headers=h)
    assert first.status_code == 422
    again = client.post("/v1/handovers", json=body, headers=h)
    assert again.status_code == 422 and again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert count(db, Handover) == 0


def test_keys_are_scoped_per_principal(client: TestClient, auth: Any, db: Database, company: Any) -> None:
    body = {"employee": "e1", "client": "c1", "level": "read", "reason": "audit"}
    a = client.post("/v1/access/grants", json=body, headers={**auth("admin", sub="alice"), "Idempotency-Key": "same"})
    b = client.post("/v1/access/grants", json=body, headers={**auth("admin", sub="bob"), "Idempotency-Key": "same"})
    assert a.status_code == b.status_code == 201 and a.json()["id"] != b.json()["id"]
    with db.session(write=False) as s:
        assert s.scalar(select(func.count()).select_from(AccessGrant).where(AccessGrant.reason == "audit")) == 2


def test_concurrent_requests_with_one_key_make_one_effect(app: FastAPI, auth: Any, db: Database, company: Any) -> None:
    body = {"employee": "e1", "client": "c1", "level": "read", "reason": "race"}
    h = {**auth("admin"), "Idempotency-Key": "race-1"}
    results: list[Any] = []
    barrier = threading.Barrier(4)

    def go() -> None:
        with TestClient(app, raise_server_exceptions=False) as c:
            barrier.wait()
            results.append(c.post("/v1/access/grants", json=body, headers=h))

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status_code for r in results) == [201] * 4
    assert len({r.json()["id"] for r in results}) == 1
    with db.session(write=False) as s:
        assert s.scalar(select(func.count()).select_from(AccessGrant).where(AccessGrant.reason == "race")) == 1


def test_bad_keys_and_missing_tokens(client: TestClient, auth: Any, company: Any) -> None:
    r = client.post("/v1/handovers", json=BODY, headers={**auth("hr"), "Idempotency-Key": "has space"})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["header", "Idempotency-Key"]
    r = client.post("/v1/handovers", json=BODY, headers={"Idempotency-Key": "k"})
    assert r.status_code == 401


def test_keys_expire_after_a_day(client: TestClient, auth: Any, db: Database, clock: ManualClock, company: Any) -> None:
    h = {**auth("hr"), "Idempotency-Key": "old"}
    assert client.post("/v1/handovers", json=BODY, headers=h).status_code == 201
    clock.set(clock.now() + dt.timedelta(hours=23))
    run_once(db, clock)
    assert count(db, IdempotencyKey) == 1
    clock.set(clock.now() + dt.timedelta(hours=2))
    run_once(db, clock)
    assert count(db, IdempotencyKey) == 0


# ---- a replay passes the same checks as the route: the token, the leaver gate, the scopes --------------


def test_a_leavers_replay_is_refused_and_writes_nothing(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, company: Any
) -> None:
    h = {**auth("manager", emp="m1"), "Idempotency-Key": "m1-opens-e0"}
    first = client.post("/v1/handovers", json=BODY, headers=h)
    assert first.status_code == 201, first.text
    m1_exit = clock.now() + dt.timedelta(days=1)
    r = client.post(
        "/v1/handovers",
        json={"leaver": "m1", "reason": "resignation", "effective_at": m1_exit.isoformat()},
        headers=auth("hr"),
    )
    assert r.status_code == 201, r.text
    assert client.post("/v1/handovers", json=BODY, headers=h).headers["idempotent-replayed"] == "true"
    clock.set(m1_exit)
    handovers, audits, keys = count(db, Handover), count(db, AuditEntry), count(db, IdempotencyKey)
    replay = client.post("/v1/handovers", json=BODY, headers=h)
    assert replay.status_code == 403, replay.text
    assert replay.headers["content-type"].startswith("application/problem+json")
    assert "idempotent-replayed" not in replay.headers and "has left" in replay.json()["detail"]
    assert (count(db, Handover), count(db, AuditEntry), count(db, IdempotencyKey)) == (handovers, audits, keys)
    other_key = client.post("/v1/handovers", json=BODY, headers={**h, "Idempotency-Key": "m1-new-key"})
    assert other_key.status_code == 403 and count(db, IdempotencyKey) == keys


def test_a_replay_without_the_routes_scope_is_refused(
    client: TestClient, auth: Any, db: Database, company: Any
) -> None:
    key = {"Idempotency-Key": "narrowed"}
    first = client.post("/v1/handovers", json=BODY, headers={**auth("hr", sub="h1"), **key})
    assert first.status_code == 201, first.text
    for narrowed in ("handovers:read", "directory:write handovers:read", ""):
        replay = client.post("/v1/handovers", json=BODY, headers={**auth("hr", sub="h1", scope=narrowed), **key})
        assert replay.status_code == 403, replay.text
        assert "handovers:write" in replay.json()["detail"] and "idempotent-replayed" not in replay.headers
    # An integration token of the same subject string is another principal; without the scope it is refused too.
    machine = client.post("/v1/handovers", json=BODY, headers={**auth("integration", sub="h1", scope=""), **key})
    assert machine.status_code == 403
    assert count(db, Handover) == 1


def test_a_replay_with_an_expired_or_forged_token_is_a_401(
    client: TestClient, auth: Any, settings: Any, db: Database, company: Any
) -> None:
    h = {**auth("hr", sub="h2"), "Idempotency-Key": "forged"}
    assert client.post("/v1/handovers", json=BODY, headers=h).status_code == 201
    bearer = h["Authorization"]
    for bad in (bearer + "!!!", bearer[:-2] + ("AA" if not bearer.endswith("AA") else "BB")):
        replay = client.post("/v1/handovers", json=BODY, headers={**h, "Authorization": bad})
        assert replay.status_code == 401, replay.text
        assert replay.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert count(db, Handover) == 1
