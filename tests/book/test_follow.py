"""Issue 16 point 3: at the effective time a moved client's open records follow it to its new owner, the leaver's
client-less ones go to their manager; closed ones and a colleague's stay; undo gives every moved record back; the
CRM hears `record.reassigned` with exactly what moved. The rules one by one: tests/book/test_rules.py."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from app.audit.models import AuditEntry
from app.book.models import Record, RecordMove
from app.core.clock import ManualClock
from app.core.config import Settings
from app.core.db import Database
from app.worker import run_once
from tests.support.company import EFFECTIVE, approve, open_for, plan, second_leaver
from tests.support.events import events, subscribe

RECORDS = [
    {"kind": "deal", "external_id": "d-open", "client": "c0", "owner": "e0", "amount": 100, "currency": "EUR"},
    {"kind": "task", "external_id": "t-closed", "client": "c0", "owner": "e0", "status": "closed", "stage": "done"},
    {"kind": "deal", "external_id": "d-won", "client": "c0", "owner": "e0", "status": "closed", "stage": "won"},
    {"kind": "task", "external_id": "t-colleague", "client": "c1", "owner": "e1"},  # not the leaver's: stays
    {"kind": "case", "external_id": "k-c2", "client": "c2", "owner": "e0", "progress": 10},
    {"kind": "meeting", "external_id": "m-c2", "client": "c2", "owner": "e0"},
    {"kind": "automation", "external_id": "a-own", "owner": "e0"},  # no client: to the leaver's manager m1
]
FOLLOW = {("case", "k-c2"), ("deal", "d-open"), ("meeting", "m-c2"), ("automation", "a-own")}


def seed_records(client: TestClient, auth: Any, rows: list[dict[str, Any]] = RECORDS) -> None:
    items = [{"title": f"{r['kind']} {r['external_id']}", **r} for r in rows]
    r = client.post("/v1/records/batch", json={"items": items}, headers=auth("hr"))
    assert r.status_code == 200, r.text


def owners(db: Database) -> dict[tuple[str, str], str]:
    with db.session(write=False) as s:
        return {(k, e): o for k, e, o in s.execute(select(Record.kind, Record.external_id, Record.owner_id))}


def client_owners(client: TestClient, auth: Any) -> dict[str, str]:
    page = client.get("/v1/clients", params={"limit": 200}, headers=auth()).json()
    return {c["external_id"]: c["owner"] for c in page["items"]}


def record_events(db: Database) -> list[dict[str, Any]]:
    return [d for t, d in events(db) if t == "record.reassigned"]


def execute(client: TestClient, auth: Any, clock: ManualClock, hid: int) -> None:
    plan(client, auth, hid)
    approve(client, auth, hid)
    clock.set(EFFECTIVE)
    r = client.post(f"/v1/handovers/{hid}/execute", headers=auth("admin"))
    assert r.status_code == 200, r.text


def test_open_records_follow_closed_stay_and_undo_restores_exactly(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, settings: Settings, open_handover: int
) -> None:
    subscribe(db, settings)
    seed_records(client, auth)
    before = owners(db)
    execute(client, auth, clock, open_handover)
    after = owners(db)
    now_owner = client_owners(client, auth)
    assert all(now_owner[c] != "e0" for c in ("c0", "c2"))
    expected = dict(before)
    expected[("deal", "d-open")] = now_owner["c0"]
    expected[("case", "k-c2")] = expected[("meeting", "m-c2")] = now_owner["c2"]
    expected[("automation", "a-own")] = "m1"
    assert after == expected  # closed and colleague's records kept their owner
    with db.session(write=False) as s:
        kept = {
            (m.handover_id, m.kind, m.external_id, m.from_owner_id, m.to_owner_id)
            for m in s.scalars(select(RecordMove))
        }
    assert kept == {(open_handover, k, e, "e0", expected[(k, e)]) for k, e in FOLLOW}
    moved = [
        {"kind": k, "record": e, "client": c, "from": "e0", "to": now_owner[c] if c else "m1", "attendee_added": None}
        for k, e, c in sorted(
            [("case", "k-c2", "c2"), ("deal", "d-open", "c0"), ("meeting", "m-c2", "c2"), ("automation", "a-own", None)]
        )
    ]
    assert record_events(db) == [
        {
            "handover_id": open_handover,
            "effective_at": EFFECTIVE.isoformat(),
            "undo": False,
            "batch": 1,
            "batches": 1,
            "records": moved,
        }
    ]
    r = client.get("/v1/records/deal/d-open", headers=auth())
    assert r.json()["owner"] == now_owner["c0"]

    r = client.post(f"/v1/handovers/{open_handover}/undo", json={"reason": "stays"}, headers=auth("admin"))
    assert r.status_code == 200, r.text
    assert owners(db) == before
    back = record_events(db)[-1]
    assert back["undo"] is True
    assert back["records"] == [{**m, "from": m["to"], "to": m["from"]} for m in moved]
    with db.session(write=False) as s:
        actions = list(
            s.scalars(select(AuditEntry.action).where(AuditEntry.action.like("record.re%")).order_by(AuditEntry.seq))
        )
    assert actions == ["record.reassigned", "record.restored"]


def test_undo_keeps_what_the_crm_changed_meanwhile(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, open_handover: int
) -> None:
    seed_records(client, auth)
    execute(client, auth, clock, open_handover)
    # The CRM gives the deal to e1 after the execution: undo leaves it there, and gives the others back.
    r = client.put("/v1/records/deal/d-open", json={"title": "x", "client": "c0", "owner": "e1"}, headers=auth("hr"))
    assert r.status_code == 200, r.text
    assert client.post(f"/v1/handovers/{open_handover}/undo", json={}, headers=auth("admin")).status_code == 200
    now = owners(db)
    assert now[("deal", "d-open")] == "e1"
    assert now[("case", "k-c2")] == now[("meeting", "m-c2")] == now[("automation", "a-own")] == "e0"


def test_nothing_moves_without_records_and_no_event_is_sent(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, settings: Settings, open_handover: int
) -> None:
    subscribe(db, settings)
    execute(client, auth, clock, open_handover)
    assert record_events(db) == []
    with db.session(write=False) as s:
        assert s.scalars(select(RecordMove)).all() == []


def test_the_worker_moves_the_records_of_a_batch_of_leavers(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, settings: Settings, open_handover: int
) -> None:
    subscribe(db, settings)
    second_leaver(client, auth)  # e1 owns d0…d3
    seed_records(client, auth, [*RECORDS, {"kind": "deal", "external_id": "d-e1", "client": "d0", "owner": "e1"}])
    other = open_for(client, auth, "e1")
    for hid in (open_handover, other):
        plan(client, auth, hid)
        approve(client, auth, hid)
    clock.set(EFFECTIVE)
    assert run_once(db, clock)["execute_due_handovers"] == 2
    now_owner = client_owners(client, auth)
    after = owners(db)
    assert after[("deal", "d-e1")] == now_owner["d0"] != "e1"
    assert after[("deal", "d-open")] == now_owner["c0"] != "e0"
    # t-colleague was e1's on e0's client c1: c1 moved from e0, not from e1, so the task stays with e1 (who left too).
    assert after[("task", "t-colleague")] == "e1"
    by_handover = {e["handover_id"]: {(r["kind"], r["record"]) for r in e["records"]} for e in record_events(db)}
    assert by_handover == {open_handover: FOLLOW, other: {("deal", "d-e1")}}


def test_open_records_follow_an_interim_take_over(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, open_handover: int
) -> None:
    seed_records(client, auth)
    plan(client, auth, open_handover)  # not approved by the effective time
    clock.set(EFFECTIVE)
    run_once(db, clock)
    now_owner = client_owners(client, auth)
    assert now_owner["c0"] != "e0"
    assert owners(db)[("deal", "d-open")] == now_owner["c0"]
