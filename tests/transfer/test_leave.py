"""Issue 15 point 7: a leave is a delegation, not an exit.

`reason: leave` with `return_at`: the handover is `scheduled` at once; a delegate (default: the interim owner rule)
holds an interim grant on each of the person's clients for [effective_at, return_at) while the person's own access
is suspended (`employee_away`); ownership does not move; the person's token still authenticates; the worker
completes the leave at return_at. Access follows the stored windows to the second, with no job in between.
Real HTTP, the injected clock, the worker's own pass; SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.access.models import AccessGrant, AccessSuspension
from app.audit.models import AuditEntry
from app.core.clock import ManualClock
from app.core.db import Database
from app.worker import run_once
from tests.support.company import EFFECTIVE, approve, plan
from tests.support.continuity import S, decide, owners
from tests.support.db import employee, snapshot
from tests.support.hr import deliver, exit_event, ok
from tests.support.problems import assert_problem

RETURN = EFFECTIVE + dt.timedelta(days=21)
WRITTEN = (
    "handover",
    "handover_item",
    "access_grant",
    "access_suspension",
    "audit_entry",
    "employee",
    "client",
    "outbox_message",
    "inbound_event",
)


def batch(client: TestClient, auth: Any, pairs: list[tuple[str, str, dt.datetime]]) -> list[str]:
    r = client.post(
        "/v1/access/check/batch",
        json={"checks": [{"employee": e, "client": c, "action": "view", "at": at.isoformat()} for e, c, at in pairs]},
        headers=auth("integration", scope="access:check access:admin"),
    )
    assert r.status_code == 200, r.text
    return [d["reason"] for d in r.json()["decisions"]]


def open_leave(client: TestClient, auth: Any, **extra: Any) -> dict[str, Any]:
    body = {"leaver": "e0", "reason": "leave", "effective_at": EFFECTIVE.isoformat(), "return_at": RETURN.isoformat()}
    r = client.post("/v1/handovers", json={**body, **extra}, headers=auth("hr"))
    assert r.status_code == 201, r.text
    return dict(r.json())


def actions(db: Database, hid: int) -> list[str]:
    with db.session(write=False) as s:
        return list(
            s.scalars(
                select(AuditEntry.action)
                .where(AuditEntry.entity_type == "handover", AuditEntry.entity_id == str(hid))
                .order_by(AuditEntry.seq)
            )
        )


def test_row_6_a_leave_is_a_delegation(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, company: dict[str, Any]
) -> None:
    """The regression of row 6: before, a leave was an exit (the person departed, the clients moved)."""
    before = owners(db)
    h = open_leave(client, auth)
    assert (h["status"], h["delegate"], h["return_at"]) == ("scheduled", "m1", RETURN.strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert h["allowed_transitions"] == ["completed", "cancelled"]
    person = employee(db, "e0")
    assert person is not None and (person.status, person.exit_at) == ("active", None)
    # Before the leave: the person as ever, the delegate nothing.
    assert decide(client, auth, "e0", "c1", "edit", EFFECTIVE - S)["allowed"]
    assert decide(client, auth, "m1", "c1", "view", EFFECTIVE - S)["reason"] == "no_grant"
    # During it: the delegate holds the clients (interim), the person is away. No job has run.
    for at in (EFFECTIVE, RETURN - S):
        held = decide(client, auth, "m1", "c1", "edit", at)
        assert held["allowed"] and held["level"] == "interim", held
        away = decide(client, auth, "e0", "c1", "view", at)
        assert (away["allowed"], away["reason"]) == (False, "employee_away")
    # From return_at exactly: the person is back, the delegate's window has ended.
    assert decide(client, auth, "e0", "c1", "edit", RETURN)["allowed"]
    assert decide(client, auth, "m1", "c1", "view", RETURN)["reason"] == "no_grant"
    # The batch check decides the same way.
    assert batch(client, auth, [("e0", "c2", EFFECTIVE), ("e0", "c2", RETURN), ("m1", "c2", RETURN - S)]) == [
        "employee_away",
        "granted",
        "granted",
    ]
    # During the leave the token still authenticates, but the person's client access is off.
    clock.set(EFFECTIVE + dt.timedelta(days=1))
    r = client.get("/v1/employees/e0", headers=auth("account_manager", emp="e0"))
    assert r.status_code == 200 and r.json()["status"] == "active", r.text
    own = {"employee": "e0", "client": "c1", "action": "view"}
    r = client.post("/v1/access/check", json=own, headers=auth("account_manager", emp="e0"))
    assert r.status_code == 200 and r.json()["reason"] == "employee_away", r.text
    run_once(db, clock)  # nothing is due: the leave is not executed
    assert client.get(f"/v1/handovers/{h['id']}", headers=auth("hr")).json()["status"] == "scheduled"
    # The worker completes it at return_at; nothing moved ownership, the person never left.
    clock.set(RETURN)
    run_once(db, clock)
    done = client.get(f"/v1/handovers/{h['id']}", headers=auth("hr")).json()
    assert (done["status"], done["allowed_transitions"], done["item_counts"]) == ("completed", [], {})
    assert owners(db) == before
    person = employee(db, "e0")
    assert person is not None and (person.status, person.exit_at) == ("active", None)
    assert actions(db, h["id"]) == ["handover.created", "handover.scheduled", "handover.completed"]
    assert decide(client, auth, "e0", "c1", "edit", RETURN + S)["allowed"]


def test_a_named_delegate(client: TestClient, auth: Any, db: Database, company: dict[str, Any]) -> None:
    h = open_leave(client, auth, delegate="e1")
    assert h["delegate"] == "e1"
    assert decide(client, auth, "e1", "c1", "edit", EFFECTIVE)["level"] == "interim"
    assert decide(client, auth, "m1", "c1", "view", EFFECTIVE)["reason"] == "no_grant"
    with db.session(write=False) as s:
        grants = s.scalars(select(AccessGrant).where(AccessGrant.handover_id == h["id"])).all()
        assert {(g.employee_id, g.level, g.valid_from, g.valid_until) for g in grants} == {
            ("e1", "interim", EFFECTIVE, RETURN)
        }
        assert {g.client_id for g in grants} == {f"c{i}" for i in range(8)}


def test_cancel_while_running_gives_access_back_now(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, company: dict[str, Any]
) -> None:
    h = open_leave(client, auth)
    now = EFFECTIVE + dt.timedelta(days=3)
    clock.set(now)
    r = client.post(f"/v1/handovers/{h['id']}/cancel", json={"reason": "back early"}, headers=auth("hr"))
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    assert decide(client, auth, "e0", "c1", "edit", now - S)["reason"] == "employee_away"  # history stays
    assert decide(client, auth, "e0", "c1", "edit", now)["allowed"]
    assert decide(client, auth, "m1", "c1", "edit", now)["reason"] == "no_grant"
    assert actions(db, h["id"])[-1] == "handover.cancelled"


def test_complete_early_and_not_before_the_start(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, company: dict[str, Any]
) -> None:
    h = open_leave(client, auth)
    url = f"/v1/handovers/{h['id']}/complete"
    manager = auth("manager", emp="m1")
    assert_problem(client.post(url, json={"reason": "back"}, headers=manager), 409)
    now = EFFECTIVE + dt.timedelta(days=2)
    clock.set(now)
    r = client.post(url, json={"reason": "back early"}, headers=manager)
    assert r.status_code == 200 and r.json()["status"] == "completed", r.text
    assert decide(client, auth, "e0", "c1", "edit", now)["allowed"]
    assert decide(client, auth, "m1", "c1", "edit", now)["reason"] == "no_grant"
    assert decide(client, auth, "m1", "c1", "edit", now - S)["allowed"]  # the delegation happened


def test_a_leave_is_never_planned_approved_executed_or_undone(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, company: dict[str, Any]
) -> None:
    h = open_leave(client, auth)
    hid = h["id"]
    assert_problem(client.post(f"/v1/handovers/{hid}/plan", headers=auth("hr")), 409)
    assert_problem(client.post(f"/v1/handovers/{hid}/approve", headers=auth("manager", emp="m1")), 409)
    assert_problem(client.post(f"/v1/handovers/{hid}/execute", headers=auth("admin")), 409)
    clock.set(RETURN)
    run_once(db, clock)
    assert_problem(client.post(f"/v1/handovers/{hid}/undo", json={}, headers=auth("admin")), 409)
    # While a leave is open no other handover opens for the person; after it, an exit does.
    clock.set(RETURN + S)
    r = client.post(
        "/v1/handovers",
        json={"leaver": "e0", "reason": "resignation", "effective_at": (RETURN + dt.timedelta(days=14)).isoformat()},
        headers=auth("hr"),
    )
    assert r.status_code == 201, r.text


def test_no_exit_opens_during_a_leave_through_the_api(
    client: TestClient, auth: Any, db: Database, company: dict[str, Any]
) -> None:
    open_leave(client, auth)
    r = client.post(
        "/v1/handovers",
        json={"leaver": "e0", "reason": "resignation", "effective_at": EFFECTIVE.isoformat()},
        headers=auth("hr"),
    )
    assert_problem(r, 409)


def test_through_hr_opened_moved_and_cancelled(
    hook: TestClient, auth: Any, db: Database, clock: ManualClock, company: dict[str, Any]
) -> None:
    event = exit_event(reason="leave", destination_competitor=None, return_at=RETURN.isoformat())
    hid = ok(deliver(hook, event, clock=clock))["handover_id"]
    h = hook.get(f"/v1/handovers/{hid}", headers=auth("hr")).json()
    assert (h["status"], h["source"], h["delegate"]) == ("scheduled", "hr_webhook", "m1")
    assert decide(hook, auth, "e0", "c3", "view", EFFECTIVE)["reason"] == "employee_away"
    # HR extends the leave by a week: both windows move.
    longer = RETURN + dt.timedelta(days=7)
    moved = exit_event(reason="leave", destination_competitor=None, return_at=longer.isoformat())
    moved["timestamp"] = "2026-11-02T09:00:00Z"
    assert ok(deliver(hook, moved, clock=clock))["handover_id"] == hid
    assert decide(hook, auth, "e0", "c3", "view", RETURN)["reason"] == "employee_away"
    assert decide(hook, auth, "m1", "c3", "view", RETURN)["level"] == "interim"
    assert decide(hook, auth, "e0", "c3", "view", longer)["allowed"]
    # HR withdraws it: cancelled, nothing left of the windows.
    withdrawn = {"type": "employee.exit_cancelled", "timestamp": "2026-11-02T09:00:30Z", "data": {"employee": "e0"}}
    assert ok(deliver(hook, withdrawn, clock=clock))["handover_id"] == hid
    assert hook.get(f"/v1/handovers/{hid}", headers=auth("hr")).json()["status"] == "cancelled"
    assert decide(hook, auth, "e0", "c3", "view", EFFECTIVE)["allowed"]
    assert decide(hook, auth, "m1", "c3", "view", EFFECTIVE)["reason"] == "no_grant"
    assert actions(db, hid) == ["handover.created", "handover.scheduled", "handover.rescheduled", "handover.cancelled"]


def test_an_exit_during_a_leave_ends_it(
    hook: TestClient, auth: Any, db: Database, clock: ManualClock, company: dict[str, Any]
) -> None:
    event = exit_event(reason="leave", destination_competitor=None, return_at=RETURN.isoformat())
    leave_id = ok(deliver(hook, event, clock=clock))["handover_id"]
    now = EFFECTIVE + dt.timedelta(days=1)
    clock.set(now)
    quits = exit_event(effective_at=RETURN, reason="resignation")
    quits["timestamp"] = (now - S).isoformat()
    exit_id = ok(deliver(hook, quits, clock=clock))["handover_id"]
    assert exit_id != leave_id
    assert hook.get(f"/v1/handovers/{leave_id}", headers=auth("hr")).json()["status"] == "completed"
    assert hook.get(f"/v1/handovers/{exit_id}", headers=auth("hr")).json()["status"] == "draft"
    person = employee(db, "e0")
    assert person is not None and (person.status, person.exit_at) == ("leaving", RETURN)
    assert decide(hook, auth, "e0", "c1", "edit", now)["allowed"]  # back until the exit is planned
    plan(hook, auth, exit_id)
    approve(hook, auth, exit_id)
    assert decide(hook, auth, "e0", "c1", "view", RETURN)["reason"] == "employee_departed"


def test_a_leave_cannot_start_during_an_exit(
    hook: TestClient, auth: Any, db: Database, clock: ManualClock, company: dict[str, Any]
) -> None:
    ok(deliver(hook, exit_event(), clock=clock))
    before = snapshot(db, WRITTEN)
    later = exit_event(reason="leave", destination_competitor=None, return_at=RETURN.isoformat())
    later["timestamp"] = "2026-11-02T09:00:00Z"
    assert_problem(deliver(hook, later, clock=clock), 409)
    assert snapshot(db, WRITTEN) == before


def test_nobody_to_stand_in(client: TestClient, auth: Any, db: Database, company: dict[str, Any]) -> None:
    """No delegate named and nobody up the chain can act: 422, nothing written."""
    for who in ("m1", "ceo"):
        r = client.put(
            f"/v1/employees/{who}",
            json={"name": who, "email": f"{who}@example.com", "seniority": 4, "status": "departed"},
            headers=auth("hr"),
        )
        assert r.status_code in (200, 201), r.text
    before = snapshot(db, WRITTEN)
    body = {"leaver": "e0", "reason": "leave", "effective_at": EFFECTIVE.isoformat(), "return_at": RETURN.isoformat()}
    assert_problem(client.post("/v1/handovers", json=body, headers=auth("hr")), 422, loc=["body", "delegate"])
    assert snapshot(db, WRITTEN) == before


LEAVE = {"reason": "leave", "return_at": RETURN.isoformat()}
BAD_BODIES: list[tuple[str, dict[str, Any], list[str | int]]] = [
    ("no end date", {"reason": "leave"}, ["body", "return_at"]),
    ("ends when it starts", {"reason": "leave", "return_at": EFFECTIVE.isoformat()}, ["body", "return_at"]),
    ("ends before it starts", {"reason": "leave", "return_at": (EFFECTIVE - S).isoformat()}, ["body", "return_at"]),
    ("unknown reason", {"reason": "sabbatical", "return_at": RETURN.isoformat()}, ["body", "reason"]),
    ("end date on an exit", {"reason": "resignation", "return_at": RETURN.isoformat()}, ["body", "return_at"]),
    ("delegate on an exit", {"reason": "role_change", "delegate": "e1"}, ["body", "delegate"]),
    ("unknown delegate", {**LEAVE, "delegate": "nobody"}, ["body", "delegate"]),
    ("self as delegate", {**LEAVE, "delegate": "e0"}, ["body", "delegate"]),
]


@pytest.mark.parametrize(("case", "extra", "loc"), BAD_BODIES, ids=[c for c, _, _ in BAD_BODIES])
def test_bad_input_through_the_api(
    client: TestClient,
    auth: Any,
    db: Database,
    company: dict[str, Any],
    case: str,
    extra: dict[str, Any],
    loc: list[str | int],
) -> None:
    before = snapshot(db, WRITTEN)
    body = {"leaver": "e0", "effective_at": EFFECTIVE.isoformat(), **extra}
    assert_problem(client.post("/v1/handovers", json=body, headers=auth("hr")), 422, loc=loc)
    assert snapshot(db, WRITTEN) == before


BAD_EVENTS: list[tuple[str, dict[str, Any]]] = [
    ("no end date", {"reason": "leave"}),
    ("ends when it starts", {"reason": "leave", "return_at": EFFECTIVE.isoformat()}),
    ("ends before it starts", {"reason": "leave", "return_at": (EFFECTIVE - S).isoformat()}),
    ("end date on an exit", {"reason": "role_change", "return_at": RETURN.isoformat()}),
]


@pytest.mark.parametrize(("case", "data"), BAD_EVENTS, ids=[c for c, _ in BAD_EVENTS])
def test_bad_input_through_hr(
    hook: TestClient,
    db: Database,
    clock: ManualClock,
    company: dict[str, Any],
    case: str,
    data: dict[str, Any],
) -> None:
    before = snapshot(db, WRITTEN)
    event = exit_event(destination_competitor=None, **data)
    assert_problem(deliver(hook, event, clock=clock), 422, loc=["body", "data", "return_at"])
    assert snapshot(db, WRITTEN) == before


def test_suspensions_are_stored_windows(client: TestClient, auth: Any, db: Database, company: dict[str, Any]) -> None:
    h = open_leave(client, auth)
    with db.session(write=False) as s:
        rows = s.scalars(select(AccessSuspension)).all()
    assert [(r.employee_id, r.valid_from, r.valid_until, r.handover_id, r.revoked_at) for r in rows] == [
        ("e0", EFFECTIVE, RETURN, h["id"], None)
    ]


def test_listed_and_reported_like_any_handover(client: TestClient, auth: Any, company: dict[str, Any]) -> None:
    h = open_leave(client, auth)
    listed = client.get("/v1/handovers", params={"status": "scheduled"}, headers=auth("hr"))
    assert listed.status_code == 200 and [x["id"] for x in listed.json()["items"]] == [h["id"]], listed.text
    report = client.get(f"/v1/handovers/{h['id']}/report", headers=auth("hr"))
    assert report.status_code == 200, report.text
    # The leaver's manager sees it; the person on leave sees their own.
    assert client.get(f"/v1/handovers/{h['id']}", headers=auth("manager", emp="m1")).status_code == 200
    assert client.get(f"/v1/handovers/{h['id']}", headers=auth("account_manager", emp="e0")).status_code == 200


def _leave_for(client: TestClient, auth: Any, who: str, start: dt.datetime, end: dt.datetime) -> int:
    body = {"leaver": who, "reason": "leave", "effective_at": start.isoformat(), "return_at": end.isoformat()}
    r = client.post("/v1/handovers", json=body, headers=auth("hr"))
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


@pytest.mark.parametrize(
    ("case", "start", "end"),
    [
        ("the same window", EFFECTIVE, RETURN),
        ("starting inside it", EFFECTIVE + dt.timedelta(days=7), RETURN + dt.timedelta(days=7)),
        ("ending inside it", EFFECTIVE - dt.timedelta(days=7), EFFECTIVE + S),
    ],
)
def test_a_delegate_on_leave_during_the_leave_is_refused(
    client: TestClient,
    auth: Any,
    db: Database,
    company: dict[str, Any],
    case: str,
    start: dt.datetime,
    end: dt.datetime,
) -> None:
    """e1 is away for part of e0's leave: naming e1 would leave e0's clients with nobody who can act then."""
    _leave_for(client, auth, "e1", start, end)
    before = snapshot(db, WRITTEN)
    body = {"leaver": "e0", "effective_at": EFFECTIVE.isoformat(), **LEAVE, "delegate": "e1"}
    problem = assert_problem(client.post("/v1/handovers", json=body, headers=auth("hr")), 422, loc=["body", "delegate"])
    assert "on leave" in problem["detail"], problem
    assert snapshot(db, WRITTEN) == before


def test_a_delegate_whose_leave_does_not_overlap_is_accepted(
    client: TestClient, auth: Any, company: dict[str, Any]
) -> None:
    """A leave that ends at the second e0's starts (windows are half-open) does not overlap."""
    _leave_for(client, auth, "e1", EFFECTIVE - dt.timedelta(days=7), EFFECTIVE)
    assert open_leave(client, auth, delegate="e1")["delegate"] == "e1"


def test_a_delegate_departing_during_the_leave_is_refused(
    client: TestClient, auth: Any, db: Database, company: dict[str, Any]
) -> None:
    """e1's exit falls inside e0's leave: they could not hold e0's clients to its end."""
    r = client.post(
        "/v1/handovers",
        json={"leaver": "e1", "reason": "resignation", "effective_at": (RETURN - S).isoformat()},
        headers=auth("hr"),
    )
    assert r.status_code == 201, r.text
    before = snapshot(db, WRITTEN)
    body = {"leaver": "e0", "effective_at": EFFECTIVE.isoformat(), **LEAVE, "delegate": "e1"}
    problem = assert_problem(client.post("/v1/handovers", json=body, headers=auth("hr")), 422, loc=["body", "delegate"])
    assert "leaves during" in problem["detail"], problem
    assert snapshot(db, WRITTEN) == before


def test_the_default_delegate_on_leave_is_refused(
    client: TestClient, auth: Any, db: Database, company: dict[str, Any]
) -> None:
    """No delegate named: the interim owner rule picks m1, who is away for the whole leave; refused (name one)."""
    _leave_for(client, auth, "m1", EFFECTIVE - dt.timedelta(days=1), RETURN + dt.timedelta(days=1))
    before = snapshot(db, WRITTEN)
    body = {"leaver": "e0", "effective_at": EFFECTIVE.isoformat(), **LEAVE}
    assert_problem(client.post("/v1/handovers", json=body, headers=auth("hr")), 422, loc=["body", "delegate"])
    assert snapshot(db, WRITTEN) == before
    assert open_leave(client, auth, delegate="e2")["delegate"] == "e2"


def _successors(client: TestClient, auth: Any, hid: int) -> set[str]:
    plan(client, auth, hid)
    r = client.get(f"/v1/handovers/{hid}/items", params={"limit": 200}, headers=auth())
    assert r.status_code == 200, r.text
    return {i["successor"] for i in r.json()["items"] if i["successor"]}


def test_planning_proposes_nobody_on_leave_at_the_effective_time(
    client: TestClient, auth: Any, db: Database, company: dict[str, Any]
) -> None:
    """The plan's first choice goes on leave over e0's effective time: re-planned, they are proposed for nothing;
    a leave that ends before the effective time (or is cancelled) does not keep them out."""
    r = client.post(
        "/v1/handovers",
        json={"leaver": "e0", "reason": "resignation", "effective_at": EFFECTIVE.isoformat()},
        headers=auth("hr"),
    )
    assert r.status_code == 201, r.text
    hid = int(r.json()["id"])
    first = _successors(client, auth, hid)
    away = sorted(first)[0]
    covering = _leave_for(client, auth, away, EFFECTIVE - dt.timedelta(days=1), EFFECTIVE + S)
    assert away not in _successors(client, auth, hid)
    r = client.post(f"/v1/handovers/{covering}/cancel", json={"reason": "not going"}, headers=auth("hr"))
    assert r.status_code == 200, r.text
    _leave_for(client, auth, away, EFFECTIVE - dt.timedelta(days=7), EFFECTIVE)  # back at the effective time
    assert _successors(client, auth, hid) == first
