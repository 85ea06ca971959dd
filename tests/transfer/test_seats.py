"""Account-team seats (issue 15, point 6): at the effective time the leaver leaves every other client's account
team; the seats are kept on the handover, given back exactly on undo, and the CRM hears account_team.changed."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from app.audit.models import AuditEntry
from app.core.clock import ManualClock
from app.core.config import Settings
from app.core.db import Database
from app.directory.models import AccountTeamMember
from app.transfer.models import HandoverSeat
from app.worker import run_once
from tests.support.company import EFFECTIVE, approve, clients, employees, open_for, plan
from tests.support.events import events, subscribe

TEAMS = {
    "t0": ("e1", [{"employee": "e0", "role": "specialist"}, {"employee": "e2", "role": "support"}]),
    "t1": ("x1", [{"employee": "e0", "role": "executive sponsor"}]),
    "t2": ("e2", [{"employee": "e3", "role": "support"}]),
}


def seat_clients(client: TestClient, auth: Any) -> None:
    rows = []
    for cid, (owner, team) in TEAMS.items():
        row = {**clients(1, owner=owner)[0], "external_id": cid, "account_team": team}
        row["contacts"] = [{**row["contacts"][0], "email": f"{cid}@client.example"}]
        rows.append(row)
    assert client.post("/v1/clients/batch", json={"items": rows}, headers=auth("hr")).status_code == 200


def teams(db: Database) -> set[tuple[str, str, str]]:
    with db.session(write=False) as s:
        return {
            (c, e, r)
            for c, e, r in s.execute(
                select(AccountTeamMember.client_id, AccountTeamMember.employee_id, AccountTeamMember.role)
            )
        }


def team_of(client: TestClient, auth: Any, cid: str) -> list[dict[str, str]]:
    return list(client.get(f"/v1/clients/{cid}", headers=auth()).json()["account_team"])


def seat_events(db: Database) -> list[dict[str, Any]]:
    return [d for t, d in events(db) if t == "account_team.changed"]


def test_execution_takes_every_seat_and_undo_gives_them_back_exactly(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, settings: Settings, open_handover: int
) -> None:
    subscribe(db, settings)
    seat_clients(client, auth)
    before = teams(db)
    assert {x for x in before if x[1] == "e0"} == {("t0", "e0", "specialist"), ("t1", "e0", "executive sponsor")}
    plan(client, auth, open_handover)
    approve(client, auth, open_handover)
    assert teams(db) == before  # nothing moves before the effective time
    clock.set(EFFECTIVE)
    r = client.post(f"/v1/handovers/{open_handover}/execute", headers=auth("admin"))
    assert r.status_code == 200, r.text
    after = teams(db)
    assert not any(e == "e0" for _, e, _ in after)
    assert after == {x for x in before if x[1] != "e0"}  # nobody else's seat changed
    assert team_of(client, auth, "t0") == [{"employee": "e2", "role": "support"}]
    with db.session(write=False) as s:
        kept = {(x.client_id, x.employee_id, x.role) for x in s.scalars(select(HandoverSeat))}
    assert kept == {("t0", "e0", "specialist"), ("t1", "e0", "executive sponsor")}
    assert seat_events(db) == [
        {
            "handover_id": open_handover,
            "effective_at": EFFECTIVE.isoformat(),
            "undo": False,
            "batch": 1,
            "batches": 1,
            "seats": [
                {"client": "t0", "employee": "e0", "role": "specialist", "change": "removed"},
                {"client": "t1", "employee": "e0", "role": "executive sponsor", "change": "removed"},
            ],
        }
    ]
    r = client.post(f"/v1/handovers/{open_handover}/undo", json={"reason": "stays"}, headers=auth("admin"))
    assert r.status_code == 200, r.text
    assert teams(db) == before
    restored = seat_events(db)[-1]
    assert restored["undo"] is True and [s["change"] for s in restored["seats"]] == ["restored", "restored"]
    with db.session(write=False) as s:
        actions = list(
            s.scalars(
                select(AuditEntry.action).where(AuditEntry.action.like("handover.seats_%")).order_by(AuditEntry.seq)
            )
        )
    assert actions == ["handover.seats_removed", "handover.seats_restored"]


def test_cancel_before_execution_leaves_the_teams_alone(
    client: TestClient, auth: Any, db: Database, settings: Settings, open_handover: int
) -> None:
    subscribe(db, settings)
    seat_clients(client, auth)
    before = teams(db)
    plan(client, auth, open_handover)
    approve(client, auth, open_handover)
    r = client.post(f"/v1/handovers/{open_handover}/cancel", json={"reason": "stays"}, headers=auth("admin"))
    assert r.status_code == 200, r.text
    assert teams(db) == before
    assert seat_events(db) == []
    with db.session(write=False) as s:
        assert s.scalars(select(HandoverSeat)).all() == []


def test_undo_keeps_what_the_crm_changed_meanwhile(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, open_handover: int
) -> None:
    seat_clients(client, auth)
    plan(client, auth, open_handover)
    approve(client, auth, open_handover)
    clock.set(EFFECTIVE)
    assert client.post(f"/v1/handovers/{open_handover}/execute", headers=auth("admin")).status_code == 200
    # The CRM replaces t1's team (e0 back already, another role) before the undo: that seat is the CRM's now.
    row = {**clients(1, owner="x1")[0], "account_team": [{"employee": "e0", "role": "advisor"}]}
    row.pop("external_id")
    row["contacts"] = [{**row["contacts"][0], "email": "t1@client.example"}]
    assert client.put("/v1/clients/t1", json=row, headers=auth("hr")).status_code == 200
    assert client.post(f"/v1/handovers/{open_handover}/undo", json={}, headers=auth("admin")).status_code == 200
    assert team_of(client, auth, "t1") == [{"employee": "e0", "role": "advisor"}]
    assert {"employee": "e0", "role": "specialist"} in team_of(client, auth, "t0")


def test_the_worker_takes_the_seats_of_a_batch_of_leavers(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, open_handover: int
) -> None:
    seat_clients(client, auth)
    other = open_for(client, auth, "e2")  # sits on t0's team, owns t2
    for hid in (open_handover, other):
        plan(client, auth, hid)
        approve(client, auth, hid)
    clock.set(EFFECTIVE)
    assert run_once(db, clock)["execute_due_handovers"] == 2
    assert not any(e in ("e0", "e2") for _, e, _ in teams(db))
    with db.session(write=False) as s:
        kept = {(x.handover_id, x.client_id, x.employee_id) for x in s.scalars(select(HandoverSeat))}
    assert kept == {(open_handover, "t0", "e0"), (open_handover, "t1", "e0"), (other, "t0", "e2")}


def put_team(client: TestClient, auth: Any, cid: str, owner: str, team: list[dict[str, str]]) -> None:
    row = {**clients(1, owner=owner)[0], "account_team": team}
    row.pop("external_id")
    row["contacts"] = [{**row["contacts"][0], "email": f"{cid}@client.example"}]
    r = client.put(f"/v1/clients/{cid}", json=row, headers=auth("hr"))
    assert r.status_code in (200, 201), r.text


def test_a_departed_leaver_the_crm_puts_back_on_a_team_leaves_it_again(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, settings: Settings, open_handover: int
) -> None:
    """The CRM still lists e0 after the execution: the upsert is accepted, e0's seat is dropped in the same
    transaction, kept on the executed handover and announced; the others on the team stay; undo gives it back."""
    subscribe(db, settings)
    seat_clients(client, auth)
    plan(client, auth, open_handover)
    approve(client, auth, open_handover)
    clock.set(EFFECTIVE)
    assert client.post(f"/v1/handovers/{open_handover}/execute", headers=auth("admin")).status_code == 200
    clock.set(EFFECTIVE + dt.timedelta(hours=1))
    put_team(client, auth, "t2", "e2", [{"employee": "e3", "role": "support"}, {"employee": "e0", "role": "advisor"}])
    put_team(client, auth, "t0", "e1", [{"employee": "e0", "role": "specialist"}, {"employee": "e2", "role": "lead"}])
    assert team_of(client, auth, "t2") == [{"employee": "e3", "role": "support"}]
    assert team_of(client, auth, "t0") == [{"employee": "e2", "role": "lead"}]
    with db.session(write=False) as s:
        kept = {(x.client_id, x.role, x.removed_at, x.restored_at) for x in s.scalars(select(HandoverSeat))}
    later = EFFECTIVE + dt.timedelta(hours=1)
    assert kept == {
        ("t0", "specialist", later, None),  # taken at execution, taken again now
        ("t1", "executive sponsor", EFFECTIVE, None),
        ("t2", "advisor", later, None),
    }
    again = seat_events(db)[1:]
    assert [[(x["client"], x["change"]) for x in e["seats"]] for e in again] == [
        [("t2", "removed")],
        [("t0", "removed")],
    ]
    assert all(e["handover_id"] == open_handover and e["undo"] is False for e in again)
    r = client.post(f"/v1/handovers/{open_handover}/undo", json={"reason": "stays"}, headers=auth("admin"))
    assert r.status_code == 200, r.text
    assert {"employee": "e0", "role": "advisor"} in team_of(client, auth, "t2")
    assert {"employee": "e0", "role": "specialist"} in team_of(client, auth, "t0")


def test_a_departed_person_without_a_handover_is_dropped_from_a_team_and_audited(
    client: TestClient, auth: Any, db: Database, company: Any
) -> None:
    seat_clients(client, auth)
    e3 = {k: v for k, v in employees()[6].items() if k != "external_id"}
    r = client.put("/v1/employees/e3", json={**e3, "status": "departed"}, headers=auth("hr"))
    assert r.status_code in (200, 201), r.text
    put_team(client, auth, "t2", "e2", [{"employee": "e3", "role": "support"}, {"employee": "e4", "role": "cover"}])
    assert team_of(client, auth, "t2") == [{"employee": "e4", "role": "cover"}]
    with db.session(write=False) as s:
        dropped = [
            (e.entity_id, e.data)
            for e in s.scalars(select(AuditEntry).where(AuditEntry.action == "client.team_seat_dropped"))
        ]
    assert dropped == [("t2", {"employee": "e3", "role": "support", "reason": "the employee has departed"})]
