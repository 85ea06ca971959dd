"""Access through a handover: exact at the effective time with no job in between; cancel and undo restore."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from app.access.models import AccessGrant
from app.core.clock import ManualClock
from app.core.config import Settings
from app.core.db import Database
from app.transfer.continuity import INTERIM_REASON
from app.worker import run_once
from tests.conftest import START
from tests.support.company import EFFECTIVE, approve, plan

S = dt.timedelta(seconds=1)


def decide(client: TestClient, auth: Any, employee: str, cl: str, action: str, at: dt.datetime) -> dict[str, Any]:
    r = client.post(
        "/v1/access/check",
        json={"employee": employee, "client": cl, "action": action, "at": at.isoformat()},
        headers=auth("integration", scope="access:check access:admin"),
    )
    assert r.status_code == 200, r.text
    return r.json()


def grant_rows(db: Database, *, uncut: bool = False) -> list[tuple[Any, ...]]:
    """Every grant but the interim ones a handover lays ahead while not approved (withdrawn at the approval;
    tests/transfer/test_continuity.py covers them). With `uncut`, a grant an open handover cut shows the end it had
    before (the opening cuts the leaver's grants at the effective time, issue 15)."""
    with db.session(write=False) as s:
        return [
            (
                g.id,
                g.employee_id,
                g.client_id,
                g.level,
                g.valid_from,
                g.cut_from if uncut and g.cut_by_handover_id is not None else g.valid_until,
                g.revoked_at,
            )
            for g in s.scalars(select(AccessGrant).where(AccessGrant.reason != INTERIM_REASON).order_by(AccessGrant.id))
        ]


def _items(client: TestClient, auth: Any, hid: int) -> list[dict[str, Any]]:
    return client.get(f"/v1/handovers/{hid}/items", headers=auth()).json()["items"]


def test_the_effective_time_edge(client: TestClient, auth: Any, db: Database, open_handover: int) -> None:
    plan(client, auth, open_handover)
    approve(client, auth, open_handover)
    it = next(i for i in _items(client, auth, open_handover) if i["successor"])
    cl, succ = it["client"], it["successor"]
    before, at = EFFECTIVE - S, EFFECTIVE
    # The leaver: full access one second before, nothing at the effective time. No worker has run.
    assert decide(client, auth, "e0", cl, "edit", before)["allowed"]
    assert decide(client, auth, "e0", cl, "view", at)["allowed"] is False
    # The successor: shadow (view only) during the transition, owner from the effective time.
    shadow = decide(client, auth, succ, cl, "view", before)
    assert (
        shadow["allowed"]
        and shadow["level"] == "shadow"
        and shadow["valid_until"] == EFFECTIVE.strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    assert decide(client, auth, succ, cl, "export", before)["reason"] == "view_only"
    owner = decide(client, auth, succ, cl, "export", at)
    assert owner["allowed"] and owner["level"] == "owner"


def test_interim_owner_gets_an_interim_grant(client: TestClient, auth: Any, db: Database, open_handover: int) -> None:
    plan(client, auth, open_handover)
    item = _items(client, auth, open_handover)[0]
    url = f"/v1/handovers/{open_handover}/items/{item['id']}"
    etag = client.get(url, headers=auth()).headers["etag"]
    assert client.patch(url, json={"interim_owner": "m1"}, headers={**auth("hr"), "If-Match": etag}).status_code == 200
    approve(client, auth, open_handover)
    d = decide(client, auth, "m1", item["client"], "edit", EFFECTIVE)
    assert d["allowed"] and d["level"] == "interim"


def test_cancel_restores_grants_exactly(client: TestClient, auth: Any, db: Database, open_handover: int) -> None:
    before = grant_rows(db, uncut=True)
    plan(client, auth, open_handover)
    approve(client, auth, open_handover)
    assert grant_rows(db) != before
    client.post(f"/v1/handovers/{open_handover}/cancel", headers=auth("hr"))
    after = grant_rows(db)
    assert after[: len(before)] == before  # the leaver's grants are as they were
    assert all(row[6] is not None for row in after[len(before) :])  # the handover's grants are revoked, kept
    cl = _items(client, auth, open_handover)[0]["client"]
    assert decide(client, auth, "e0", cl, "edit", EFFECTIVE + S)["allowed"]


def test_undo_restores_grants(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, open_handover: int
) -> None:
    before = grant_rows(db, uncut=True)
    plan(client, auth, open_handover)
    approve(client, auth, open_handover)
    clock.set(EFFECTIVE)
    run_once(db, clock)
    it = next(i for i in _items(client, auth, open_handover) if i["successor"])
    undo_at = EFFECTIVE + dt.timedelta(days=2)
    clock.set(undo_at)
    assert client.post(f"/v1/handovers/{open_handover}/undo", headers=auth("admin")).status_code == 200
    after = grant_rows(db)
    assert after[: len(before)] == before
    assert decide(client, auth, "e0", it["client"], "edit", undo_at)["allowed"]
    assert decide(client, auth, it["successor"], it["client"], "view", undo_at)["allowed"] is False
    # History: the successor did own the client between the effective time and the undo.
    assert decide(client, auth, it["successor"], it["client"], "export", undo_at - S)["allowed"]


def test_moving_the_effective_time_moves_every_window(
    client: TestClient, auth: Any, db: Database, open_handover: int, settings: Settings
) -> None:
    plan(client, auth, open_handover)
    approve(client, auth, open_handover)
    it = next(i for i in _items(client, auth, open_handover) if i["successor"])
    later = EFFECTIVE + dt.timedelta(days=7)
    from app.transfer import service

    with db.session() as s:
        from app.transfer.models import Handover

        h = s.get(Handover, open_handover)
        assert h is not None
        service.reschedule(s, h, effective_at=later, actor="test", now=START, settings=settings)
        s.commit()
    assert decide(client, auth, "e0", it["client"], "edit", later - S)["allowed"]
    assert decide(client, auth, "e0", it["client"], "view", later)["allowed"] is False
    assert decide(client, auth, it["successor"], it["client"], "view", later - S)["level"] == "shadow"
    assert decide(client, auth, it["successor"], it["client"], "edit", later)["level"] == "owner"
    assert decide(client, auth, it["successor"], it["client"], "edit", EFFECTIVE)["level"] == "shadow"


def test_immediate_termination_cuts_access_at_once(client: TestClient, auth: Any, db: Database, company: Any) -> None:
    r = client.post(
        "/v1/handovers",
        json={"leaver": "e0", "reason": "termination", "effective_at": START.isoformat()},
        headers=auth("hr"),
    )
    hid = r.json()["id"]
    plan(client, auth, hid)
    approve(client, auth, hid)
    assert decide(client, auth, "e0", "c1", "view", START)["allowed"] is False
    r = client.get("/v1/clients", headers=auth("account_manager", emp="e0"))
    assert r.status_code == 403
