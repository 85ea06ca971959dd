"""Re-checks (issue 15, point 5): at approval and at execution every planned successor is validated again, and
clients the CRM gives a leaver after planning join the handover; nobody is given a client they cannot hold."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from app.audit.models import AuditEntry
from app.core.clock import ManualClock
from app.core.config import Settings
from app.core.db import Database
from app.directory.models import Client, Employee
from app.notify.models import OutboxMessage
from app.transfer import continuity
from app.transfer.followups.models import FollowUp
from app.worker import run_once
from tests.support.company import EFFECTIVE, START, approve, clients, employees, plan
from tests.support.events import events, subscribe


def owners(db: Database) -> dict[str, str]:
    with db.session(write=False) as s:
        return dict(s.execute(select(Client.external_id, Client.owner_id)).all())


def items(client: TestClient, auth: Any, hid: int) -> dict[str, dict[str, Any]]:
    body = client.get(f"/v1/handovers/{hid}/items", params={"limit": 200}, headers=auth()).json()
    return {i["client"]: i for i in body["items"]}


def audit_of(db: Database, action: str) -> list[dict[str, Any]]:
    with db.session(write=False) as s:
        return [
            dict(e.data)
            for e in s.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq))
        ]


def employee_row(eid: str, **changes: Any) -> dict[str, Any]:
    row = next(e for e in employees() if e["external_id"] == eid)
    row = {k: v for k, v in row.items() if k != "external_id"}
    row.update(changes)
    return row


def put_employee(client: TestClient, auth: Any, eid: str, **changes: Any) -> None:
    r = client.put(f"/v1/employees/{eid}", json=employee_row(eid, **changes), headers=auth("hr"))
    assert r.status_code in (200, 201), r.text


def new_client(cid: str, owner: str, **changes: Any) -> dict[str, Any]:
    row = {k: v for k, v in clients(1, owner=owner)[0].items() if k != "external_id"}
    row["contacts"] = [{**row["contacts"][0], "email": f"{cid}@client.example"}]
    row.update(changes)
    return row


def put_client(client: TestClient, auth: Any, cid: str, owner: str, **changes: Any) -> None:
    r = client.put(f"/v1/clients/{cid}", json=new_client(cid, owner, **changes), headers=auth("hr"))
    assert r.status_code in (200, 201), r.text


def busiest_successor(client: TestClient, auth: Any, hid: int) -> str:
    by: dict[str, int] = {}
    for it in items(client, auth, hid).values():
        if it["successor"]:
            by[it["successor"]] = by.get(it["successor"], 0) + 1
    return max(sorted(by), key=lambda e: by[e])


def can_hold(db: Database, employee: str, client_id: str) -> bool:
    with db.session(write=False) as s:
        e, c = s.get(Employee, employee), s.get(Client, client_id)
        assert e is not None and c is not None
        return e.status in ("active", "leaving") and e.clearance >= c.sensitivity


# ---- row 3: a client given to the leaver after planning or approval ---------------------------------------------


def test_a_client_given_to_the_leaver_after_approval_is_not_theirs_after_execution(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, open_handover: int
) -> None:
    plan(client, auth, open_handover)
    approve(client, auth, open_handover)
    clock.set(START + dt.timedelta(days=2))
    put_client(client, auth, "late", "e0")
    joined = items(client, auth, open_handover)["late"]
    assert joined["status"] == "approved" and (joined["successor"] or joined["interim_owner"])
    assert audit_of(db, "handover.item.added")[0]["client"] == "late"
    clock.set(EFFECTIVE)
    assert run_once(db, clock)["execute_due_handovers"] == 1
    after = owners(db)
    assert after["late"] != "e0"
    assert after["late"] == (joined["successor"] or joined["interim_owner"])
    assert "e0" not in after.values()


def test_clients_given_in_a_batch_after_planning_join_as_proposals(
    client: TestClient, auth: Any, db: Database, open_handover: int
) -> None:
    plan(client, auth, open_handover)
    rows = [{"external_id": f"b{i}", **new_client(f"b{i}", "e0")} for i in range(3)]
    assert client.post("/v1/clients/batch", json={"items": rows}, headers=auth("hr")).status_code == 200
    now = items(client, auth, open_handover)
    assert {"b0", "b1", "b2"} <= set(now)
    assert all(now[c]["status"] == "proposed" for c in ("b0", "b1", "b2"))
    assert len(audit_of(db, "handover.item.added")) == 3
    r = client.post(f"/v1/handovers/{open_handover}/execute", headers=auth("admin"))
    assert r.status_code == 409  # planned, not approved: nothing moves yet
    approve(client, auth, open_handover)
    assert client.post(f"/v1/handovers/{open_handover}/execute", headers=auth("admin")).status_code == 200
    assert "e0" not in owners(db).values()


def test_a_client_given_to_the_leaver_before_planning_is_planned_with_the_rest(
    client: TestClient, auth: Any, db: Database, open_handover: int
) -> None:
    put_client(client, auth, "early", "e0")
    assert audit_of(db, "handover.item.added") == []  # a draft: planning takes every client of the leaver
    assert "early" in items(client, auth, plan(client, auth, open_handover)["handover_id"])


def test_a_client_given_to_a_leaver_already_gone_goes_to_the_interim_owner_with_an_alert(
    client: TestClient, auth: Any, db: Database, settings: Settings, open_handover: int
) -> None:
    subscribe(db, settings)
    plan(client, auth, open_handover)
    approve(client, auth, open_handover)
    assert client.post(f"/v1/handovers/{open_handover}/execute", headers=auth("admin")).status_code == 200
    put_client(client, auth, "after", "e0")
    assert owners(db)["after"] == "m1"  # e0's manager, who can act
    it = items(client, auth, open_handover)["after"]
    assert (
        it["interim_owner"] == "m1"
        and it["needs_attention"]
        and "after the handover was executed" in (it["attention_reason"] or "")
    )
    alerts = [d for t, d in events(db) if t == "handover.attention"]
    assert alerts == [
        {
            "handover_id": open_handover,
            "leaver": "e0",
            "reason": "given to e0 after the handover was executed",
            "clients": [{"client": "after", "to": "m1"}],
        }
    ]
    assert audit_of(db, "handover.attention")[0]["clients"] == ["after"]
    # The interim owner holds it as its directory owner.
    r = client.post("/v1/access/check", json={"employee": "m1", "client": "after", "action": "edit"}, headers=auth())
    assert r.status_code == 200 and r.json()["allowed"] is True


# ---- row 4: a planned successor who can no longer hold the client -----------------------------------------------


def test_a_successor_departed_before_approval_gets_nothing(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, open_handover: int
) -> None:
    plan(client, auth, open_handover)
    gone = busiest_successor(client, auth, open_handover)
    theirs = sorted(c for c, it in items(client, auth, open_handover).items() if it["successor"] == gone)
    put_employee(client, auth, gone, status="departed")
    r = client.post(f"/v1/handovers/{open_handover}/approve", headers=auth("manager", emp="m1"))
    assert r.status_code == 200, r.text
    replanned = r.json()["replanned"]
    assert sorted(x["client"] for x in replanned) == theirs
    assert all(x["previous_successor"] == gone and x["problem"] == "the successor has departed" for x in replanned)
    for x in replanned:
        assert x["successor"] != gone
        assert x["successor"] or (x["interim_owner"] and x["needs_attention"] and x["attention_reason"])
    now = items(client, auth, open_handover)
    assert all(it["successor"] != gone for it in now.values())
    assert len(audit_of(db, "handover.item.replanned")) == len(theirs)
    clock.set(EFFECTIVE)
    run_once(db, clock)
    after = owners(db)
    assert gone not in {after[c] for c in theirs}
    assert all(can_hold(db, after[c], c) for c in now)


def test_a_successor_who_starts_leaving_before_the_effective_time_gets_nothing_at_execution(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, open_handover: int
) -> None:
    plan(client, auth, open_handover)
    approve(client, auth, open_handover)
    leaving = busiest_successor(client, auth, open_handover)
    theirs = sorted(c for c, it in items(client, auth, open_handover).items() if it["successor"] == leaving)
    r = client.post(
        "/v1/handovers",
        json={
            "leaver": leaving,
            "reason": "resignation",
            "effective_at": (EFFECTIVE - dt.timedelta(days=3)).isoformat(),
        },
        headers=auth("hr"),
    )
    assert r.status_code == 201, r.text
    clock.set(EFFECTIVE)
    run_once(db, clock)
    assert client.get(f"/v1/handovers/{open_handover}", headers=auth()).json()["status"] == "executed"
    after = owners(db)
    assert all(after[c] != leaving for c in theirs)
    now = items(client, auth, open_handover)
    for c in theirs:
        it = now[c]
        assert it["transferred_to"] == after[c] and (it["successor"] or it["needs_attention"])
    entries = audit_of(db, "handover.item.replanned")
    assert sorted(e["client"] for e in entries) == theirs
    assert all(e["stage"] == "execution" and "cannot act" in e["problem"] for e in entries)
    # The replacement got the grants from the effective time; the leaving successor none for these clients.
    for c in theirs:
        r = client.post("/v1/access/check", json={"employee": after[c], "client": c, "action": "edit"}, headers=auth())
        assert r.json()["allowed"] is True, (c, after[c], r.json())


def test_a_forced_successor_who_leaves_first_is_replaced_at_execution(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, open_handover: int
) -> None:
    plan(client, auth, open_handover)
    first = next(iter(items(client, auth, open_handover).values()))
    url = f"/v1/handovers/{open_handover}/items/{first['id']}"
    etag = client.get(url, headers=auth()).headers["etag"]
    r = client.patch(
        url, json={"successor": "e4", "force": True, "reason": "knows them"}, headers={**auth("hr"), "If-Match": etag}
    )
    assert r.status_code == 200, r.text
    r = client.post(
        "/v1/handovers",
        json={"leaver": "e4", "reason": "resignation", "effective_at": (EFFECTIVE - dt.timedelta(days=3)).isoformat()},
        headers=auth("hr"),
    )
    assert r.status_code == 201
    # At approval a forced choice stands (a person accepted that e4 leaves within the horizon); e4's other,
    # unforced items are re-planned ...
    body = approve(client, auth, open_handover)
    assert first["client"] not in {x["client"] for x in body["replanned"]}
    assert all(x["problem"] == "the successor is leaving" for x in body["replanned"])
    assert items(client, auth, open_handover)[first["client"]]["successor"] == "e4"
    # ... but at the effective time e4 is gone: the client goes to someone who can act.
    clock.set(EFFECTIVE)
    run_once(db, clock)
    assert owners(db)[first["client"]] not in ("e4", "e0")


# ---- unhappy paths: capacity and clearance changed after planning ------------------------------------------------


def test_capacity_lowered_after_planning_is_caught_at_approval_and_nothing_else_changes(
    client: TestClient, auth: Any, db: Database, open_handover: int
) -> None:
    plan(client, auth, open_handover)
    full = busiest_successor(client, auth, open_handover)
    before = items(client, auth, open_handover)
    theirs = sorted(c for c, it in before.items() if it["successor"] == full)
    put_employee(client, auth, full, capacity=0)
    r = client.post(f"/v1/handovers/{open_handover}/approve", headers=auth("manager", emp="m1"))
    assert r.status_code == 200, r.text
    replanned = {x["client"]: x for x in r.json()["replanned"]}
    assert sorted(replanned) == theirs
    assert all(x["problem"].startswith("capacity 0.0 is exceeded") for x in replanned.values())
    after = items(client, auth, open_handover)
    assert all(after[c]["successor"] != full for c in theirs)
    for c, it in before.items():
        if c not in theirs:  # the other items are untouched
            assert (after[c]["successor"], after[c]["interim_owner"], after[c]["version"]) == (
                it["successor"],
                it["interim_owner"],
                it["version"] + 1,  # approval itself
            )


def test_clients_given_to_a_successor_after_planning_are_caught_at_execution(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, open_handover: int
) -> None:
    plan(client, auth, open_handover)
    approve(client, auth, open_handover)
    full = busiest_successor(client, auth, open_handover)
    with db.session(write=False) as s:
        e = s.get(Employee, full)
        assert e is not None
        capacity = float(e.capacity)
    # The CRM fills the successor up with standard clients (1 point each) of their own.
    rows = [
        {"external_id": f"f{i}", **new_client(f"f{i}", full, tier="standard", sensitivity=1)}
        for i in range(int(capacity))
    ]
    assert client.post("/v1/clients/batch", json={"items": rows}, headers=auth("hr")).status_code == 200
    clock.set(EFFECTIVE)
    run_once(db, clock)
    after = owners(db)
    planned = items(client, auth, open_handover)
    assert all(after[c] != full for c, it in planned.items() if it["previous_owner"] == "e0")
    assert {e["stage"] for e in audit_of(db, "handover.item.replanned")} == {"execution"}


def test_clearance_lowered_after_planning_is_caught_at_approval(
    client: TestClient, auth: Any, db: Database, open_handover: int
) -> None:
    plan(client, auth, open_handover)
    before = items(client, auth, open_handover)
    with db.session(write=False) as s:
        sensitive = {c for (c,) in s.execute(select(Client.external_id).where(Client.sensitivity >= 2))}
    who = next(it["successor"] for c, it in sorted(before.items()) if c in sensitive and it["successor"])
    theirs = sorted(c for c, it in before.items() if it["successor"] == who and c in sensitive)
    put_employee(client, auth, who, clearance=1)
    body = approve(client, auth, open_handover)
    assert sorted(x["client"] for x in body["replanned"] if "clearance" in x["problem"]) == theirs
    after = items(client, auth, open_handover)
    for c in theirs:
        assert after[c]["successor"] != who
        assert after[c]["successor"] is None or can_hold(db, after[c]["successor"], c)


def test_a_client_nobody_can_hold_at_execution_stays_put_with_an_alert(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, settings: Settings, open_handover: int
) -> None:
    subscribe(db, settings)
    r = client.post(
        f"/v1/handovers/{open_handover}/plan",
        json={"candidate_pool": {"kind": "list", "employees": ["x1"]}},
        headers=auth("hr"),
    )
    assert r.status_code == 200, r.text
    approve(client, auth, open_handover)
    theirs = sorted(c for c, it in items(client, auth, open_handover).items() if it["successor"] == "x1")
    assert theirs
    for eid in ("x1", "m1", "ceo"):  # the only candidate and everyone up e0's chain are gone
        put_employee(client, auth, eid, status="departed")
    clock.set(EFFECTIVE)
    assert run_once(db, clock)["execute_due_handovers"] == 1  # the batch does not fail
    after = owners(db)
    now = items(client, auth, open_handover)
    for c in theirs:
        assert after[c] == "e0" and now[c]["status"] == "closed" and now[c]["needs_attention"]
        assert "nobody can hold the client" in now[c]["attention_reason"]
    alerts = [d for t, d in events(db) if t == "handover.attention"]
    assert [x["client"] for a in alerts for x in a["clients"]] == theirs


def test_a_client_that_reaches_a_successor_on_leave_is_held_by_the_leaves_delegate(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, open_handover: int
) -> None:
    """Found by the continuity state machine: a client executed to a successor who is on leave had nobody who could
    act for it until their return. The leave's delegate holds it for the leave's window, as the person's others."""
    plan(client, auth, open_handover)
    first = next(iter(items(client, auth, open_handover).values()))
    url = f"/v1/handovers/{open_handover}/items/{first['id']}"
    etag = client.get(url, headers=auth()).headers["etag"]
    r = client.patch(
        url, json={"successor": "e4", "force": True, "reason": "knows them"}, headers={**auth("hr"), "If-Match": etag}
    )
    assert r.status_code == 200, r.text
    back = EFFECTIVE + dt.timedelta(days=10)
    r = client.post(
        "/v1/handovers",
        json={
            "leaver": "e4",
            "reason": "leave",
            "effective_at": (EFFECTIVE - dt.timedelta(days=1)).isoformat(),
            "return_at": back.isoformat(),
        },
        headers=auth("hr"),
    )
    assert r.status_code == 201, r.text
    delegate = r.json()["delegate"]
    approve(client, auth, open_handover)
    clock.set(EFFECTIVE)
    run_once(db, clock)
    to = owners(db)[first["client"]]
    with db.session(write=False) as s:
        assert continuity.violations_in(s, EFFECTIVE + dt.timedelta(seconds=1)) == []
    if to == "e4":  # kept by the forced choice: the delegate acts for it until e4 is back
        r = client.post(
            "/v1/access/check",
            json={"employee": delegate, "client": first["client"], "action": "edit", "at": EFFECTIVE.isoformat()},
            headers=auth("integration", scope="access:check"),
        )
        assert r.json()["allowed"] is True, r.json()


# ---- what approval set in motion follows a re-planned item ---------------------------------------------------


def notes(db: Database, hid: int, template: str) -> list[OutboxMessage]:
    with db.session(write=False) as s:
        return list(
            s.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.handover_id == hid, OutboxMessage.template == template)
                .order_by(OutboxMessage.id)
            )
        )


def test_a_successor_replaced_at_execution_hands_on_briefing_intros_and_follow_ups(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, open_handover: int
) -> None:
    """Approval briefed a successor who departs before the effective time: at execution their clients go to others,
    and what was not sent yet follows. The old successor's briefing and incoming reminder are withdrawn (not
    sent), the clients' introductions naming them too; each new receiver gets one briefing of exactly the clients
    they got, each contact one introduction naming them; the follow-ups are the new receivers'. Nothing twice."""
    hid = open_handover
    plan(client, auth, hid)
    approve(client, auth, hid)
    gone = busiest_successor(client, auth, hid)
    before = items(client, auth, hid)
    theirs = sorted(c for c, it in before.items() if it["successor"] == gone)
    others = sorted(set(before) - set(theirs))
    gone_email = f"{gone}@example.com"
    assert [m.status for m in notes(db, hid, "successor_briefing") if m.recipient == gone_email] == ["pending"]
    put_employee(client, auth, gone, status="departed")
    clock.set(EFFECTIVE)
    assert client.post(f"/v1/handovers/{hid}/execute", headers=auth("admin")).status_code == 200
    after = items(client, auth, hid)
    to = {c: after[c]["transferred_to"] for c in theirs}
    assert all(t not in (None, gone) for t in to.values()), to
    # The old successor: nothing of theirs about these clients goes out.
    mine = [m for m in notes(db, hid, "successor_briefing") if m.recipient == gone_email]
    assert [m.status for m in mine] == ["withdrawn"]
    reminders = [m for m in notes(db, hid, "signoff_reminder") if m.recipient == gone_email]
    assert reminders and all(m.status == "withdrawn" for m in reminders)
    # The new receivers: one pending briefing each, listing exactly the clients they got here.
    got: dict[str, list[str]] = {}
    for c, t in to.items():
        got.setdefault(t, []).append(c)
    briefings = [m for m in notes(db, hid, "successor_briefing") if m.status == "pending"]
    fresh = {
        m.recipient: sorted(x["external_id"] for x in m.payload["clients"])
        for m in briefings
        if {x["external_id"] for x in m.payload["clients"]} <= set(theirs)
    }
    assert fresh == {f"{t}@example.com": sorted(cs) for t, cs in got.items()}
    listed = Counter(x["external_id"] for m in briefings for x in m.payload["clients"])
    assert all(n == 1 for n in listed.values()) and set(listed) == set(before)  # every client once
    # Each contact of a moved client: one introduction still to go, naming the new receiver.
    for c in theirs:
        intros = notes(db, hid, "client_intro")
        pending = [m for m in intros if m.client_id == c and m.status == "pending"]
        assert len(pending) == 1, (c, [(m.status, m.payload["successor"]["name"]) for m in intros])
        assert pending[0].payload["successor"]["email"] == f"{to[c]}@example.com"
        assert [m.status for m in intros if m.client_id == c and m is not pending[0]] == ["withdrawn"]
    for c in others:  # nobody else's messages changed
        assert [m.status for m in notes(db, hid, "client_intro") if m.client_id == c] == ["pending"]
    with db.session(write=False) as s:
        fus = s.execute(select(FollowUp.client_id, FollowUp.assignee_id, FollowUp.status)).all()
    assert Counter(f.client_id for f in fus) == dict.fromkeys(before, 3)
    assert all(f.assignee_id == to[f.client_id] and f.status == "open" for f in fus if f.client_id in theirs)
    [entry] = audit_of(db, "handover.messages_rerouted")
    assert sorted(x["client"] for x in entry["clients"]) == theirs
    assert entry["follow_ups"] == {"moved": 3 * len(theirs), "cancelled": 0}


def test_a_client_nobody_can_hold_at_execution_has_its_messages_and_follow_ups_withdrawn(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, open_handover: int
) -> None:
    """The re-check closes the item (nobody up the chain can act): the old successor is not briefed on it, its
    contacts are not introduced to anyone, its follow-ups are cancelled."""
    hid = open_handover
    r = client.post(
        f"/v1/handovers/{hid}/plan", json={"candidate_pool": {"kind": "list", "employees": ["x1"]}}, headers=auth("hr")
    )
    assert r.status_code == 200, r.text
    approve(client, auth, hid)
    theirs = sorted(c for c, it in items(client, auth, hid).items() if it["successor"] == "x1")
    assert theirs
    for eid in ("x1", "m1", "ceo"):
        put_employee(client, auth, eid, status="departed")
    clock.set(EFFECTIVE)
    assert client.post(f"/v1/handovers/{hid}/execute", headers=auth("admin")).status_code == 200
    assert all(m.status == "withdrawn" for m in notes(db, hid, "successor_briefing") if m.recipient == "x1@example.com")
    intros = notes(db, hid, "client_intro")
    assert all(m.status == "withdrawn" for m in intros if m.client_id in theirs)
    with db.session(write=False) as s:
        fus = s.execute(select(FollowUp.client_id, FollowUp.status)).all()
    assert {f.status for f in fus if f.client_id in theirs} == {"cancelled"}
    [entry] = audit_of(db, "handover.messages_rerouted")
    assert entry["follow_ups"] == {"moved": 0, "cancelled": 3 * len(theirs)}
    assert all(x["to"] is None for x in entry["clients"])
