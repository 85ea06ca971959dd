"""Approving several handovers together (POST /v1/handover-approvals): the rows of approving them one after another,
in one transaction, all or nothing."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.access.models import AccessGrant
from app.audit.models import AuditEntry
from app.core.clock import ManualClock
from app.core.config import Settings
from app.core.db import Database, transaction
from app.directory.models import Client, Employee
from app.notify.models import OutboxMessage
from app.transfer import service
from app.transfer.followups.models import FollowUp
from app.transfer.models import Handover, HandoverItem
from tests.conftest import _clean
from tests.support.company import EFFECTIVE, START, clients, employees, open_for, plan, second_leaver
from tests.support.events import subscribe

EARLIER = EFFECTIVE - dt.timedelta(days=3)


def _seed(client: TestClient, auth: Any) -> None:
    assert client.post("/v1/employees/batch", json={"items": employees()}, headers=auth("hr")).status_code == 200
    assert client.post("/v1/clients/batch", json={"items": clients()}, headers=auth("hr")).status_code == 200
    second_leaver(client, auth)


def _approve_batch(client: TestClient, auth: Any, ids: list[int], role: str = "admin", **kw: Any) -> Any:
    return client.post("/v1/handover-approvals", json={"handover_ids": ids}, headers=auth(role, **kw))


def _layoff(client: TestClient, auth: Any) -> tuple[int, int]:
    """e0 leaves at EFFECTIVE and hands one client to e1, who leaves three days earlier (planned after e0, so
    e0's plan could still name them): approving both must cut e1's new grants at e1's own exit."""
    _seed(client, auth)
    a = open_for(client, auth, "e0")
    plan(client, auth, a)
    item = client.get(f"/v1/handovers/{a}/items", headers=auth()).json()["items"][0]
    url = f"/v1/handovers/{a}/items/{item['id']}"
    etag = client.get(url, headers=auth()).headers["etag"]
    r = client.patch(
        url, json={"successor": "e1", "force": True, "reason": "knows them"}, headers={**auth("hr"), "If-Match": etag}
    )
    assert r.status_code == 200, r.text
    b = open_for(client, auth, "e1", EARLIER)
    plan(client, auth, b)
    return a, b


def _snapshot(db: Database) -> dict[str, Any]:
    """What approval wrote, with ids that differ between two runs replaced by what they stand for."""
    with db.session(write=False) as s:
        leaver_of = dict(s.execute(select(Handover.id, Handover.leaver_id)).all())
        item_of = {
            i: (leaver_of[h], c)
            for i, h, c in s.execute(select(HandoverItem.id, HandoverItem.handover_id, HandoverItem.client_id))
        }

        def norm(value: Any, key: str = "") -> Any:
            if isinstance(value, dict):
                return {k: _norm_field(k, v, key) for k, v in value.items()}
            if isinstance(value, list):
                return [norm(v, key) for v in value]
            return value

        def _norm_field(k: str, v: Any, parent: str) -> Any:
            if k == "item_id":
                return item_of.get(v, v)
            if k == "contact_id":
                return "contact"  # a row id the directory gave: a sequence that does not restart on PostgreSQL
            if k in ("handover_id", "id") and parent in ("", "handover"):
                return leaver_of.get(v, v)
            return norm(v, k)

        g = AccessGrant
        grants = sorted(
            (
                r.employee_id,
                r.client_id,
                r.level,
                r.valid_from,
                r.valid_until,
                r.reason,
                leaver_of.get(r.handover_id),
                leaver_of.get(r.cut_by_handover_id),
                r.cut_from,
                r.revoked_at,
            )
            for r in s.scalars(select(g))
        )
        m = OutboxMessage
        outbox = sorted(
            repr(
                (
                    r.category,
                    r.event_type,
                    r.kind,
                    r.template,
                    r.locale,
                    r.channel,
                    r.recipient,
                    leaver_of.get(r.handover_id),
                    r.client_id,
                    r.status,
                    r.priority,
                    r.not_before,
                    norm(r.payload),
                )
            )
            for r in s.scalars(select(m))
        )
        f = FollowUp
        follow_ups = sorted(
            (leaver_of[r.handover_id], item_of[r.item_id], r.client_id, r.assignee_id, r.kind, r.due_at, r.status)
            for r in s.scalars(select(f))
        )
        items = sorted(
            (item_of[r.id], r.status, r.version, r.successor_id, r.interim_owner_id)
            for r in s.scalars(select(HandoverItem))
        )
        handovers = sorted(
            (h.leaver_id, h.status, h.version, h.approved_by, h.approved_at) for h in s.scalars(select(Handover))
        )
        audits = sorted(
            repr(
                (
                    e.actor,
                    e.action,
                    e.entity_type,
                    leaver_of.get(int(e.entity_id)) if e.entity_type == "handover" else None,
                    norm(e.data),
                )
            )
            for e in s.scalars(select(AuditEntry).where(AuditEntry.action == "handover.approved"))
        )
    return {
        "grants": grants,
        "outbox": outbox,
        "follow_ups": follow_ups,
        "items": items,
        "handovers": handovers,
        "audits": audits,
    }


def test_batch_approval_writes_what_one_by_one_approval_writes(client: TestClient, auth: Any, db: Database) -> None:
    a, b = _layoff(client, auth)
    for hid in (a, b):
        r = client.post(f"/v1/handovers/{hid}/approve", headers=auth())
        assert r.status_code == 200, r.text
    one_by_one = _snapshot(db)
    assert one_by_one["follow_ups"] and one_by_one["outbox"] and one_by_one["grants"]
    # e1 received a client from e0; e1 leaves first, so that grant ends at e1's exit, cut by e1's handover.
    assert any(g[0] == "e1" and g[2] == "owner" and g[4] == EARLIER and g[7] == "e1" for g in one_by_one["grants"])

    _clean(db)
    a, b = _layoff(client, auth)
    r = _approve_batch(client, auth, [b, a])  # either order: the rows are the same
    assert r.status_code == 200, r.text
    assert [h["id"] for h in r.json()["handovers"]] == [b, a]
    assert {h["status"] for h in r.json()["handovers"]} == {"approved"}
    assert r.json()["handovers"][1]["item_counts"] == {"approved": 8}
    assert _snapshot(db) == one_by_one


def _counts(db: Database) -> tuple[int, ...]:
    with db.session(write=False) as s:
        return tuple(
            s.scalar(select(func.count()).select_from(t)) or 0
            for t in (AccessGrant, OutboxMessage, FollowUp, AuditEntry)
        ) + (s.scalar(select(func.count()).where(Handover.status == "approved")) or 0,)


def test_one_handover_that_is_not_planned_approves_none(client: TestClient, auth: Any, db: Database) -> None:
    _seed(client, auth)
    a, b = open_for(client, auth, "e0"), open_for(client, auth, "e1")
    plan(client, auth, a)  # b stays a draft
    before = _counts(db)
    r = _approve_batch(client, auth, [a, b])
    assert r.status_code == 409 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["handover_ids"] == [b]
    assert _counts(db) == before


def test_an_item_without_owner_approves_none(client: TestClient, auth: Any, db: Database) -> None:
    _seed(client, auth)
    a, b = open_for(client, auth, "e0"), open_for(client, auth, "e1")
    plan(client, auth, a)
    plan(client, auth, b)
    with transaction(db) as s:  # a plan leaves no orphan, so make one as a broken integration would
        item = s.scalars(select(HandoverItem).where(HandoverItem.handover_id == b)).first()
        assert item is not None
        item.successor_id = item.interim_owner_id = None
    before = _counts(db)
    r = _approve_batch(client, auth, [a, b])
    assert r.status_code == 409 and r.json()["handover_ids"] == [b]
    assert "neither a successor nor an interim owner" in r.json()["detail"]
    assert _counts(db) == before


def test_unknown_invisible_or_not_theirs_to_approve(client: TestClient, auth: Any, db: Database) -> None:
    _seed(client, auth)
    a = open_for(client, auth, "e0")
    plan(client, auth, a)
    before = _counts(db)
    r = _approve_batch(client, auth, [a, 999_999])
    assert r.status_code == 404 and r.json()["handover_ids"] == [999_999]
    # m2 manages another team: e0's handover is not theirs to see.
    assert _approve_batch(client, auth, [a], role="manager", emp="m2").status_code == 404
    # hr may plan but not approve; a token without handovers:approve is refused before anything is read.
    assert _approve_batch(client, auth, [a], role="hr").status_code == 403
    assert _approve_batch(client, auth, [a], role="account_manager", emp="e2").status_code == 403
    assert _counts(db) == before
    # The leaver's manager may.
    r = _approve_batch(client, auth, [a, a], role="manager", emp="m1")
    assert r.status_code == 200, r.text
    assert [h["id"] for h in r.json()["handovers"]] == [a]  # duplicates once


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"handover_ids": []},
        {"handover_ids": [0]},
        {"handover_ids": ["x"]},
        {"handover_ids": list(range(1, 1002))},
        {"handover_ids": [1], "extra": 1},
    ],
)
def test_bad_bodies_are_422(client: TestClient, auth: Any, db: Database, body: dict[str, Any]) -> None:
    r = client.post("/v1/handover-approvals", json=body, headers=auth())
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")


# ---- executing a due batch (the worker's run_due) ------------------------------------------------------------


def _move_client(client: TestClient, auth: Any, external_id: str, owner: str) -> None:
    row = {k: v for k, v in next(c for c in clients() if c["external_id"] == external_id).items() if k != "external_id"}
    r = client.put(f"/v1/clients/{external_id}", json={**row, "owner": owner}, headers=auth("hr"))
    assert r.status_code == 200, r.text


def _executed(db: Database) -> dict[str, Any]:
    with db.session(write=False) as s:
        leaver_of = dict(s.execute(select(Handover.id, Handover.leaver_id)).all())
        owners = sorted(s.execute(select(Client.external_id, Client.owner_id, Client.former_owner_id)).all())
        employees = sorted(s.execute(select(Employee.external_id, Employee.status)).all())
        items = sorted(
            (leaver_of[i.handover_id], i.client_id, i.status, i.transferred_to_id, i.transferred_at, i.attention_reason)
            for i in s.scalars(select(HandoverItem))
        )
        grants = sorted(
            (g.employee_id, g.client_id, g.level, g.valid_from, g.valid_until, leaver_of.get(g.handover_id))
            for g in s.scalars(select(AccessGrant))
        )
        events = [
            (
                m.event_type,
                leaver_of.get(m.payload.get("data", {}).get("handover_id")),
                m.payload["data"].get("clients"),
            )
            for m in s.scalars(
                select(OutboxMessage).where(OutboxMessage.category == "event").order_by(OutboxMessage.id)
            )
        ]
        audits = [
            (e.action, leaver_of.get(int(e.entity_id)), e.data)
            for e in s.scalars(
                select(AuditEntry).where(AuditEntry.action == "handover.executed").order_by(AuditEntry.seq)
            )
        ]
    return {
        "owners": owners,
        "employees": employees,
        "items": items,
        "grants": grants,
        "events": events,
        "audits": audits,
    }


def _due_layoff(
    client: TestClient, auth: Any, db: Database, settings: Settings, *, shared_client: bool
) -> tuple[int, int]:
    """e0 (at EFFECTIVE) and e1 (three days earlier) leave, both approved. The CRM then moves c2 to e3, who stays
    (c2 stays with e3 at execution); with `shared_client`, c1 moved to e1 before e1's plan, so both handovers
    hold c1 (the owner update cannot be one set-based statement)."""
    _seed(client, auth)
    subscribe(db, settings)  # a CRM endpoint, so the events are there to compare
    a = open_for(client, auth, "e0")
    plan(client, auth, a)
    if shared_client:
        _move_client(client, auth, "c1", "e1")
    b = open_for(client, auth, "e1", EARLIER)
    plan(client, auth, b)
    assert _approve_batch(client, auth, [a, b]).status_code == 200
    _move_client(client, auth, "c2", "e3")
    return a, b


@pytest.mark.parametrize("shared_client", [False, True])
def test_the_workers_batch_executes_as_one_by_one_execution_does(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, settings: Settings, shared_client: bool
) -> None:
    _due_layoff(client, auth, db, settings, shared_client=shared_client)
    clock.set(EFFECTIVE)
    with db.session(write=False) as s:
        due = list(s.scalars(select(Handover.id).where(Handover.status == "approved").order_by(Handover.effective_at)))
    for hid in due:  # as the worker orders them: earliest effective time first
        r = client.post(f"/v1/handovers/{hid}/execute", headers=auth())
        assert r.status_code == 200, r.text
    one_by_one = _executed(db)
    assert ("e0", "c2", "closed") in {i[:3] for i in one_by_one["items"]}  # c2 stayed with e3
    assert len(one_by_one["audits"]) == 2 and len(one_by_one["events"]) >= 4

    _clean(db)
    clock.set(START)
    _due_layoff(client, auth, db, settings, shared_client=shared_client)
    clock.set(EFFECTIVE)
    with transaction(db) as s:
        assert len(service.run_due(s, now=EFFECTIVE)) == 2
    assert _executed(db) == one_by_one
