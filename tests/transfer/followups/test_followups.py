"""Follow-ups: created at approval, listed within reach, completed once, chased when overdue, cancelled with it."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from app.audit.models import AuditEntry
from app.core.clock import ManualClock
from app.core.config import Settings
from app.core.db import Database, transaction
from app.directory.models import Client, Employee
from app.notify.models import OutboxMessage
from app.risk import service as risk
from app.transfer import retention
from app.transfer.followups import service as followups
from app.transfer.followups.models import FollowUp
from app.transfer.models import Handover, HandoverItem
from app.worker import run_once
from tests.conftest import START
from tests.support.company import EFFECTIVE, approve, plan

PROBLEM = "application/problem+json"
DAYS = {"first_contact": 7, "check_in": 30, "satisfaction_survey": 90}


def rows(db: Database, hid: int) -> list[FollowUp]:
    with db.session(write=False) as s:
        return list(s.scalars(select(FollowUp).where(FollowUp.handover_id == hid).order_by(FollowUp.id)))


def ensure_follow_ups(db: Database, settings: Settings, clock: ManualClock, hid: int) -> None:
    """The workflow creates them at approval once wired; until then the test does what it will do."""
    if rows(db, hid):
        return
    with transaction(db) as s:
        followups.create_for_handover(s, handover_id=hid, now=clock.now(), settings=settings)


def ensure_cancelled(db: Database, hid: int, clock: ManualClock) -> None:
    if any(f.status == "open" for f in rows(db, hid)):
        with transaction(db) as s:
            followups.cancel_for_handover(s, handover_id=hid, now=clock.now())


@pytest.fixture
def case(
    client: TestClient, auth: Any, db: Database, settings: Settings, clock: ManualClock, open_handover: int
) -> dict[str, Any]:
    """An approved handover of e0's eight clients with their follow-ups; c1 had satisfaction 6.5 before."""
    with transaction(db) as s:
        s.execute(update(Client).where(Client.external_id == "c1").values(satisfaction=Decimal("6.5")))
    plan(client, auth, open_handover)
    approve(client, auth, open_handover)
    ensure_follow_ups(db, settings, clock, open_handover)
    items = client.get(f"/v1/handovers/{open_handover}/items", headers=auth()).json()["items"]
    return {"id": open_handover, "items": {i["client"]: i for i in items}}


def receiver(item: dict[str, Any]) -> str:
    return str(item["successor"] or item["interim_owner"])


def first_contact(db: Database, hid: int, assignee: str | None = None) -> FollowUp:
    return next(
        f for f in rows(db, hid) if f.kind == "first_contact" and (assignee is None or f.assignee_id == assignee)
    )


# ---- creation -----------------------------------------------------------------------------------


def test_three_follow_ups_per_client_due_after_the_effective_time(
    db: Database, settings: Settings, case: dict[str, Any]
) -> None:
    made = rows(db, case["id"])
    assert len(made) == 3 * len(case["items"]) == 24
    by_item: dict[int, dict[str, FollowUp]] = {}
    for f in made:
        by_item.setdefault(f.item_id, {})[f.kind] = f
    for item in case["items"].values():
        mine = by_item[item["id"]]
        assert set(mine) == set(DAYS)
        for kind, f in mine.items():
            assert f.due_at == EFFECTIVE + dt.timedelta(days=DAYS[kind])
            assert f.assignee_id == receiver(item) and f.client_id == item["client"]
            assert f.status == "open" and f.outcome is None and f.overdue_notified_at is None
            assert f.created_at == START  # the injected clock, not the wall clock
            assert f.satisfaction_before == (Decimal("6.5") if item["client"] == "c1" else None)
    # Idempotent: a second call creates nothing.
    with transaction(db) as s:
        assert followups.create_for_handover(s, handover_id=case["id"], now=START, settings=settings) == 0
    assert len(rows(db, case["id"])) == 24


def test_offsets_come_from_settings(db: Database, settings: Settings, case: dict[str, Any]) -> None:
    with transaction(db) as s:
        s.query(FollowUp).filter(FollowUp.handover_id == case["id"]).delete()
    custom = settings.model_copy(
        update={"follow_up_first_contact_days": 3, "follow_up_check_in_days": 14, "follow_up_survey_days": 60}
    )
    with transaction(db) as s:
        assert followups.create_for_handover(s, handover_id=case["id"], now=START, settings=custom) == 24
    due = {(f.kind, f.due_at) for f in rows(db, case["id"])}
    assert due == {
        ("first_contact", EFFECTIVE + dt.timedelta(days=3)),
        ("check_in", EFFECTIVE + dt.timedelta(days=14)),
        ("satisfaction_survey", EFFECTIVE + dt.timedelta(days=60)),
    }


def test_reschedule_moves_open_follow_ups(db: Database, settings: Settings, case: dict[str, Any]) -> None:
    later = EFFECTIVE + dt.timedelta(days=5)
    with transaction(db) as s:
        s.execute(update(Handover).where(Handover.id == case["id"]).values(effective_at=later))
        assert followups.reschedule_for_handover(s, handover_id=case["id"], now=START, settings=settings) == 24
    assert {f.due_at for f in rows(db, case["id"]) if f.kind == "check_in"} == {later + dt.timedelta(days=30)}


# ---- listing and reach --------------------------------------------------------------------------


def test_list_filters(client: TestClient, auth: Any, clock: ManualClock, case: dict[str, Any]) -> None:
    hid = case["id"]
    r = client.get("/v1/follow-ups", params={"handover": hid, "limit": 100}, headers=auth())
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["items"]) == 24 and body["next_offset"] is None
    assert [i["due_at"] for i in body["items"]] == sorted(i["due_at"] for i in body["items"])
    one = body["items"][0]
    assert one["client_name"].startswith("客户") and one["overdue"] is False and one["status"] == "open"

    r = client.get("/v1/follow-ups", params={"handover": hid, "limit": 10}, headers=auth())
    assert len(r.json()["items"]) == 10 and r.json()["next_offset"] == 10

    successor = receiver(case["items"]["c0"])
    r = client.get("/v1/follow-ups", params={"assignee": successor, "limit": 100}, headers=auth())
    expected = 3 * sum(1 for i in case["items"].values() if receiver(i) == successor)
    assert len(r.json()["items"]) == expected and {i["assignee"] for i in r.json()["items"]} == {successor}

    cutoff = (EFFECTIVE + dt.timedelta(days=8)).isoformat()
    r = client.get("/v1/follow-ups", params={"due_before": cutoff, "limit": 100}, headers=auth())
    assert {i["kind"] for i in r.json()["items"]} == {"first_contact"} and len(r.json()["items"]) == 8

    r = client.get("/v1/follow-ups", params={"kind": "check_in", "status": "open", "limit": 100}, headers=auth())
    assert len(r.json()["items"]) == 8

    assert client.get("/v1/follow-ups", params={"overdue": "true"}, headers=auth()).json()["items"] == []
    clock.set(EFFECTIVE + dt.timedelta(days=31))
    r = client.get("/v1/follow-ups", params={"overdue": "true", "limit": 100}, headers=auth())
    assert len(r.json()["items"]) == 16 and all(i["overdue"] for i in r.json()["items"])
    r = client.get("/v1/follow-ups", params={"overdue": "false", "limit": 100}, headers=auth())
    assert {i["kind"] for i in r.json()["items"]} == {"satisfaction_survey"}

    r = client.get("/v1/follow-ups", params={"status": "done"}, headers=auth())
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    assert client.get("/v1/follow-ups").status_code == 401


def test_account_managers_see_their_own_managers_their_subtree(
    client: TestClient, auth: Any, case: dict[str, Any]
) -> None:
    by_assignee: dict[str, int] = {}
    for item in case["items"].values():
        by_assignee[receiver(item)] = by_assignee.get(receiver(item), 0) + 3
    mine = next(a for a in by_assignee if a.startswith("e"))
    r = client.get("/v1/follow-ups", params={"limit": 100}, headers=auth("account_manager", emp=mine))
    assert r.status_code == 200
    assert {i["assignee"] for i in r.json()["items"]} == {mine} and len(r.json()["items"]) == by_assignee[mine]
    # Asking for someone else's gives nothing, and one of theirs is 404 (not 403: it is not theirs to know of).
    other = next(a for a in by_assignee if a != mine)
    r = client.get("/v1/follow-ups", params={"assignee": other}, headers=auth("account_manager", emp=mine))
    assert r.json()["items"] == []
    theirs = client.get("/v1/follow-ups", params={"assignee": other}, headers=auth()).json()["items"][0]["id"]
    r = client.get(f"/v1/follow-ups/{theirs}", headers=auth("account_manager", emp=mine))
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    assert client.get(f"/v1/follow-ups/{theirs}", headers=auth("auditor")).status_code == 200
    assert client.get("/v1/follow-ups/999999", headers=auth()).status_code == 404
    # m1 manages e0…e4 and is their interim owner; m2 only sees what x1 (their report) received.
    subtree_m1 = {"m1", "e0", "e1", "e2", "e3", "e4"}
    r = client.get("/v1/follow-ups", params={"limit": 100}, headers=auth("manager", emp="m1"))
    assert len(r.json()["items"]) == sum(n for a, n in by_assignee.items() if a in subtree_m1)
    r = client.get("/v1/follow-ups", params={"limit": 100}, headers=auth("manager", emp="m2"))
    assert {i["assignee"] for i in r.json()["items"]} <= {"x1", "m2"}
    assert len(r.json()["items"]) == by_assignee.get("x1", 0)
    r = client.get("/v1/follow-ups", params={"limit": 100}, headers=auth("hr"))
    assert len(r.json()["items"]) == 24


# ---- completing ---------------------------------------------------------------------------------


def test_complete_validates_and_updates_the_client(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, case: dict[str, Any]
) -> None:
    item = next(i for i in case["items"].values() if i["successor"] and i["successor"].startswith("e"))
    who = item["successor"]
    fu = next(f for f in rows(db, case["id"]) if f.item_id == item["id"] and f.kind == "first_contact")
    url = f"/v1/follow-ups/{fu.id}/complete"
    me = auth("account_manager", emp=who)
    clock.set(EFFECTIVE + dt.timedelta(days=6))
    contacted = EFFECTIVE + dt.timedelta(days=2, hours=3)
    bad = [
        {},
        {"outcome": "happy"},
        {"outcome": "retained", "satisfaction": 11},
        {"outcome": "retained", "satisfaction": -1},
        {"outcome": "retained", "note": "x" * 4001},
        {"outcome": "retained", "first_contact_at": "2026-11-20T10:00:00"},  # no time zone
        {"outcome": "retained", "first_contact_at": contacted.isoformat(), "extra": 1},
    ]
    for body in bad:
        r = client.post(url, json=body, headers=me)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"] == PROBLEM
    r = client.post(url, json={"outcome": "retained"}, headers=me)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "first_contact_at"]
    future = (clock.now() + dt.timedelta(hours=1)).isoformat()
    r = client.post(url, json={"outcome": "retained", "first_contact_at": future}, headers=me)
    assert r.status_code == 422 and "future" in r.json()["detail"]
    # hr can read it but does not answer for the client; a colleague cannot even see it.
    r = client.post(url, json={"outcome": "retained", "first_contact_at": contacted.isoformat()}, headers=auth("hr"))
    assert r.status_code == 403
    colleague = next(e for e in ("e1", "e2", "e3", "e4") if e != who)
    r = client.post(
        url,
        json={"outcome": "retained", "first_contact_at": contacted.isoformat()},
        headers=auth("account_manager", emp=colleague),
    )
    assert r.status_code == 404
    r = client.post(
        url,
        json={"outcome": "at_risk", "satisfaction": 4.25, "first_contact_at": contacted.isoformat(), "note": "=tense"},
        headers=me,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "completed" and body["outcome"] == "at_risk" and body["satisfaction"] == 4.2
    assert body["completed_by"] == "account_manager:test-account_manager" and body["note"] == "=tense"
    assert body["first_contact_at"] == contacted.isoformat().replace("+00:00", "Z")
    with db.session(write=False) as s:
        c = s.get(Client, item["client"])
        assert c is not None
        assert (c.status, c.satisfaction, c.last_contact_at) == ("at_risk", Decimal("4.2"), contacted)
        entry = s.scalar(select(AuditEntry).where(AuditEntry.action == "follow_up.completed"))
        assert entry is not None and entry.entity_id == str(fu.id)
        assert entry.data["outcome"] == "at_risk" and entry.data["client_status"] == {"from": "active", "to": "at_risk"}
    # Twice: 409.
    r = client.post(url, json={"outcome": "retained", "first_contact_at": contacted.isoformat()}, headers=me)
    assert r.status_code == 409 and r.headers["content-type"] == PROBLEM
    # The manager completes the check-in without a satisfaction: status follows, satisfaction stays.
    check_in = next(f for f in rows(db, case["id"]) if f.item_id == item["id"] and f.kind == "check_in")
    r = client.post(
        f"/v1/follow-ups/{check_in.id}/complete", json={"outcome": "churned"}, headers=auth("manager", emp="m1")
    )
    assert r.status_code == 200, r.text
    with db.session(write=False) as s:
        c = s.get(Client, item["client"])
        assert c is not None and (c.status, c.satisfaction) == ("churned", Decimal("4.2"))
        assert c.last_contact_at == contacted  # no first_contact_at given: unchanged
    survey = next(f for f in rows(db, case["id"]) if f.item_id == item["id"] and f.kind == "satisfaction_survey")
    r = client.post(
        f"/v1/follow-ups/{survey.id}/complete",
        json={"outcome": "retained", "satisfaction": 8, "first_contact_at": EFFECTIVE.isoformat()},
        headers=auth("admin"),
    )
    assert r.status_code == 200, r.text
    with db.session(write=False) as s:
        c = s.get(Client, item["client"])
        assert c is not None and (c.status, c.satisfaction) == ("active", Decimal("8.0"))
        assert c.last_contact_at == contacted  # an earlier contact does not move it back
        assert (
            s.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "follow_up.completed"))
            == 3
        )


def test_only_the_assignee_their_direct_manager_or_an_admin_completes(
    client: TestClient, auth: Any, db: Database, case: dict[str, Any]
) -> None:
    fu = next(f for f in rows(db, case["id"]) if f.kind == "first_contact" and f.assignee_id.startswith("e"))
    body = {"outcome": "retained", "first_contact_at": START.isoformat()}
    url = f"/v1/follow-ups/{fu.id}/complete"
    assert client.post(url, json=body, headers=auth("manager", emp="m2")).status_code == 404  # another team
    assert client.post(url, json=body, headers=auth("auditor")).status_code == 403  # no handovers:write
    # The CEO sees the whole company's follow-ups, but only the assignee's own manager completes for them.
    assert client.get(f"/v1/follow-ups/{fu.id}", headers=auth("manager", emp="ceo")).status_code == 200
    r = client.post(url, json=body, headers=auth("manager", emp="ceo"))
    assert r.status_code == 403 and r.headers["content-type"] == PROBLEM
    r = client.post(url, json=body, headers=auth("manager", emp="m1"))
    assert r.status_code == 200 and r.json()["completed_by"] == "manager:test-manager"


# ---- overdue ------------------------------------------------------------------------------------


def test_overdue_follow_ups_notify_the_assignees_manager_once(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, case: dict[str, Any]
) -> None:
    with transaction(db) as s:
        s.execute(update(Employee).where(Employee.external_id == "m1").values(languages=["zh"]))
    done = first_contact(db, case["id"])
    clock.set(EFFECTIVE + dt.timedelta(days=3))
    r = client.post(
        f"/v1/follow-ups/{done.id}/complete",
        json={"outcome": "retained", "first_contact_at": clock.now().isoformat()},
        headers=auth(),
    )
    assert r.status_code == 200
    clock.set(EFFECTIVE + dt.timedelta(days=7))  # due now, not before now: nothing yet
    assert run_once(db, clock)["notify_overdue_follow_ups"] == 0
    clock.set(EFFECTIVE + dt.timedelta(days=7, seconds=1))
    assert run_once(db, clock)["notify_overdue_follow_ups"] == 7
    with db.session(write=False) as s:
        sent = list(
            s.scalars(select(OutboxMessage).where(OutboxMessage.template == "follow_up_due").order_by(OutboxMessage.id))
        )
        managers = {e.external_id: e.manager_id for e in s.scalars(select(Employee))}
        emails = {e.external_id: e.email for e in s.scalars(select(Employee))}
        open_first = [f for f in rows(db, case["id"]) if f.kind == "first_contact" and f.status == "open"]
    assert len(sent) == 7 == len(open_first)
    by_client = {m.client_id: m for m in sent}
    for f in open_first:
        m = by_client[f.client_id]
        manager = managers[f.assignee_id]
        assert m.kind == "internal" and m.channel == "email" and m.recipient == emails[manager]
        assert m.handover_id == case["id"] and m.not_before == clock.now()
        assert m.locale == ("zh-CN" if manager == "m1" else "en")
        assert m.payload["follow_up"]["days"] == 7 and m.payload["follow_up"]["due_date"] == "2026-11-23"
        assert m.payload["follow_up"]["assignee"]["id"] == f.assignee_id
        assert f.overdue_notified_at == clock.now()
    assert done.client_id not in by_client
    # Once: later passes (and a direct call) send nothing more for these.
    clock.advance(dt.timedelta(hours=1))
    assert run_once(db, clock)["notify_overdue_follow_ups"] == 0
    with transaction(db) as s:
        assert followups.notify_overdue(s, clock.now()) == 0
    clock.set(EFFECTIVE + dt.timedelta(days=30, seconds=1))
    assert run_once(db, clock)["notify_overdue_follow_ups"] == 8  # the check-ins
    with db.session(write=False) as s:
        n = s.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.template == "follow_up_due"))
    assert n == 15


def test_overdue_notice_renders(db: Database, clock: ManualClock, case: dict[str, Any]) -> None:
    """The stored data fits the follow_up_due template in every built-in locale."""
    from app.notify import rendering

    clock.set(EFFECTIVE + dt.timedelta(days=8))
    with transaction(db) as s:
        assert followups.notify_overdue(s, clock.now(), limit=1) == 1
    with db.session(write=False) as s:
        m = s.scalar(select(OutboxMessage).where(OutboxMessage.template == "follow_up_due"))
        assert m is not None
        for (key, _locale), source in rendering.builtins().items():
            if key == "follow_up_due":
                rendered = rendering.render(source, m.payload)
                assert m.payload["client"]["name"] in rendered.subject


# ---- cancel and undo ----------------------------------------------------------------------------


def test_cancel_cancels_open_follow_ups(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, case: dict[str, Any]
) -> None:
    r = client.post(f"/v1/handovers/{case['id']}/cancel", json={"reason": "stays"}, headers=auth("hr"))
    assert r.status_code == 200, r.text
    ensure_cancelled(db, case["id"], clock)
    assert {f.status for f in rows(db, case["id"])} == {"cancelled"}
    # Cancelled ones are not chased, nor completed.
    clock.set(EFFECTIVE + dt.timedelta(days=100))
    with transaction(db) as s:
        assert followups.notify_overdue(s, clock.now()) == 0
    fu = first_contact(db, case["id"])
    r = client.post(
        f"/v1/follow-ups/{fu.id}/complete",
        json={"outcome": "retained", "first_contact_at": EFFECTIVE.isoformat()},
        headers=auth(),
    )
    assert r.status_code == 409


def test_undo_cancels_open_follow_ups_and_keeps_completed_ones(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, case: dict[str, Any]
) -> None:
    clock.set(EFFECTIVE)
    run_once(db, clock)
    fu = first_contact(db, case["id"])
    clock.set(EFFECTIVE + dt.timedelta(days=2))
    r = client.post(
        f"/v1/follow-ups/{fu.id}/complete",
        json={"outcome": "retained", "first_contact_at": EFFECTIVE.isoformat()},
        headers=auth(),
    )
    assert r.status_code == 200
    r = client.post(f"/v1/handovers/{case['id']}/undo", json={"reason": "came back"}, headers=auth("admin"))
    assert r.status_code == 200, r.text
    ensure_cancelled(db, case["id"], clock)
    statuses = {f.id: f.status for f in rows(db, case["id"])}
    assert statuses.pop(fu.id) == "completed"
    assert set(statuses.values()) == {"cancelled"}


def test_a_completed_outcome_is_a_row_to_learn_from(
    client: TestClient, auth: Any, db: Database, case: dict[str, Any]
) -> None:
    """Planning stored each item's factors; a completed follow-up pairs them with the outcome for the fit."""
    fu = first_contact(db, case["id"])
    r = client.post(
        f"/v1/follow-ups/{fu.id}/complete",
        json={"outcome": "churned", "first_contact_at": START.isoformat()},
        headers=auth(),
    )
    assert r.status_code == 200, r.text
    with transaction(db) as s:
        stored = s.get_one(HandoverItem, fu.item_id).risk_factors
        assert retention.outcome_rows(s) == [(risk.factors_from_json(stored["factors"]), True)]
