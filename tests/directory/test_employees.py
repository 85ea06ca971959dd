"""Employees: upsert by external id, read, list with filters and pages, batches, audit."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from fastapi.testclient import TestClient

from app.core.clock import ManualClock
from app.core.db import Database
from tests.conftest import START
from tests.support.directory import (
    assert_problem,
    audit_entries,
    batch_employees,
    employee_body,
    employee_item,
    ok,
    parse_time,
    snapshot,
)

Auth = Callable[..., dict[str, str]]


def test_put_employee_creates_then_replaces(client: TestClient, auth: Auth, clock: ManualClock) -> None:
    hr = auth("hr")
    created = client.put(
        "/v1/employees/E-1",
        json=employee_body(
            email="Ada@Example.COM", skills=["retail", "banking", "retail"], languages=["zh-CN", "en", "zh-CN"]
        ),
        headers=hr,
    )
    assert created.status_code == 201, created.text
    assert created.headers["content-type"].startswith("application/json")
    body = created.json()
    assert body["external_id"] == "E-1"
    assert body["email"] == "ada@example.com"
    assert body["skills"] == ["banking", "retail"]
    assert body["languages"] == ["zh-CN", "en"]
    assert body["manager"] is None
    assert body["capacity"] == 20.0
    assert parse_time(body["created_at"]) == START
    assert parse_time(body["updated_at"]) == START

    later = clock.advance(dt.timedelta(hours=3))
    replaced = client.put(
        "/v1/employees/E-1",
        json={"name": "Ada King", "email": "ada.king@example.com", "seniority": 4},
        headers=hr,
    )
    assert replaced.status_code == 200, replaced.text
    body = replaced.json()
    assert body["name"] == "Ada King"
    assert body["seniority"] == 4
    # PUT replaces the whole record: omitted fields take their defaults.
    assert body["title"] is None
    assert body["skills"] == [] and body["regions"] == [] and body["languages"] == []
    assert body["clearance"] == 1 and body["capacity"] == 20.0 and body["status"] == "active"
    assert parse_time(body["created_at"]) == START
    assert parse_time(body["updated_at"]) == later

    fetched = ok(client.get("/v1/employees/E-1", headers=hr))
    assert fetched == body


def test_get_employee_round_trips_every_field(client: TestClient, auth: Auth) -> None:
    hr = auth("hr")
    ok(client.put("/v1/employees/boss", json=employee_body(name="Boss", email="boss@example.com"), headers=hr), 201)
    exit_at = "2026-12-31T17:00:00+01:00"
    payload = employee_body(
        name="王小明",
        email="xiaoming@example.com",
        title="Principal",
        seniority=4,
        manager="boss",
        regions=["apac", "emea"],
        clearance=3,
        capacity=12.5,
        status="leaving",
        exit_at=exit_at,
    )
    ok(client.put("/v1/employees/wang.xm@corp", json=payload, headers=hr), 201)
    got = ok(client.get("/v1/employees/wang.xm@corp", headers=auth("admin")))
    assert got["name"] == "王小明"
    assert got["manager"] == "boss"
    assert got["clearance"] == 3 and got["seniority"] == 4 and got["capacity"] == 12.5
    assert got["status"] == "leaving"
    assert parse_time(got["exit_at"]) == dt.datetime(2026, 12, 31, 16, 0, tzinfo=dt.UTC)
    assert got["regions"] == ["apac", "emea"]


def test_exit_at_far_but_storable_is_accepted(client: TestClient, auth: Auth) -> None:
    hr = auth("hr")
    for exit_at in ("1900-01-01T00:00:00Z", "2199-12-31T23:00:00+09:00"):
        body = ok(client.put("/v1/employees/e", json=employee_body(exit_at=exit_at), headers=hr), 200, 201)
        assert parse_time(body["exit_at"]) == parse_time(exit_at)


def test_get_unknown_employee_is_404(client: TestClient, auth: Auth) -> None:
    assert_problem(client.get("/v1/employees/nobody", headers=auth("hr")), 404)


def test_manager_can_be_cleared(client: TestClient, auth: Auth) -> None:
    hr = auth("hr")
    batch_employees(client, hr, [employee_item("m"), employee_item("r", manager="m")])
    assert ok(client.get("/v1/employees/r", headers=hr))["manager"] == "m"
    body = ok(client.put("/v1/employees/r", json=employee_body(manager=None), headers=hr))
    assert body["manager"] is None


def _seed_people(client: TestClient, hr: dict[str, str]) -> None:
    batch_employees(
        client,
        hr,
        [
            employee_item("boss", name="Grace Hopper"),
            employee_item("e01", name="王伟", manager="boss"),
            employee_item("e02", name="Wang Fang", email="fang@corp.example", manager="boss", status="leaving"),
            employee_item("e03", name="李娜", manager="e01", status="departed"),
            employee_item("e04", name="Alan 100%_Turing", manager="e01"),
            employee_item("e05", name="Barbara Liskov", email="wang.barbara@example.com", manager="boss"),
        ],
    )


def _ids(page: dict) -> list[str]:
    return [item["external_id"] for item in page["items"]]


def test_list_employees_filters(client: TestClient, auth: Auth) -> None:
    hr = auth("hr")
    _seed_people(client, hr)

    def ids(**params: str) -> list[str]:
        return _ids(ok(client.get("/v1/employees", params=params, headers=hr)))

    assert ids() == ["boss", "e01", "e02", "e03", "e04", "e05"]
    assert ids(status="leaving") == ["e02"]
    assert ids(status="departed") == ["e03"]
    assert ids(status="active") == ["boss", "e01", "e04", "e05"]
    assert ids(manager="boss") == ["e01", "e02", "e05"]
    assert ids(manager="e01") == ["e03", "e04"]
    assert ids(manager="e01", status="active") == ["e04"]
    assert ids(manager="nobody") == []
    # q matches name or email, case-insensitively, including CJK names.
    assert ids(q="王") == ["e01"]
    assert ids(q="李娜") == ["e03"]
    assert ids(q="wang") == ["e02", "e05"]
    assert ids(q="WANG FANG") == ["e02"]
    assert ids(q="corp.example") == ["e02"]
    # LIKE wildcards in q are literal.
    assert ids(q="100%_") == ["e04"]
    assert ids(q="%") == ["e04"]
    assert ids(q="_") == ["e04"]


def test_list_employee_filters_reject_bad_values(client: TestClient, auth: Auth) -> None:
    hr = auth("hr")
    assert_problem(client.get("/v1/employees", params={"status": "retired"}, headers=hr), 422, loc=["query", "status"])
    assert_problem(client.get("/v1/employees", params={"manager": "bad id"}, headers=hr), 422, loc=["query", "manager"])
    assert_problem(client.get("/v1/employees", params={"q": ""}, headers=hr), 422, loc=["query", "q"])
    assert_problem(client.get("/v1/employees", params={"q": "x" * 101}, headers=hr), 422, loc=["query", "q"])
    # NUL used to reach PostgreSQL and answer 500.
    assert_problem(client.get("/v1/employees", params={"q": "a\x00"}, headers=hr), 422, loc=["query", "q"])


def test_list_employees_pagination(client: TestClient, auth: Auth) -> None:
    hr = auth("hr")
    batch_employees(client, hr, [employee_item(f"p{i:02d}") for i in range(5)])

    first = ok(client.get("/v1/employees", params={"limit": 2}, headers=hr))
    assert _ids(first) == ["p00", "p01"]
    assert (first["limit"], first["offset"], first["next_offset"]) == (2, 0, 2)
    second = ok(client.get("/v1/employees", params={"limit": 2, "offset": 2}, headers=hr))
    assert _ids(second) == ["p02", "p03"] and second["next_offset"] == 4
    last = ok(client.get("/v1/employees", params={"limit": 2, "offset": 4}, headers=hr))
    assert _ids(last) == ["p04"] and last["next_offset"] is None
    # A page that ends exactly at the last row is the last page.
    exact = ok(client.get("/v1/employees", params={"limit": 5}, headers=hr))
    assert len(exact["items"]) == 5 and exact["next_offset"] is None
    beyond = ok(client.get("/v1/employees", params={"offset": 50}, headers=hr))
    assert beyond["items"] == [] and beyond["next_offset"] is None
    default = ok(client.get("/v1/employees", headers=hr))
    assert default["limit"] == 50 and default["next_offset"] is None
    assert ok(client.get("/v1/employees", params={"limit": 200}, headers=hr))["limit"] == 200

    # Walking next_offset visits every row once.
    seen: list[str] = []
    offset: int | None = 0
    while offset is not None:
        page = ok(client.get("/v1/employees", params={"limit": 2, "offset": offset}, headers=hr))
        seen += _ids(page)
        offset = page["next_offset"]
    assert seen == [f"p{i:02d}" for i in range(5)]


def test_list_employees_pagination_limits(client: TestClient, auth: Auth) -> None:
    hr = auth("hr")
    for params in (
        {"limit": 201},
        {"limit": 1000},
        {"limit": 1001},
        {"limit": 0},
        {"limit": -1},
        {"limit": "ten"},
        {"offset": -1},
    ):
        key = next(iter(params))
        assert_problem(client.get("/v1/employees", params=params, headers=hr), 422, loc=["query", key])


def test_batch_employees_reference_each_other_in_any_order(client: TestClient, auth: Auth, db: Database) -> None:
    hr = auth("hr")
    # Reports come before their managers, and one manager comes from the database.
    ok(client.put("/v1/employees/ceo", json=employee_body(), headers=hr), 201)
    result = batch_employees(
        client,
        hr,
        [
            employee_item("am-2", manager="lead"),
            employee_item("am-1", manager="lead"),
            employee_item("lead", manager="vp"),
            employee_item("vp", manager="ceo"),
        ],
    )
    assert result == {"created": 4, "updated": 0, "external_ids": ["am-2", "am-1", "lead", "vp"]}
    managers = {e["external_id"]: e["manager"] for e in ok(client.get("/v1/employees", headers=hr))["items"]}
    assert managers == {"ceo": None, "vp": "ceo", "lead": "vp", "am-1": "lead", "am-2": "lead"}

    # A second batch mixes updates and creations and can re-point managers.
    result = batch_employees(
        client,
        hr,
        [employee_item("am-3", manager="am-1"), employee_item("am-1", manager="vp"), employee_item("vp")],
    )
    assert result == {"created": 1, "updated": 2, "external_ids": ["am-3", "am-1", "vp"]}
    assert ok(client.get("/v1/employees/am-1", headers=hr))["manager"] == "vp"
    assert ok(client.get("/v1/employees/am-3", headers=hr))["manager"] == "am-1"
    assert ok(client.get("/v1/employees/vp", headers=hr))["manager"] is None
    assert len(snapshot(db)["employee"]) == 6


def test_batch_employees_keep_created_at(client: TestClient, auth: Auth, clock: ManualClock) -> None:
    hr = auth("hr")
    batch_employees(client, hr, [employee_item("a"), employee_item("b")])
    later = clock.advance(dt.timedelta(days=1))
    batch_employees(client, hr, [employee_item("a", name="A renamed"), employee_item("c")])
    rows = {e["external_id"]: e for e in ok(client.get("/v1/employees", headers=hr))["items"]}
    assert rows["a"]["name"] == "A renamed"
    assert parse_time(rows["a"]["created_at"]) == START and parse_time(rows["a"]["updated_at"]) == later
    assert parse_time(rows["b"]["updated_at"]) == START
    assert parse_time(rows["c"]["created_at"]) == later


def test_employee_upserts_are_audited(client: TestClient, auth: Auth, clock: ManualClock) -> None:
    hr = auth("hr", sub="hr-sync")
    ok(client.put("/v1/employees/E-1", json=employee_body(), headers=hr), 201)
    clock.advance(dt.timedelta(minutes=5))
    ok(client.put("/v1/employees/E-1", json=employee_body(title="Lead"), headers=hr), 200)
    integration = auth("integration", sub="workday", scope="directory:read directory:write")
    batch_employees(client, integration, [employee_item("E-2"), employee_item("E-1"), employee_item("E-3")])

    entries = audit_entries(client, auth("auditor"), entity_type="employee")
    assert [(e["action"], e["entity_id"], e["actor"]) for e in entries] == [
        ("employee.created", "E-1", "hr:hr-sync"),
        ("employee.updated", "E-1", "hr:hr-sync"),
        ("employee.created", "E-2", "integration:workday"),
        ("employee.updated", "E-1", "integration:workday"),
        ("employee.created", "E-3", "integration:workday"),
    ]
    assert all(e["entity_type"] == "employee" for e in entries)
    assert entries[1]["data"]["title"] == "Lead"
    assert parse_time(entries[0]["occurred_at"]) == START
    assert parse_time(entries[1]["occurred_at"]) == START + dt.timedelta(minutes=5)
    verify = ok(client.get("/v1/audit/verify", headers=auth("auditor")))
    assert verify["ok"] is True and verify["total"] == verify["count"] == 5
