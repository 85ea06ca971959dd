"""Issue 15: continuity of ownership — no client is ever left with an owner nobody can act for.

Real HTTP through TestClient, the injected clock, the worker's own jobs (app.worker.DB_JOBS, without the outbox
delivery: no network), both databases.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any, ClassVar

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from sqlalchemy import delete, func, insert, select, update

from app.access import service as access
from app.access.models import AccessGrant, AccessSuspension
from app.audit.models import AuditEntry
from app.book.models import Record
from app.core.clock import ManualClock
from app.core.db import Database
from app.directory.models import Client, Employee
from app.notify.models import OutboxMessage
from app.transfer import continuity
from app.transfer.models import OwnershipRepair
from tests.conftest import START, _clean
from tests.support.company import EFFECTIVE, clients, employees, plan
from tests.support.continuity import (
    S,
    acts_for_all,
    check,
    events,
    handovers_of,
    owners,
    record,
    run_machine,
    work,
)
from tests.support.hr import deliver, ok

CLIENTS = [f"c{i}" for i in range(8)]

pytestmark = pytest.mark.usefixtures("company")


# ---- helpers ---------------------------------------------------------------------------------------


def status_of(db: Database, eid: str) -> str:
    with db.session(write=False) as s:
        return str(s.scalar(select(Employee.status).where(Employee.external_id == eid)))


def violations(db: Database, at: dt.datetime) -> list[continuity.Violation]:
    with db.session(write=False) as s:
        found = continuity.violations_in(s, at)
        assert found == continuity.violations(continuity.snapshot(s), at)
        return found


def items_of(client: TestClient, auth: Any, hid: int) -> list[dict[str, Any]]:
    r = client.get(f"/v1/handovers/{hid}/items", params={"limit": 200}, headers=auth())
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def audit_actions(db: Database) -> Counter[str]:
    with db.session(write=False) as s:
        return Counter(s.scalars(select(AuditEntry.action)))


def reassigned(db: Database) -> list[dict[str, Any]]:
    """Every client move the CRM was told of, flattened, in order."""
    with db.session(write=False) as s:
        rows = s.scalars(
            select(OutboxMessage.payload)
            .where(OutboxMessage.event_type == "client.reassigned")
            .order_by(OutboxMessage.id)
        ).all()
    return [{**m, "undo": p["data"]["undo"]} for p in rows for m in p["data"]["clients"]]


@pytest.fixture
def crm(client: TestClient, auth: Any) -> None:
    """A CRM endpoint subscribed to everything, so that events are stored (never delivered here)."""
    r = client.post(
        "/v1/webhook-endpoints", json={"url": "https://93.184.215.14/hooks", "event_types": ["*"]}, headers=auth()
    )
    assert r.status_code == 201, r.text


# ---- row 1: every departure signal opens a handover ---------------------------------------------------


def _departed_and_covered(client: TestClient, auth: Any, db: Database, clock: ManualClock, source: str) -> None:
    [h] = handovers_of(client, auth, "e0")
    assert (h["reason"], h["status"], h["source"]) == ("unknown", "draft", source)
    assert dt.datetime.fromisoformat(h["effective_at"]) == clock.now()
    assert status_of(db, "e0") == "departed"
    # Not left with a departed owner nobody can act for: the interim owner (e0's manager) holds them, at once.
    assert {c: o for c, o in owners(db).items() if c in CLIENTS} == dict.fromkeys(CLIENTS, "m1")
    assert acts_for_all(client, auth, "m1", CLIENTS)
    assert not check(client, auth, "e0", "c0", "view")
    assert violations(db, clock.now()) == []
    moves = reassigned(db)
    assert sorted(m["client"] for m in moves) == CLIENTS
    assert all((m["from"], m["to"], m["interim"], m["undo"]) == ("e0", "m1", True, False) for m in moves)
    assert audit_actions(db)["handover.interim_owner"] == 1


def test_put_departed_opens_a_handover_and_the_interim_owner_takes_over(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, crm: None
) -> None:
    clock.set(START + dt.timedelta(days=2))
    r = client.put("/v1/employees/e0", json=record("e0", status="departed"), headers=auth("hr"))
    assert r.status_code == 200, r.text
    _departed_and_covered(client, auth, db, clock, "api")


def test_batch_leaving_opens_a_handover_at_the_exit_time(client: TestClient, auth: Any, db: Database) -> None:
    items = [{"external_id": "e0", **record("e0", status="leaving", exit_at=EFFECTIVE.isoformat())}]
    items.append({"external_id": "e3", **record("e3", status="leaving", exit_at=EFFECTIVE.isoformat())})  # no clients
    r = client.post("/v1/employees/batch", json={"items": items}, headers=auth("hr"))
    assert r.status_code == 200, r.text
    [h] = handovers_of(client, auth, "e0")
    assert (h["reason"], h["status"], dt.datetime.fromisoformat(h["effective_at"])) == ("unknown", "draft", EFFECTIVE)
    assert handovers_of(client, auth, "e3") == []
    plan(client, auth, h["id"])  # `unknown` is planned like `other` (the risk model knows the accepted reasons)
    report = client.get(f"/v1/handovers/{h['id']}/report", headers=auth())
    assert report.status_code == 200 and report.json()["reason"] == "unknown", report.text
    # Before the exit e0 still acts; from the exit's second the interim owner does, with no job run.
    assert acts_for_all(client, auth, "e0", CLIENTS, EFFECTIVE - S)
    assert not check(client, auth, "m1", "c0", "edit", EFFECTIVE - S)
    assert acts_for_all(client, auth, "m1", CLIENTS, EFFECTIVE)
    assert not check(client, auth, "e0", "c0", "view", EFFECTIVE)
    # A second signal neither opens another nor moves the time later.
    r = client.put(
        "/v1/employees/e0", json=record("e0", status="leaving", exit_at=(EFFECTIVE + S).isoformat()), headers=auth("hr")
    )
    assert r.status_code == 200, r.text
    assert len(handovers_of(client, auth, "e0")) == 1


def test_employee_updated_departed_opens_a_handover(
    hook: TestClient, client: TestClient, auth: Any, db: Database, clock: ManualClock, crm: None
) -> None:
    clock.set(START + dt.timedelta(days=2))
    data = {"employee": "e0", **record("e0", status="departed")}
    event = {"type": "employee.updated", "timestamp": clock.now().isoformat(), "data": data}
    body = ok(deliver(hook, event, clock=clock))
    assert body["ignored"] is None
    _departed_and_covered(client, auth, db, clock, "hr_webhook")


def test_a_departed_owner_can_still_get_a_handover(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, crm: None
) -> None:
    # e4 departs holding nothing (no handover), then the CRM gives e4 a client: POST opens one, effective now.
    r = client.put("/v1/employees/e4", json=record("e4", status="departed"), headers=auth("hr"))
    assert r.status_code == 200, r.text
    assert handovers_of(client, auth, "e4") == []
    row = {"name": "Late", "tier": "standard", "owner": "e4", "sensitivity": 1}
    assert client.put("/v1/clients/late", json=row, headers=auth("hr")).status_code == 201
    clock.advance(dt.timedelta(hours=1))
    future = clock.now() + dt.timedelta(days=3)
    r = client.post(
        "/v1/handovers",
        json={"leaver": "e4", "reason": "resignation", "effective_at": future.isoformat()},
        headers=auth("hr"),
    )
    assert r.status_code == 201, r.text
    assert dt.datetime.fromisoformat(r.json()["effective_at"]) == clock.now()  # already gone: now, not later
    assert owners(db)["late"] == "m1"
    assert acts_for_all(client, auth, "m1", ["late"])
    assert violations(db, clock.now()) == []


# ---- row 2: the interim owner at the effective time, without anyone acting ------------------------------


def test_not_approved_by_the_effective_time_goes_to_the_interim_owner_then_to_the_successors(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, open_handover: int, crm: None
) -> None:
    hid = open_handover
    plan(client, auth, hid)
    successors = {i["client"]: i["successor"] or i["interim_owner"] for i in items_of(client, auth, hid)}
    assert set(successors) == set(CLIENTS)
    clock.set(EFFECTIVE + S)
    # Before any worker run: the interim owner is allowed, the leaver is not.
    assert acts_for_all(client, auth, "m1", CLIENTS)
    assert not check(client, auth, "e0", "c0", "view")
    done = work(db, clock)
    assert done["take_over_interim"] == 1 and done["sweep_ownership"] == 0
    assert {c: o for c, o in owners(db).items() if c in CLIENTS} == dict.fromkeys(CLIENTS, "m1")
    assert status_of(db, "e0") == "departed"
    assert violations(db, clock.now()) == []
    body = client.get(f"/v1/handovers/{hid}", headers=auth()).json()
    assert body["status"] == "planned"
    assert work(db, clock)["take_over_interim"] == 0  # once
    # A late approval moves the clients on to the planned successors.
    clock.set(EFFECTIVE + dt.timedelta(days=1))
    r = client.post(f"/v1/handovers/{hid}/approve", headers=auth("manager", emp="m1"))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "executed"  # the time has come: executed with the approval
    assert {c: o for c, o in owners(db).items() if c in CLIENTS} == successors
    assert work(db, clock)["execute_due_handovers"] == 0
    for c, to in successors.items():
        assert acts_for_all(client, auth, to, [c])
        if to != "m1":
            assert not check(client, auth, "m1", c, "edit")
    assert violations(db, clock.now()) == []
    moves = reassigned(db)
    per_client = Counter(m["client"] for m in moves)
    expected = {c: 1 if to == "m1" else 2 for c, to in successors.items()}
    assert per_client == expected, moves  # nothing twice
    for c, to in successors.items():
        chain = [(m["from"], m["to"]) for m in moves if m["client"] == c]
        assert chain == ([("e0", "m1")] + ([("m1", to)] if to != "m1" else []))
    assert len(events(db, "handover.executed")) == 1
    assert work(db, clock) == dict.fromkeys(work(db, clock), 0)


def test_a_handover_taken_over_before_any_plan_is_still_planned_for_the_leavers_clients(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, open_handover: int, crm: None
) -> None:
    clock.set(EFFECTIVE + S)
    assert work(db, clock)["take_over_interim"] == 1
    assert {c: o for c, o in owners(db).items() if c in CLIENTS} == dict.fromkeys(CLIENTS, "m1")
    plan(client, auth, open_handover)
    items = items_of(client, auth, open_handover)
    assert sorted(i["client"] for i in items) == CLIENTS
    assert {i["previous_owner"] for i in items} == {"e0"}
    r = client.post(f"/v1/handovers/{open_handover}/approve", headers=auth("manager", emp="m1"))
    assert r.status_code == 200 and r.json()["status"] == "executed", r.text
    planned = {i["client"]: i["successor"] or i["interim_owner"] for i in items}
    assert {c: o for c, o in owners(db).items() if c in CLIENTS} == planned
    assert violations(db, clock.now()) == []
    assert Counter(m["client"] for m in reassigned(db)) == {c: 1 if to == "m1" else 2 for c, to in planned.items()}


def test_approved_in_time_lays_no_interim_access(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, open_handover: int
) -> None:
    plan(client, auth, open_handover)
    r = client.post(f"/v1/handovers/{open_handover}/approve", headers=auth("manager", emp="m1"))
    assert r.status_code == 200, r.text
    with db.session(write=False) as s:
        laid = s.scalars(select(AccessGrant).where(AccessGrant.reason == continuity.INTERIM_REASON)).all()
        assert laid and all(g.revoked_at is not None for g in laid)
    not_m1 = [
        i["client"] for i in items_of(client, auth, open_handover) if (i["successor"] or i["interim_owner"]) != "m1"
    ]
    assert not_m1 and not check(client, auth, "m1", not_m1[0], "edit", EFFECTIVE + S)
    clock.set(EFFECTIVE + S)
    assert work(db, clock)["take_over_interim"] == 0


def test_a_rescheduled_exit_moves_the_interim_window(
    hook: TestClient, client: TestClient, auth: Any, db: Database, clock: ManualClock
) -> None:
    event = {
        "type": "employee.exit",
        "timestamp": clock.now().isoformat(),
        "data": {"employee": "e0", "effective_at": EFFECTIVE.isoformat(), "reason": "resignation"},
    }
    ok(deliver(hook, event, clock=clock))
    later = EFFECTIVE + dt.timedelta(days=7)
    moved = {
        **event,
        "timestamp": (clock.now() + S).isoformat(),
        "data": {**event["data"], "effective_at": later.isoformat()},
    }
    clock.set(clock.now() + S)
    ok(deliver(hook, moved, clock=clock))
    assert not check(client, auth, "m1", "c0", "edit", EFFECTIVE + S)
    assert check(client, auth, "e0", "c0", "edit", EFFECTIVE + S)
    assert acts_for_all(client, auth, "m1", CLIENTS, later)
    clock.set(EFFECTIVE + S)
    assert work(db, clock)["take_over_interim"] == 0
    assert violations(db, clock.now()) == []


def test_exit_cancelled_after_the_takeover_gives_the_clients_back(
    hook: TestClient, client: TestClient, auth: Any, db: Database, clock: ManualClock, open_handover: int
) -> None:
    clock.set(EFFECTIVE + S)
    work(db, clock)
    assert owners(db)["c0"] == "m1"
    event = {"type": "employee.exit_cancelled", "timestamp": clock.now().isoformat(), "data": {"employee": "e0"}}
    ok(deliver(hook, event, clock=clock))
    assert status_of(db, "e0") == "active"
    assert {c: o for c, o in owners(db).items() if c in CLIENTS} == dict.fromkeys(CLIENTS, "e0")
    assert acts_for_all(client, auth, "e0", CLIENTS)
    assert not check(client, auth, "m1", "c0", "edit")
    assert violations(db, clock.now()) == []


# ---- the sweeper and the metrics ----------------------------------------------------------------------


def metric(client: TestClient, auth: Any, name: str) -> float:
    r = client.get("/metrics", headers=auth("admin"))
    assert r.status_code == 200, r.text
    [line] = [ln for ln in r.text.splitlines() if ln.startswith(name + " ")]
    return float(line.split()[1])


def test_the_sweeper_repairs_a_corrupted_owner(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, crm: None
) -> None:
    # x1 (under m2) departs holding nothing, then the database is corrupted behind the service's back.
    assert client.put("/v1/employees/x1", json=record("x1", status="departed"), headers=auth("hr")).status_code == 200
    with db.engine.begin() as conn:
        conn.execute(update(Client).where(Client.external_id.in_(["c0", "c1"])).values(owner_id="x1"))
    assert metric(client, auth, "handover_unowned_clients") == 2
    assert metric(client, auth, "handover_ownership_repairs_total") == 0
    assert [v.reason for v in violations(db, clock.now())] == ["owner_departed", "owner_departed"]
    done = work(db, clock)
    assert done["sweep_ownership"] == 2
    assert owners(db)["c0"] == owners(db)["c1"] == "m2"
    assert acts_for_all(client, auth, "m2", ["c0", "c1"])
    assert violations(db, clock.now()) == []
    assert metric(client, auth, "handover_unowned_clients") == 0
    assert metric(client, auth, "handover_ownership_repairs_total") == 2
    assert audit_actions(db)["ownership.violation"] == 2
    [alert] = events(db, "ownership.violation")
    assert sorted((c["client"], c["owner"], c["reason"], c["new_owner"]) for c in alert["clients"]) == [
        ("c0", "x1", "owner_departed", "m2"),
        ("c1", "x1", "owner_departed", "m2"),
    ]
    with db.session(write=False) as s:
        assert s.scalar(select(func.count()).select_from(OwnershipRepair)) == 2
    assert work(db, clock)["sweep_ownership"] == 0


def test_the_sweeper_gives_a_present_owner_back_their_grant(
    client: TestClient, auth: Any, db: Database, clock: ManualClock
) -> None:
    with db.engine.begin() as conn:
        conn.execute(delete(AccessGrant).where(AccessGrant.client_id == "c3"))
    assert [(v.client, v.reason) for v in violations(db, clock.now())] == [("c3", "owner_no_access")]
    assert work(db, clock)["sweep_ownership"] == 1
    assert owners(db)["c3"] == "e0" and acts_for_all(client, auth, "e0", ["c3"])


def test_an_unrepairable_violation_is_alerted_once(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, crm: None
) -> None:
    # e3 has clearance 1; c1 has sensitivity 2: the CRM's owner choice cannot be repaired by rule.
    with db.engine.begin() as conn:
        conn.execute(update(Client).where(Client.external_id == "c1").values(owner_id="e3"))
        conn.execute(
            insert(AccessGrant).values(
                employee_id="e3",
                client_id="c1",
                level="owner",
                valid_from=START,
                reason="test",
                created_by="test",
                created_at=START,
            )
        )
    assert work(db, clock)["sweep_ownership"] == 0
    work(db, clock)
    assert audit_actions(db)["ownership.violation"] == 1
    [alert] = events(db, "ownership.violation")
    assert [(c["client"], c["reason"], c["repaired"]) for c in alert["clients"]] == [
        ("c1", "owner_insufficient_clearance", False)
    ]
    assert metric(client, auth, "handover_unowned_clients") == 1


# ---- bad input stays 422, nothing written -------------------------------------------------------------


def test_bad_input_is_refused_and_writes_nothing(client: TestClient, auth: Any, db: Database) -> None:
    before = audit_actions(db)
    r = client.put("/v1/employees/e0", json=record("e0", status="gone"), headers=auth("hr"))
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert all({"loc", "msg", "type"} <= set(e) for e in r.json()["errors"])
    r = client.post(
        "/v1/handovers",
        json={"leaver": "e0", "reason": "unknown", "effective_at": EFFECTIVE.isoformat()},
        headers=auth("hr"),
    )
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    items = [
        {"external_id": "e0", **record("e0", status="departed")},
        {"external_id": "e1", **record("e1", manager="nobody")},
    ]
    r = client.post("/v1/employees/batch", json={"items": items}, headers=auth("hr"))
    assert r.status_code == 422, r.text
    assert handovers_of(client, auth, "e0") == []
    assert status_of(db, "e0") == "active"
    assert audit_actions(db) == before


# ---- the pure rule and the SQL agree (and agree with the access decision) ------------------------------

PEOPLE = ["p0", "p1", "p2", "p3"]
ACCOUNTS = ["a0", "a1", "a2", "a3", "a4"]
T0 = START
times = st.sampled_from([None, T0 - 2 * S, T0 - S, T0, T0 + S, T0 + 2 * S])
starts = st.sampled_from([T0 - 2 * S, T0 - S, T0, T0 + S])

people = st.fixed_dictionaries(
    {p: st.tuples(st.sampled_from(["active", "leaving", "departed"]), times, st.integers(1, 3)) for p in PEOPLE}
)
accounts = st.fixed_dictionaries(
    {
        a: st.tuples(
            st.sampled_from(PEOPLE), st.sampled_from(["active", "at_risk", "churned", "inactive"]), st.integers(1, 3)
        )
        for a in ACCOUNTS
    }
)
grant_rows = st.lists(
    st.tuples(
        st.sampled_from(PEOPLE),
        st.sampled_from(ACCOUNTS),
        st.sampled_from(["owner", "interim", "shadow", "read"]),
        starts,
        times,
        times,
    ),
    max_size=12,
)
suspension_rows = st.lists(st.tuples(st.sampled_from(PEOPLE), starts, starts, times), max_size=3)


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    people=people,
    accounts=accounts,
    grant_rows=grant_rows,
    suspension_rows=suspension_rows,
    at=st.sampled_from([T0 - S, T0, T0 + S]),
)
def test_pure_and_sql_agree_on_random_snapshots(
    db: Database,
    people: dict[str, tuple[str, dt.datetime | None, int]],
    accounts: dict[str, tuple[str, str, int]],
    grant_rows: list[tuple[str, str, str, dt.datetime, dt.datetime | None, dt.datetime | None]],
    suspension_rows: list[tuple[str, dt.datetime, dt.datetime, dt.datetime | None]],
    at: dt.datetime,
) -> None:
    with db.engine.begin() as conn:
        conn.execute(delete(AccessSuspension))
        conn.execute(delete(AccessGrant))
        conn.execute(delete(Client).where(Client.external_id.in_(ACCOUNTS)))
        conn.execute(delete(Employee).where(Employee.external_id.in_(PEOPLE)))
        conn.execute(
            insert(Employee),
            [
                {
                    "external_id": p,
                    "name": p,
                    "email": f"{p}@example.com",
                    "seniority": 2,
                    "clearance": clr,
                    "capacity": 1,
                    "status": status,
                    "exit_at": exit_at,
                    "skills": [],
                    "regions": [],
                    "languages": [],
                    "created_at": T0,
                    "updated_at": T0,
                }
                for p, (status, exit_at, clr) in people.items()
            ],
        )
        conn.execute(
            insert(Client),
            [
                {
                    "external_id": a,
                    "name": a,
                    "tier": "standard",
                    "annual_value": 1,
                    "sensitivity": sens,
                    "owner_id": owner,
                    "status": status,
                    "open_issues": 0,
                    "created_at": T0,
                    "updated_at": T0,
                }
                for a, (owner, status, sens) in accounts.items()
            ],
        )
        rows = [
            {
                "employee_id": e,
                "client_id": c,
                "level": lvl,
                "valid_from": vf,
                "valid_until": vu if vu is None or vu > vf else None,
                "revoked_at": rv,
                "reason": "test",
                "created_by": "test",
                "created_at": T0,
            }
            for e, c, lvl, vf, vu, rv in grant_rows
        ]
        if rows:
            conn.execute(insert(AccessGrant), rows)
        away_rows = [
            {
                "employee_id": p,
                "valid_from": min(a, b),
                "valid_until": max(a, b) + S,
                "revoked_at": rv,
                "reason": "leave",
                "created_by": "test",
                "created_at": T0,
            }
            for p, a, b, rv in suspension_rows
        ]
        if away_rows:
            conn.execute(insert(AccessSuspension), away_rows)
    with db.session(write=False) as s:
        snap = continuity.snapshot(s)
        pure = [v for v in continuity.violations(snap, at) if v.client in ACCOUNTS]
        sql = [v for v in continuity.violations_in(s, at) if v.client in ACCOUNTS]
        assert sql == pure
        broken = {v.client for v in pure}
        for a, (owner, status, _) in accounts.items():
            if status == "churned":
                continue
            e = snap.employees[owner]
            can_act = e.status == "active" or (e.status == "leaving" and (e.exit_at is None or e.exit_at > at))
            decisions = [access.decide(s, owner, a, act, at) for act in ("view", "edit")]
            if can_act and any(d.reason == "employee_away" for d in decisions):
                # On leave: held when someone else who can act may edit it (the leave's delegate).
                covered = any(
                    all(access.decide(s, p, a, act, at).allowed for act in ("view", "edit"))
                    for p in PEOPLE
                    if p != owner
                )
                assert (a in broken) == (not covered), (a, owner, e)
                continue
            allowed = all(d.allowed for d in decisions)
            assert (a in broken) == (not (can_act and allowed)), (a, owner, e)


# ---- interleavings: HR events, CRM upserts, approvals, time and the worker ----------------------------------

LEAVERS = ("e0", "e1", "e2")
REACHED: Counter[str] = Counter()  # which worker jobs did something, over the run
OWNERS = ("e0", "e1", "e2", "m1", "x1")  # clearance enough for every client below


class Continuity(RuleBasedStateMachine):
    """After every step the pure rule and the SQL agree; after every worker pass the invariant holds, checked
    again through real access checks over HTTP for a sample of clients."""

    ctx: ClassVar[dict[str, Any]]

    def __init__(self) -> None:
        super().__init__()
        c, auth, db, clock = self.ctx["client"], self.ctx["auth"], self.ctx["db"], self.ctx["clock"]
        _clean(db)
        clock.set(START)
        for path, rows in (("/v1/employees/batch", employees()), ("/v1/clients/batch", clients(4))):
            assert c.post(path, json={"items": rows}, headers=auth("hr")).status_code == 200
        self.c, self.auth, self.db, self.clock = c, auth, db, clock
        self.new = 0

    def _hr(self, event: dict[str, Any]) -> None:
        self.clock.advance(S)
        r = deliver(self.hook(), {**event, "timestamp": self.clock.now().isoformat()}, clock=self.clock)
        assert r.status_code in (200, 409, 422), r.text
        if r.status_code != 200:
            assert r.headers["content-type"].startswith("application/problem+json")

    def hook(self) -> TestClient:
        hook: TestClient = self.ctx["hook"]
        return hook

    @rule(leaver=st.sampled_from(LEAVERS), hours=st.sampled_from([-1, 1, 48]))
    def exit(self, leaver: str, hours: int) -> None:
        at = self.clock.now() + dt.timedelta(hours=hours)
        self._hr(
            {"type": "employee.exit", "data": {"employee": leaver, "effective_at": at.isoformat(), "reason": "other"}}
        )

    @rule(leaver=st.sampled_from(LEAVERS))
    def exit_cancelled(self, leaver: str) -> None:
        self._hr({"type": "employee.exit_cancelled", "data": {"employee": leaver}})

    @rule(
        leaver=st.sampled_from(LEAVERS),
        status=st.sampled_from(["active", "leaving", "departed"]),
        hours=st.sampled_from([-1, 2]),
    )
    def updated(self, leaver: str, status: str, hours: int) -> None:
        exit_at = (self.clock.now() + dt.timedelta(hours=hours)).isoformat() if status == "leaving" else None
        data = {"employee": leaver, **record(leaver, status=status, exit_at=exit_at)}
        self._hr({"type": "employee.updated", "data": data})

    @rule(owner=st.sampled_from(OWNERS))
    def new_client(self, owner: str) -> None:
        self.new += 1
        row = {"name": f"New {self.new}", "tier": "standard", "owner": owner, "sensitivity": 1}
        r = self.c.put(f"/v1/clients/n{self.new}", json=row, headers=self.auth("hr"))
        assert r.status_code == 201, r.text

    @rule(index=st.integers(0, 3), owner=st.sampled_from(OWNERS))
    def owner_change(self, index: int, owner: str) -> None:
        cid = f"c{index}"
        body = self.c.get(f"/v1/clients/{cid}", headers=self.auth()).json()
        row = {k: body[k] for k in ("name", "tier", "sensitivity", "contacts", "status")} | {"owner": owner}
        r = self.c.put(f"/v1/clients/{cid}", json=row, headers=self.auth("hr"))
        assert r.status_code == 200, r.text

    @rule(leaver=st.sampled_from(LEAVERS))
    def plan_and_approve(self, leaver: str) -> None:
        for h in handovers_of(self.c, self.auth, leaver):
            if h["status"] in ("draft", "planned"):
                assert self.c.post(f"/v1/handovers/{h['id']}/plan", headers=self.auth("hr")).status_code == 200
                r = self.c.post(f"/v1/handovers/{h['id']}/approve", headers=self.auth())
                assert r.status_code in (200, 409), r.text

    @rule(hours=st.sampled_from([1, 24, 24 * 7]))
    def advance(self, hours: int) -> None:
        self.clock.advance(dt.timedelta(hours=hours))

    @initialize(leaver=st.sampled_from(LEAVERS), hours=st.sampled_from([1, 48]), plan=st.booleans())
    def first_exit(self, leaver: str, hours: int, plan: bool) -> None:
        """Every sequence starts with an exit under way (sometimes approved), so that short ones reach its time."""
        self.exit(leaver, hours)
        if plan:
            self.plan_and_approve(leaver)

    @rule(hours=st.sampled_from([0, 2, 24 * 7]))
    def worker(self, hours: int) -> None:
        self.clock.advance(dt.timedelta(hours=hours))
        done = work(self.db, self.clock)
        REACHED.update(k for k, v in done.items() if v > 0)
        # The takeover by the interim owner: the worker's job, or at once when the CRM gives the leaver a client.
        REACHED["interim_takeover"] += audit_actions(self.db)["handover.interim_owner"]
        now = self.clock.now()
        assert violations(self.db, now) == []
        held = sorted((c, o) for c, o in owners(self.db).items())
        for cid, owner in held[:: max(1, len(held) // 4)]:
            assert acts_for_all(self.c, self.auth, owner, [cid]), (cid, owner)

    @invariant()
    def pure_and_sql_agree(self) -> None:
        violations(self.db, self.clock.now())  # asserts that they agree


def test_the_invariant_holds_through_interleavings(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, hook: TestClient
) -> None:
    REACHED.clear()
    Continuity.ctx = {"client": client, "auth": auth, "db": db, "clock": clock, "hook": hook}
    run_machine(Continuity, max_examples=25)
    # The runs did reach the workflow's takeover, the sweeper and executions.
    assert {"interim_takeover", "sweep_ownership", "execute_due_handovers"} <= {k for k, v in REACHED.items() if v}


# ---- a client the CRM gives the leaver while the handover waits for approval ---------------------------


def _give(client: TestClient, auth: Any, cid: str, owner: str = "e0") -> None:
    body = {k: v for k, v in clients(1)[0].items() if k != "external_id"}
    r = client.put(f"/v1/clients/{cid}", json={**body, "name": f"Late {cid}", "owner": owner}, headers=auth("hr"))
    assert r.status_code in (200, 201), r.text


def test_a_client_given_before_the_effective_time_is_covered_from_that_second(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, open_handover: int
) -> None:
    """The interim grants laid ahead of an unapproved handover cover a client given to the leaver afterwards too:
    at the effective time the interim owner may act for it before any worker pass, and the leaver may not."""
    _give(client, auth, "late1")
    clock.set(EFFECTIVE + S)
    assert acts_for_all(client, auth, "m1", ["late1", *CLIENTS])
    assert not check(client, auth, "e0", "late1", "view")
    work(db, clock)
    assert owners(db)["late1"] == "m1"
    assert violations(db, clock.now()) == []


def test_a_client_given_after_the_takeover_goes_to_the_interim_owner_at_once(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, open_handover: int
) -> None:
    """Once the interim owner took the departed leaver's clients over, a client the CRM still gives the leaver
    goes there at once: no window in which nobody can act for it, no wait for the sweeper."""
    clock.set(EFFECTIVE + S)
    work(db, clock)
    assert status_of(db, "e0") == "departed"
    _give(client, auth, "late2")
    assert owners(db)["late2"] == "m1"
    assert acts_for_all(client, auth, "m1", ["late2"])
    assert violations(db, clock.now()) == []
    assert work(db, clock)["sweep_ownership"] == 0


def test_clients_given_while_waiting_lay_only_their_own_interim_grants(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, open_handover: int
) -> None:
    """A CRM upsert touches the interim grants of the clients it gives, not every grant the handover laid: after
    a batch of three and one more, each client has exactly one interim grant, none was revoked and laid again."""
    body = {k: v for k, v in clients(1)[0].items() if k != "external_id"}
    batch = [{**body, "external_id": f"n{i}", "name": f"New {i}"} for i in range(3)]
    r = client.post("/v1/clients/batch", json={"items": batch}, headers=auth("hr"))
    assert r.status_code == 200, r.text
    _give(client, auth, "n3")
    given = [f"n{i}" for i in range(4)]
    with db.session(write=False) as s:
        g = AccessGrant
        laid = s.execute(
            select(g.client_id, g.employee_id, g.valid_from, g.revoked_at).where(
                g.handover_id == open_handover, g.reason == continuity.INTERIM_REASON
            )
        ).all()
        leaver = dict(
            s.execute(select(g.client_id, g.valid_until).where(g.employee_id == "e0", g.client_id.in_(given))).all()
        )
    assert sorted(r.client_id for r in laid) == sorted([*CLIENTS, *given])  # one each: nothing laid twice
    assert all(r.revoked_at is None and r.employee_id == "m1" and r.valid_from == EFFECTIVE for r in laid)
    assert leaver == dict.fromkeys(given, EFFECTIVE)  # the leaver's new grants end at the effective time
    clock.set(EFFECTIVE + S)
    assert acts_for_all(client, auth, "m1", [*given, *CLIENTS])
    assert not check(client, auth, "e0", "n0", "view")
    work(db, clock)
    assert violations(db, clock.now()) == []


def test_a_new_interim_owner_takes_every_laid_grant_when_a_client_arrives(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, open_handover: int
) -> None:
    """The chain changed before the client arrived (the manager is leaving before the effective time): the
    interim grants follow the new interim owner for every client, the new one included."""
    r = client.post(
        "/v1/handovers",
        json={"leaver": "m1", "reason": "resignation", "effective_at": (EFFECTIVE - dt.timedelta(days=1)).isoformat()},
        headers=auth("hr"),
    )
    assert r.status_code == 201, r.text
    _give(client, auth, "n9")
    with db.session(write=False) as s:
        g = AccessGrant
        holders = set(
            s.scalars(
                select(g.employee_id).where(
                    g.handover_id == open_handover, g.reason == continuity.INTERIM_REASON, g.revoked_at.is_(None)
                )
            )
        )
    assert holders == {"ceo"}


# ---- the exit moved later after the takeover ----------------------------------------------------------


def _exit_at(hook: TestClient, clock: ManualClock, at: dt.datetime) -> Any:
    event = {
        "type": "employee.exit",
        "timestamp": clock.now().isoformat(),
        "data": {"employee": "e0", "effective_at": at.isoformat(), "reason": "resignation"},
    }
    return deliver(hook, event, clock=clock)


def test_an_exit_moved_later_after_the_takeover_gives_the_clients_back_until_the_new_time(
    hook: TestClient, client: TestClient, auth: Any, db: Database, clock: ManualClock, open_handover: int, crm: None
) -> None:
    """HR moves the exit a week later once the interim owner has the clients: the takeover is reversed, the leaver
    holds and may act for every client until the new time, and the interim owner takes over again from that second.
    The open records the takeover moved come back with the clients and go again at the new time."""
    deal = {"title": "Renewal", "owner": "e0", "client": "c0", "amount": 10, "currency": "EUR"}
    assert client.put("/v1/records/deal/d-gb", json=deal, headers=auth("hr")).status_code in (200, 201)
    clock.set(EFFECTIVE + S)
    assert work(db, clock)["take_over_interim"] == 1
    assert owners(db)["c0"] == "m1" and status_of(db, "e0") == "departed"
    assert record_owner(db, "deal", "d-gb") == "m1"
    later = EFFECTIVE + dt.timedelta(days=7)
    clock.set(EFFECTIVE + dt.timedelta(hours=1))
    ok(_exit_at(hook, clock, later))
    assert status_of(db, "e0") == "leaving"
    assert {c: o for c, o in owners(db).items() if c in CLIENTS} == dict.fromkeys(CLIENTS, "e0")
    assert acts_for_all(client, auth, "e0", CLIENTS)
    assert not check(client, auth, "m1", "c0", "edit")
    assert violations(db, clock.now()) == []
    # The new time: the interim owner holds from that second, before any worker pass, and the leaver does not.
    assert acts_for_all(client, auth, "e0", CLIENTS, later - S)
    assert acts_for_all(client, auth, "m1", CLIENTS, later)
    assert not check(client, auth, "e0", "c0", "view", later)
    back = [m for m in reassigned(db) if m["undo"]]
    assert sorted(m["client"] for m in back) == CLIENTS
    assert all((m["from"], m["to"], m["interim"]) == ("m1", "e0", True) for m in back)
    assert audit_actions(db)["handover.interim_returned"] == 1
    assert record_owner(db, "deal", "d-gb") == "e0"
    assert work(db, clock)["take_over_interim"] == 0  # not before the new time
    clock.set(later + S)
    assert work(db, clock)["take_over_interim"] == 1
    assert {c: o for c, o in owners(db).items() if c in CLIENTS} == dict.fromkeys(CLIENTS, "m1")
    assert violations(db, clock.now()) == []
    assert Counter(m["client"] for m in reassigned(db)) == dict.fromkeys(CLIENTS, 3)  # away, back, away: once each
    assert record_owner(db, "deal", "d-gb") == "m1"


def record_owner(db: Database, kind: str, external_id: str) -> str | None:
    with db.session(write=False) as s:
        return s.scalar(select(Record.owner_id).where(Record.kind == kind, Record.external_id == external_id))


def test_an_exit_moved_later_for_a_leaver_gone_at_the_opening_is_refused(
    hook: TestClient, client: TestClient, auth: Any, db: Database, clock: ManualClock, crm: None
) -> None:
    clock.set(START + dt.timedelta(days=2))
    r = client.put("/v1/employees/e0", json=record("e0", status="departed"), headers=auth("hr"))
    assert r.status_code == 200, r.text
    assert owners(db)["c0"] == "m1"
    before = audit_actions(db)
    r = _exit_at(hook, clock, EFFECTIVE)
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"].endswith(":takeover-not-reversible") and r.json()["interim_owner"] == "m1"
    assert audit_actions(db) == before  # nothing written
    assert {c: o for c, o in owners(db).items() if c in CLIENTS} == dict.fromkeys(CLIENTS, "m1")
    assert violations(db, clock.now()) == []
