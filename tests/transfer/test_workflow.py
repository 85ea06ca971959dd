"""The handover workflow over HTTP: states, planning, review, approval, execution, cancel and undo."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.audit.models import AuditEntry
from app.core.clock import ManualClock
from app.core.db import Database
from app.directory.models import Client, Employee
from app.transfer.models import Handover, HandoverItem
from app.worker import run_once
from tests.support.checklist import complete_checklist
from tests.support.company import EFFECTIVE, approve, plan


def owners(db: Database) -> dict[str, str]:
    with db.session(write=False) as s:
        return dict(s.execute(select(Client.external_id, Client.owner_id)).all())


def employee_status(db: Database, eid: str) -> tuple[str, dt.datetime | None]:
    with db.session(write=False) as s:
        e = s.get(Employee, eid)
        assert e is not None
        return e.status, e.exit_at


def audit_actions(db: Database) -> list[str]:
    with db.session(write=False) as s:
        return list(
            s.scalars(
                select(AuditEntry.action)
                .where(AuditEntry.entity_type == "handover", AuditEntry.action != "handover.rescheduled")
                .order_by(AuditEntry.seq)
            )
        )


def test_create_marks_the_leaver_leaving(client: TestClient, auth: Any, db: Database, open_handover: int) -> None:
    body = client.get(f"/v1/handovers/{open_handover}", headers=auth()).json()
    assert body["status"] == "draft" and body["manager"] == "m1" and body["source"] == "api"
    assert body["allowed_transitions"] == ["planned", "cancelled"]
    assert employee_status(db, "e0") == ("leaving", EFFECTIVE)


def test_one_open_handover_per_leaver(client: TestClient, auth: Any, open_handover: int) -> None:
    r = client.post(
        "/v1/handovers",
        json={"leaver": "e0", "reason": "other", "effective_at": EFFECTIVE.isoformat()},
        headers=auth("hr"),
    )
    assert r.status_code == 409 and r.json()["handover_id"] == open_handover


@pytest.mark.parametrize(
    "body,field",
    [
        ({"leaver": "ghost", "reason": "resignation", "effective_at": "2026-12-01T00:00:00Z"}, "leaver"),
        ({"leaver": "e0", "reason": "bored", "effective_at": "2026-12-01T00:00:00Z"}, "reason"),
        ({"leaver": "e0", "reason": "resignation", "effective_at": "2026-12-01T00:00:00"}, "effective_at"),
    ],
)
def test_create_rejects_bad_input(
    client: TestClient, auth: Any, db: Database, company: Any, body: dict[str, Any], field: str
) -> None:
    r = client.post("/v1/handovers", json=body, headers=auth("hr"))
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert any(field in e["loc"] for e in r.json()["errors"])
    with db.session(write=False) as s:
        assert s.scalar(select(func.count()).select_from(Handover)) == 0


def test_plan_assigns_every_client_within_constraints(
    client: TestClient, auth: Any, db: Database, open_handover: int
) -> None:
    summary = plan(client, auth, open_handover)
    assert summary["items"] == 8 and summary["solver_status"] == "optimal"
    items = client.get(f"/v1/handovers/{open_handover}/items", headers=auth()).json()["items"]
    assert len(items) == 8
    with db.session(write=False) as s:
        emps = {e.external_id: e for e in s.scalars(select(Employee))}
        cls = {c.external_id: c for c in s.scalars(select(Client))}
    min_seniority = {"strategic": 3, "key": 2, "standard": 1, "prospect": 1}
    points = {"strategic": 5, "key": 3, "standard": 1, "prospect": 0.5}
    load: dict[str, float] = {}
    for it in items:
        assert it["successor"] or it["interim_owner"], it  # never unowned
        assert it["successor"] != "e0"
        if it["successor"]:
            emp, c = emps[it["successor"]], cls[it["client"]]
            assert emp.seniority >= min_seniority[c.tier] and emp.clearance >= c.sensitivity
            load[emp.external_id] = load.get(emp.external_id, 0) + points[c.tier]
            assert it["reasons"]["chosen"]["employee"] == it["successor"]
            assert "total" in it["reasons"]["chosen"]["costs"]
    for eid, added in load.items():
        assert added <= float(emps[eid].capacity)
    assert client.get(f"/v1/handovers/{open_handover}", headers=auth()).json()["item_counts"] == {"proposed": 8}


def test_dry_run_saves_nothing(client: TestClient, auth: Any, db: Database, open_handover: int) -> None:
    r = client.post(f"/v1/handovers/{open_handover}/plan", params={"dry_run": "true"}, headers=auth("hr"))
    assert r.status_code == 200 and len(r.json()["proposals"]) == 8
    assert client.get(f"/v1/handovers/{open_handover}", headers=auth()).json()["status"] == "draft"
    with db.session(write=False) as s:
        assert s.scalar(select(func.count()).select_from(HandoverItem)) == 0


def test_never_unowned_goes_to_the_managers_interim(client: TestClient, auth: Any, db: Database, company: Any) -> None:
    # A sensitivity-3 strategic client: only the leaver's peers with clearance 3 and seniority 3 qualify; take them out.
    for eid in ("e1",):
        client.put(
            f"/v1/employees/{eid}",
            json={
                "name": "Gone",
                "email": f"{eid}@example.com",
                "seniority": 3,
                "clearance": 3,
                "status": "departed",
                "manager": "m1",
            },
            headers=auth("hr"),
        )
    client.put(
        "/v1/clients/cx",
        json={"name": "Secret Bank", "tier": "strategic", "owner": "e0", "sensitivity": 3},
        headers=auth("hr"),
    )
    r = client.post(
        "/v1/handovers",
        json={"leaver": "e0", "reason": "termination", "effective_at": EFFECTIVE.isoformat()},
        headers=auth("hr"),
    )
    hid = r.json()["id"]
    r = client.post(f"/v1/handovers/{hid}/plan", json={"candidate_pool": {"kind": "team"}}, headers=auth("hr"))
    assert r.status_code == 200
    items = client.get(f"/v1/handovers/{hid}/items", params={"needs_attention": "true"}, headers=auth()).json()["items"]
    cx = next(i for i in items if i["client"] == "cx")
    assert cx["successor"] is None and cx["interim_owner"] == "m1" and cx["attention_reason"]
    approve(client, auth, hid)
    r = client.post(f"/v1/handovers/{hid}/execute", headers=auth("admin"))
    assert r.status_code == 200 and r.json()["status"] == "executed"
    assert owners(db)["cx"] == "m1"
    assert "e0" not in owners(db).values()


def test_execution_happens_exactly_at_the_effective_time(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, open_handover: int
) -> None:
    before = owners(db)
    plan(client, auth, open_handover)
    approve(client, auth, open_handover)
    clock.set(EFFECTIVE - dt.timedelta(seconds=1))
    assert run_once(db, clock)["execute_due_handovers"] == 0
    assert owners(db) == before and employee_status(db, "e0")[0] == "leaving"
    clock.set(EFFECTIVE)
    assert run_once(db, clock)["execute_due_handovers"] == 1
    after = owners(db)
    items = client.get(f"/v1/handovers/{open_handover}/items", headers=auth()).json()["items"]
    for it in items:
        assert after[it["client"]] == (it["successor"] or it["interim_owner"]) == it["transferred_to"]
        assert it["status"] == "transferred" and it["transferred_at"] == EFFECTIVE.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert employee_status(db, "e0")[0] == "departed"
    with db.session(write=False) as s:
        formers = set(s.scalars(select(Client.former_owner_id)))
    assert formers == {"e0"}
    # Idempotent: a second pass does nothing.
    assert run_once(db, clock)["execute_due_handovers"] == 0
    assert client.get(f"/v1/handovers/{open_handover}", headers=auth()).json()["status"] == "executed"


def test_cancel_moves_nothing(client: TestClient, auth: Any, db: Database, open_handover: int) -> None:
    before = owners(db)
    plan(client, auth, open_handover)
    approve(client, auth, open_handover)
    r = client.post(f"/v1/handovers/{open_handover}/cancel", json={"reason": "stays after all"}, headers=auth("hr"))
    assert r.status_code == 200 and r.json()["status"] == "cancelled" and r.json()["cancel_reason"] == "stays after all"
    assert owners(db) == before
    assert employee_status(db, "e0") == ("active", None)
    assert client.get(f"/v1/handovers/{open_handover}", headers=auth()).json()["item_counts"] == {"cancelled": 8}
    # The leaver may get a new handover later.
    r = client.post(
        "/v1/handovers",
        json={"leaver": "e0", "reason": "other", "effective_at": EFFECTIVE.isoformat()},
        headers=auth("hr"),
    )
    assert r.status_code == 201


def test_undo_restores_exactly_the_prior_owners(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, open_handover: int
) -> None:
    before = owners(db)
    plan(client, auth, open_handover)
    approve(client, auth, open_handover)
    clock.set(EFFECTIVE)
    run_once(db, clock)
    moved = owners(db)
    # The CRM moves one client elsewhere after execution: undo must not take it back.
    other = next(c for c, o in moved.items() if o != "x1")
    client.put(f"/v1/clients/{other}", json={"name": "Moved", "tier": "prospect", "owner": "x1"}, headers=auth("hr"))
    clock.set(EFFECTIVE + dt.timedelta(days=3))
    r = client.post(f"/v1/handovers/{open_handover}/undo", json={"reason": "came back"}, headers=auth("admin"))
    assert r.status_code == 200 and r.json()["status"] == "undone"
    expected = dict(before)
    expected[other] = "x1"
    assert owners(db) == expected
    assert employee_status(db, "e0") == ("active", None)
    statuses = client.get(f"/v1/handovers/{open_handover}", headers=auth()).json()["item_counts"]
    assert statuses == {"reverted": 7, "transferred": 1}


def test_undo_window_is_enforced(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, open_handover: int
) -> None:
    plan(client, auth, open_handover)
    approve(client, auth, open_handover)
    clock.set(EFFECTIVE)
    run_once(db, clock)
    clock.set(EFFECTIVE + dt.timedelta(days=31))
    r = client.post(f"/v1/handovers/{open_handover}/undo", headers=auth("admin"))
    assert r.status_code == 409 and "window" in r.json()["detail"]


# ---- the state machine ------------------------------------------------------------------------

ACTIONS = {
    "plan": lambda c, a, h: c.post(f"/v1/handovers/{h}/plan", headers=a("hr")),
    "approve": lambda c, a, h: c.post(f"/v1/handovers/{h}/approve", headers=a("manager", emp="m1")),
    "execute": lambda c, a, h: c.post(f"/v1/handovers/{h}/execute", headers=a("admin")),
    "complete": lambda c, a, h: c.post(f"/v1/handovers/{h}/complete", json={"reason": "closing"}, headers=a("admin")),
    "cancel": lambda c, a, h: c.post(f"/v1/handovers/{h}/cancel", headers=a("hr")),
    "undo": lambda c, a, h: c.post(f"/v1/handovers/{h}/undo", headers=a("admin")),
}
RESULT = {
    "plan": "planned",
    "approve": "approved",
    "execute": "executed",
    "complete": "completed",
    "cancel": "cancelled",
    "undo": "undone",
}
PATHS = {
    "draft": [],
    "planned": ["plan"],
    "approved": ["plan", "approve"],
    "executed": ["plan", "approve", "execute"],
    "completed": ["plan", "approve", "execute", "complete"],
    "cancelled": ["cancel"],
    "undone": ["plan", "approve", "execute", "undo"],
}
LEGAL = {
    "draft": {"plan", "cancel"},
    "planned": {"plan", "approve", "cancel"},
    "approved": {"execute", "cancel"},
    "executed": {"complete", "undo"},
    "completed": {"undo"},
    "cancelled": set(),
    "undone": set(),
}


@pytest.mark.parametrize("state", list(PATHS))
@pytest.mark.parametrize("action", list(ACTIONS))
def test_state_machine(
    client: TestClient, auth: Any, db: Database, open_handover: int, state: str, action: str
) -> None:
    for step in PATHS[state]:
        assert ACTIONS[step](client, auth, open_handover).status_code == 200
    assert client.get(f"/v1/handovers/{open_handover}", headers=auth()).json()["status"] == state
    n_audit = len(audit_actions(db))
    r = ACTIONS[action](client, auth, open_handover)
    if action == "execute" and state in ("executed", "completed"):
        # Execution is idempotent: executing again changes nothing and is not an error.
        assert r.status_code == 200 and r.json()["status"] == state
        assert len(audit_actions(db)) == n_audit
    elif action in LEGAL[state]:
        assert r.status_code == 200, r.text
        assert client.get(f"/v1/handovers/{open_handover}", headers=auth()).json()["status"] == RESULT[action]
        assert len(audit_actions(db)) == n_audit + 1
    else:
        assert r.status_code == 409, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert set(r.json()["allowed"]) == {RESULT[a] for a in LEGAL[state]} | (
            {"planned"} if state == "planned" else set()
        )
        assert client.get(f"/v1/handovers/{open_handover}", headers=auth()).json()["status"] == state
        assert len(audit_actions(db)) == n_audit


def test_every_state_change_is_audited_once(client: TestClient, auth: Any, db: Database, open_handover: int) -> None:
    for step in PATHS["undone"]:
        ACTIONS[step](client, auth, open_handover)
    assert audit_actions(db) == [
        "handover.created",
        "handover.planned",
        "handover.approved",
        "handover.executed",
        "handover.undone",
    ]


# ---- review: overrides with ETag --------------------------------------------------------------


def _first_item(client: TestClient, auth: Any, hid: int, **filters: Any) -> tuple[dict[str, Any], str]:
    items = client.get(f"/v1/handovers/{hid}/items", params=filters, headers=auth()).json()["items"]
    r = client.get(f"/v1/handovers/{hid}/items/{items[0]['id']}", headers=auth())
    return r.json(), r.headers["etag"]


def test_override_needs_a_current_etag(client: TestClient, auth: Any, open_handover: int) -> None:
    plan(client, auth, open_handover)
    item, etag = _first_item(client, auth, open_handover)
    url = f"/v1/handovers/{open_handover}/items/{item['id']}"
    target = "e4" if item["successor"] != "e4" else "e2"
    r = client.patch(url, json={"interim_owner": target}, headers=auth("hr"))
    assert r.status_code == 428
    r = client.patch(url, json={"interim_owner": target}, headers={**auth("hr"), "If-Match": '"item-0-v0"'})
    assert r.status_code == 412
    r = client.patch(url, json={"interim_owner": target}, headers={**auth("hr"), "If-Match": etag})
    assert r.status_code == 200 and r.json()["interim_owner"] == target and r.json()["manual"] is True
    assert r.headers["etag"] != etag
    # The old ETag is now stale.
    r = client.patch(url, json={"interim_owner": "m1"}, headers={**auth("hr"), "If-Match": etag})
    assert r.status_code == 412


def test_override_breaking_a_hard_constraint_needs_force(
    client: TestClient, auth: Any, db: Database, open_handover: int
) -> None:
    plan(client, auth, open_handover)
    strategic = next(
        i
        for i in client.get(f"/v1/handovers/{open_handover}/items", headers=auth()).json()["items"]
        if i["tier"] == "strategic"
    )
    url = f"/v1/handovers/{open_handover}/items/{strategic['id']}"
    etag = client.get(url, headers=auth()).headers["etag"]
    r = client.patch(url, json={"successor": "e3"}, headers={**auth("hr"), "If-Match": etag})  # a junior
    assert r.status_code == 422 and "seniority" in r.json()["detail"]
    r = client.patch(url, json={"successor": "e3", "force": True}, headers={**auth("hr"), "If-Match": etag})
    assert r.status_code == 422  # force without a reason
    r = client.patch(
        url,
        json={"successor": "e3", "force": True, "reason": "client asked for Jo"},
        headers={**auth("hr"), "If-Match": etag},
    )
    assert r.status_code == 200 and r.json()["forced"] is True and r.json()["needs_attention"] is True
    with db.session(write=False) as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "handover.item.overridden")).one()
    assert entry.data["force"] is True and entry.data["reason"] == "client asked for Jo"
    # Re-planning keeps the manual override.
    plan(client, auth, open_handover)
    assert client.get(url, headers=auth()).json()["successor"] == "e3"


def test_override_after_approval_is_refused(client: TestClient, auth: Any, open_handover: int) -> None:
    plan(client, auth, open_handover)
    approve(client, auth, open_handover)
    item, etag = _first_item(client, auth, open_handover)
    r = client.patch(
        f"/v1/handovers/{open_handover}/items/{item['id']}",
        json={"interim_owner": "m1"},
        headers={**auth("hr"), "If-Match": etag},
    )
    assert r.status_code == 409


# ---- who may do what --------------------------------------------------------------------------


def test_only_the_leavers_manager_or_admin_approves(client: TestClient, auth: Any, open_handover: int) -> None:
    plan(client, auth, open_handover)
    assert client.post(f"/v1/handovers/{open_handover}/approve", headers=auth("manager", emp="m2")).status_code == 404
    assert client.post(f"/v1/handovers/{open_handover}/approve", headers=auth("hr")).status_code == 403
    assert (
        client.post(f"/v1/handovers/{open_handover}/approve", headers=auth("account_manager", emp="e0")).status_code
        == 403
    )
    assert client.post(f"/v1/handovers/{open_handover}/approve", headers=auth("manager", emp="m1")).status_code == 200


def test_visibility_of_handovers(client: TestClient, auth: Any, open_handover: int) -> None:
    plan(client, auth, open_handover)
    items = client.get(f"/v1/handovers/{open_handover}/items", headers=auth()).json()["items"]
    successor = next(i["successor"] for i in items if i["successor"])
    listed = lambda h: [x["id"] for x in client.get("/v1/handovers", headers=h).json()["items"]]  # noqa: E731
    assert listed(auth("manager", emp="m1")) == [open_handover]
    assert listed(auth("manager", emp="m2")) == []
    assert listed(auth("account_manager", emp="e0")) == [open_handover]
    assert listed(auth("account_manager", emp=successor)) == [open_handover]
    assert listed(auth("account_manager", emp="x1")) == []
    assert client.get(f"/v1/handovers/{open_handover}", headers=auth("account_manager", emp="x1")).status_code == 404
    assert client.get(f"/v1/handovers/{open_handover}/items", headers=auth("manager", emp="m2")).status_code == 404


def test_a_manager_cannot_open_a_handover_outside_their_team(client: TestClient, auth: Any, company: Any) -> None:
    body = {"leaver": "e1", "reason": "resignation", "effective_at": EFFECTIVE.isoformat()}
    assert client.post("/v1/handovers", json=body, headers=auth("manager", emp="m2")).status_code == 404
    assert client.post("/v1/handovers", json=body, headers=auth("account_manager", emp="e0")).status_code == 403
    assert client.post("/v1/handovers", json=body, headers=auth("manager", emp="m1")).status_code == 201


# ---- checklist, sign-off, completion ---------------------------------------------------------


def test_sign_off_confirms_items_and_completes(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, open_handover: int
) -> None:
    plan(client, auth, open_handover)
    approve(client, auth, open_handover)
    items = client.get(f"/v1/handovers/{open_handover}/items", headers=auth()).json()["items"]
    first = items[0]
    base = f"/v1/handovers/{open_handover}/items/{first['id']}"
    receiver = first["successor"] or first["interim_owner"]
    r = client.put(
        f"{base}/checklist/handover_meeting",
        json={"done": True, "note": "met on Monday"},
        headers=auth("account_manager", emp="e0"),
    )
    assert r.status_code == 200 and r.json()["checklist"]["handover_meeting"]["done"] is True
    assert client.put(f"{base}/checklist/coffee", json={"done": True}, headers=auth("admin")).status_code == 422
    assert (
        client.put(
            f"{base}/checklist/contacts", json={"done": True}, headers=auth("account_manager", emp="x1")
        ).status_code
        == 404
    )
    # Outgoing before the effective time: only the leaver.
    assert (
        client.post(f"{base}/sign-off", json={"side": "outgoing"}, headers=auth("manager", emp="m1")).status_code == 403
    )
    # Neither side signs while a required entry is open (before issue 16 both could).
    r = client.post(f"{base}/sign-off", json={"side": "outgoing"}, headers=auth("account_manager", emp="e0"))
    assert r.status_code == 409 and "handover_meeting" not in r.json()["open_items"], r.text
    assert complete_checklist(client, auth(), open_handover, first["id"])
    assert (
        client.post(
            f"{base}/sign-off", json={"side": "outgoing"}, headers=auth("account_manager", emp="e0")
        ).status_code
        == 200
    )
    assert (
        client.post(
            f"{base}/sign-off", json={"side": "outgoing"}, headers=auth("account_manager", emp="e0")
        ).status_code
        == 409
    )
    assert (
        client.post(
            f"{base}/sign-off", json={"side": "incoming"}, headers=auth("account_manager", emp="e0")
        ).status_code
        == 403
    )
    assert (
        client.post(
            f"{base}/sign-off",
            json={"side": "incoming"},
            headers=auth("account_manager" if receiver != "m1" else "manager", emp=receiver),
        ).status_code
        == 200
    )
    clock.set(EFFECTIVE)
    run_once(db, clock)
    assert client.get(base, headers=auth()).json()["status"] == "confirmed"
    # After the effective time the manager signs for the leaver, with a reason.
    for it in items[1:]:
        url = f"/v1/handovers/{open_handover}/items/{it['id']}/sign-off"
        complete_checklist(client, auth(), open_handover, it["id"])
        assert client.post(url, json={"side": "outgoing"}, headers=auth("manager", emp="m1")).status_code == 422
        assert (
            client.post(
                url, json={"side": "outgoing", "reason": "leaver gone"}, headers=auth("manager", emp="m1")
            ).status_code
            == 200
        )
        rec = it["successor"] or it["interim_owner"]
        r = client.post(
            url, json={"side": "incoming"}, headers=auth("manager" if rec == "m1" else "account_manager", emp=rec)
        )
        assert r.status_code == 200, r.text
    body = client.get(f"/v1/handovers/{open_handover}", headers=auth()).json()
    assert body["status"] == "completed" and body["item_counts"] == {"confirmed": 8}


# ---- simulation -------------------------------------------------------------------------------


def test_simulation_saves_nothing(client: TestClient, auth: Any, db: Database, company: Any) -> None:
    client.post(
        "/v1/clients/batch",
        json={
            "items": [{"external_id": f"d{i}", "name": f"D{i}", "tier": "standard", "owner": "e2"} for i in range(4)]
        },
        headers=auth("hr"),
    )
    with db.session(write=False) as s:
        audit_before = s.scalar(select(func.count()).select_from(AuditEntry))
    r = client.post(
        "/v1/simulations",
        json={"leavers": ["e0", "e2"], "effective_at": EFFECTIVE.isoformat(), "include_items": True},
        headers=auth("hr"),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["clients"] == 12 and len(body["items"]) == 12
    assert all(i["successor"] not in ("e0", "e2") for i in body["items"])
    for s_ in body["successors"]:
        assert s_["load_after"] <= s_["capacity"] + 1e-9
    with db.session(write=False) as s:
        assert s.scalar(select(func.count()).select_from(Handover)) == 0
        assert s.scalar(select(func.count()).select_from(AuditEntry)) == audit_before
    r = client.post(
        "/v1/simulations", json={"leavers": ["ghost"], "effective_at": EFFECTIVE.isoformat()}, headers=auth("hr")
    )
    assert r.status_code == 422
    r = client.post(
        "/v1/simulations",
        json={"leavers": ["e0"], "effective_at": EFFECTIVE.isoformat()},
        headers=auth("manager", emp="m2"),
    )
    assert r.status_code == 404


def test_unknown_handover_is_404(client: TestClient, auth: Any, app: FastAPI) -> None:
    assert client.get("/v1/handovers/999", headers=auth()).status_code == 404
    assert client.post("/v1/handovers/999/plan", headers=auth()).status_code == 404


# ---- regressions ------------------------------------------------------------------------------


def test_replanning_keeps_a_manual_interim_owner(client: TestClient, auth: Any, open_handover: int) -> None:
    plan(client, auth, open_handover)
    item, etag = _first_item(client, auth, open_handover)
    url = f"/v1/handovers/{open_handover}/items/{item['id']}"
    assert client.patch(url, json={"interim_owner": "m1"}, headers={**auth("hr"), "If-Match": etag}).status_code == 200
    summary = plan(client, auth, open_handover)
    assert summary["kept_manual"] == 1 and summary["items"] == 8
    again = client.get(url, headers=auth()).json()
    assert again["interim_owner"] == "m1" and again["successor"] is None and again["manual"] is True


def test_capacity_is_shared_between_open_handovers(client: TestClient, auth: Any, db: Database, company: Any) -> None:
    extra = [{"external_id": f"s{i}", "name": f"S{i}", "tier": "standard", "owner": "e2"} for i in range(4)]
    assert client.post("/v1/clients/batch", json={"items": extra}, headers=auth("hr")).status_code == 200
    only_e1 = {"candidate_pool": {"kind": "list", "employees": ["e1"]}}
    ids = []
    for leaver in ("e0", "e2"):
        body = {"leaver": leaver, "reason": "resignation", "effective_at": EFFECTIVE.isoformat()}
        hid = client.post("/v1/handovers", json=body, headers=auth("hr")).json()["id"]
        assert client.post(f"/v1/handovers/{hid}/plan", json=only_e1, headers=auth("hr")).status_code == 200
        ids.append(hid)
    points = {"strategic": 5, "key": 3, "standard": 1, "prospect": 0.5}
    promised = 0.0
    for hid in ids:
        for it in client.get(f"/v1/handovers/{hid}/items", params={"limit": 200}, headers=auth()).json()["items"]:
            if it["successor"] == "e1":
                promised += points[it["tier"]]
    assert 0 < promised <= 20  # e1's capacity, across both handovers
