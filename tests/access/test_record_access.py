"""The access decision covers records (issue 16 point 3): a record is decided as its client, after a handover's
execution too; a client-less record is its owner's alone; unknown records are a 404, bad references a 422."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from app.audit.models import AuditEntry
from app.core.clock import ManualClock
from app.core.db import Database
from app.worker import run_once
from tests.support.company import EFFECTIVE, approve, employees, plan
from tests.support.db import snapshot as db_snapshot
from tests.support.problems import assert_problem

S = dt.timedelta(seconds=1)
CHECKER = {"scope": "access:check access:admin"}


def _check(client: TestClient, auth: Any, body: dict[str, Any]) -> Any:
    return client.post("/v1/access/check", json=body, headers=auth("integration", **CHECKER))


def decide(client: TestClient, auth: Any, employee: str, target: dict[str, Any], action: str, at: dt.datetime) -> Any:
    r = _check(client, auth, {"employee": employee, **target, "action": action, "at": at.isoformat()})
    assert r.status_code == 200, r.text
    return r.json()


def _records(client: TestClient, auth: Any, items: list[dict[str, Any]]) -> None:
    rows = [{"title": f"{i['kind']} {i['external_id']}", **i} for i in items]
    r = client.post("/v1/records/batch", json={"items": rows}, headers=auth("hr"))
    assert r.status_code == 200, r.text


def _same(by_record: dict[str, Any], by_client: dict[str, Any]) -> None:
    """A record's decision is its client's, field for field, plus the record."""
    assert by_client["record"] is None and by_record["record"] is not None
    assert {**by_record, "record": None} == by_client


def test_a_record_follows_its_client_through_the_execution(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, open_handover: int
) -> None:
    _records(
        client, auth, [{"kind": "deal", "external_id": f"d-c{i}", "owner": "e0", "client": f"c{i}"} for i in range(8)]
    )
    plan(client, auth, open_handover)
    approve(client, auth, open_handover)
    items = client.get(f"/v1/handovers/{open_handover}/items", headers=auth()).json()["items"]
    it = next(i for i in items if i["successor"])
    cl, succ = it["client"], it["successor"]
    record = {"record": {"kind": "deal", "external_id": f"d-{cl}"}}
    # Before the effective time the leaver still holds it, and the successor shadows it (view only).
    before = EFFECTIVE - S
    assert decide(client, auth, "e0", record, "edit", before)["allowed"]
    assert decide(client, auth, succ, record, "edit", before)["reason"] == "view_only"
    clock.set(EFFECTIVE)
    run_once(db, clock)
    after = EFFECTIVE + S
    # The successor owns the moved client's deal from the effective time; the leaver has nothing.
    owner = decide(client, auth, succ, record, "export", after)
    assert owner["allowed"] and owner["level"] == "owner" and owner["client"] == cl
    assert owner["record"] == {"kind": "deal", "external_id": f"d-{cl}"}
    _same(owner, decide(client, auth, succ, {"client": cl}, "export", after))
    leaver = decide(client, auth, "e0", record, "view", after)
    assert leaver["allowed"] is False
    _same(leaver, decide(client, auth, "e0", {"client": cl}, "view", after))
    # The record moved with its client (book's execution), and the decision did not need it to: it goes by client.
    moved = client.get(f"/v1/records/deal/d-{cl}", headers=auth()).json()
    assert moved["owner"] == succ
    # The leaver's denial is audited under the record, naming the client it was decided for.
    with db.session(write=False) as s:
        denied = [
            (e.data["employee"], e.data["client"], e.data["reason"])
            for e in s.scalars(
                select(AuditEntry).where(
                    AuditEntry.entity_type == "record",
                    AuditEntry.entity_id == f"deal/d-{cl}",
                    AuditEntry.action == "access.denied",
                )
            )
        ]
    assert sorted(denied) == sorted([(succ, cl, "view_only"), ("e0", cl, leaver["reason"])])


def test_a_client_less_record_is_its_owners_alone(client: TestClient, auth: Any, company: Any, db: Database) -> None:
    _records(client, auth, [{"kind": "automation", "external_id": "a-e1", "owner": "e1", "client": None}])
    mine = {"record": {"kind": "automation", "external_id": "a-e1"}}
    at = EFFECTIVE
    for action in ("view", "edit", "export", "delete"):
        d = decide(client, auth, "e1", mine, action, at)
        assert (d["allowed"], d["reason"], d["level"], d["client"], d["grant_id"]) == (
            True,
            "granted",
            "owner",
            None,
            None,
        )
    other = decide(client, auth, "e2", mine, "view", at)
    assert (other["allowed"], other["reason"]) == (False, "not_record_owner")
    # The admin (an unrestricted caller) can ask, and gets the same rules; nobody else is let in.
    assert decide(client, auth, "m1", mine, "view", at)["reason"] == "not_record_owner"
    assert decide(client, auth, "nobody", mine, "view", at)["reason"] == "unknown_employee"
    # The owner may ask about themselves; another account manager may not ask for them.
    r = client.post(
        "/v1/access/check",
        json={"employee": "e1", **mine, "action": "view"},
        headers=auth("account_manager", emp="e1"),
    )
    assert r.status_code == 200 and r.json()["allowed"], r.text
    r = client.post(
        "/v1/access/check",
        json={"employee": "e1", **mine, "action": "view"},
        headers=auth("account_manager", emp="e2"),
    )
    assert_problem(r, 403)


def test_a_departed_owner_loses_their_client_less_record(
    client: TestClient, auth: Any, company: Any, db: Database
) -> None:
    _records(client, auth, [{"kind": "automation", "external_id": "a-e1", "owner": "e1", "client": None}])
    e1 = next(e for e in employees() if e["external_id"] == "e1")
    exit_at = EFFECTIVE - dt.timedelta(days=1)
    r = client.post(
        "/v1/employees/batch",
        json={"items": [{**e1, "status": "leaving", "exit_at": exit_at.isoformat()}]},
        headers=auth("hr"),
    )
    assert r.status_code == 200, r.text
    ref = {"record": {"kind": "automation", "external_id": "a-e1"}}
    assert decide(client, auth, "e1", ref, "view", exit_at - S)["allowed"]
    d = decide(client, auth, "e1", ref, "view", exit_at)
    assert (d["allowed"], d["reason"]) == (False, "employee_departed")


def test_unknown_records_and_bad_references(client: TestClient, auth: Any, company: Any, db: Database) -> None:
    _records(client, auth, [{"kind": "deal", "external_id": "d1", "owner": "e0", "client": "c0"}])
    before = db_snapshot(db, ("audit_entry",))
    for ref in ({"kind": "task", "external_id": "d1"}, {"kind": "deal", "external_id": "d2"}):
        r = _check(client, auth, {"employee": "e0", "record": ref, "action": "view"})
        body = assert_problem(r, 404)
        assert body["type"].endswith("access-record-not-found") and ref["external_id"] in body["detail"]
    bad = [
        {"employee": "e0", "record": {"kind": "opportunity", "external_id": "d1"}, "action": "view"},
        {"employee": "e0", "record": {"kind": "deal", "external_id": "d 1"}, "action": "view"},
        {"employee": "e0", "record": {"kind": "deal"}, "action": "view"},
        {"employee": "e0", "record": {"kind": "deal", "external_id": "d1", "client": "c0"}, "action": "view"},
        {"employee": "e0", "client": "c0", "record": {"kind": "deal", "external_id": "d1"}, "action": "view"},
        {"employee": "e0", "action": "view"},
        {"employee": "e0", "client": "c0", "record": None, "action": "view"},  # omitted, not null
        {"employee": "e0", "client": None, "record": {"kind": "deal", "external_id": "d1"}, "action": "view"},
    ]
    for body in bad:
        assert_problem(_check(client, auth, body), 422)
    r = client.post(
        "/v1/access/check/batch",
        json={"checks": [{"employee": "e0", "record": {"kind": "meeting", "external_id": "x"}, "action": "view"}]},
        headers=auth("integration", **CHECKER),
    )
    assert_problem(r, 404)
    assert db_snapshot(db, ("audit_entry",)) == before  # nothing decided, nothing audited


def test_a_batch_mixes_clients_and_records(client: TestClient, auth: Any, company: Any, db: Database) -> None:
    _records(
        client,
        auth,
        [
            {"kind": "deal", "external_id": "d1", "owner": "e0", "client": "c0"},
            {"kind": "case", "external_id": "k1", "owner": "e0", "client": "c1"},
            {"kind": "automation", "external_id": "a1", "owner": "e0", "client": None},
        ],
    )
    at = EFFECTIVE.isoformat()
    checks = [
        {"employee": "e0", "client": "c0", "action": "view", "at": at},
        {"employee": "e0", "record": {"kind": "deal", "external_id": "d1"}, "action": "export", "at": at},
        {"employee": "e1", "record": {"kind": "case", "external_id": "k1"}, "action": "view", "at": at},
        {"employee": "e0", "record": {"kind": "automation", "external_id": "a1"}, "action": "edit", "at": at},
        {"employee": "e1", "record": {"kind": "automation", "external_id": "a1"}, "action": "edit", "at": at},
    ]
    r = client.post("/v1/access/check/batch", json={"checks": checks}, headers=auth("integration", **CHECKER))
    assert r.status_code == 200, r.text
    decisions = r.json()["decisions"]
    singles = [_check(client, auth, c).json() for c in checks]
    assert decisions == singles
    assert [d["record"] for d in decisions] == [None] + [c["record"] for c in checks[1:]]
    assert [d["client"] for d in decisions] == ["c0", "c0", "c1", None, None]
    assert [d["reason"] for d in decisions][3:] == ["granted", "not_record_owner"]
    unknown = [*checks, {"employee": "e0", "record": {"kind": "deal", "external_id": "zz"}, "action": "view"}]
    r = client.post("/v1/access/check/batch", json={"checks": unknown}, headers=auth("integration", **CHECKER))
    assert "zz" in assert_problem(r, 404)["detail"]
