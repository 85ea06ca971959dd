"""Risk shapes the plan: riskier clients get the better fits, and every item explains its risk."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import START
from tests.support.company import EFFECTIVE


def _people(client: TestClient, auth: Any) -> None:
    emps = [
        {"external_id": "m1", "name": "M", "email": "m1@example.com", "seniority": 4, "clearance": 3, "capacity": 0},
        {
            "external_id": "L",
            "name": "Leaver",
            "email": "l@example.com",
            "seniority": 3,
            "clearance": 3,
            "manager": "m1",
            "skills": ["banking"],
            "languages": ["zh"],
            "regions": ["cn-east"],
        },
        {
            "external_id": "good",
            "name": "Good Fit",
            "email": "g@example.com",
            "seniority": 3,
            "clearance": 3,
            "capacity": 1,
            "manager": "m1",
            "skills": ["banking"],
            "languages": ["zh"],
            "regions": ["cn-east"],
        },
        {
            "external_id": "poor",
            "name": "Poor Fit",
            "email": "p@example.com",
            "seniority": 3,
            "clearance": 3,
            "capacity": 50,
            "manager": "m1",
            "skills": ["retail"],
            "languages": ["en"],
            "regions": ["emea"],
        },
    ]
    assert client.post("/v1/employees/batch", json={"items": emps}, headers=auth("hr")).status_code == 200
    base = {
        "tier": "standard",
        "owner": "L",
        "industry": "banking",
        "language": "zh-CN",
        "region": "cn-east",
        "relationship_since": "2016-01-01",
    }
    cls = [
        {
            **base,
            "external_id": "calm",
            "name": "Calm Co",
            "annual_value": 10_000,
            "satisfaction": 10,
            "open_issues": 0,
            "last_contact_at": (START - dt.timedelta(days=2)).isoformat(),
        },
        {
            **base,
            "external_id": "angry",
            "name": "Angry Co",
            "annual_value": 900_000,
            "satisfaction": 1,
            "open_issues": 12,
            "renewal_at": (START + dt.timedelta(days=30)).date().isoformat(),
            "last_contact_at": (START - dt.timedelta(days=200)).isoformat(),
        },
    ]
    assert client.post("/v1/clients/batch", json={"items": cls}, headers=auth("hr")).status_code == 200


def test_the_riskier_client_gets_the_better_fit(client: TestClient, auth: Any, db: Any) -> None:
    _people(client, auth)
    body = {"leaver": "L", "reason": "resignation", "effective_at": EFFECTIVE.isoformat()}
    hid = client.post("/v1/handovers", json=body, headers=auth("hr")).json()["id"]
    pool = {"candidate_pool": {"kind": "list", "employees": ["good", "poor"]}}
    assert client.post(f"/v1/handovers/{hid}/plan", json=pool, headers=auth("hr")).status_code == 200
    items = {i["client"]: i for i in client.get(f"/v1/handovers/{hid}/items", headers=auth()).json()["items"]}
    assert items["angry"]["risk_score"] > items["calm"]["risk_score"]
    assert items["angry"]["successor"] == "good" and items["calm"]["successor"] == "poor"
    # Every item explains its risk: band, factors, contributions, mitigations on the checklist.
    angry = items["angry"]
    assert angry["risk_band"] in ("high", "critical") and angry["exposure"] > 0
    assert angry["risk"]["contributions"] and angry["risk"]["factors"]["satisfaction"] == 1
    mitigations = [k for k in angry["checklist"] if k.startswith("mitigation:")]
    assert mitigations and all(angry["checklist"][k]["done"] is False for k in mitigations)
    handover = client.get(f"/v1/handovers/{hid}", headers=auth()).json()
    assert handover["total_exposure"] == round(angry["exposure"] + items["calm"]["exposure"], 2)
    assert sum(handover["risk_bands"].values()) == 2 and "unscored" not in handover["risk_bands"]


def test_a_mitigation_can_be_ticked_off(client: TestClient, auth: Any, db: Any) -> None:
    _people(client, auth)
    body = {"leaver": "L", "reason": "termination", "effective_at": EFFECTIVE.isoformat()}
    hid = client.post("/v1/handovers", json=body, headers=auth("hr")).json()["id"]
    client.post(f"/v1/handovers/{hid}/plan", headers=auth("hr"))
    assert client.post(f"/v1/handovers/{hid}/approve", headers=auth("manager", emp="m1")).status_code == 200
    items = client.get(f"/v1/handovers/{hid}/items", headers=auth()).json()["items"]
    angry = next(i for i in items if i["client"] == "angry")
    key = next(k for k in angry["checklist"] if k.startswith("mitigation:"))
    url = f"/v1/handovers/{hid}/items/{angry['id']}/checklist/{key}"
    r = client.put(url, json={"done": True, "note": "called the CFO"}, headers=auth("manager", emp="m1"))
    assert r.status_code == 200 and r.json()["checklist"][key]["done"] is True
    missing = f"/v1/handovers/{hid}/items/{angry['id']}/checklist/mitigation:not_there"
    assert client.put(missing, json={"done": True}, headers=auth("admin")).status_code == 404


def test_simulation_reports_risk(client: TestClient, auth: Any, db: Any) -> None:
    _people(client, auth)
    r = client.post(
        "/v1/simulations",
        json={"leavers": ["L"], "effective_at": EFFECTIVE.isoformat(), "include_items": True},
        headers=auth("hr"),
    )
    body = r.json()
    assert sum(body["risk_distribution"].values()) == 2 and body["total_exposure"] > 0
    assert all(i["risk_band"] for i in body["items"])
