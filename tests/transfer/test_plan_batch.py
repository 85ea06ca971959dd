"""Planning several handovers together (POST /v1/handover-plans): one joint solve, all or nothing."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.audit.models import AuditEntry
from app.core.db import Database
from app.transfer.models import HandoverItem
from tests.support.company import clients, open_for, plan, second_leaver


def _plan_batch(client: TestClient, auth: Any, ids: list[int], role: str = "hr", **kw: Any) -> Any:
    return client.post("/v1/handover-plans", json={"handover_ids": ids}, headers=auth(role, **kw))


def _counts(db: Database) -> tuple[int, int]:
    with db.session(write=False) as s:
        items = s.scalar(select(func.count()).select_from(HandoverItem)) or 0
        planned = s.scalar(select(func.count()).where(AuditEntry.action == "handover.planned")) or 0
    return items, planned


def test_joint_plan_covers_every_handover_in_one_solve(
    client: TestClient, auth: Any, db: Database, company: dict[str, Any]
) -> None:
    second_leaver(client, auth)
    a, b = open_for(client, auth, "e0"), open_for(client, auth, "e1")
    r = _plan_batch(client, auth, [b, a])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["solves"] == 1
    assert [h["handover_id"] for h in body["handovers"]] == [b, a]  # request order
    assert {h["handover_id"]: h["items"] for h in body["handovers"]} == {a: 8, b: 4}
    for hid, leaver, n in ((a, "e0", 8), (b, "e1", 4)):
        h = client.get(f"/v1/handovers/{hid}", headers=auth()).json()
        assert h["status"] == "planned" and h["item_counts"] == {"proposed": n}
        items = client.get(f"/v1/handovers/{hid}/items", headers=auth()).json()["items"]
        assert {i["previous_owner"] for i in items} == {leaver}
        # Neither leaver inherits the other's clients.
        assert not {i["successor"] for i in items} & {"e0", "e1"}
    assert _counts(db) == (12, 2)  # one audit entry per handover


def test_joint_plan_is_never_worse_than_planning_one_after_the_other(
    client: TestClient, auth: Any, company: dict[str, Any]
) -> None:
    second_leaver(client, auth)
    a, b = open_for(client, auth, "e0"), open_for(client, auth, "e1")
    first, second = plan(client, auth, a), plan(client, auth, b)  # the second sees the first's promised load
    joint = _plan_batch(client, auth, [a, b])
    assert joint.status_code == 200, joint.text
    cost = joint.json()["handovers"][0]["total_cost"]
    assert cost <= first["total_cost"] + second["total_cost"] + 1e-6
    assert joint.json()["handovers"][0]["solver_status"] == "optimal"


def test_manual_overrides_are_kept(client: TestClient, auth: Any, company: dict[str, Any]) -> None:
    second_leaver(client, auth)
    a, b = open_for(client, auth, "e0"), open_for(client, auth, "e1")
    plan(client, auth, a)
    item = client.get(f"/v1/handovers/{a}/items", headers=auth()).json()["items"][0]
    got = client.get(f"/v1/handovers/{a}/items/{item['id']}", headers=auth())
    url = f"/v1/handovers/{a}/items/{item['id']}"
    r = client.patch(url, json={"interim_owner": "m1"}, headers={**auth("hr"), "If-Match": got.headers["etag"]})
    assert r.status_code == 200, r.text
    r = _plan_batch(client, auth, [a, b])
    assert r.status_code == 200, r.text
    assert r.json()["handovers"][0]["kept_manual"] == 1
    kept = client.get(url, headers=auth()).json()
    assert kept["manual"] is True and kept["interim_owner"] == "m1"
    assert client.get(f"/v1/handovers/{a}", headers=auth()).json()["item_counts"] == {"proposed": 8}


def test_one_handover_that_cannot_be_planned_plans_none(
    client: TestClient, auth: Any, db: Database, company: dict[str, Any]
) -> None:
    second_leaver(client, auth)
    a, b = open_for(client, auth, "e0"), open_for(client, auth, "e1")
    assert client.post(f"/v1/handovers/{b}/cancel", headers=auth("hr")).status_code == 200
    before = _counts(db)
    r = _plan_batch(client, auth, [a, b])
    assert r.status_code == 409 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["handover_ids"] == [b]
    assert _counts(db) == before
    assert client.get(f"/v1/handovers/{a}", headers=auth()).json()["status"] == "draft"


def test_unknown_or_invisible_handovers_are_404_and_plan_nothing(
    client: TestClient, auth: Any, db: Database, company: dict[str, Any]
) -> None:
    a = open_for(client, auth, "e0")
    before = _counts(db)
    r = _plan_batch(client, auth, [a, 999_999])
    assert r.status_code == 404
    # m2 manages another team: e0's handover is not theirs to see.
    r = _plan_batch(client, auth, [a], role="manager", emp="m2")
    assert r.status_code == 404
    assert _counts(db) == before
    assert client.get(f"/v1/handovers/{a}", headers=auth()).json()["status"] == "draft"


def test_bad_bodies_are_422(client: TestClient, auth: Any, company: dict[str, Any]) -> None:
    for body in ({"handover_ids": []}, {"handover_ids": list(range(1, 1002))}, {"handover_ids": [0]}, {}):
        r = client.post("/v1/handover-plans", json=body, headers=auth("hr"))
        assert r.status_code == 422, (body, r.text)
    r = _plan_batch(client, auth, [1], role="account_manager", emp="e2")
    assert r.status_code == 403


def test_kept_manual_counts_like_a_single_plan(client: TestClient, auth: Any, company: dict[str, Any]) -> None:
    """A manual item whose client the CRM has since given to someone else is not 'kept' by a re-plan."""
    second_leaver(client, auth)
    a, b = open_for(client, auth, "e0"), open_for(client, auth, "e1")
    plan(client, auth, a)
    items = client.get(f"/v1/handovers/{a}/items", headers=auth()).json()["items"][:2]
    for item in items:
        url = f"/v1/handovers/{a}/items/{item['id']}"
        etag = client.get(url, headers=auth()).headers["etag"]
        r = client.patch(url, json={"interim_owner": "m1"}, headers={**auth("hr"), "If-Match": etag})
        assert r.status_code == 200, r.text
    moved = next(c for c in clients() if c["external_id"] == items[0]["client"])
    body = {k: v for k, v in moved.items() if k != "external_id"} | {"owner": "e3"}
    assert client.put(f"/v1/clients/{moved['external_id']}", json=body, headers=auth("hr")).status_code == 200
    single = plan(client, auth, a)["kept_manual"]
    joint = _plan_batch(client, auth, [a, b])
    assert joint.status_code == 200, joint.text
    assert single == joint.json()["handovers"][0]["kept_manual"] == 1


def test_the_list_shows_each_handovers_own_counts(client: TestClient, auth: Any, company: dict[str, Any]) -> None:
    second_leaver(client, auth)
    a, b = open_for(client, auth, "e0"), open_for(client, auth, "e1")
    assert _plan_batch(client, auth, [a, b]).status_code == 200
    listed = {h["id"]: h for h in client.get("/v1/handovers", headers=auth()).json()["items"]}
    for hid, n in ((a, 8), (b, 4)):
        one = client.get(f"/v1/handovers/{hid}", headers=auth()).json()
        assert listed[hid]["item_counts"] == one["item_counts"] == {"proposed": n}
        assert listed[hid]["risk_bands"] == one["risk_bands"] and listed[hid]["total_exposure"] == one["total_exposure"]
