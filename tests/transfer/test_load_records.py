"""The book in a successor's load (issue 16 point 2): off by default; when the company counts open deal amounts or
open cases, a successor who holds them has less room, in planning, in a manual override and at approval."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.core.config import Settings

BIG_DEAL = {"kind": "deal", "external_id": "d-e1", "title": "Group-wide renewal", "owner": "e1", "client": None}
BIG_DEAL |= {"amount": 1_000_000, "currency": "EUR", "stage": "negotiation"}
# e1 has capacity 20 and no clients: one point per 50,000 of open deal amount fills them.
AMOUNT_PER_POINT = 50_000.0


Count = Callable[..., None]


@pytest.fixture
def count(app: FastAPI) -> Iterator[Count]:
    """Sets the app's settings with these load rules (none: back to the test settings); restored after the test."""
    before: Settings = app.state.settings

    def counting(**update: float) -> None:
        app.state.settings = before.model_copy(update=update)

    yield counting
    app.state.settings = before


def _dry_run(http: TestClient, auth: Any, hid: int) -> dict[str, Any]:
    r = http.post(f"/v1/handovers/{hid}/plan", params={"dry_run": "true"}, headers=auth("hr"))
    assert r.status_code == 200, r.text
    return r.json()


def _successors(summary: dict[str, Any]) -> set[str]:
    return {p["successor"] for p in summary["proposals"] if p["successor"]}


def test_off_by_default_and_on_the_deal_amount_fills_a_successor(
    client: TestClient, auth: Any, open_handover: int, app: FastAPI, count: Count
) -> None:
    assert app.state.settings.load_open_deal_amount_per_point == 0 and app.state.settings.load_points_per_open_case == 0
    assert client.post("/v1/records/batch", json={"items": [BIG_DEAL]}, headers=auth("hr")).status_code == 200
    off = _dry_run(client, auth, open_handover)
    assert "e1" in _successors(off)  # the deal does not count: e1 has room
    count(load_open_deal_amount_per_point=AMOUNT_PER_POINT)
    on = _dry_run(client, auth, open_handover)
    assert "e1" not in _successors(on)  # 20 points of deals: e1 is full
    assert {p["client"] for p in on["proposals"]} == {p["client"] for p in off["proposals"]}


def test_open_cases_count_and_a_manual_override_is_checked_against_them(
    client: TestClient, auth: Any, open_handover: int, app: FastAPI, count: Count
) -> None:
    cases = [
        {"kind": "case", "external_id": f"s-{n}", "title": "Escalation", "owner": "e1", "client": None}
        for n in range(4)
    ]
    cases.append(cases[0] | {"external_id": "s-closed", "status": "closed"})  # a closed case weighs nothing
    assert client.post("/v1/records/batch", json={"items": cases}, headers=auth("hr")).status_code == 200
    r = client.post(f"/v1/handovers/{open_handover}/plan", headers=auth("hr"))
    assert r.status_code == 200, r.text
    items = client.get(f"/v1/handovers/{open_handover}/items", headers=auth()).json()["items"]
    strategic = next(i for i in items if i["tier"] == "strategic" and i["successor"] != "e1")
    # Off: e1 (capacity 20) may take the strategic client (5 points) by hand.
    url = f"/v1/handovers/{open_handover}/items/{strategic['id']}"
    # On: 4 open cases × 4 points = 16, plus what planning gave e1 already, leaves no room for 5 more.
    count(load_points_per_open_case=4.0)
    r = client.patch(url, json={"successor": "e1"}, headers=auth("hr") | {"If-Match": _etag(client, auth, url)})
    assert r.status_code == 422, r.text
    assert any("capacity" in e["msg"] for e in r.json()["errors"]), r.json()
    count()
    r = client.patch(url, json={"successor": "e1"}, headers=auth("hr") | {"If-Match": _etag(client, auth, url)})
    assert r.status_code == 200, r.text


def test_the_approval_recheck_counts_them(
    client: TestClient, auth: Any, open_handover: int, app: FastAPI, count: Count
) -> None:
    r = client.post(f"/v1/handovers/{open_handover}/plan", headers=auth("hr"))
    assert r.status_code == 200, r.text
    items = client.get(f"/v1/handovers/{open_handover}/items", headers=auth()).json()["items"]
    given = [i["client"] for i in items if i["successor"] == "e1"]
    assert given
    # The deal arrives after planning; counted, it fills e1, so approval re-plans e1's items.
    assert client.post("/v1/records/batch", json={"items": [BIG_DEAL]}, headers=auth("hr")).status_code == 200
    count(load_open_deal_amount_per_point=AMOUNT_PER_POINT)
    r = client.post(f"/v1/handovers/{open_handover}/approve", headers=auth("manager", emp="m1"))
    assert r.status_code == 200, r.text
    replanned = {x["client"]: x for x in r.json()["replanned"]}
    assert set(given) <= set(replanned), replanned
    assert all("capacity" in replanned[c]["problem"] and replanned[c]["previous_successor"] == "e1" for c in given)
    after = client.get(f"/v1/handovers/{open_handover}/items", headers=auth()).json()["items"]
    assert all(i["successor"] != "e1" for i in after)


def _etag(http: TestClient, auth: Any, url: str) -> str:
    r = http.get(url, headers=auth())
    assert r.status_code == 200, r.text
    return r.headers["etag"]
