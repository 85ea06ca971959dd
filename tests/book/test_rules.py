"""Issue 16 point 2, the rules of what moves, one by one on both databases: open records follow the client's
receiver, closed ones stay, client-less ones go to the leaver's manager, meetings within the transition period stay
with the leaver and the receiver attends; the per-handover `record_rules`, the per-record overrides with If-Match;
records through the interim take-over, a late approval, undo and cancellation; the events carry exactly that."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from app.audit.models import AuditEntry
from app.book.models import RecordMove
from app.core.clock import ManualClock
from app.core.config import Settings
from app.core.db import Database
from app.directory.models import Client, Employee
from app.transfer.models import Handover, HandoverRecordOverride
from app.worker import run_once
from tests.book.test_follow import owners, record_events, seed_records
from tests.support.company import EFFECTIVE, approve, plan
from tests.support.events import subscribe

SOON = EFFECTIVE + dt.timedelta(days=3)  # within the 14 days' transition period
LATER = EFFECTIVE + dt.timedelta(days=20)  # after it
ROWS = [
    {"kind": "deal", "external_id": "d1", "client": "c0", "owner": "e0", "amount": 500, "currency": "EUR"},
    {"kind": "deal", "external_id": "d2", "client": "c0", "owner": "e0", "status": "closed", "stage": "won"},
    {"kind": "meeting", "external_id": "m-soon", "client": "c1", "owner": "e0", "due_at": SOON.isoformat()},
    {"kind": "meeting", "external_id": "m-later", "client": "c1", "owner": "e0", "due_at": LATER.isoformat()},
    {"kind": "automation", "external_id": "a1", "owner": "e0"},
    {"kind": "meeting", "external_id": "m-own", "owner": "e0", "due_at": SOON.isoformat()},  # client-less, soon
    {"kind": "task", "external_id": "t-e1", "client": "c0", "owner": "e1"},  # a colleague's: not the leaver's
]


def rows_of(client: TestClient, auth: Any, hid: int, role: str = "hr") -> dict[tuple[str, str], dict[str, Any]]:
    r = client.get(f"/v1/handovers/{hid}/records", params={"limit": 200}, headers=auth(role))
    assert r.status_code == 200, r.text
    return {(x["kind"], x["external_id"]): x for x in r.json()["items"]}


def receivers(client: TestClient, auth: Any, hid: int) -> dict[str, str]:
    r = client.get(f"/v1/handovers/{hid}/items", params={"limit": 200}, headers=auth())
    return {i["client"]: i["successor"] or i["interim_owner"] for i in r.json()["items"]}


def test_each_rule_in_the_preview_then_at_execution_and_undo_gives_everything_back(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, settings: Settings, open_handover: int
) -> None:
    hid = open_handover
    subscribe(db, settings)
    seed_records(client, auth, ROWS)
    before = owners(db)
    plan(client, auth, hid)
    to = receivers(client, auth, hid)
    rows = rows_of(client, auth, hid)
    assert set(rows) == {(r["kind"], r["external_id"]) for r in ROWS} - {("task", "t-e1")}
    got = {k: (v["rule"], v["to"], v["attendee"]) for k, v in rows.items()}
    assert got == {
        ("deal", "d1"): ("follow", to["c0"], None),
        ("deal", "d2"): ("keep", None, None),
        ("meeting", "m-soon"): ("meeting_stays", None, to["c1"]),
        ("meeting", "m-later"): ("follow", to["c1"], None),
        ("automation", "a1"): ("manager", "m1", None),
        ("meeting", "m-own"): ("meeting_stays", None, "m1"),
    }
    assert all(v["etag"] for v in rows.values())

    approve(client, auth, hid)
    clock.set(EFFECTIVE)
    assert client.post(f"/v1/handovers/{hid}/execute", headers=auth("admin")).status_code == 200
    after = owners(db)
    assert after == {
        **before,
        ("deal", "d1"): to["c0"],
        ("meeting", "m-later"): to["c1"],
        ("automation", "a1"): "m1",
    }
    [event] = record_events(db)
    assert event["undo"] is False and event["handover_id"] == hid
    assert event["records"] == [
        {"kind": "automation", "record": "a1", "client": None, "from": "e0", "to": "m1", "attendee_added": None},
        {"kind": "deal", "record": "d1", "client": "c0", "from": "e0", "to": to["c0"], "attendee_added": None},
        {"kind": "meeting", "record": "m-later", "client": "c1", "from": "e0", "to": to["c1"], "attendee_added": None},
        {"kind": "meeting", "record": "m-own", "client": None, "from": "e0", "to": "e0", "attendee_added": "m1"},
        {"kind": "meeting", "record": "m-soon", "client": "c1", "from": "e0", "to": "e0", "attendee_added": to["c1"]},
    ]
    # Executed: the plan is fixed.
    row = rows_of(client, auth, hid)[("deal", "d1")]
    r = client.patch(
        f"/v1/handovers/{hid}/records/deal/d1", json={"to": "e3"}, headers={**auth("hr"), "If-Match": row["etag"]}
    )
    assert r.status_code == 409 and r.json()["type"].endswith("records-locked"), r.text

    assert client.post(f"/v1/handovers/{hid}/undo", json={}, headers=auth("admin")).status_code == 200
    assert owners(db) == before
    back = record_events(db)[-1]
    assert back["undo"] is True
    assert [(m["record"], m["from"], m["to"], m["attendee_added"]) for m in back["records"]] == [
        ("a1", "m1", "e0", None),
        ("d1", to["c0"], "e0", None),
        ("m-later", to["c1"], "e0", None),
        ("m-own", "e0", "e0", "m1"),
        ("m-soon", "e0", "e0", to["c1"]),
    ]


def test_record_rules_at_creation_keep_client_less_records_and_shorten_the_period(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, company: dict[str, Any]
) -> None:
    seed_records(client, auth, ROWS)
    body = {
        "leaver": "e0",
        "reason": "resignation",
        "effective_at": EFFECTIVE.isoformat(),
        "record_rules": {"clientless": "keep", "meeting_transition_days": 0},
    }
    r = client.post("/v1/handovers", json=body, headers=auth("hr"))
    assert r.status_code == 201, r.text
    assert r.json()["record_rules"] == {"clientless": "keep", "meeting_transition_days": 0}
    hid = r.json()["id"]
    plan(client, auth, hid)
    to = receivers(client, auth, hid)
    got = {k: (v["rule"], v["to"]) for k, v in rows_of(client, auth, hid).items()}
    assert got[("automation", "a1")] == ("keep", None)
    assert got[("meeting", "m-own")] == ("keep", None)
    assert got[("meeting", "m-soon")] == ("follow", to["c1"])
    approve(client, auth, hid)
    clock.set(EFFECTIVE)
    assert client.post(f"/v1/handovers/{hid}/execute", headers=auth("admin")).status_code == 200
    now = owners(db)
    assert now[("automation", "a1")] == now[("meeting", "m-own")] == "e0"
    assert now[("meeting", "m-soon")] == to["c1"]


def test_bad_record_rules_are_refused_and_nothing_is_written(
    client: TestClient, auth: Any, db: Database, company: dict[str, Any]
) -> None:
    for rules in (
        {"clientless": "nobody"},
        {"meeting_transition_days": 400},
        {"meeting_transition_days": -1},
        {"x": 1},
    ):
        body = {"leaver": "e0", "reason": "resignation", "effective_at": EFFECTIVE.isoformat(), "record_rules": rules}
        r = client.post("/v1/handovers", json=body, headers=auth("hr"))
        assert r.status_code == 422, (rules, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    with db.session(write=False) as s:
        assert s.scalar(select(func.count()).select_from(Handover)) == 0


def test_patch_record_rules_needs_if_match_and_stops_at_execution(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, open_handover: int
) -> None:
    hid = open_handover
    url = f"/v1/handovers/{hid}"
    rules = {"record_rules": {"clientless": "keep"}}
    tag = client.get(url, headers=auth("hr")).headers["ETag"]
    assert client.patch(url, json=rules, headers=auth("hr")).status_code == 428
    assert client.patch(url, json=rules, headers={**auth("hr"), "If-Match": '"handover-1-v0"'}).status_code == 412
    bad = {"record_rules": {"meeting_transition_days": 366}}
    assert client.patch(url, json=bad, headers={**auth("hr"), "If-Match": tag}).status_code == 422
    r = client.patch(url, json=rules, headers={**auth("hr"), "If-Match": tag})
    assert r.status_code == 200, r.text
    assert r.json()["record_rules"] == {"clientless": "keep", "meeting_transition_days": 14}
    assert r.headers["ETag"] != tag
    with db.session(write=False) as s:
        assert s.scalar(select(func.count()).where(AuditEntry.action == "handover.record_rules")) == 1
    plan(client, auth, hid)
    approve(client, auth, hid)
    clock.set(EFFECTIVE)
    assert client.post(f"/v1/handovers/{hid}/execute", headers=auth("admin")).status_code == 200
    tag = client.get(url, headers=auth("hr")).headers["ETag"]
    r = client.patch(url, json=rules, headers={**auth("hr"), "If-Match": tag})
    assert r.status_code == 409 and r.json()["type"].endswith("records-locked"), r.text


def test_overrides_with_if_match_and_the_execution_honours_them(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, settings: Settings, open_handover: int
) -> None:
    hid = open_handover
    subscribe(db, settings)
    seed_records(client, auth, ROWS)
    plan(client, auth, hid)
    to = receivers(client, auth, hid)
    other = next(e for e in ("e2", "e3", "e4") if e != to["c0"])
    url = f"/v1/handovers/{hid}/records/deal/d1"
    tag = rows_of(client, auth, hid)[("deal", "d1")]["etag"]
    assert client.patch(url, json={"to": other}, headers=auth("hr")).status_code == 428
    r = client.patch(url, json={"to": other}, headers={**auth("hr"), "If-Match": '"stale"'})
    assert r.status_code == 412, r.text
    # Someone who cannot hold it: unknown, the leaver, a leaver-to-be (e1 gets an exit date).
    r = client.put(
        "/v1/employees/e1", json={**_employee(client, auth, "e1"), "exit_at": LATER.isoformat()}, headers=auth("hr")
    )
    assert r.status_code == 200, r.text
    for bad in ("nobody", "e0", "e1"):
        r = client.patch(url, json={"to": bad}, headers={**auth("hr"), "If-Match": tag})
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["type"].endswith("record-target-invalid")
        assert r.json()["errors"][0]["loc"] == ["body", "to"]
    with db.session(write=False) as s:
        assert s.scalars(select(HandoverRecordOverride)).all() == []
    r = client.patch(url, json={"to": other, "reason": "knows the deal"}, headers={**auth("hr"), "If-Match": tag})
    assert r.status_code == 200, r.text
    assert (r.json()["rule"], r.json()["to"]) == ("override", other)
    assert r.headers["ETag"] == r.json()["etag"] != tag
    # The old tag is stale now; the automation is kept with the leaver by an override to null.
    assert client.patch(url, json={"to": None}, headers={**auth("hr"), "If-Match": tag}).status_code == 412
    atag = rows_of(client, auth, hid)[("automation", "a1")]["etag"]
    a = f"/v1/handovers/{hid}/records/automation/a1"
    assert client.patch(a, json={"to": None}, headers={**auth("hr"), "If-Match": atag}).status_code == 200
    r = client.patch(
        f"/v1/handovers/{hid}/records/task/t-e1", json={"to": None}, headers={**auth("hr"), "If-Match": "*"}
    )
    assert r.status_code == 404 and r.json()["type"].endswith("record-not-in-handover")
    r = client.patch(
        f"/v1/handovers/{hid}/records/deal/d1",
        json={"to": other},
        headers={**auth("account_manager", emp="e2"), "If-Match": "*"},
    )
    assert r.status_code == 403, r.text
    with db.session(write=False) as s:
        assert s.scalar(select(func.count()).where(AuditEntry.action == "handover.record_override")) == 2

    approve(client, auth, hid)
    clock.set(EFFECTIVE)
    assert client.post(f"/v1/handovers/{hid}/execute", headers=auth("admin")).status_code == 200
    now = owners(db)
    assert now[("deal", "d1")] == other
    assert now[("automation", "a1")] == "e0"
    moved = {(m["record"], m["to"]) for m in record_events(db)[0]["records"]}
    assert ("d1", other) in moved and not any(rec == "a1" for rec, _ in moved)


def _employee(client: TestClient, auth: Any, eid: str) -> dict[str, Any]:
    body = client.get(f"/v1/employees/{eid}", headers=auth("hr")).json()
    keep = ("name", "email", "manager", "region", "languages", "skills", "seniority", "capacity", "clearance", "role")
    return {k: body[k] for k in keep if k in body}


def test_records_follow_the_interim_take_over_then_a_late_approval_and_undo_walks_the_chain_back(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, settings: Settings, open_handover: int
) -> None:
    hid = open_handover
    subscribe(db, settings)
    seed_records(client, auth, ROWS)
    before = owners(db)
    plan(client, auth, hid)  # not approved by the effective time
    to = receivers(client, auth, hid)
    clock.set(EFFECTIVE + dt.timedelta(seconds=1))
    assert run_once(db, clock)["take_over_interim"] == 1
    taken = owners(db)
    assert taken == {
        **before,
        ("deal", "d1"): "m1",
        ("meeting", "m-later"): "m1",
        ("automation", "a1"): "m1",
    }
    [first] = record_events(db)
    assert [(m["record"], m["from"], m["to"], m["attendee_added"]) for m in first["records"]] == [
        ("a1", "e0", "m1", None),
        ("d1", "e0", "m1", None),
        ("m-later", "e0", "m1", None),
        ("m-own", "e0", "e0", "m1"),
        ("m-soon", "e0", "e0", "m1"),
    ]
    clock.set(EFFECTIVE + dt.timedelta(days=1))
    assert approve(client, auth, hid)["status"] == "executed"
    done = owners(db)
    assert done == {**taken, ("deal", "d1"): to["c0"], ("meeting", "m-later"): to["c1"]}
    second = record_events(db)[-1]
    # m-own's attendee m1 was added at the take-over: not again. m-soon gets the successor too.
    expected = [("d1", "m1", to["c0"], None), ("m-later", "m1", to["c1"], None), ("m-soon", "e0", "e0", to["c1"])]
    assert [(m["record"], m["from"], m["to"], m["attendee_added"]) for m in second["records"]] == [
        m for m in expected if m[1] != m[2] or m[3] not in (None, "m1")
    ]
    with db.session(write=False) as s:
        steps = dict(
            s.execute(select(RecordMove.external_id, func.max(RecordMove.step)).group_by(RecordMove.external_id)).all()
        )
    assert steps["d1"] == (2 if to["c0"] != "m1" else 1)
    assert client.post(f"/v1/handovers/{hid}/undo", json={}, headers=auth("admin")).status_code == 200
    assert owners(db) == before
    back = record_events(db)[-1]
    assert back["undo"] is True
    assert {(m["record"], m["to"]) for m in back["records"] if m["from"] != m["to"]} == {
        ("a1", "e0"),
        ("d1", "e0"),
        ("m-later", "e0"),
    }


def test_cancelled_after_the_take_over_the_records_go_back(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, open_handover: int
) -> None:
    seed_records(client, auth, ROWS)
    before = owners(db)
    clock.set(EFFECTIVE + dt.timedelta(seconds=1))
    assert run_once(db, clock)["take_over_interim"] == 1
    # Without a plan the clients went to the interim owner all the same, and their open records with them.
    assert owners(db)[("deal", "d1")] == "m1"
    r = client.post(f"/v1/handovers/{open_handover}/cancel", json={"reason": "stays"}, headers=auth("hr"))
    assert r.status_code == 200, r.text
    assert owners(db) == before


def test_the_sweeper_repair_takes_the_clients_open_records_along(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, settings: Settings, company: dict[str, Any]
) -> None:
    subscribe(db, settings)
    rows = [
        {"kind": "deal", "external_id": "x-open", "client": "c0", "owner": "e1"},
        {"kind": "deal", "external_id": "x-won", "client": "c0", "owner": "e1", "status": "closed"},
        {"kind": "task", "external_id": "x-e0", "client": "c0", "owner": "e0"},  # not the gone owner's
        {"kind": "automation", "external_id": "x-own", "owner": "e1"},  # no client: the sweeper repairs clients
    ]
    seed_records(client, auth, rows)
    # e1 departs behind the service's back still owning c0: the sweeper gives c0 to e1's manager m1.
    with db.engine.begin() as conn:
        conn.execute(update(Client).where(Client.external_id == "c0").values(owner_id="e1"))
        conn.execute(update(Employee).where(Employee.external_id == "e1").values(status="departed"))
    assert run_once(db, clock)["sweep_ownership"] == 1
    now = owners(db)
    assert (now[("deal", "x-open")], now[("deal", "x-won")], now[("task", "x-e0")]) == ("m1", "e1", "e0")
    assert now[("automation", "x-own")] == "e1"
    [event] = record_events(db)
    assert event["handover_id"] is None and event["undo"] is False
    assert event["records"] == [
        {"kind": "deal", "record": "x-open", "client": "c0", "from": "e1", "to": "m1", "attendee_added": None}
    ]
    with db.session(write=False) as s:
        assert s.scalars(select(RecordMove)).all() == []


def test_an_override_whose_receiver_left_before_the_execution_falls_back_to_the_rules(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, open_handover: int
) -> None:
    hid = open_handover
    seed_records(client, auth, ROWS)
    plan(client, auth, hid)
    to = receivers(client, auth, hid)
    other = next(e for e in ("e2", "e3", "e4") if e not in (to["c0"], to["c1"]))
    tag = rows_of(client, auth, hid)[("deal", "d1")]["etag"]
    r = client.patch(
        f"/v1/handovers/{hid}/records/deal/d1", json={"to": other}, headers={**auth("hr"), "If-Match": tag}
    )
    assert r.status_code == 200, r.text
    approve(client, auth, hid)
    with db.engine.begin() as conn:
        conn.execute(update(Employee).where(Employee.external_id == other).values(status="departed"))
    clock.set(EFFECTIVE)
    assert client.post(f"/v1/handovers/{hid}/execute", headers=auth("admin")).status_code == 200
    assert owners(db)[("deal", "d1")] == to["c0"] != other


def test_a_successor_lists_only_the_records_they_receive_or_attend(
    client: TestClient, auth: Any, db: Database, open_handover: int
) -> None:
    hid = open_handover
    seed_records(client, auth, ROWS)
    plan(client, auth, hid)
    to = receivers(client, auth, hid)
    who = to["c0"]
    r = client.get(f"/v1/handovers/{hid}/records", headers=auth("account_manager", emp=who))
    assert r.status_code == 200, r.text
    mine = {(x["external_id"], x["to"], x["attendee"]) for x in r.json()["items"]}
    everyone = rows_of(client, auth, hid)
    assert mine == {(e, v["to"], v["attendee"]) for (_, e), v in everyone.items() if who in (v["to"], v["attendee"])}
    assert ("d1", who, None) in mine
