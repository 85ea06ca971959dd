"""Records beside the clients: writes, reads, bad input (422, nothing written) and who sees which."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core.db import Database
from tests.support.db import audit_count
from tests.support.db import snapshot as db_snapshot
from tests.support.directory import batch_clients, batch_employees, client_item, employee_item, ok
from tests.support.problems import assert_problem

Auth = Callable[..., dict[str, str]]
TABLES = ("record", "audit_entry", "employee", "client")

# boss ─┬─ m1 ─── am1
#       └─ m2 ─── am3
ORG = [
    employee_item("boss"),
    employee_item("m1", manager="boss"),
    employee_item("m2", manager="boss"),
    employee_item("am1", manager="m1"),
    employee_item("am3", manager="m2"),
]
CLIENTS = [
    client_item("c-am1", "am1"),
    client_item("c-am3", "am3"),
    client_item("c-am3-team", "am3", account_team=[{"employee": "am1", "role": "cover"}]),
]


def rec(owner: str = "am1", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"title": "Renewal 2027", "owner": owner, "client": "c-am1"}
    body.update(overrides)
    return body


def item(kind: str, external_id: str, owner: str = "am1", **overrides: Any) -> dict[str, Any]:
    return {"kind": kind, "external_id": external_id, **rec(owner, **overrides)}


RECORDS = [
    item("deal", "d-am1", amount=50000, currency="EUR", stage="proposal", due_at="2027-01-31T00:00:00Z"),
    item("task", "t-am1", progress=40),
    item("automation", "a-am1", client=None),  # the leaver's own: no client
    item("case", "k-am3", owner="am3", client="c-am3"),
    item("task", "t-am3-team", owner="am3", client="c-am3-team"),  # am1 serves this client
    item("deal", "d-am3-own", owner="am3", client=None, status="closed", stage="won", amount=1, currency="USD"),
]
ALL = sorted((r["kind"], r["external_id"]) for r in RECORDS)


@pytest.fixture
def org(client: TestClient, auth: Auth) -> TestClient:
    hr = auth("hr")
    batch_employees(client, hr, ORG)
    batch_clients(client, hr, CLIENTS)
    return client


@pytest.fixture
def book(org: TestClient, auth: Auth) -> TestClient:
    body = ok(org.post("/v1/records/batch", json={"items": RECORDS}, headers=auth("hr")))
    assert (body["created"], body["updated"]) == (len(RECORDS), 0)
    return org


def keys(api: TestClient, headers: dict[str, str], **params: Any) -> list[tuple[str, str]]:
    page = ok(api.get("/v1/records", params={"limit": 200, **params}, headers=headers))
    return [(r["kind"], r["external_id"]) for r in page["items"]]


# ---- writes and reads -------------------------------------------------------------------------


def test_put_creates_then_replaces_and_audits(org: TestClient, auth: Auth, db: Database) -> None:
    hr = auth("hr")
    r = org.put(
        "/v1/records/deal/D-1", json=rec(amount=1200.5, currency="EUR", url="https://crm.example/d/1"), headers=hr
    )
    created = ok(r, 201)
    assert created["kind"] == "deal" and created["external_id"] == "D-1"
    assert (created["amount"], created["currency"], created["status"]) == (1200.5, "EUR", "open")
    assert created["url"] == "https://crm.example/d/1" and created["attributes"] == {}
    r = org.put(
        "/v1/records/deal/D-1",
        json=rec(status="closed", stage="won", attributes={"source": {"system": "crm", "tags": ["a", 1]}}),
        headers=hr,
    )
    replaced = ok(r, 200)
    assert (replaced["status"], replaced["stage"], replaced["amount"], replaced["currency"]) == (
        "closed",
        "won",
        None,
        None,
    )
    assert replaced["attributes"] == {"source": {"system": "crm", "tags": ["a", 1]}}
    assert replaced["created_at"] == created["created_at"]
    # The same external id under another kind is another record.
    ok(org.put("/v1/records/task/D-1", json=rec(), headers=hr), 201)
    assert audit_count(db, "record.created") == 2
    assert audit_count(db, "record.updated") == 1


def test_batch_is_all_or_nothing_and_counts(book: TestClient, auth: Auth) -> None:
    hr = auth("hr")
    body = ok(book.post("/v1/records/batch", json={"items": [RECORDS[0], item("meeting", "m-new")]}, headers=hr))
    assert (body["created"], body["updated"]) == (1, 1)
    assert body["records"] == [{"kind": "deal", "external_id": "d-am1"}, {"kind": "meeting", "external_id": "m-new"}]


def test_filters_and_pagination(book: TestClient, auth: Auth) -> None:
    admin = auth("admin")
    assert keys(book, admin) == ALL
    assert keys(book, admin, kind="deal") == [("deal", "d-am1"), ("deal", "d-am3-own")]
    assert keys(book, admin, owner="am3", status="open") == [("case", "k-am3"), ("task", "t-am3-team")]
    assert keys(book, admin, client="c-am1") == [("deal", "d-am1"), ("task", "t-am1")]
    assert keys(book, admin, status="closed") == [("deal", "d-am3-own")]
    first = ok(book.get("/v1/records", params={"limit": 4}, headers=admin))
    assert first["next_offset"] == 4 and len(first["items"]) == 4
    second = ok(book.get("/v1/records", params={"limit": 4, "offset": 4}, headers=admin))
    assert second["next_offset"] is None
    assert [(r["kind"], r["external_id"]) for r in first["items"] + second["items"]] == ALL
    assert_problem(book.get("/v1/records", params={"limit": 5000}, headers=admin), 422, loc=["query", "limit"])
    assert_problem(book.get("/v1/records", params={"kind": "lead"}, headers=admin), 422, loc=["query", "kind"])


# ---- bad input: 422 problem+json with field errors, nothing written ---------------------------

BAD: list[tuple[str, str, str, Any, list[str | int]]] = [
    ("unknown kind", "PUT", "/v1/records/lead/x1", rec(), ["path", "kind"]),
    (
        "unknown kind in batch",
        "POST",
        "/v1/records/batch",
        {"items": [item("lead", "x1")]},
        ["body", "items", 0, "kind"],
    ),
    ("amount without currency", "PUT", "/v1/records/deal/x1", rec(amount=10), ["body", "currency"]),
    (
        "amount without currency in batch",
        "POST",
        "/v1/records/batch",
        {"items": [item("task", "ok-1"), item("deal", "x1", amount=10)]},
        ["body", "items", 1, "currency"],
    ),
    ("progress 150", "PUT", "/v1/records/task/x1", rec(progress=150), ["body", "progress"]),
    ("negative progress", "PUT", "/v1/records/task/x1", rec(progress=-1), ["body", "progress"]),
    (
        "oversized attributes",
        "PUT",
        "/v1/records/task/x1",
        rec(attributes={"blob": "x" * 9000}),
        ["body", "attributes"],
    ),
    (
        "attributes nested too deep",
        "PUT",
        "/v1/records/task/x1",
        rec(attributes={"a": {"b": {"c": {"d": {"e": 1}}}}}),
        ["body", "attributes"],
    ),
    ("NUL inside attributes", "PUT", "/v1/records/task/x1", rec(attributes={"a": ["x\u0000"]}), ["body", "attributes"]),
    ("javascript URL", "PUT", "/v1/records/task/x1", rec(url="javascript:alert(1)"), ["body", "url"]),
    ("ftp URL", "PUT", "/v1/records/task/x1", rec(url="ftp://files.example/x"), ["body", "url"]),
    ("file URL", "PUT", "/v1/records/task/x1", rec(url="file:///etc/passwd"), ["body", "url"]),
    ("lower-case currency", "PUT", "/v1/records/deal/x1", rec(amount=1, currency="eur"), ["body", "currency"]),
    ("unknown status", "PUT", "/v1/records/deal/x1", rec(status="won"), ["body", "status"]),
    ("unknown owner", "PUT", "/v1/records/task/x1", rec(owner="nobody"), ["body", "owner"]),
    ("unknown client", "PUT", "/v1/records/task/x1", rec(client="no-client"), ["body", "client"]),
    (
        "unknown owner in batch",
        "POST",
        "/v1/records/batch",
        {"items": [item("task", "ok-1"), item("task", "x1", owner="nobody")]},
        ["body", "items", 1, "owner"],
    ),
    (
        "unknown client in batch",
        "POST",
        "/v1/records/batch",
        {"items": [item("task", "ok-1"), item("task", "x1", client="no-client")]},
        ["body", "items", 1, "client"],
    ),
    (
        "duplicate in batch",
        "POST",
        "/v1/records/batch",
        {"items": [item("task", "dup"), item("task", "dup")]},
        ["body", "items", 1, "external_id"],
    ),
    ("empty batch", "POST", "/v1/records/batch", {"items": []}, ["body", "items"]),
    (
        "batch over 1,000",
        "POST",
        "/v1/records/batch",
        {"items": [item("task", f"t{i}") for i in range(1001)]},
        ["body", "items"],
    ),
    ("unknown field", "PUT", "/v1/records/task/x1", rec(colour="red"), ["body", "colour"]),
]


@pytest.mark.parametrize(("name", "method", "path", "body", "loc"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_refused_and_writes_nothing(
    book: TestClient, auth: Auth, db: Database, name: str, method: str, path: str, body: Any, loc: list[str | int]
) -> None:
    before = db_snapshot(db, TABLES)
    problem = assert_problem(book.request(method, path, json=body, headers=auth("hr")), 422, loc=loc)
    assert all({"loc", "msg", "type"} <= set(e) for e in problem["errors"]), problem
    assert db_snapshot(db, TABLES) == before


def test_unknown_references_name_their_problem_type(book: TestClient, auth: Auth) -> None:
    r = book.put("/v1/records/task/x1", json=rec(owner="nobody", client="no-client"), headers=auth("hr"))
    problem = assert_problem(r, 422, type="record-rows-invalid")
    assert {tuple(e["loc"]) for e in problem["errors"]} == {("body", "owner"), ("body", "client")}
    assert {e["type"] for e in problem["errors"]} == {"unknown_reference"}


# ---- visibility -------------------------------------------------------------------------------

VISIBLE = {
    # am1: own records (with or without a client) and those of a client they serve on the account team.
    ("account_manager", "am1"): [("automation", "a-am1"), ("deal", "d-am1"), ("task", "t-am1"), ("task", "t-am3-team")],
    # am3: own records, including their client-less closed deal.
    ("account_manager", "am3"): [("case", "k-am3"), ("deal", "d-am3-own"), ("task", "t-am3-team")],
    # m1: the team's (am1's) and the clients the team serves.
    ("manager", "m1"): [("automation", "a-am1"), ("deal", "d-am1"), ("task", "t-am1"), ("task", "t-am3-team")],
    # m2: am3's records; c-am1's are another team's.
    ("manager", "m2"): [("case", "k-am3"), ("deal", "d-am3-own"), ("task", "t-am3-team")],
    ("manager", "boss"): ALL,
}


@pytest.mark.parametrize(("role", "emp"), sorted(VISIBLE), ids=lambda v: str(v))
def test_each_role_sees_what_it_may(book: TestClient, auth: Auth, role: str, emp: str) -> None:
    h = auth(role, emp=emp)
    visible = VISIBLE[(role, emp)]
    assert keys(book, h) == visible
    for kind, eid in ALL:
        r = book.get(f"/v1/records/{kind}/{eid}", headers=h)
        if (kind, eid) in visible:
            ok(r)
        else:
            assert_problem(r, 404, type="record-not-found")


@pytest.mark.parametrize("role", ["admin", "hr", "auditor"])
def test_unrestricted_roles_see_all(book: TestClient, auth: Auth, role: str) -> None:
    assert keys(book, auth(role)) == ALL


def test_a_token_without_an_employee_sees_nothing(book: TestClient, auth: Auth) -> None:
    assert keys(book, auth("manager")) == []
    assert_problem(book.get("/v1/records/deal/d-am1", headers=auth("account_manager")), 404)


def test_writes_need_directory_write(book: TestClient, auth: Auth, db: Database) -> None:
    before = db_snapshot(db, TABLES)
    for headers in (auth("manager", emp="m1"), auth("account_manager", emp="am1"), auth("auditor")):
        assert_problem(book.put("/v1/records/task/t-am1", json=rec(), headers=headers), 403)
        assert_problem(book.post("/v1/records/batch", json={"items": [item("task", "z")]}, headers=headers), 403)
    reader = auth("integration", scope="directory:read")
    assert_problem(book.put("/v1/records/task/t-am1", json=rec(), headers=reader), 403)
    ok(book.get("/v1/records/task/t-am1", headers=reader))
    writer = auth("integration", scope="directory:write")
    ok(book.put("/v1/records/task/t-am1", json=rec(), headers=writer))
    assert db_snapshot(db, ("employee", "client")) == {k: before[k] for k in ("employee", "client")}
