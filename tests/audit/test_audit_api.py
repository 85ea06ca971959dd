"""The audit log over HTTP: listing, verification, tampering with raw SQL, concurrent writers."""

from __future__ import annotations

import threading
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text

from app.audit import service as audit
from app.core.db import Database
from tests.conftest import START


def _seed(client: TestClient, auth: Any, n: int = 5) -> None:
    for i in range(n):
        r = client.put(
            f"/v1/employees/e{i}",
            json={"name": f"E{i}", "email": f"e{i}@example.com", "seniority": 2},
            headers=auth("hr"),
        )
        assert r.status_code == 201


def test_list_and_filter(client: TestClient, auth: Any) -> None:
    _seed(client, auth, 3)
    page = client.get("/v1/audit", params={"limit": 2}, headers=auth("auditor")).json()
    assert [e["seq"] for e in page["items"]] == [3, 2] and page["next_offset"] == 2
    one = client.get("/v1/audit", params={"entity_id": "e1"}, headers=auth("auditor")).json()["items"]
    assert len(one) == 1 and one[0]["action"] == "employee.created" and one[0]["actor"] == "hr:test-hr"
    assert one[0]["occurred_at"] == START.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert client.get("/v1/audit", headers=auth("hr")).status_code == 403


def test_verify_ok(client: TestClient, auth: Any) -> None:
    _seed(client, auth)
    body = client.get("/v1/audit/verify", headers=auth("auditor")).json()
    assert body["ok"] is True and body["count"] == body["total"] == 5 and body["first_broken"] is None


def test_edit_with_raw_sql_is_reported(client: TestClient, auth: Any, db: Database) -> None:
    _seed(client, auth)
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE audit_entry SET actor = 'admin:someone-else' WHERE seq = 3"))
    body = client.get("/v1/audit/verify", headers=auth("auditor")).json()
    assert body["ok"] is False
    assert body["first_broken"]["seq"] == 3 and "edited" in body["first_broken"]["reason"]


def test_delete_with_raw_sql_is_reported(client: TestClient, auth: Any, db: Database) -> None:
    _seed(client, auth)
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_entry WHERE seq = 2"))
    body = client.get("/v1/audit/verify", headers=auth("auditor")).json()
    assert body["ok"] is False and body["first_broken"]["seq"] == 3
    assert "deleted" in body["first_broken"]["reason"]


def test_concurrent_writers_keep_the_chain_valid(db: Database) -> None:
    threads, per_thread = 6, 15
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def work(t: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                with db.session() as session:
                    audit.record(
                        session,
                        actor=f"t{t}",
                        action="test.write",
                        entity_type="test",
                        entity_id=f"{t}-{i}",
                        data={"i": i},
                        at=START,
                    )
                    session.commit()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    assert not errors, errors
    with db.session(write=False) as session:
        result = audit.verify(session)
    assert result.ok and result.count == threads * per_thread


def test_failed_request_writes_no_audit(client: TestClient, auth: Any) -> None:
    r = client.put("/v1/clients/c1", json={"name": "Acme", "tier": "key", "owner": "ghost"}, headers=auth("hr"))
    assert r.status_code == 422
    assert client.get("/v1/audit/verify", headers=auth("auditor")).json()["total"] == 0
