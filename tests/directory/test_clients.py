"""Clients: upsert with contacts and account team, read, list with filters and pages, batches, audit."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy import select

from app.audit.models import AuditEntry
from app.core.clock import ManualClock
from app.core.db import Database, transaction
from app.directory import service
from app.directory.schemas import ClientIn, EmployeeIn
from tests.conftest import START
from tests.support.directory import (
    assert_problem,
    audit_entries,
    batch_clients,
    batch_employees,
    client_body,
    client_item,
    employee_item,
    ok,
    parse_time,
    snapshot,
)

Auth = Callable[..., dict[str, str]]


def _people(client: TestClient, hr: dict[str, str]) -> None:
    batch_employees(
        client,
        hr,
        [
            employee_item("boss"),
            employee_item("mgr-a", manager="boss"),
            employee_item("mgr-b", manager="boss"),
            employee_item("am-1", manager="mgr-a"),
            employee_item("am-2", manager="mgr-a"),
            employee_item("am-3", manager="mgr-b"),
            employee_item("se-1", manager="mgr-b"),
        ],
    )


def test_put_client_creates_then_replaces_contacts_and_team(
    client: TestClient, auth: Auth, clock: ManualClock, db: Database
) -> None:
    hr = auth("hr")
    _people(client, hr)
    first = client.put(
        "/v1/clients/CRM-001",
        json=client_body(
            "am-1",
            contacts=[
                {"name": "Jane Roe", "email": "Jane@Acme.example", "locale": "en-GB", "primary": True},
                {"name": "张伟", "phone": "+86 10 1234 5678", "locale": "zh-CN", "preferred_channel": "phone"},
            ],
            account_team=[{"employee": "se-1", "role": "solutions engineer"}, {"employee": "am-2", "role": "backup"}],
        ),
        headers=hr,
    )
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["external_id"] == "CRM-001"
    assert body["owner"] == "am-1" and body["former_owner"] is None
    assert body["tier"] == "key" and body["sensitivity"] == 2 and body["annual_value"] == 125000.5
    assert body["relationship_since"] == "2020-01-15" and body["renewal_at"] == "2027-03-01"
    assert parse_time(body["last_contact_at"]) == dt.datetime(2026, 10, 1, 12, tzinfo=dt.UTC)
    assert body["satisfaction"] == 7.5 and body["open_issues"] == 1
    assert body["contacts"] == [
        {
            "name": "Jane Roe",
            "email": "jane@acme.example",
            "phone": None,
            "locale": "en-GB",
            "preferred_channel": "email",
            "primary": True,
        },
        {
            "name": "张伟",
            "email": None,
            "phone": "+86 10 1234 5678",
            "locale": "zh-CN",
            "preferred_channel": "phone",
            "primary": False,
        },
    ]
    assert body["account_team"] == [
        {"employee": "am-2", "role": "backup"},
        {"employee": "se-1", "role": "solutions engineer"},
    ]
    assert parse_time(body["created_at"]) == parse_time(body["updated_at"]) == START
    assert ok(client.get("/v1/clients/CRM-001", headers=hr)) == body

    later = clock.advance(dt.timedelta(hours=2))
    second = client.put(
        "/v1/clients/CRM-001",
        json=client_body(
            "am-2",
            name="Acme Holdings",
            tier="strategic",
            status="at_risk",
            contacts=[{"name": "New Person", "locale": "fr"}],
            account_team=[{"employee": "am-3", "role": "cover"}],
        ),
        headers=hr,
    )
    assert second.status_code == 200, second.text
    body = second.json()
    assert body["name"] == "Acme Holdings" and body["owner"] == "am-2"
    assert body["tier"] == "strategic" and body["status"] == "at_risk"
    assert body["contacts"] == [
        {
            "name": "New Person",
            "email": None,
            "phone": None,
            "locale": "fr",
            "preferred_channel": "email",
            "primary": False,
        },
    ]
    assert body["account_team"] == [{"employee": "am-3", "role": "cover"}]
    assert parse_time(body["created_at"]) == START
    assert parse_time(body["updated_at"]) == later
    assert ok(client.get("/v1/clients/CRM-001", headers=hr)) == body
    rows = snapshot(db)
    assert len(rows["client_contact"]) == 1 and len(rows["account_team_member"]) == 1

    # Omitting contacts and team empties them.
    body = ok(client.put("/v1/clients/CRM-001", json={"name": "Acme", "tier": "prospect", "owner": "am-2"}, headers=hr))
    assert body["contacts"] == [] and body["account_team"] == []
    assert body["sensitivity"] == 1 and body["annual_value"] == 0 and body["language"] is None
    rows = snapshot(db)
    assert rows["client_contact"] == [] and rows["account_team_member"] == []


def test_get_unknown_client_is_404(client: TestClient, auth: Auth) -> None:
    assert_problem(client.get("/v1/clients/CRM-404", headers=auth("admin")), 404)


def test_batch_clients(client: TestClient, auth: Auth, clock: ManualClock, db: Database) -> None:
    hr = auth("hr")
    _people(client, hr)
    result = batch_clients(
        client,
        hr,
        [
            client_item("c-3", "am-1", account_team=[{"employee": "am-2", "role": "cover"}]),
            client_item("c-1", "am-2"),
            client_item("c-2", "am-3", contacts=[]),
        ],
    )
    assert result == {"created": 3, "updated": 0, "external_ids": ["c-3", "c-1", "c-2"]}
    later = clock.advance(dt.timedelta(days=1))
    result = batch_clients(
        client,
        hr,
        [
            client_item("c-1", "am-1", contacts=[]),
            client_item("c-4", "am-1"),
            client_item("c-3", "am-1", account_team=[]),
        ],
    )
    assert result == {"created": 1, "updated": 2, "external_ids": ["c-1", "c-4", "c-3"]}
    rows = {c["external_id"]: c for c in ok(client.get("/v1/clients", headers=hr))["items"]}
    assert sorted(rows) == ["c-1", "c-2", "c-3", "c-4"]
    assert rows["c-1"]["owner"] == "am-1" and rows["c-1"]["contacts"] == []
    assert rows["c-3"]["account_team"] == []
    assert len(rows["c-4"]["contacts"]) == 1
    assert parse_time(rows["c-1"]["created_at"]) == START and parse_time(rows["c-1"]["updated_at"]) == later
    assert parse_time(rows["c-2"]["updated_at"]) == START
    assert parse_time(rows["c-4"]["created_at"]) == later
    assert len(snapshot(db)["client_contact"]) == 2  # c-2 had none, c-1 was emptied


def _seed_clients(client: TestClient, hr: dict[str, str]) -> None:
    _people(client, hr)
    batch_clients(
        client,
        hr,
        [
            client_item("c-01", "am-1", name="王氏集团", tier="strategic"),
            client_item("c-02", "am-1", name="Acme Foods", tier="key", status="at_risk"),
            client_item("c-03", "am-2", name="acme logistics", tier="standard"),
            client_item("c-04", "am-3", name="Globex", tier="key", status="churned"),
            client_item("c-05", "mgr-a", name="Initech 50% off_", tier="prospect"),
            client_item("c-06", "se-1", name="王府井百货", tier="key"),
        ],
    )


def _ids(page: dict) -> list[str]:
    return [item["external_id"] for item in page["items"]]


def test_list_clients_filters(client: TestClient, auth: Auth) -> None:
    hr = auth("hr")
    _seed_clients(client, hr)

    def ids(**params: str) -> list[str]:
        return _ids(ok(client.get("/v1/clients", params=params, headers=hr)))

    assert ids() == ["c-01", "c-02", "c-03", "c-04", "c-05", "c-06"]
    assert ids(owner="am-1") == ["c-01", "c-02"]
    assert ids(owner="nobody") == []
    assert ids(tier="key") == ["c-02", "c-04", "c-06"]
    assert ids(status="at_risk") == ["c-02"]
    assert ids(status="active") == ["c-01", "c-03", "c-05", "c-06"]
    # manager: clients whose owner reports directly to that employee.
    assert ids(manager="mgr-a") == ["c-01", "c-02", "c-03"]
    assert ids(manager="mgr-b") == ["c-04", "c-06"]
    assert ids(manager="boss") == ["c-05"]
    assert ids(manager="mgr-a", tier="key") == ["c-02"]
    assert ids(owner="am-1", status="at_risk", tier="key") == ["c-02"]
    assert ids(q="acme") == ["c-02", "c-03"]
    assert ids(q="ACME LOG") == ["c-03"]
    assert ids(q="王") == ["c-01", "c-06"]
    assert ids(q="王府井") == ["c-06"]
    assert ids(q="50%") == ["c-05"]
    assert ids(q="_") == ["c-05"]
    assert ids(q="acme", manager="mgr-a", tier="standard") == ["c-03"]


def test_list_client_filters_reject_bad_values(client: TestClient, auth: Auth) -> None:
    hr = auth("hr")
    for params, field in (
        ({"tier": "gold"}, "tier"),
        ({"status": "deleted"}, "status"),
        ({"owner": "bad id"}, "owner"),
        ({"manager": "x" * 101}, "manager"),
        ({"q": ""}, "q"),
        ({"q": "\x00"}, "q"),
        ({"limit": 201}, "limit"),
        ({"limit": 0}, "limit"),
    ):
        assert_problem(client.get("/v1/clients", params=params, headers=hr), 422, loc=["query", field])


def test_list_clients_pagination(client: TestClient, auth: Auth) -> None:
    hr = auth("hr")
    _seed_clients(client, hr)
    first = ok(client.get("/v1/clients", params={"limit": 4}, headers=hr))
    assert _ids(first) == ["c-01", "c-02", "c-03", "c-04"] and first["next_offset"] == 4
    # Contacts and teams are attached to every client on the page.
    assert all(len(c["contacts"]) == 1 for c in first["items"])
    last = ok(client.get("/v1/clients", params={"limit": 4, "offset": 4}, headers=hr))
    assert _ids(last) == ["c-05", "c-06"] and last["next_offset"] is None
    filtered = ok(client.get("/v1/clients", params={"limit": 1, "tier": "key", "offset": 1}, headers=hr))
    assert _ids(filtered) == ["c-04"] and filtered["next_offset"] == 2


def test_client_upserts_are_audited(client: TestClient, auth: Auth) -> None:
    hr = auth("hr", sub="crm-sync")
    _people(client, hr)
    ok(client.put("/v1/clients/c-1", json=client_body("am-1"), headers=hr), 201)
    ok(client.put("/v1/clients/c-1", json=client_body("am-2"), headers=hr), 200)
    batch_clients(client, auth("admin", sub="root"), [client_item("c-2", "am-1"), client_item("c-1", "am-3")])

    entries = audit_entries(client, auth("admin"), entity_type="client")
    assert [(e["action"], e["entity_id"], e["actor"]) for e in entries] == [
        ("client.created", "c-1", "hr:crm-sync"),
        ("client.updated", "c-1", "hr:crm-sync"),
        ("client.created", "c-2", "admin:root"),
        ("client.updated", "c-1", "admin:root"),
    ]
    assert entries[1]["data"]["owner"] == "am-2"
    assert entries[3]["data"]["owner"] == "am-3"


def test_audit_chain_verifies_after_many_writes(client: TestClient, auth: Auth, clock: ManualClock) -> None:
    hr = auth("hr")
    admin = auth("admin")
    _people(client, hr)
    batch_employees(client, hr, [employee_item(f"bulk-{i:03d}", manager="mgr-a") for i in range(150)])
    batch_clients(client, hr, [client_item(f"cl-{i:03d}", f"bulk-{i:03d}") for i in range(150)])
    for i in range(10):
        clock.advance(dt.timedelta(seconds=1))
        ok(client.put(f"/v1/clients/cl-{i:03d}", json=client_body("am-1", name=f"Renamed {i}"), headers=hr))
        renamed = {"name": f"Renamed {i}", "email": "r@example.com", "seniority": 1}
        ok(client.put(f"/v1/employees/bulk-{i:03d}", json=renamed, headers=hr))
    total = 7 + 150 + 150 + 20
    verify = ok(client.get("/v1/audit/verify", headers=admin))
    assert {k: verify[k] for k in ("ok", "count", "total", "first_broken")} == {
        "ok": True,
        "count": total,
        "total": total,
        "first_broken": None,
    }
    assert verify["anchored"] is False  # no signing key in the test settings
    assert isinstance(verify["head_hash"], str) and len(verify["head_hash"]) == 64
    created = audit_entries(client, admin, action="client.created")
    updated = audit_entries(client, admin, action="client.updated")
    assert len(created) == 150 and len(updated) == 10
    assert [e["seq"] for e in audit_entries(client, admin)] == list(range(1, total + 1))


def test_created_counts_within_one_transaction_and_a_savepoint(db: Database) -> None:
    """Created-ness is this call's: a row an earlier call of the same transaction created or updated is updated, and
    inside a savepoint (where PostgreSQL stamps rows with the subtransaction's id) creations still count."""
    client_row = ClientIn.model_validate({"name": "Acme", "tier": "key", "owner": "o"})
    person = EmployeeIn.model_validate({"name": "O", "email": "o@example.com", "seniority": 2})
    with transaction(db) as session:
        assert service.upsert_employees(session, [("o", person)], actor="t", now=START) == (1, 0)
        assert service.upsert_clients(session, [("c1", client_row)], actor="t", now=START)[:2] == (1, 0)
        assert service.upsert_clients(session, [("c1", client_row), ("c2", client_row)], actor="t", now=START)[:2] == (
            1,
            1,
        )
        assert service.upsert_clients(session, [("c1", client_row)], actor="t", now=START)[:2] == (0, 1)
        with session.begin_nested():
            rows = [("c2", client_row), ("c3", client_row)]
            assert service.upsert_clients(session, rows, actor="t", now=START)[:2] == (1, 1)
            assert service.upsert_employees(session, [("p", person), ("o", person)], actor="t", now=START) == (1, 1)
    with db.session(write=False) as session:
        actions = session.execute(
            select(AuditEntry.entity_id, AuditEntry.action)
            .order_by(AuditEntry.seq)
            .where(AuditEntry.entity_type == "client")
        ).all()
    assert [tuple(a) for a in actions] == [
        ("c1", "client.created"),
        ("c1", "client.updated"),
        ("c2", "client.created"),
        ("c1", "client.updated"),
        ("c2", "client.updated"),
        ("c3", "client.created"),
    ]
