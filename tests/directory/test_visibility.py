"""Who may see and write which directory records: scopes, then object-level rules."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from app.core.db import Database
from app.directory.models import Employee
from tests.support.directory import (
    assert_problem,
    batch_clients,
    batch_employees,
    client_body,
    client_item,
    employee_body,
    employee_item,
    ok,
    snapshot,
)

Auth = Callable[..., dict[str, str]]

# boss ─┬─ m1 ─┬─ lead1 ── am1 ── jr1
#       │      └─ am2
#       └─ m2 ─── am3
ORG = [
    employee_item("boss"),
    employee_item("m1", manager="boss"),
    employee_item("m2", manager="boss"),
    employee_item("lead1", manager="m1"),
    employee_item("am1", manager="lead1"),
    employee_item("jr1", manager="am1"),
    employee_item("am2", manager="m1"),
    employee_item("am3", manager="m2"),
]
CLIENTS = [
    client_item("c-am1", "am1"),  # m1's indirect report owns it
    client_item("c-am2", "am2"),  # m1's direct report owns it
    client_item("c-am3-team", "am3", account_team=[{"employee": "am1", "role": "cover"}]),
    client_item("c-am3", "am3"),  # another team's, nobody of m1's on it
    client_item("c-m2", "m2"),
    client_item("c-jr1", "jr1"),  # am1's report: am1 is not a manager, so does not see it
]
ALL_CLIENTS = sorted(c["external_id"] for c in CLIENTS)
ALL_EMPLOYEES = sorted(e["external_id"] for e in ORG)


@pytest.fixture
def org(client: TestClient, auth: Auth) -> TestClient:
    hr = auth("hr")
    batch_employees(client, hr, ORG)
    batch_clients(client, hr, CLIENTS)
    return client


def _client_ids(client: TestClient, headers: dict[str, str], **params: str) -> list[str]:
    return [c["external_id"] for c in ok(client.get("/v1/clients", params=params, headers=headers))["items"]]


def _employee_ids(client: TestClient, headers: dict[str, str], **params: str) -> list[str]:
    return [e["external_id"] for e in ok(client.get("/v1/employees", params=params, headers=headers))["items"]]


def _visible_one_by_one(client: TestClient, headers: dict[str, str]) -> list[str]:
    seen = []
    for cid in ALL_CLIENTS:
        response = client.get(f"/v1/clients/{cid}", headers=headers)
        if response.status_code == 200:
            seen.append(cid)
        else:
            body = assert_problem(response, 404)
            assert body["type"] == "urn:handover:problem:client-not-found"
    return seen


def test_account_manager_sees_owned_and_team_clients_only(org: TestClient, auth: Auth) -> None:
    am1 = auth("account_manager", emp="am1")
    visible = ["c-am1", "c-am3-team"]
    assert _client_ids(org, am1) == visible
    assert _visible_one_by_one(org, am1) == visible
    # Hidden clients look exactly like missing ones: 404, never 403.
    hidden = assert_problem(org.get("/v1/clients/c-am2", headers=am1), 404)
    missing = assert_problem(org.get("/v1/clients/c-nope", headers=am1), 404)
    assert (hidden["type"], hidden["title"]) == (missing["type"], missing["title"])
    # Filters narrow within what is visible, never widen it.
    assert _client_ids(org, am1, owner="am3") == ["c-am3-team"]
    assert _client_ids(org, am1, owner="am2") == []
    assert _client_ids(org, am1, manager="m1") == []
    assert _client_ids(org, am1, manager="lead1") == ["c-am1"]
    page = ok(org.get("/v1/clients", params={"limit": 1}, headers=am1))
    assert [c["external_id"] for c in page["items"]] == ["c-am1"] and page["next_offset"] == 1
    page = ok(org.get("/v1/clients", params={"limit": 1, "offset": 1}, headers=am1))
    assert [c["external_id"] for c in page["items"]] == ["c-am3-team"] and page["next_offset"] is None


def test_account_team_membership_follows_replacement(org: TestClient, auth: Auth) -> None:
    am2 = auth("account_manager", emp="am2")
    assert _client_ids(org, am2) == ["c-am2"]
    hr = auth("hr")
    body = client_body("am3", account_team=[{"employee": "am2", "role": "cover"}])
    ok(org.put("/v1/clients/c-am3", json=body, headers=hr))
    assert _client_ids(org, am2) == ["c-am2", "c-am3"]
    ok(org.get("/v1/clients/c-am3", headers=am2))
    ok(org.put("/v1/clients/c-am3", json=client_body("am3"), headers=hr))
    assert _client_ids(org, am2) == ["c-am2"]
    assert_problem(org.get("/v1/clients/c-am3", headers=am2), 404)


def test_manager_sees_clients_of_direct_and_indirect_reports(org: TestClient, auth: Auth) -> None:
    m1 = auth("manager", emp="m1")
    # c-am3-team is another team's client, but m1's report am1 serves on it.
    visible = ["c-am1", "c-am2", "c-am3-team", "c-jr1"]
    assert _client_ids(org, m1) == visible
    assert _visible_one_by_one(org, m1) == visible
    assert_problem(org.get("/v1/clients/c-am3", headers=m1), 404)
    assert_problem(org.get("/v1/clients/c-m2", headers=m1), 404)

    m2 = auth("manager", emp="m2")
    assert _client_ids(org, m2) == ["c-am3", "c-am3-team", "c-m2"]
    assert_problem(org.get("/v1/clients/c-am1", headers=m2), 404)

    boss = auth("manager", emp="boss")
    assert _client_ids(org, boss) == ALL_CLIENTS
    lead = auth("manager", emp="lead1")
    assert _client_ids(org, lead) == ["c-am1", "c-am3-team", "c-jr1"]


def test_manager_visibility_survives_a_manager_cycle(client: TestClient, auth: Auth, db: Database) -> None:
    """The API refuses cycles, but rows stored before it did may hold one."""
    hr = auth("hr")
    batch_employees(
        client,
        hr,
        [
            employee_item("x"),
            employee_item("y", manager="x"),
            employee_item("z", manager="y"),
            employee_item("other"),
        ],
    )
    with db.engine.begin() as conn:
        conn.execute(update(Employee).where(Employee.external_id == "x").values(manager_id="y"))
    batch_clients(client, hr, [client_item("cx", "x"), client_item("cz", "z"), client_item("co", "other")])
    mx = auth("manager", emp="x")
    assert _client_ids(client, mx) == ["cx", "cz"]
    assert _employee_ids(client, mx) == ["x", "y", "z"]


def test_employee_visibility(org: TestClient, auth: Auth) -> None:
    # Managers see themselves and everyone below them.
    assert _employee_ids(org, auth("manager", emp="m1")) == ["am1", "am2", "jr1", "lead1", "m1"]
    assert _employee_ids(org, auth("manager", emp="m1"), manager="m1") == ["am2", "lead1"]
    assert_problem(org.get("/v1/employees/am3", headers=auth("manager", emp="m1")), 404)
    assert_problem(org.get("/v1/employees/boss", headers=auth("manager", emp="m1")), 404)
    # Account managers see themselves and their own manager.
    am1 = auth("account_manager", emp="am1")
    assert _employee_ids(org, am1) == ["am1", "lead1"]
    ok(org.get("/v1/employees/lead1", headers=am1))
    assert_problem(org.get("/v1/employees/jr1", headers=am1), 404)
    assert _employee_ids(org, auth("account_manager", emp="boss")) == ["boss"]


@pytest.mark.parametrize("role", ["account_manager", "manager"])
def test_restricted_role_without_employee_claim_sees_nothing(org: TestClient, auth: Auth, role: str) -> None:
    headers = auth(role)
    page = ok(org.get("/v1/clients", headers=headers))
    assert page["items"] == [] and page["next_offset"] is None
    assert _employee_ids(org, headers) == []
    for cid in ALL_CLIENTS:
        assert_problem(org.get(f"/v1/clients/{cid}", headers=headers), 404)
    assert_problem(org.get("/v1/employees/am1", headers=headers), 404)


def test_restricted_role_with_unknown_employee_sees_nothing(org: TestClient, auth: Auth) -> None:
    for role in ("account_manager", "manager"):
        headers = auth(role, emp="ghost")
        assert _client_ids(org, headers) == []
        assert _employee_ids(org, headers) == []


@pytest.mark.parametrize("role", ["hr", "admin", "auditor"])
def test_unrestricted_roles_see_everything(org: TestClient, auth: Auth, role: str) -> None:
    headers = auth(role)
    assert _client_ids(org, headers) == ALL_CLIENTS
    assert _visible_one_by_one(org, headers) == ALL_CLIENTS
    assert _employee_ids(org, headers) == ALL_EMPLOYEES
    ok(org.get("/v1/employees/jr1", headers=headers))


def _writes(emp: str = "new-e", cid: str = "new-c") -> list[tuple[str, str, dict]]:
    return [
        ("PUT", f"/v1/employees/{emp}", employee_body(manager="boss")),
        ("PUT", f"/v1/clients/{cid}", client_body("am1")),
        ("POST", "/v1/employees/batch", {"items": [employee_item(emp)]}),
        ("POST", "/v1/clients/batch", {"items": [client_item(cid, "am1")]}),
    ]


@pytest.mark.parametrize(
    ("role", "kwargs"),
    [
        ("auditor", {}),
        ("account_manager", {"emp": "am1"}),
        ("manager", {"emp": "m1"}),
        ("integration", {"scope": "directory:read"}),
        ("integration", {}),
        ("hr", {"scope": "directory:read"}),
        ("admin", {"scope": "audit:read directory:read"}),
    ],
    ids=["auditor", "account_manager", "manager", "integration-read", "integration-none", "hr-read", "admin-read"],
)
def test_roles_without_directory_write_get_403_and_write_nothing(
    org: TestClient, auth: Auth, db: Database, role: str, kwargs: dict
) -> None:
    headers = auth(role, **kwargs)
    before = snapshot(db)
    for method, path, body in _writes() + _writes(emp="am1", cid="c-am1"):
        body_out = assert_problem(org.request(method, path, json=body, headers=headers), 403)
        assert "directory:write" in body_out["detail"]
    assert snapshot(db) == before


def test_integration_with_read_scope_reads(org: TestClient, auth: Auth) -> None:
    reader = auth("integration", scope="directory:read")
    assert _client_ids(org, reader) == ALL_CLIENTS
    writer_only = auth("integration", scope="directory:write")
    assert_problem(org.get("/v1/clients", headers=writer_only), 403)


def test_integration_with_write_scope_writes(org: TestClient, auth: Auth) -> None:
    headers = auth("integration", sub="crm-bridge", scope="directory:read directory:write")
    assert org.put("/v1/employees/new-e", json=employee_body(manager="boss"), headers=headers).status_code == 201
    assert org.put("/v1/clients/new-c", json=client_body("new-e"), headers=headers).status_code == 201
    assert ok(org.post("/v1/employees/batch", json={"items": [employee_item("new-e")]}, headers=headers)) == {
        "created": 0,
        "updated": 1,
        "external_ids": ["new-e"],
    }
    assert ok(org.post("/v1/clients/batch", json={"items": [client_item("new-c", "am1")]}, headers=headers)) == {
        "created": 0,
        "updated": 1,
        "external_ids": ["new-c"],
    }
    entries = ok(org.get("/v1/audit", params={"actor": "integration:crm-bridge"}, headers=auth("auditor")))
    assert len(entries["items"]) == 4
    # A write-only machine token can write but not read back.
    write_only = auth("integration", scope="directory:write")
    assert org.put("/v1/employees/new-e", json=employee_body(), headers=write_only).status_code == 200


@pytest.mark.parametrize("role", ["hr", "admin"])
def test_hr_and_admin_can_write(client: TestClient, auth: Auth, role: str) -> None:
    headers = auth(role)
    assert client.put("/v1/employees/e", json=employee_body(), headers=headers).status_code == 201
    assert client.put("/v1/clients/c", json=client_body("e"), headers=headers).status_code == 201


def test_reads_need_a_token(org: TestClient) -> None:
    for path in ("/v1/clients", "/v1/clients/c-am1", "/v1/employees", "/v1/employees/am1"):
        response = org.get(path)
        assert_problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")
