"""A manager named successor or interim owner on another team's handover: sees it and does their part, manages nothing.

e0 (m1's team) leaves; m1 names m2 (who manages x1, another team) successor on item A and interim owner on item C.
m2 may read the handover's header (aggregates over A and C only), list, read and report A and C and no other item
(404), tick A's and C's checklists and sign their incoming sides; every write that manages the handover answers 403
(problem+json) and leaves the database as it was. m3, a manager neither managing nor involved, still gets 404; m1,
the managers above m1 and the leaver see every item, and m1 keeps every right.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select

from app.access.models import AccessGrant
from app.audit.models import AuditEntry
from app.core.clock import ManualClock
from app.core.db import Database
from app.notify.models import OutboxMessage
from app.transfer.followups.models import FollowUp
from app.transfer.models import Handover, HandoverItem
from app.worker import run_once
from tests.support.checklist import complete_checklist
from tests.support.company import EFFECTIVE, open_for


def state(db: Database) -> tuple[Any, ...]:
    """Every handover and item with its version, and the rows the workflow adds (audit, outbox, grants, follow-ups)."""
    i = HandoverItem
    with db.session(write=False) as s:
        handovers = s.execute(select(Handover.id, Handover.status, Handover.version).order_by(Handover.id)).all()
        items = s.execute(
            select(
                i.id,
                i.status,
                i.version,
                i.successor_id,
                i.interim_owner_id,
                i.checklist,
                i.outgoing_signed_at,
                i.incoming_signed_at,
            ).order_by(i.id)
        ).all()
        counts = [
            s.scalar(select(func.count()).select_from(m)) for m in (AuditEntry, OutboxMessage, AccessGrant, FollowUp)
        ]
    return handovers, items, counts


def forbidden(r: Response) -> None:
    assert r.status_code == 403, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    assert r.json()["status"] == 403


def etag(client: TestClient, auth: Any, path: str) -> str:
    r = client.get(path, headers=auth())
    assert r.status_code == 200, r.text
    return str(r.headers["etag"])


@pytest.fixture
def shared(client: TestClient, auth: Any, db: Database, open_handover: int) -> dict[str, Any]:
    """e0's handover planned from m1's team only (so m2 is on no item by chance), then m1 names m2 successor on
    item A and interim owner on item C; B is an item m2 has nothing to do with."""
    hid = open_handover
    r = client.post(f"/v1/handovers/{hid}/plan", json={"candidate_pool": {"kind": "team"}}, headers=auth("hr"))
    assert r.status_code == 200, r.text
    items = client.get(f"/v1/handovers/{hid}/items", headers=auth()).json()["items"]
    assert all("m2" not in (it["successor"], it["interim_owner"]) for it in items)
    a, b, c = (it["id"] for it in items[:3])
    m1 = auth("manager", emp="m1")
    for item, body in ((a, {"successor": "m2"}), (c, {"interim_owner": "m2"})):
        url = f"/v1/handovers/{hid}/items/{item}"
        r = client.patch(url, json=body, headers={**m1, "If-Match": etag(client, auth, url)})
        assert r.status_code == 200, r.text
    r = client.put(
        "/v1/employees/m3",
        json={"name": "Nia Nobody", "email": "m3@example.com", "seniority": 4, "manager": "ceo"},
        headers=auth("hr"),
    )
    assert r.status_code == 201, r.text
    return {"hid": hid, "a": a, "b": b, "c": c, "items": [it["id"] for it in items]}


def approve_as_m1(client: TestClient, auth: Any, hid: int) -> None:
    r = client.post(f"/v1/handovers/{hid}/approve", headers=auth("manager", emp="m1"))
    assert r.status_code == 200, r.text


def header_of(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The header's aggregates as they must be over exactly these items."""
    statuses: Counter[str] = Counter(it["status"] for it in items)
    bands: Counter[str] = Counter(it["risk_band"] or "unscored" for it in items)
    return {
        "item_counts": dict(statuses),
        "risk_bands": dict(bands),
        "needs_attention": sum(1 for it in items if it["needs_attention"]),
        "total_exposure": round(sum(it["exposure"] or 0 for it in items), 2),
    }


def assert_sees_only(client: TestClient, auth: Any, hid: int, who: dict[str, str], mine: list[int]) -> None:
    """`who` sees the handover's header with aggregates over `mine`, lists, reaches and reports only `mine`; every
    other item answers 404 (problem+json), as an item of a handover they cannot see would."""
    every = client.get(f"/v1/handovers/{hid}/items", headers=auth()).json()["items"]
    assert set(mine) < {it["id"] for it in every}
    own = [it for it in every if it["id"] in mine]
    r = client.get(f"/v1/handovers/{hid}/items", headers=who)
    assert r.status_code == 200 and [it["id"] for it in r.json()["items"]] == sorted(mine), r.status_code
    assert all("runner_up" not in it["reasons"] for it in r.json()["items"])  # a colleague's fit, not theirs
    for it in every:
        r = client.get(f"/v1/handovers/{hid}/items/{it['id']}", headers=who)
        if it["id"] in mine:
            assert r.status_code == 200 and r.json()["client"] == it["client"], r.text
        else:
            assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json"), r.text
    report = client.get(f"/v1/handovers/{hid}/report", headers=who)
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["view"] == "own"
    assert sorted(it["id"] for it in body["items"]) == sorted(mine)
    assert (
        body["counts"]["items"]
        == len(mine)
        == sum(s["clients"] for s in body["successors"]) + sum(1 for it in own if it["successor"] is None)
    )
    theirs = {it["client"] for it in own}
    others = {it["client"] for it in every} - theirs
    csv = client.get(f"/v1/handovers/{hid}/report", headers={**who, "Accept": "text/csv"}).text
    assert len(csv.strip().splitlines()) == 1 + len(mine)
    assert {line.split(",")[5] for line in csv.strip().splitlines()[1:]} == theirs
    html = client.get(f"/v1/handovers/{hid}/report", headers={**who, "Accept": "text/html"}).text
    assert "Only the clients you receive" in html
    names = {it["client"]: it["client_name"] for it in every}
    assert all(f"{names[c]} <small>{c} " in html for c in theirs)
    assert not any(f"<small>{c} " in html for c in others)
    r = client.get(f"/v1/handovers/{hid}", headers=who)
    assert r.status_code == 200, r.text
    header = r.json()
    assert {k: header.get(k) for k in header_of(own)} == header_of(own)
    assert header["manager"] == "m1" and header["view"] == "own"
    listed = [h for h in client.get("/v1/handovers", headers=who).json()["items"] if h["id"] == hid]
    assert listed == [header]


def test_a_participant_manager_sees_the_header_and_only_their_own_items(
    client: TestClient, auth: Any, shared: Any
) -> None:
    """m2 receives A (successor) and C (interim owner) of e0's 8 clients. Before, m2 listed all 8 with their risk,
    exposure and every other successor's cost breakdown, reached any of them by id and downloaded the full report;
    the README promises a participant only their own items (least privilege)."""
    assert_sees_only(client, auth, shared["hid"], auth("manager", emp="m2"), [shared["a"], shared["c"]])


def test_a_participant_account_manager_sees_only_their_own_items(client: TestClient, auth: Any, shared: Any) -> None:
    """e1, an account manager who is successor on some of e0's clients, sees those and no other; after execution as
    their receiver too."""
    hid = shared["hid"]
    every = client.get(f"/v1/handovers/{hid}/items", headers=auth()).json()["items"]
    mine = [it["id"] for it in every if "e1" in (it["successor"], it["interim_owner"])]
    assert 0 < len(mine) < len(every)
    e1 = auth("account_manager", emp="e1")
    assert_sees_only(client, auth, hid, e1, mine)
    approve_as_m1(client, auth, hid)
    assert_sees_only(client, auth, hid, e1, mine)


def test_the_leaver_and_those_who_manage_see_every_item(client: TestClient, auth: Any, shared: Any) -> None:
    """The leaver hands every client over, so sees them all; so do the managers up the chain, hr and auditors."""
    hid = shared["hid"]
    for who in (
        auth("account_manager", emp="e0"),
        auth("manager", emp="m1"),
        auth("manager", emp="ceo"),
        auth("hr"),
        auth("auditor"),
    ):
        r = client.get(f"/v1/handovers/{hid}", headers=who)
        assert r.status_code == 200 and r.json()["view"] == "all", r.text
        assert sum(r.json()["item_counts"].values()) == len(shared["items"])
        items = client.get(f"/v1/handovers/{hid}/items", headers=who).json()["items"]
        assert [it["id"] for it in items] == shared["items"]
        assert any(it["reasons"].get("runner_up") for it in items)
        report = client.get(f"/v1/handovers/{hid}/report", headers=who).json()
        assert report["view"] == "all" and report["counts"]["items"] == len(shared["items"])


def test_a_participant_reaches_no_other_item_by_any_other_route(
    client: TestClient, auth: Any, clock: ManualClock, db: Database, shared: Any
) -> None:
    """Follow-ups, the retention report, notifications and client risk: after execution m2 sees A's and C's clients
    there and no other of e0's clients (these rules already held; the test keeps them)."""
    hid, m2 = shared["hid"], auth("manager", emp="m2")
    every = {it["id"]: it for it in client.get(f"/v1/handovers/{hid}/items", headers=auth()).json()["items"]}
    mine = {every[shared["a"]]["client"], every[shared["c"]]["client"]}
    approve_as_m1(client, auth, hid)
    clock.set(EFFECTIVE)
    run_once(db, clock)
    clock.set(EFFECTIVE + dt.timedelta(days=1))
    ups = client.get("/v1/follow-ups", params={"handover": hid, "limit": 200}, headers=m2).json()["items"]
    assert ups and {f["client"] for f in ups} == mine
    retention = client.get("/v1/reports/retention", headers=m2).json()
    assert retention["total"]["handed_over"] == 2
    assert hid not in {n["handover_id"] for n in client.get("/v1/notifications", headers=m2).json()["items"]}
    for item in every.values():
        status = 200 if item["client"] in mine else 404
        assert client.get(f"/v1/clients/{item['client']}/risk", headers=m2).status_code == status
        assert client.get(f"/v1/clients/{item['client']}", headers=m2).status_code == status


def test_a_participant_manager_cannot_manage_a_planned_handover(
    client: TestClient, auth: Any, db: Database, shared: Any
) -> None:
    hid, m2 = shared["hid"], auth("manager", emp="m2")
    item_a = f"/v1/handovers/{hid}/items/{shared['a']}"
    item_b = f"/v1/handovers/{hid}/items/{shared['b']}"
    before = state(db)
    for method, path, body, extra in [
        ("POST", f"/v1/handovers/{hid}/plan", None, {}),
        ("POST", f"/v1/handovers/{hid}/plan?dry_run=true", None, {}),
        ("POST", "/v1/handover-plans", {"handover_ids": [hid]}, {}),
        ("PATCH", item_a, {"interim_owner": "x1"}, {"If-Match": etag(client, auth, item_a)}),
        ("PATCH", item_b, {"successor": "m2"}, {"If-Match": etag(client, auth, item_b)}),
        ("POST", f"/v1/handovers/{hid}/cancel", {"reason": "not mine"}, {}),
        ("POST", f"/v1/handovers/{hid}/approve", None, {}),
        ("POST", f"/v1/handovers/{hid}/approve", None, {"If-Match": etag(client, auth, f"/v1/handovers/{hid}")}),
        ("POST", "/v1/handover-approvals", {"handover_ids": [hid]}, {}),
    ]:
        r = client.request(method, path, json=body, headers={**m2, **extra})
        forbidden(r)
        assert state(db) == before, (method, path)


def test_a_batch_names_the_handovers_the_caller_only_takes_part_in(
    client: TestClient, auth: Any, db: Database, shared: Any
) -> None:
    """m2 manages x1's handover and takes part in e0's: 403 naming e0's, and x1's is not planned either; an
    invisible id is still 404."""
    hid, m2 = shared["hid"], auth("manager", emp="m2")
    own = open_for(client, auth, "x1")
    before = state(db)
    for path in ("/v1/handover-plans", "/v1/handover-approvals"):
        r = client.post(path, json={"handover_ids": [own, hid]}, headers=m2)
        forbidden(r)
        assert r.json()["handover_ids"] == [hid]
        r = client.post(path, json={"handover_ids": [hid, 2**31 - 1]}, headers=m2)
        assert r.status_code == 404 and r.json()["handover_ids"] == [2**31 - 1], r.text
        assert state(db) == before, path
    r = client.post("/v1/handover-plans", json={"handover_ids": [own]}, headers=m2)
    assert r.status_code == 200, r.text


def test_a_participant_manager_signs_and_ticks_only_their_own_items(
    client: TestClient, auth: Any, db: Database, shared: Any
) -> None:
    hid, m2 = shared["hid"], auth("manager", emp="m2")
    approve_as_m1(client, auth, hid)
    base = f"/v1/handovers/{hid}/items"
    for item in (shared["a"], shared["c"]):
        r = client.put(f"{base}/{item}/checklist/handover_meeting", json={"done": True, "note": "met"}, headers=m2)
        assert r.status_code == 200 and r.json()["checklist"]["handover_meeting"]["by"] == "manager:test-manager"
        complete_checklist(client, m2, hid, item)
        r = client.post(f"{base}/{item}/sign-off", json={"side": "incoming"}, headers=m2)
        assert r.status_code == 200 and r.json()["incoming_signed_by"] == "manager:test-manager", r.text
    before = state(db)
    for method, path, body in [
        ("POST", f"{base}/{shared['a']}/sign-off", {"side": "outgoing"}),
        ("POST", f"/v1/handovers/{hid}/cancel", None),
    ]:
        forbidden(client.request(method, path, json=body, headers=m2))
        assert state(db) == before, (method, path)
    # B is not m2's: outside their reach, as any item of a handover they cannot see (404, was 403).
    for method, path, body in [
        ("PUT", f"{base}/{shared['b']}/checklist/contacts", {"done": True}),
        ("POST", f"{base}/{shared['b']}/sign-off", {"side": "incoming"}),
    ]:
        r = client.request(method, path, json=body, headers=m2)
        assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json"), r.text
        assert state(db) == before, (method, path)


def test_a_participant_manager_cannot_complete_undo_or_execute(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, shared: Any
) -> None:
    hid, m2, m1 = shared["hid"], auth("manager", emp="m2"), auth("manager", emp="m1")
    approve_as_m1(client, auth, hid)
    forbidden(client.post(f"/v1/handovers/{hid}/execute", headers=m2))
    clock.set(EFFECTIVE)
    run_once(db, clock)
    assert client.get(f"/v1/handovers/{hid}", headers=m2).json()["status"] == "executed"
    clock.set(EFFECTIVE + dt.timedelta(days=1))
    before = state(db)
    forbidden(client.post(f"/v1/handovers/{hid}/complete", json={"reason": "done"}, headers=m2))
    forbidden(client.post(f"/v1/handovers/{hid}/undo", json={"reason": "oops"}, headers=m2))
    assert state(db) == before
    # m1 manages it: complete, then undo.
    r = client.post(f"/v1/handovers/{hid}/complete", json={"reason": "done"}, headers=m1)
    assert r.status_code == 200 and r.json()["status"] == "completed", r.text
    r = client.post(f"/v1/handovers/{hid}/undo", json={"reason": "came back"}, headers=m1)
    assert r.status_code == 200 and r.json()["status"] == "undone", r.text


def test_a_manager_neither_managing_nor_involved_gets_404(
    client: TestClient, auth: Any, db: Database, shared: Any
) -> None:
    hid, m3 = shared["hid"], auth("manager", emp="m3")
    item = f"/v1/handovers/{hid}/items/{shared['a']}"
    before = state(db)
    for method, path, body in [
        ("GET", f"/v1/handovers/{hid}", None),
        ("GET", f"/v1/handovers/{hid}/items", None),
        ("GET", item, None),
        ("GET", f"/v1/handovers/{hid}/report", None),
        ("POST", f"/v1/handovers/{hid}/plan", None),
        ("POST", f"/v1/handovers/{hid}/plan?dry_run=true", None),
        ("POST", "/v1/handover-plans", {"handover_ids": [hid]}),
        ("PATCH", item, {"successor": "m3"}),
        ("POST", f"/v1/handovers/{hid}/cancel", None),
        ("POST", f"/v1/handovers/{hid}/approve", None),
        ("POST", "/v1/handover-approvals", {"handover_ids": [hid]}),
        ("POST", f"/v1/handovers/{hid}/complete", {"reason": "x"}),
        ("POST", f"/v1/handovers/{hid}/undo", None),
        ("PUT", f"{item}/checklist/contacts", {"done": True}),
        ("POST", f"{item}/sign-off", {"side": "incoming"}),
    ]:
        r = client.request(method, path, json=body, headers={**m3, "If-Match": '"x"'})
        assert r.status_code == 404, (method, path, r.status_code, r.text)
    assert state(db) == before
    assert client.get("/v1/handovers", headers=m3).json()["items"] == []


def test_the_managing_managers_keep_every_right(client: TestClient, auth: Any, db: Database, shared: Any) -> None:
    """m1 (the leaver's manager) plans, overrides, approves and ticks any item; the ceo (above m1) manages too:
    they tick m2's item, though only m1 approves."""
    hid, m1, ceo = shared["hid"], auth("manager", emp="m1"), auth("manager", emp="ceo")
    for path in (f"/v1/handovers/{hid}/plan?dry_run=true", f"/v1/handovers/{hid}/plan"):
        r = client.post(path, json={"candidate_pool": {"kind": "team"}}, headers=m1)
        assert r.status_code == 200, r.text
    r = client.post("/v1/handover-plans", json={"handover_ids": [hid], "candidate_pool": {"kind": "team"}}, headers=m1)
    assert r.status_code == 200, r.text
    # Planning again replaces the proposed items (new ids) and keeps the manual ones (A and C).
    items = [it["id"] for it in client.get(f"/v1/handovers/{hid}/items", headers=m1).json()["items"]]
    assert shared["a"] in items and shared["c"] in items
    b = next(i for i in items if i not in (shared["a"], shared["c"]))
    url = f"/v1/handovers/{hid}/items/{b}"
    r = client.patch(url, json={"interim_owner": "m1"}, headers={**m1, "If-Match": etag(client, auth, url)})
    assert r.status_code == 200, r.text
    forbidden(client.post(f"/v1/handovers/{hid}/approve", headers=ceo))  # only the leaver's own manager approves
    r = client.post("/v1/handover-approvals", json={"handover_ids": [hid]}, headers=m1)
    assert r.status_code == 200 and r.json()["handovers"][0]["status"] == "approved", r.text
    for who in (m1, ceo):
        for item in (shared["a"], b):
            r = client.put(f"/v1/handovers/{hid}/items/{item}/checklist/contacts", json={"done": True}, headers=who)
            assert r.status_code == 200, r.text
    r = client.post(f"/v1/handovers/{hid}/cancel", json={"reason": "stays after all"}, headers=m1)
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text


def test_notifications_stay_with_those_who_manage(client: TestClient, auth: Any, shared: Any) -> None:
    """Taking part in a handover shows it, not its clients' notifications (those are for whoever manages it)."""
    hid = shared["hid"]
    approve_as_m1(client, auth, hid)

    def mine(who: str) -> set[int]:
        r = client.get("/v1/notifications", headers=auth("manager", emp=who))
        assert r.status_code == 200, r.text
        return {n["handover_id"] for n in r.json()["items"]}

    assert hid in mine("m1")
    assert hid not in mine("m2")


def test_a_leaving_manager_sees_their_own_handover_and_manages_none_of_it(
    client: TestClient, auth: Any, db: Database, company: Any
) -> None:
    """m1 leaves. Their subtree holds them too, so before this rule m1 could re-plan, cancel or complete their own
    exit (approve was already refused: only the leaver's manager approves). Now: 403 on every managing route,
    nothing written; m1 still reads it, and the ceo (m1's manager) manages it."""
    hid = open_for(client, auth, "m1")
    m1 = auth("manager", emp="m1")
    assert client.get(f"/v1/handovers/{hid}", headers=m1).status_code == 200
    assert hid in [h["id"] for h in client.get("/v1/handovers", headers=m1).json()["items"]]
    before = state(db)
    forbidden(client.post(f"/v1/handovers/{hid}/plan", headers=m1))
    forbidden(client.post(f"/v1/handovers/{hid}/plan?dry_run=true", headers=m1))
    forbidden(client.post("/v1/handover-plans", json={"handover_ids": [hid]}, headers=m1))
    forbidden(client.post(f"/v1/handovers/{hid}/cancel", json={"reason": "changed my mind"}, headers=m1))
    assert state(db) == before
    ceo = auth("manager", emp="ceo")
    r = client.post(f"/v1/handovers/{hid}/plan", headers=ceo)
    assert r.status_code == 200, r.text
    before = state(db)
    forbidden(client.post(f"/v1/handovers/{hid}/approve", headers=m1))
    forbidden(client.post("/v1/handover-approvals", json={"handover_ids": [hid]}, headers=m1))
    forbidden(client.post(f"/v1/handovers/{hid}/cancel", headers=m1))
    assert state(db) == before
    r = client.post(f"/v1/handovers/{hid}/cancel", json={"reason": "stays after all"}, headers=ceo)
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
