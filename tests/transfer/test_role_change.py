"""Issue 15 point 7: a role change is not an exit.

`reason: role_change` moves the clients like an exit (plan, approve, execute), but the person stays `active`,
keeps their token and can own clients in the new role; only their access to the moved clients ends, at the
effective time. Real HTTP, the injected clock, the worker's own pass; SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from app.access.models import AccessGrant
from app.core.clock import ManualClock
from app.core.db import Database
from app.worker import run_once
from tests.support.company import EFFECTIVE, approve, clients, plan
from tests.support.continuity import S, decide, owners
from tests.support.db import employee
from tests.support.hr import deliver, exit_event, ok


def open_role_change(client: TestClient, auth: Any, effective_at: dt.datetime = EFFECTIVE) -> int:
    r = client.post(
        "/v1/handovers",
        json={"leaver": "e0", "reason": "role_change", "effective_at": effective_at.isoformat()},
        headers=auth("hr"),
    )
    assert r.status_code == 201, r.text
    assert r.json()["return_at"] is None and r.json()["delegate"] is None
    return int(r.json()["id"])


def new_client(client: TestClient, auth: Any, external_id: str, owner: str = "e0") -> None:
    row = {k: v for k, v in clients(1, owner=owner)[0].items() if k != "external_id"}
    row["contacts"] = [{**row["contacts"][0], "email": f"{external_id}@client.example"}]
    r = client.put(f"/v1/clients/{external_id}", json=row, headers=auth("hr"))
    assert r.status_code in (200, 201), r.text


def test_row_6_a_role_change_keeps_the_person(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, company: dict[str, Any]
) -> None:
    """The regression of row 6: before, a role change was an exit (departed, token refused, employee_departed)."""
    hid = open_role_change(client, auth)
    person = employee(db, "e0")
    assert person is not None and (person.status, person.exit_at) == ("active", None)
    plan(client, auth, hid)
    approve(client, auth, hid)
    assert decide(client, auth, "e0", "c1", "edit", EFFECTIVE - S)["allowed"]
    assert decide(client, auth, "e0", "c1", "view", EFFECTIVE)["reason"] == "no_grant"

    clock.set(EFFECTIVE)
    run_once(db, clock)
    h = client.get(f"/v1/handovers/{hid}", headers=auth("hr")).json()
    assert (
        h["status"] == "executed" and h["item_counts"].get("transferred", 0) + h["item_counts"].get("confirmed", 0) == 8
    )
    assert all(owner != "e0" for owner in owners(db).values())
    # The person is still there: active, no exit time, their token still works.
    person = employee(db, "e0")
    assert person is not None and (person.status, person.exit_at) == ("active", None)
    r = client.get("/v1/employees/e0", headers=auth("account_manager", emp="e0"))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "active"
    # A client of the new role: the access check says allow, for the person's own token's question too.
    new_client(client, auth, "n1")
    allowed = decide(client, auth, "e0", "n1", "edit", EFFECTIVE + S)
    assert allowed["allowed"] and allowed["level"] == "owner", allowed
    r = client.post(
        "/v1/access/check",
        json={"employee": "e0", "client": "n1", "action": "view"},
        headers=auth("account_manager", emp="e0"),
    )
    assert r.status_code == 200 and r.json()["allowed"], r.text
    # The moved clients are the successors' now; the person's window on them ended at the effective time.
    assert decide(client, auth, "e0", "c1", "view", EFFECTIVE + S)["reason"] == "no_grant"


def test_only_the_moved_clients_are_cut(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, company: dict[str, Any]
) -> None:
    """Grants on clients outside the handover (a read grant, an owner grant on a client added after planning)
    survive the role change; an exit would have cut them all."""
    r = client.post(
        "/v1/access/grants",
        json={"employee": "e0", "client": "c0", "level": "read", "reason": "kept"},
        headers=auth("admin"),
    )
    assert r.status_code == 201, r.text
    # e0 takes a client of their new role while the handover runs (it is not in the plan).
    hid = open_role_change(client, auth)
    plan(client, auth, hid)
    new_client(client, auth, "n2")
    approve(client, auth, hid)
    clock.set(EFFECTIVE)
    run_once(db, clock)
    assert decide(client, auth, "e0", "n2", "edit", EFFECTIVE + dt.timedelta(days=30))["allowed"]
    with db.session(write=False) as s:
        cut = {
            g.client_id
            for g in s.scalars(select(AccessGrant).where(AccessGrant.employee_id == "e0"))
            if g.cut_by_handover_id == hid
        }
    assert cut == {f"c{i}" for i in range(8)}  # the plan's clients, every grant on them (the read one on c0 too)
    assert owners(db)["n2"] == "e0"


def test_through_hr_moved_then_withdrawn(
    hook: TestClient, auth: Any, db: Database, clock: ManualClock, company: dict[str, Any]
) -> None:
    """HR's webhook: a role change opens the same handover; moving its date moves the cut; withdrawing it cancels,
    and the person never got an exit time."""
    hid = ok(deliver(hook, exit_event(reason="role_change", destination_competitor=None), clock=clock))["handover_id"]
    person = employee(db, "e0")
    assert person is not None and (person.status, person.exit_at) == ("active", None)
    plan(hook, auth, hid)
    approve(hook, auth, hid)
    later = EFFECTIVE + dt.timedelta(days=2)
    moved = exit_event(effective_at=later, reason="role_change", destination_competitor=None)
    moved["timestamp"] = "2026-11-02T09:00:00Z"
    assert ok(deliver(hook, moved, clock=clock))["handover_id"] == hid
    person = employee(db, "e0")
    assert person is not None and (person.status, person.exit_at) == ("active", None)
    assert decide(hook, auth, "e0", "c1", "edit", later - S)["allowed"]
    assert decide(hook, auth, "e0", "c1", "edit", later)["reason"] == "no_grant"
    withdrawn = {"type": "employee.exit_cancelled", "timestamp": "2026-11-02T09:00:30Z", "data": {"employee": "e0"}}
    assert ok(deliver(hook, withdrawn, clock=clock))["handover_id"] == hid
    assert hook.get(f"/v1/handovers/{hid}", headers=auth("hr")).json()["status"] == "cancelled"
    person = employee(db, "e0")
    assert person is not None and (person.status, person.exit_at) == ("active", None)
    assert decide(hook, auth, "e0", "c1", "edit", later)["allowed"]  # the cut is restored


def test_undo_gives_the_clients_back(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, company: dict[str, Any]
) -> None:
    hid = open_role_change(client, auth)
    plan(client, auth, hid)
    approve(client, auth, hid)
    clock.set(EFFECTIVE)
    run_once(db, clock)
    clock.set(EFFECTIVE + dt.timedelta(hours=1))
    r = client.post(f"/v1/handovers/{hid}/undo", json={"reason": "reorg reverted"}, headers=auth("manager", emp="m1"))
    assert r.status_code == 200, r.text
    assert set(owners(db).values()) == {"e0"}
    assert decide(client, auth, "e0", "c1", "edit", EFFECTIVE + dt.timedelta(hours=2))["allowed"]
    person = employee(db, "e0")
    assert person is not None and person.status == "active"
