"""The plan shows, per item and per handover, the open records that go with the clients (issue 16 point 2): counts
and value per kind, from one grouped query per request."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event

from app.core.clock import ManualClock
from app.core.db import Database
from tests.support.book import load_book
from tests.support.company import EFFECTIVE, approve, plan

C0 = {
    "deal": {"count": 2, "value": {"EUR": 50000.0, "USD": 700.0}},
    "contract": {"count": 2, "value": {"EUR": 200000.0}},
    "invoice": {"count": 2, "value": {"EUR": 1550.5}},
    "case": {"count": 1, "value": {}},
    "meeting": {"count": 2, "value": {}},
    "project": {"count": 1, "value": {}},
}
C1 = {"deal": {"count": 1, "value": {"GBP": 10.0}}, "task": {"count": 1, "value": {}}}


def _books(http: TestClient, auth: Any) -> None:
    load_book(http, auth, "c0")
    rows = [
        {"kind": "deal", "external_id": "d-c1", "title": "Treasury", "owner": "e0", "client": "c1", "amount": 10}
        | {"currency": "GBP"},
        {"kind": "task", "external_id": "t-c1", "title": "Send the offer", "owner": "e0", "client": "c1"},
        # Not the leaver's: a colleague's deal on c1 stays with them, so it does not go with the client.
        {"kind": "deal", "external_id": "d-c1-e1", "title": "FX", "owner": "e1", "client": "c1", "amount": 5}
        | {"currency": "GBP"},
        # The leaver's own automation has no client: it goes with no item.
        {"kind": "automation", "external_id": "a-e0", "title": "Weekly digest", "owner": "e0", "client": None},
    ]
    r = http.post("/v1/records/batch", json={"items": rows}, headers=auth("hr"))
    assert r.status_code == 200, r.text


def _summary(*books: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for b in books:
        for kind, t in b.items():
            have = out.setdefault(kind, {"count": 0, "value": {}})
            have["count"] += t["count"]
            for cur, v in t["value"].items():
                have["value"][cur] = have["value"].get(cur, 0.0) + v
    return out


def test_items_and_the_handover_show_the_records_that_go_with_the_clients(
    client: TestClient, auth: Any, clock: ManualClock, open_handover: int
) -> None:
    _books(client, auth)
    r = client.post(f"/v1/handovers/{open_handover}/plan", params={"dry_run": "true"}, headers=auth("hr"))
    assert r.status_code == 200, r.text
    proposals = {p["client"]: p for p in r.json()["proposals"]}
    assert proposals["c0"]["records"] == C0 and proposals["c1"]["records"] == C1 and proposals["c2"]["records"] == {}

    plan(client, auth, open_handover)
    items = {i["client"]: i for i in client.get(f"/v1/handovers/{open_handover}/items", headers=auth()).json()["items"]}
    assert items["c0"]["records"] == C0 and items["c1"]["records"] == C1
    assert all(items[c]["records"] == {} for c in items if c not in ("c0", "c1"))
    one = client.get(f"/v1/handovers/{open_handover}/items/{items['c1']['id']}", headers=auth()).json()
    assert one["records"] == C1
    header = client.get(f"/v1/handovers/{open_handover}", headers=auth()).json()
    assert header["records"] == _summary(C0, C1)
    listed = client.get("/v1/handovers", headers=auth()).json()["items"]
    assert next(h for h in listed if h["id"] == open_handover)["records"] == _summary(C0, C1)

    # A participant's header adds up their own items' records only.
    succ = items["c1"]["successor"]
    assert succ and succ != items["c0"]["successor"]
    mine = client.get(f"/v1/handovers/{open_handover}", headers=auth("account_manager", sub="s", emp=succ)).json()
    assert mine["view"] == "own" and mine["records"] == C1

    # After execution the records are the receiver's: still the ones that went with the client.
    approve(client, auth, open_handover)
    clock.set(EFFECTIVE + dt.timedelta(hours=1))
    assert client.post(f"/v1/handovers/{open_handover}/execute", headers=auth()).status_code == 200
    items = {i["client"]: i for i in client.get(f"/v1/handovers/{open_handover}/items", headers=auth()).json()["items"]}
    assert items["c0"]["status"] in ("transferred", "confirmed")
    # The meeting due within the transition period stays with the leaver (the record rules); the rest went along.
    assert items["c0"]["records"] == C0 | {"meeting": {"count": 1, "value": {}}}
    # c1's receiver already held a deal on it: after the move the item counts what its receiver holds there.
    assert items["c1"]["transferred_to"] == "e1"
    assert items["c1"]["records"] == C1 | {"deal": {"count": 2, "value": {"GBP": 15.0}}}
    r = client.get("/v1/records", params={"owner": items["c0"]["transferred_to"], "client": "c0"}, headers=auth())
    assert r.status_code == 200 and {x["external_id"] for x in r.json()["items"]} >= {"d-big", "i-late"}


def test_one_grouped_query_per_request(client: TestClient, auth: Any, open_handover: int, db: Database) -> None:
    _books(client, auth)
    for c in ("c2", "c3", "c4", "c5"):
        row = {"kind": "deal", "external_id": f"d-{c}", "title": "Deal", "owner": "e0", "client": c, "amount": 1}
        assert client.post("/v1/records/batch", json={"items": [row | {"currency": "EUR"}]}, headers=auth("hr"))
    plan(client, auth, open_handover)
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        items = client.get(f"/v1/handovers/{open_handover}/items", headers=auth()).json()["items"]
        on_items = [q for q in statements if "FROM record" in q or "JOIN record" in q]
        statements.clear()
        client.get("/v1/handovers", headers=auth())
        on_list = [q for q in statements if "FROM record" in q or "JOIN record" in q]
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert sum(1 for i in items if i["records"]) == 6
    assert len(on_items) == 1 and len(on_list) == 1, (on_items, on_list)
