"""Bad input on every directory write answers a 4xx problem and leaves the database unchanged."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core.db import Database
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

EMP = "/v1/employees/e-1"  # exists: a bad replace must not touch it
NEW_EMP = "/v1/employees/e-new"
CLI = "/v1/clients/c-1"  # exists, with contacts and a team
NEW_CLI = "/v1/clients/c-new"
EMP_BATCH = "/v1/employees/batch"
CLI_BATCH = "/v1/clients/batch"


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str
    body: Any = None
    raw: bytes | None = None
    content_type: str | None = "application/json"
    status: int = 422
    loc: list[str | int] | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)


def emp(**overrides: Any) -> dict[str, Any]:
    return employee_body(**{"manager": "boss", **overrides})


def cli(**overrides: Any) -> dict[str, Any]:
    return client_body(overrides.pop("owner", "am-1"), **overrides)


def emp_rows(bad_index: int, **bad: Any) -> dict[str, Any]:
    """Ten rows, all new, of which one is bad."""
    items = [employee_item(f"n-{i}", manager="boss") for i in range(10)]
    items[bad_index] = {**items[bad_index], **bad}
    return {"items": items}


def cli_rows(bad_index: int, **bad: Any) -> dict[str, Any]:
    items = [client_item(f"nc-{i}", "am-1") for i in range(10)]
    items[bad_index] = {**items[bad_index], **bad}
    return {"items": items}


def _without(body: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != key}


TWO_PRIMARY = [{"name": "A", "primary": True}, {"name": "B", "primary": True}]
DUP_TEAM = [{"employee": "am-2", "role": "x"}, {"employee": "am-2", "role": "y"}]
HUGE = "x" * (1024 * 1024 + 10)

EMPLOYEE_CASES = [
    Case("emp-bad-status", "PUT", EMP, emp(status="retired"), loc=["body", "status"]),
    Case("emp-seniority-0", "PUT", EMP, emp(seniority=0), loc=["body", "seniority"]),
    Case("emp-seniority-5", "PUT", EMP, emp(seniority=5), loc=["body", "seniority"]),
    Case("emp-clearance-0", "PUT", EMP, emp(clearance=0), loc=["body", "clearance"]),
    Case("emp-clearance-4", "PUT", EMP, emp(clearance=4), loc=["body", "clearance"]),
    Case("emp-bad-email", "PUT", EMP, emp(email="not-an-email"), loc=["body", "email"]),
    Case("emp-email-no-domain", "PUT", EMP, emp(email="ada@"), loc=["body", "email"]),
    Case("emp-locale-word", "PUT", EMP, emp(languages=["en", "english!"]), loc=["body", "languages", 1]),
    Case("emp-locale-empty", "PUT", EMP, emp(languages=[""]), loc=["body", "languages", 0]),
    Case("emp-negative-capacity", "PUT", EMP, emp(capacity=-1), loc=["body", "capacity"]),
    Case("emp-huge-capacity", "PUT", EMP, emp(capacity=10_001), loc=["body", "capacity"]),
    Case("emp-unknown-manager", "PUT", EMP, emp(manager="ghost"), loc=["body", "manager"]),
    Case("emp-unknown-manager-new", "PUT", NEW_EMP, emp(manager="ghost"), loc=["body", "manager"]),
    Case("emp-self-manager", "PUT", EMP, emp(manager="e-1"), loc=["body", "manager"]),
    Case("emp-self-manager-new", "PUT", NEW_EMP, emp(manager="e-new"), loc=["body", "manager"]),
    Case("emp-bad-manager-id", "PUT", EMP, emp(manager="bad id"), loc=["body", "manager"]),
    Case("emp-extra-field", "PUT", EMP, emp(nickname="Ada"), loc=["body", "nickname"]),
    Case("emp-external-id-in-body", "PUT", EMP, emp(external_id="e-1"), loc=["body", "external_id"]),
    Case("emp-missing-name", "PUT", EMP, _without(emp(), "name"), loc=["body", "name"]),
    Case("emp-blank-name", "PUT", EMP, emp(name="   "), loc=["body", "name"]),
    Case("emp-naive-exit-at", "PUT", EMP, emp(exit_at="2026-12-31T17:00:00"), loc=["body", "exit_at"]),
    Case("emp-bad-exit-at", "PUT", EMP, emp(exit_at="tomorrow"), loc=["body", "exit_at"]),
    # Aware times whose UTC conversion overflows used to answer 500.
    Case("emp-exit-at-year-1", "PUT", EMP, emp(exit_at="0001-01-01T00:00:00+05:00"), loc=["body", "exit_at"]),
    Case("emp-exit-at-year-9999", "PUT", EMP, emp(exit_at="9999-12-31T23:00:00-05:00"), loc=["body", "exit_at"]),
    # PostgreSQL cannot store NUL in text or JSONB: it used to answer 500 there and store it on SQLite.
    Case("emp-nul-name", "PUT", EMP, emp(name="Ada\u0000"), loc=["body", "name"]),
    Case("emp-nul-title", "PUT", EMP, emp(title="\u0000"), loc=["body", "title"]),
    Case("emp-nul-skill", "PUT", EMP, emp(skills=["bank\u0000ing"]), loc=["body", "skills"]),
    Case("emp-skills-not-list", "PUT", EMP, emp(skills="banking"), loc=["body", "skills"]),
    Case("emp-too-many-skills", "PUT", EMP, emp(skills=[f"s{i}" for i in range(51)]), loc=["body", "skills"]),
    Case("emp-seniority-string", "PUT", EMP, emp(seniority="senior"), loc=["body", "seniority"]),
    Case("emp-malformed-json", "PUT", EMP, raw=b'{"name": "Ada", ', loc=["body"]),
    Case("emp-body-list", "PUT", EMP, [emp()], loc=["body"]),
    Case("emp-body-null", "PUT", EMP, raw=b"null", loc=["body"]),
    Case("emp-path-space", "PUT", "/v1/employees/bad id", emp(), loc=["path", "external_id"]),
    Case("emp-path-101", "PUT", "/v1/employees/" + "a" * 101, emp(), loc=["path", "external_id"]),
    Case("emp-path-leading-dot", "PUT", "/v1/employees/.e-1", emp(), loc=["path", "external_id"]),
    Case("emp-too-large", "PUT", EMP, emp(title=HUGE), status=413),
    Case("emp-text-plain", "PUT", EMP, raw=json.dumps(emp()).encode(), content_type="text/plain", status=415),
    Case("emp-form", "PUT", EMP, raw=b"name=Ada", content_type="application/x-www-form-urlencoded", status=415),
    Case("emp-no-content-type", "PUT", EMP, raw=json.dumps(emp()).encode(), content_type=None, status=415),
]

CLIENT_CASES = [
    Case("cli-bad-tier", "PUT", CLI, cli(tier="gold"), loc=["body", "tier"]),
    Case("cli-bad-status", "PUT", CLI, cli(status="deleted"), loc=["body", "status"]),
    Case("cli-sensitivity-0", "PUT", CLI, cli(sensitivity=0), loc=["body", "sensitivity"]),
    Case("cli-sensitivity-4", "PUT", CLI, cli(sensitivity=4), loc=["body", "sensitivity"]),
    Case("cli-negative-value", "PUT", CLI, cli(annual_value=-1), loc=["body", "annual_value"]),
    Case("cli-negative-issues", "PUT", CLI, cli(open_issues=-1), loc=["body", "open_issues"]),
    Case("cli-satisfaction-11", "PUT", CLI, cli(satisfaction=11), loc=["body", "satisfaction"]),
    Case("cli-bad-language", "PUT", CLI, cli(language="english!"), loc=["body", "language"]),
    Case("cli-empty-language", "PUT", CLI, cli(language=""), loc=["body", "language"]),
    Case(
        "cli-contact-bad-email",
        "PUT",
        CLI,
        cli(contacts=[{"name": "A", "email": "nope"}]),
        loc=["body", "contacts", 0, "email"],
    ),
    Case(
        "cli-contact-bad-locale",
        "PUT",
        CLI,
        cli(contacts=[{"name": "A", "locale": "english!"}]),
        loc=["body", "contacts", 0, "locale"],
    ),
    Case(
        "cli-contact-empty-locale",
        "PUT",
        CLI,
        cli(contacts=[{"name": "A"}, {"name": "B", "locale": ""}]),
        loc=["body", "contacts", 1, "locale"],
    ),
    Case(
        "cli-contact-bad-channel",
        "PUT",
        CLI,
        cli(contacts=[{"name": "A", "preferred_channel": "fax"}]),
        loc=["body", "contacts", 0, "preferred_channel"],
    ),
    Case(
        "cli-contact-bad-phone",
        "PUT",
        CLI,
        cli(contacts=[{"name": "A", "phone": "call me"}]),
        loc=["body", "contacts", 0, "phone"],
    ),
    Case(
        "cli-contact-extra",
        "PUT",
        CLI,
        cli(contacts=[{"name": "A", "twitter": "@a"}]),
        loc=["body", "contacts", 0, "twitter"],
    ),
    Case("cli-two-primary", "PUT", CLI, cli(contacts=TWO_PRIMARY), loc=["body"]),
    Case("cli-unknown-owner", "PUT", CLI, cli(owner="ghost"), loc=["body", "owner"]),
    Case("cli-unknown-owner-new", "PUT", NEW_CLI, cli(owner="ghost"), loc=["body", "owner"]),
    Case("cli-missing-owner", "PUT", CLI, _without(cli(), "owner"), loc=["body", "owner"]),
    Case(
        "cli-unknown-team",
        "PUT",
        CLI,
        cli(account_team=[{"employee": "am-2", "role": "x"}, {"employee": "ghost", "role": "y"}]),
        loc=["body", "account_team", 1, "employee"],
    ),
    Case("cli-duplicate-team", "PUT", CLI, cli(account_team=DUP_TEAM), loc=["body"]),
    Case(
        "cli-team-empty-role",
        "PUT",
        CLI,
        cli(account_team=[{"employee": "am-2", "role": ""}]),
        loc=["body", "account_team", 0, "role"],
    ),
    Case("cli-extra-field", "PUT", CLI, cli(website="https://acme.example"), loc=["body", "website"]),
    Case(
        "cli-naive-last-contact",
        "PUT",
        CLI,
        cli(last_contact_at="2026-10-01T12:00:00"),
        loc=["body", "last_contact_at"],
    ),
    Case("cli-date-out-of-range", "PUT", CLI, cli(renewal_at="2300-01-01"), loc=["body"]),
    Case(
        "cli-last-contact-year-1",
        "PUT",
        CLI,
        cli(last_contact_at="0001-01-01T00:00:00+01:00"),
        loc=["body", "last_contact_at"],
    ),
    Case("cli-nul-name", "PUT", CLI, cli(name="Acme\u0000"), loc=["body", "name"]),
    Case("cli-nul-industry", "PUT", CLI, cli(industry="bank\u0000"), loc=["body", "industry"]),
    Case("cli-contact-nul-name", "PUT", CLI, cli(contacts=[{"name": "A\u0000"}]), loc=["body", "contacts", 0, "name"]),
    Case(
        "cli-team-nul-role",
        "PUT",
        CLI,
        cli(account_team=[{"employee": "am-2", "role": "\u0000"}]),
        loc=["body", "account_team", 0, "role"],
    ),
    Case("cli-malformed-json", "PUT", CLI, raw=b'{"name": "Acme",, }', loc=["body"]),
    Case("cli-body-list", "PUT", CLI, [cli()], loc=["body"]),
    Case("cli-path-space", "PUT", "/v1/clients/bad id", cli(), loc=["path", "external_id"]),
    Case("cli-path-101", "PUT", "/v1/clients/" + "c" * 101, cli(), loc=["path", "external_id"]),
    Case("cli-too-large", "PUT", CLI, cli(name=HUGE), status=413),
    Case("cli-text-plain", "PUT", CLI, raw=json.dumps(cli()).encode(), content_type="text/plain", status=415),
]

EMPLOYEE_BATCH_CASES = [
    Case("eb-empty", "POST", EMP_BATCH, {"items": []}, loc=["body", "items"]),
    Case(
        "eb-1001", "POST", EMP_BATCH, {"items": [employee_item(f"b-{i}") for i in range(1001)]}, loc=["body", "items"]
    ),
    Case("eb-missing-items", "POST", EMP_BATCH, {}, loc=["body", "items"]),
    Case("eb-body-list", "POST", EMP_BATCH, [employee_item("b-1")], loc=["body"]),
    Case(
        "eb-extra-top-level",
        "POST",
        EMP_BATCH,
        {"items": [employee_item("b-1")], "dry_run": True},
        loc=["body", "dry_run"],
    ),
    Case("eb-malformed-json", "POST", EMP_BATCH, raw=b'{"items": [', loc=["body"]),
    Case("eb-bad-status", "POST", EMP_BATCH, emp_rows(7, status="gone"), loc=["body", "items", 7, "status"]),
    Case("eb-seniority-5", "POST", EMP_BATCH, emp_rows(3, seniority=5), loc=["body", "items", 3, "seniority"]),
    Case("eb-clearance-4", "POST", EMP_BATCH, emp_rows(0, clearance=4), loc=["body", "items", 0, "clearance"]),
    Case("eb-bad-email", "POST", EMP_BATCH, emp_rows(9, email="x@"), loc=["body", "items", 9, "email"]),
    Case(
        "eb-bad-locale",
        "POST",
        EMP_BATCH,
        emp_rows(4, languages=["english!"]),
        loc=["body", "items", 4, "languages", 0],
    ),
    Case("eb-empty-locale", "POST", EMP_BATCH, emp_rows(4, languages=[""]), loc=["body", "items", 4, "languages", 0]),
    Case("eb-negative-capacity", "POST", EMP_BATCH, emp_rows(5, capacity=-0.5), loc=["body", "items", 5, "capacity"]),
    Case(
        "eb-naive-exit",
        "POST",
        EMP_BATCH,
        emp_rows(2, exit_at="2027-01-01T00:00:00"),
        loc=["body", "items", 2, "exit_at"],
    ),
    Case(
        "eb-exit-at-overflow",
        "POST",
        EMP_BATCH,
        emp_rows(3, exit_at="0001-01-01T00:00:00+01:00"),
        loc=["body", "items", 3, "exit_at"],
    ),
    Case("eb-nul-name", "POST", EMP_BATCH, emp_rows(8, name="x\u0000"), loc=["body", "items", 8, "name"]),
    Case("eb-extra-field", "POST", EMP_BATCH, emp_rows(8, nickname="x"), loc=["body", "items", 8, "nickname"]),
    Case(
        "eb-bad-external-id",
        "POST",
        EMP_BATCH,
        emp_rows(6, external_id="bad id"),
        loc=["body", "items", 6, "external_id"],
    ),
    Case(
        "eb-long-external-id",
        "POST",
        EMP_BATCH,
        emp_rows(6, external_id="z" * 101),
        loc=["body", "items", 6, "external_id"],
    ),
    Case(
        "eb-missing-external-id",
        "POST",
        EMP_BATCH,
        {"items": [employee_item("b-0"), employee_body()]},
        loc=["body", "items", 1, "external_id"],
    ),
    Case("eb-unknown-manager", "POST", EMP_BATCH, emp_rows(7, manager="ghost"), loc=["body", "items", 7, "manager"]),
    Case("eb-self-manager", "POST", EMP_BATCH, emp_rows(1, manager="n-1"), loc=["body", "items", 1, "manager"]),
    Case("eb-duplicate-id", "POST", EMP_BATCH, emp_rows(9, external_id="n-0"), loc=["body", "items", 9, "external_id"]),
    Case("eb-too-large", "POST", EMP_BATCH, {"items": [employee_item("b-1", title=HUGE)]}, status=413),
    Case(
        "eb-text-plain", "POST", EMP_BATCH, raw=json.dumps(emp_rows(0)).encode(), content_type="text/plain", status=415
    ),
]

CLIENT_BATCH_CASES = [
    Case("cb-empty", "POST", CLI_BATCH, {"items": []}, loc=["body", "items"]),
    Case(
        "cb-1001",
        "POST",
        CLI_BATCH,
        {"items": [{"external_id": f"b-{i}", "name": "c", "tier": "key", "owner": "am-1"} for i in range(1001)]},
        loc=["body", "items"],
    ),
    Case("cb-body-list", "POST", CLI_BATCH, [client_item("b-1", "am-1")], loc=["body"]),
    Case("cb-malformed-json", "POST", CLI_BATCH, raw=b"{items: []}", loc=["body"]),
    Case("cb-bad-tier", "POST", CLI_BATCH, cli_rows(6, tier="gold"), loc=["body", "items", 6, "tier"]),
    Case("cb-bad-status", "POST", CLI_BATCH, cli_rows(2, status="gone"), loc=["body", "items", 2, "status"]),
    Case("cb-sensitivity-0", "POST", CLI_BATCH, cli_rows(1, sensitivity=0), loc=["body", "items", 1, "sensitivity"]),
    Case("cb-sensitivity-4", "POST", CLI_BATCH, cli_rows(8, sensitivity=4), loc=["body", "items", 8, "sensitivity"]),
    Case(
        "cb-contact-bad-email",
        "POST",
        CLI_BATCH,
        cli_rows(3, contacts=[{"name": "A", "email": "@"}]),
        loc=["body", "items", 3, "contacts", 0, "email"],
    ),
    Case(
        "cb-contact-bad-locale",
        "POST",
        CLI_BATCH,
        cli_rows(3, contacts=[{"name": "A", "locale": ""}]),
        loc=["body", "items", 3, "contacts", 0, "locale"],
    ),
    Case("cb-two-primary", "POST", CLI_BATCH, cli_rows(5, contacts=TWO_PRIMARY), loc=["body", "items", 5]),
    Case("cb-duplicate-team", "POST", CLI_BATCH, cli_rows(4, account_team=DUP_TEAM), loc=["body", "items", 4]),
    Case("cb-unknown-owner", "POST", CLI_BATCH, cli_rows(7, owner="ghost"), loc=["body", "items", 7, "owner"]),
    Case(
        "cb-unknown-team",
        "POST",
        CLI_BATCH,
        cli_rows(9, account_team=[{"employee": "ghost", "role": "x"}]),
        loc=["body", "items", 9, "account_team", 0, "employee"],
    ),
    Case(
        "cb-naive-last-contact",
        "POST",
        CLI_BATCH,
        cli_rows(0, last_contact_at="2026-01-01T00:00:00"),
        loc=["body", "items", 0, "last_contact_at"],
    ),
    Case(
        "cb-last-contact-overflow",
        "POST",
        CLI_BATCH,
        cli_rows(4, last_contact_at="9999-12-31T23:59:59-01:00"),
        loc=["body", "items", 4, "last_contact_at"],
    ),
    Case(
        "cb-nul-contact",
        "POST",
        CLI_BATCH,
        cli_rows(2, contacts=[{"name": "x"}, {"name": "\u0000"}]),
        loc=["body", "items", 2, "contacts", 1, "name"],
    ),
    Case("cb-extra-field", "POST", CLI_BATCH, cli_rows(6, website="x"), loc=["body", "items", 6, "website"]),
    Case(
        "cb-bad-external-id",
        "POST",
        CLI_BATCH,
        cli_rows(6, external_id="bad id"),
        loc=["body", "items", 6, "external_id"],
    ),
    Case(
        "cb-duplicate-id", "POST", CLI_BATCH, cli_rows(5, external_id="nc-1"), loc=["body", "items", 5, "external_id"]
    ),
    Case("cb-too-large", "POST", CLI_BATCH, {"items": [client_item("b-1", "am-1", name=HUGE)]}, status=413),
    Case(
        "cb-text-plain", "POST", CLI_BATCH, raw=json.dumps(cli_rows(0)).encode(), content_type="text/plain", status=415
    ),
]

ALL_CASES = EMPLOYEE_CASES + CLIENT_CASES + EMPLOYEE_BATCH_CASES + CLIENT_BATCH_CASES


@pytest.fixture
def seeded(client: TestClient, auth: Auth) -> TestClient:
    """Existing rows that a bad request could clobber: employees, a client with contacts and a team."""
    hr = auth("hr")
    batch_employees(
        client,
        hr,
        [
            employee_item("boss"),
            employee_item("e-1", manager="boss"),
            employee_item("am-1", manager="boss"),
            employee_item("am-2", manager="boss"),
        ],
    )
    batch_clients(
        client,
        hr,
        [
            client_item("c-1", "am-1", account_team=[{"employee": "am-2", "role": "cover"}]),
            client_item("nc-0", "am-2", contacts=[]),
        ],
    )
    return client


def send(client: TestClient, case: Case, headers: dict[str, str]) -> Any:
    request_headers = dict(headers)
    content = case.raw if case.raw is not None else json.dumps(case.body, ensure_ascii=False).encode()
    if case.content_type is not None:
        request_headers["Content-Type"] = case.content_type
    request_headers.update(case.extra_headers)
    return client.request(case.method, case.path, content=content, headers=request_headers)


@pytest.mark.parametrize("case", ALL_CASES, ids=[c.id for c in ALL_CASES])
def test_bad_write_is_a_problem_and_writes_nothing(seeded: TestClient, auth: Auth, db: Database, case: Case) -> None:
    before = snapshot(db)
    assert before["employee"] and before["client_contact"] and before["account_team_member"]
    assert before["audit_entry"]
    response = send(seeded, case, auth("hr"))
    assert_problem(response, case.status, loc=case.loc)
    assert snapshot(db) == before


@pytest.mark.parametrize("bad_index", [0, 6, 9])
def test_one_bad_employee_row_in_ten_writes_nothing(
    client: TestClient, auth: Auth, db: Database, bad_index: int
) -> None:
    hr = auth("hr")
    ok(client.put("/v1/employees/boss", json=employee_body(), headers=hr), 201)
    before = snapshot(db)
    # Rows reference earlier and later rows as managers; one references nobody.
    items = [employee_item(f"n-{i}", manager=f"n-{(i + 1) % 10}") for i in range(10)]
    items[bad_index]["manager"] = "ghost"
    body = assert_problem(client.post("/v1/employees/batch", json={"items": items}, headers=hr), 422)
    assert [e["loc"] for e in body["errors"]] == [["body", "items", bad_index, "manager"]]
    assert snapshot(db) == before
    for i in range(10):
        assert_problem(client.get(f"/v1/employees/n-{i}", headers=hr), 404)
    audit = ok(client.get("/v1/audit", params={"entity_type": "employee"}, headers=auth("admin")))
    assert [e["entity_id"] for e in audit["items"]] == ["boss"]

    # The same rows, once fixed, are all written.
    items[bad_index]["manager"] = "boss"
    result = ok(client.post("/v1/employees/batch", json={"items": items}, headers=hr))
    assert result["created"] == 10


def test_one_schema_invalid_row_in_ten_names_only_that_row(client: TestClient, auth: Auth, db: Database) -> None:
    hr = auth("hr")
    ok(client.put("/v1/employees/boss", json=employee_body(), headers=hr), 201)
    before = snapshot(db)
    body = assert_problem(client.post("/v1/employees/batch", json=emp_rows(7, seniority=5), headers=hr), 422)
    assert {tuple(e["loc"][:3]) for e in body["errors"]} == {("body", "items", 7)}
    assert snapshot(db) == before


def test_one_bad_client_row_in_ten_writes_nothing(client: TestClient, auth: Auth, db: Database) -> None:
    hr = auth("hr")
    batch_employees(client, hr, [employee_item("am-1")])
    before = snapshot(db)
    body = assert_problem(client.post("/v1/clients/batch", json=cli_rows(6, owner="ghost"), headers=hr), 422)
    assert [e["loc"] for e in body["errors"]] == [["body", "items", 6, "owner"]]
    assert snapshot(db) == before
    assert ok(client.get("/v1/clients", headers=hr))["items"] == []


def test_every_bad_row_is_reported(client: TestClient, auth: Auth, db: Database) -> None:
    hr = auth("hr")
    ok(client.put("/v1/employees/am-1", json=employee_body(), headers=hr), 201)
    before = snapshot(db)
    items = [client_item(f"x-{i}", "am-1") for i in range(5)]
    items[1]["owner"] = "ghost-1"
    items[3]["account_team"] = [{"employee": "am-1", "role": "ok"}, {"employee": "ghost-2", "role": "x"}]
    body = assert_problem(client.post("/v1/clients/batch", json={"items": items}, headers=hr), 422)
    assert sorted(e["loc"] for e in body["errors"]) == [
        ["body", "items", 1, "owner"],
        ["body", "items", 3, "account_team", 1, "employee"],
    ]
    assert snapshot(db) == before


def test_errors_without_a_token_write_nothing(seeded: TestClient, db: Database) -> None:
    before = snapshot(db)
    for path, body in ((EMP, emp()), (CLI, cli()), (EMP_BATCH, emp_rows(0)), (CLI_BATCH, cli_rows(0))):
        method = seeded.put if path in (EMP, CLI) else seeded.post
        assert_problem(method(path, json=body), 401)
        assert_problem(method(path, json=body, headers={"Authorization": "Bearer not-a-token"}), 401)
    assert snapshot(db) == before
