"""One regression test per thing schemathesis found, each fixed in the service (on both databases)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.core.types import DATE_PATTERN, NO_NUL_PATTERN, TIME_PATTERN
from tests.support.company import EFFECTIVE


def _schema_of(app: FastAPI, name: str) -> dict[str, Any]:
    schema: dict[str, Any] = app.openapi()["components"]["schemas"][name]
    return schema


def _param(app: FastAPI, method: str, path: str, name: str) -> dict[str, Any]:
    op = app.openapi()["paths"][path][method]
    found: dict[str, Any] = next(p for p in op["parameters"] if p["name"] == name)
    return found


# ---- 405: `Allow` named one route's methods (OPTIONS /v1/employees/e0 → `Allow: PUT`, no GET) -----------------


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/v1/employees/e0", "GET, PUT"),
        ("/v1/handovers", "GET, POST"),
        ("/v1/handovers/1/items/1", "GET, PATCH"),
        ("/v1/access/grants/1", "DELETE, GET"),
        # `batch` also matches /v1/employees/{external_id}; the literal route is the resource it names.
        ("/v1/employees/batch", "POST"),
    ],
)
def test_405_allow_lists_every_method_of_the_resource(client: TestClient, auth: Any, path: str, allow: str) -> None:
    r = client.options(path, headers=auth())
    assert r.status_code == 405
    assert r.headers["allow"] == allow
    assert r.headers["content-type"].startswith("application/problem+json")


# ---- a body that is not UTF-8 answered 400, which no operation documents -------------------------------------


def test_a_body_that_is_not_utf8_is_a_422_json_invalid(client: TestClient, auth: Any) -> None:
    r = client.put(
        "/v1/handovers/1/items/1/checklist/client_profile",
        content=b"\xdf\x9b\xff\xfe",
        headers={**auth(), "content-type": "application/json"},
    )
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["type"] == "json_invalid"


# ---- times: 0.5 or "1700000000" were read as Unix seconds; years outside 1900-2199 were schema-valid ----------


@pytest.mark.parametrize(
    "value", ["0.5", "1700000000", "2026-11-02 09:00:00Z", "0868-03-22T05:52:53Z", "2200-01-01T00:00:00Z"]
)
def test_a_time_in_the_query_is_an_rfc3339_date_time_in_range(client: TestClient, auth: Any, value: str) -> None:
    r = client.get("/v1/audit", params={"until": value}, headers=auth())
    assert r.status_code == 422, (value, r.text)
    assert r.json()["errors"][0]["loc"] == ["query", "until"]


@pytest.mark.parametrize("value", ["1900-01-01T00:00:00+05:00", "2199-12-31T23:59:59-12:00", "2026-11-02T09:00:00.5Z"])
def test_every_time_the_pattern_allows_is_accepted(client: TestClient, auth: Any, value: str) -> None:
    assert client.get("/v1/audit", params={"until": value}, headers=auth()).status_code == 200, value


def test_a_number_is_not_a_time_in_a_body(client: TestClient, auth: Any, company: Any) -> None:
    r = client.post(
        "/v1/access/check", json={"employee": "e0", "client": "c0", "action": "edit", "at": 0}, headers=auth()
    )
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["loc"] == ["body", "at"]


def test_the_contract_states_the_time_and_date_formats(app: FastAPI) -> None:
    assert _param(app, "get", "/v1/audit", "until")["schema"]["anyOf"][0]["pattern"] == TIME_PATTERN
    assert _schema_of(app, "HandoverCreate")["properties"]["effective_at"]["pattern"] == TIME_PATTERN
    assert _schema_of(app, "ClientIn")["properties"]["renewal_at"]["anyOf"][0]["pattern"] == DATE_PATTERN


def test_a_number_is_not_a_date(client: TestClient, auth: Any, company: Any) -> None:
    r = client.put("/v1/clients/c9", json={"name": "C9", "tier": "key", "owner": "e1", "renewal_at": 0}, headers=auth())
    assert r.status_code == 422, r.text
    r = client.put(
        "/v1/clients/c9", json={"name": "C9", "tier": "key", "owner": "e1", "renewal_at": "2027-01-31"}, headers=auth()
    )
    assert r.status_code == 201, r.text


# ---- booleans: 0/1 were read as false/true, and false/true as 0/1 where the contract says integer ------------


def test_a_number_is_not_a_boolean(client: TestClient, auth: Any, open_handover: int) -> None:
    r = client.post(f"/v1/handovers/{open_handover}/plan", headers=auth("hr"))
    assert r.status_code == 200, r.text
    item = client.get(f"/v1/handovers/{open_handover}/items", headers=auth()).json()["items"][0]["id"]
    r = client.put(
        f"/v1/handovers/{open_handover}/items/{item}/checklist/client_profile", json={"done": 0}, headers=auth()
    )
    assert r.status_code == 422, r.text
    r = client.post(
        "/v1/simulations",
        json={"leavers": ["e1"], "effective_at": EFFECTIVE.isoformat(), "include_items": 1},
        headers=auth(),
    )
    assert r.status_code == 422, r.text


@pytest.mark.parametrize(
    ("field", "value"),
    [("open_issues", False), ("sensitivity", True), ("annual_value", True), ("satisfaction", False)],
)
def test_a_boolean_is_not_a_number(client: TestClient, auth: Any, company: Any, field: str, value: bool) -> None:
    r = client.put("/v1/clients/c9", json={"name": "C9", "tier": "key", "owner": "e1", field: value}, headers=auth())
    assert r.status_code == 422, r.text
    assert field in r.json()["errors"][0]["msg"]


def test_a_boolean_is_not_a_weight(client: TestClient, auth: Any) -> None:
    model = client.get("/v1/risk/model", headers=auth()).json()
    body = {k: model[k] for k in ("intercept", "weights", "thresholds", "mitigations")}
    body["weights"] = {**body["weights"], next(iter(body["weights"])): True}
    r = client.put("/v1/risk/model", json=body, headers=auth())
    assert r.status_code == 422, r.text


# ---- NUL: refused everywhere (PostgreSQL cannot store it), now stated in the contract --------------------------


def test_the_contract_says_texts_carry_no_nul(app: FastAPI) -> None:
    assert _param(app, "get", "/v1/notifications/{notification_id}/ack", "sig")["schema"]["pattern"] == NO_NUL_PATTERN
    assert _schema_of(app, "ResolveIn")["properties"]["resolution"]["pattern"] == NO_NUL_PATTERN
    assert _schema_of(app, "EmployeeIn")["properties"]["skills"]["items"]["pattern"] == NO_NUL_PATTERN
    # Texts with a pattern of their own keep it.
    assert _schema_of(app, "EmployeeIn")["properties"]["manager"]["anyOf"][0]["pattern"] != NO_NUL_PATTERN


def test_nul_in_a_body_or_the_url_is_a_422(client: TestClient, auth: Any) -> None:
    r = client.post("/v1/alerts/1/resolve", json={"resolution": "&\x00\n"}, headers=auth())
    assert r.status_code == 422, r.text
    r = client.get("/v1/notifications/1/ack", params={"sig": "\x00abc"})
    assert r.status_code == 422, r.text
