"""A small company shared by workflow tests: manager m1 with reports e0 (the leaver) … e4; another team under m2."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import START

EFFECTIVE = START + dt.timedelta(days=14)
TIERS = ["strategic", "key", "standard", "prospect"]


def employees() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {
            "external_id": "ceo",
            "name": "CEO",
            "email": "ceo@example.com",
            "seniority": 4,
            "clearance": 3,
            "capacity": 0,
        },
        {
            "external_id": "m1",
            "name": "Mia Manager",
            "email": "m1@example.com",
            "seniority": 4,
            "clearance": 3,
            "capacity": 30,
            "manager": "ceo",
            "languages": ["en", "zh"],
        },
        {
            "external_id": "m2",
            "name": "Max Manager",
            "email": "m2@example.com",
            "seniority": 4,
            "clearance": 3,
            "capacity": 30,
            "manager": "ceo",
        },
        {
            "external_id": "e0",
            "name": "Leo Leaver",
            "email": "e0@example.com",
            "seniority": 3,
            "clearance": 3,
            "capacity": 40,
            "manager": "m1",
            "skills": ["banking"],
            "languages": ["zh", "en"],
        },
        {
            "external_id": "e1",
            "name": "王芳",
            "email": "e1@example.com",
            "seniority": 3,
            "clearance": 3,
            "capacity": 20,
            "manager": "m1",
            "skills": ["banking"],
            "languages": ["zh"],
            "regions": ["cn-east"],
        },
        {
            "external_id": "e2",
            "name": "Sam Senior",
            "email": "e2@example.com",
            "seniority": 3,
            "clearance": 2,
            "capacity": 12,
            "manager": "m1",
            "skills": ["retail"],
            "languages": ["en"],
        },
        {
            "external_id": "e3",
            "name": "Jo Junior",
            "email": "e3@example.com",
            "seniority": 1,
            "clearance": 1,
            "capacity": 10,
            "manager": "m1",
            "skills": ["banking"],
            "languages": ["zh"],
        },
        {
            "external_id": "e4",
            "name": "Mo Mid",
            "email": "e4@example.com",
            "seniority": 2,
            "clearance": 2,
            "capacity": 10,
            "manager": "m1",
            "skills": ["retail", "banking"],
            "languages": ["en"],
        },
        {
            "external_id": "x1",
            "name": "Other Team",
            "email": "x1@example.com",
            "seniority": 3,
            "clearance": 3,
            "capacity": 20,
            "manager": "m2",
        },
    ]
    return rows


def clients(n: int = 8, owner: str = "e0") -> list[dict[str, Any]]:
    return [
        {
            "external_id": f"c{i}",
            "name": f"客户 {i}",
            "tier": TIERS[i % 4],
            "owner": owner,
            "industry": "banking" if i % 2 else "retail",
            "language": "zh-CN" if i % 2 else "en",
            "region": "cn-east",
            "sensitivity": 1 + (i % 2),
            "contacts": [
                {"name": f"Contact {i}", "email": f"c{i}@client.example", "locale": "zh-CN" if i % 2 else "en"}
            ],
        }
        for i in range(n)
    ]


@pytest.fixture
def company(client: TestClient, auth: Any) -> dict[str, Any]:
    r = client.post("/v1/employees/batch", json={"items": employees()}, headers=auth("hr"))
    assert r.status_code == 200, r.text
    r = client.post("/v1/clients/batch", json={"items": clients()}, headers=auth("hr"))
    assert r.status_code == 200, r.text
    return {"leaver": "e0", "manager": "m1"}


@pytest.fixture
def open_handover(client: TestClient, auth: Any, company: dict[str, Any]) -> int:
    r = client.post(
        "/v1/handovers",
        json={"leaver": "e0", "reason": "resignation", "effective_at": EFFECTIVE.isoformat()},
        headers=auth("hr"),
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def open_for(
    client: TestClient, auth: Any, leaver: str, effective_at: dt.datetime = EFFECTIVE, reason: str = "termination"
) -> int:
    """Opens a handover for `leaver` as hr; returns its id."""
    r = client.post(
        "/v1/handovers",
        json={"leaver": leaver, "reason": reason, "effective_at": effective_at.isoformat()},
        headers=auth("hr"),
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def plan(client: TestClient, auth: Any, hid: int) -> Any:
    r = client.post(f"/v1/handovers/{hid}/plan", headers=auth("hr"))
    assert r.status_code == 200, r.text
    return r.json()


def approve(client: TestClient, auth: Any, hid: int) -> Any:
    r = client.post(f"/v1/handovers/{hid}/approve", headers=auth("manager", emp="m1"))
    assert r.status_code == 200, r.text
    return r.json()


def second_leaver(client: TestClient, auth: Any) -> None:
    # e1 leaves too, with four clients of their own (ids d0…d3).
    rows = [{**c, "external_id": f"d{i}", "owner": "e1"} for i, c in enumerate(clients(4, owner="e1"))]
    for r in rows:
        r["contacts"] = [{**r["contacts"][0], "email": f"{r['external_id']}@client.example"}]
    assert client.post("/v1/clients/batch", json={"items": rows}, headers=auth("hr")).status_code == 200
