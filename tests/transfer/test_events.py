"""The workflow tells the outside world: events for the CRM and notifications, in the change's transaction."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from app.core.clock import ManualClock
from app.core.config import Settings
from app.core.db import Database
from app.notify.models import OutboxMessage
from app.worker import run_once
from tests.support.company import EFFECTIVE, approve, plan
from tests.support.events import events, subscribe


def moved_clients(db: Database) -> list[dict[str, Any]]:
    return [c for kind, data in events(db) if kind == "client.reassigned" for c in data["clients"]]


def templates(db: Database, hid: int) -> dict[str, int]:
    with db.session(write=False) as s:
        out: dict[str, int] = {}
        for (t,) in s.execute(select(OutboxMessage.template).where(OutboxMessage.handover_id == hid)):
            if t:
                out[t] = out.get(t, 0) + 1
        return out


def test_every_state_change_emits_one_event(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, settings: Settings, company: Any
) -> None:
    subscribe(db, settings)
    r = client.post(
        "/v1/handovers",
        json={"leaver": "e0", "reason": "resignation", "effective_at": EFFECTIVE.isoformat()},
        headers=auth("hr"),
    )
    hid = r.json()["id"]
    plan(client, auth, hid)
    approve(client, auth, hid)
    clock.set(EFFECTIVE)
    run_once(db, clock)
    kinds = [k for k, _ in events(db)]
    assert kinds == [
        "handover.created",
        "handover.planned",
        "handover.approved",
        "access.granted",
        "handover.executed",
        "client.reassigned",
    ]
    granted = dict(events(db))["access.granted"]
    assert (granted["handover_id"], granted["batch"], granted["batches"]) == (hid, 1, 1)
    # Every client: the receiver's shadow window until the effective time, then owner (or interim) from it.
    windows = {(g["client"], g["level"]): g for g in granted["grants"]}
    assert len(granted["grants"]) == 16 and {c for c, _ in windows} == {c["client"] for c in moved_clients(db)}
    for (c, level), g in windows.items():
        if level == "shadow":
            assert g["valid_until"] == EFFECTIVE.isoformat()
        else:
            assert level in ("owner", "interim")
            assert (g["valid_from"], g["valid_until"]) == (EFFECTIVE.isoformat(), None)
            assert g["employee"] == windows[(c, "shadow")]["employee"]
    moved = dict(events(db))["client.reassigned"]
    assert moved["handover_id"] == hid and len(moved["clients"]) == 8
    assert all(c["from"] == "e0" and c["to"] for c in moved["clients"])
    client.post(f"/v1/handovers/{hid}/undo", json={"reason": "back"}, headers=auth("admin"))
    tail = events(db)[-2:]
    assert [k for k, _ in tail] == ["handover.undone", "client.reassigned"]
    assert tail[0][1]["undo_reason"] == "back" and all(c["to"] == "e0" for c in tail[1][1]["clients"])


def test_approval_tells_successors_manager_and_clients(
    client: TestClient, auth: Any, db: Database, open_handover: int
) -> None:
    plan(client, auth, open_handover)
    assert templates(db, open_handover) == {}
    approve(client, auth, open_handover)
    sent = templates(db, open_handover)
    assert sent["manager_summary"] == 1 and sent["successor_briefing"] >= 1 and sent["client_intro"] == 8


def test_a_failed_approval_leaves_no_message(client: TestClient, auth: Any, db: Database, open_handover: int) -> None:
    r = client.post(f"/v1/handovers/{open_handover}/approve", headers=auth("manager", emp="m1"))
    assert r.status_code == 409  # not planned yet
    assert templates(db, open_handover) == {}


def test_cancel_withdraws_unsent_notifications(client: TestClient, auth: Any, db: Database, open_handover: int) -> None:
    plan(client, auth, open_handover)
    approve(client, auth, open_handover)
    client.post(f"/v1/handovers/{open_handover}/cancel", headers=auth("hr"))
    with db.session(write=False) as s:
        statuses = set(s.scalars(select(OutboxMessage.status).where(OutboxMessage.handover_id == open_handover)))
    assert statuses <= {"withdrawn", "skipped"}
