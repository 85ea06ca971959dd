"""POST /v1/access/events and /v1/alerts over HTTP: ingest, dedupe, validation, exfiltration alerts, scopes."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.access import events as events_service
from app.core.clock import ManualClock
from app.core.config import Settings
from app.core.db import Database
from app.main import create_app
from tests.support.db import snapshot
from tests.support.directory import (
    assert_problem,
    audit_entries,
    batch_clients,
    batch_employees,
    client_item,
    employee_body,
    employee_item,
    ok,
)

URL = "/v1/access/events"
Auth = Callable[..., dict[str, str]]
CLIENTS = [f"c{i:02d}" for i in range(1, 15)]


@pytest.fixture(scope="module")
def events_app(settings: Settings, clock: ManualClock) -> Iterator[FastAPI]:
    app = create_app(settings, clock=clock)
    yield app
    app.state.db.dispose()


@pytest.fixture
def api(events_app: FastAPI, db: Database) -> Iterator[TestClient]:
    with TestClient(events_app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def admin(auth: Auth) -> dict[str, str]:
    return auth("admin")


@pytest.fixture
def crm(auth: Auth) -> dict[str, str]:
    return auth("integration", sub="crm", scope="access:check")


@pytest.fixture
def people(api: TestClient, admin: dict[str, str]) -> None:
    batch_employees(api, admin, [employee_item(e) for e in ("mgr", "ann", "bob", "cat")])
    batch_clients(api, admin, [client_item(c, "mgr") for c in CLIENTS])


def t(clock: ManualClock, **delta: float) -> str:
    return (clock.now() - dt.timedelta(**delta)).isoformat().replace("+00:00", "Z")


def event(
    employee: str, client: str, occurred_at: str, *, action: str = "export", count: int = 1, **extra: Any
) -> dict[str, Any]:
    return {
        "employee": employee,
        "client": client,
        "action": action,
        "count": count,
        "occurred_at": occurred_at,
        **extra,
    }


def ingest(api: TestClient, headers: dict[str, str], events: list[dict[str, Any]]) -> dict[str, Any]:
    return ok(api.post(URL, json={"events": events}, headers=headers))


def set_leaving(api: TestClient, admin: dict[str, str], employee: str, clock: ManualClock, days: float = 14) -> None:
    exit_at = (clock.now() + dt.timedelta(days=days)).isoformat()
    body = employee_body(
        name=f"Employee {employee}", email=f"{employee}@example.com", status="leaving", exit_at=exit_at
    )
    ok(api.put(f"/v1/employees/{employee}", json=body, headers=admin))


def history(employee: str, clock: ManualClock, per_day: Callable[[int], int], days: int = 60) -> list[dict[str, Any]]:
    """One day's volume split over two events (an export and a download) on each of the past `days` days."""
    out = []
    for d in range(1, days + 1):
        total = per_day(d)
        first = total // 2
        if first:
            out.append(event(employee, CLIENTS[d % 3], t(clock, days=d, hours=3), count=first))
        if total - first:
            out.append(
                event(employee, CLIENTS[d % 3 + 1], t(clock, days=d, hours=5), action="download", count=total - first)
            )
        out.append(event(employee, CLIENTS[0], t(clock, days=d, hours=4), action="view", count=20))
    return out


def steady(d: int) -> int:
    return (4, 5, 6, 5)[d % 4]


def spike(employee: str, clock: ManualClock, clients: list[str], total: int) -> list[dict[str, Any]]:
    each = total // len(clients)
    return [
        event(employee, c, t(clock, minutes=10 + 5 * i), action="export" if i % 2 else "download", count=each)
        for i, c in enumerate(clients)
    ]


def alerts(api: TestClient, admin: dict[str, str], **params: Any) -> dict[str, Any]:
    return ok(api.get("/v1/alerts", params=params, headers=admin))


def db_session(api: TestClient) -> Any:
    app: Any = api.app
    return app.state.db.session(write=False)


# ---- ingest -----------------------------------------------------------------------------------


def test_ingest_stores_events_and_audits_the_batch(
    api: TestClient, admin: dict[str, str], crm: dict[str, str], people: None, clock: ManualClock, db: Database
) -> None:
    batch = [event("ann", "c01", t(clock, hours=1), count=3), event("bob", "c02", t(clock, hours=2), action="view")]
    assert ingest(api, crm, batch) == {"received": 2, "stored": 2, "duplicates": 0, "alerts_raised": []}
    rows = snapshot(db, ("access_event", "alert", "audit_entry"))["access_event"]
    assert len(rows) == 2
    entries = audit_entries(api, admin, action="access.events.ingested")
    assert len(entries) == 1
    entry = entries[0]
    assert entry["entity_type"] == "access_event_batch"
    assert entry["actor"] == "integration:crm"
    assert entry["data"]["stored"] == 2
    assert entry["data"]["actions"] == {"export": 3, "view": 1}


def test_dedupe_by_event_id_within_and_across_batches(
    api: TestClient, admin: dict[str, str], crm: dict[str, str], people: None, clock: ManualClock, db: Database
) -> None:
    at = t(clock, hours=1)
    first = [
        event("ann", "c01", at, event_id="e-1"),
        event("ann", "c01", at, event_id="e-1"),
        event("ann", "c02", at, event_id="e-2"),
        event("ann", "c02", at),
    ]
    assert ingest(api, crm, first) == {"received": 4, "stored": 3, "duplicates": 1, "alerts_raised": []}
    second = [
        event("ann", "c01", at, event_id="e-1"),
        event("ann", "c02", at, event_id="e-2"),
        event("ann", "c03", at, event_id="e-3"),
        event("ann", "c02", at),
    ]
    assert ingest(api, crm, second) == {"received": 4, "stored": 2, "duplicates": 2, "alerts_raised": []}
    assert len(snapshot(db, ("access_event", "alert", "audit_entry"))["access_event"]) == 5
    # A full replay changes nothing and leaves no audit entry.
    before = snapshot(db, ("access_event", "alert", "audit_entry"))
    assert ingest(api, crm, second[:3]) == {"received": 3, "stored": 0, "duplicates": 3, "alerts_raised": []}
    assert snapshot(db, ("access_event", "alert", "audit_entry")) == before
    assert len(audit_entries(api, admin, action="access.events.ingested")) == 2


def test_unknown_employee_or_client_names_the_row_and_writes_nothing(
    api: TestClient, crm: dict[str, str], people: None, clock: ManualClock, db: Database
) -> None:
    ingest(api, crm, [event("ann", "c01", t(clock, hours=1), event_id="keep")])
    before = snapshot(db, ("access_event", "alert", "audit_entry"))
    batch = [
        event("ann", "c01", t(clock, hours=1), event_id="new"),
        event("ghost", "c01", t(clock, hours=1)),
        event("ann", "nowhere", t(clock, hours=1)),
    ]
    body = assert_problem(
        api.post(URL, json={"events": batch}, headers=crm), 422, loc=["body", "events", 1, "employee"]
    )
    assert any(e["loc"] == ["body", "events", 2, "client"] for e in body["errors"])
    assert snapshot(db, ("access_event", "alert", "audit_entry")) == before


def test_more_than_5000_events_is_a_422(
    api: TestClient, crm: dict[str, str], people: None, clock: ManualClock, db: Database
) -> None:
    one = event("ann", "c01", t(clock, hours=1))
    assert_problem(api.post(URL, json={"events": [one] * 5001}, headers=crm), 422, loc=["body", "events"])
    assert_problem(api.post(URL, json={"events": []}, headers=crm), 422, loc=["body", "events"])
    assert snapshot(db, ("access_event", "alert", "audit_entry"))["access_event"] == []
    assert ingest(api, crm, [one] * 5000)["stored"] == 5000


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"count": 0}, ["body", "events", 0, "count"]),
        ({"count": 1_000_001}, ["body", "events", 0, "count"]),
        ({"action": "print"}, ["body", "events", 0, "action"]),
        ({"occurred_at": "2026-11-02T09:00:00"}, ["body", "events", 0, "occurred_at"]),
        ({"event_id": ""}, ["body", "events", 0, "event_id"]),
        ({"extra": 1}, ["body", "events", 0, "extra"]),
    ],
)
def test_bad_rows_are_422(
    api: TestClient, crm: dict[str, str], people: None, clock: ManualClock, change: dict[str, Any], loc: list[Any]
) -> None:
    assert_problem(
        api.post(URL, json={"events": [{**event("ann", "c01", t(clock, hours=1)), **change}]}, headers=crm),
        422,
        loc=loc,
    )


def test_future_occurred_at_is_a_422(
    api: TestClient, crm: dict[str, str], people: None, clock: ManualClock, db: Database
) -> None:
    late = event("ann", "c01", t(clock, minutes=-6))
    assert_problem(
        api.post(URL, json={"events": [event("ann", "c01", t(clock)), late]}, headers=crm),
        422,
        loc=["body", "events", 1, "occurred_at"],
    )
    assert snapshot(db, ("access_event", "alert", "audit_entry"))["access_event"] == []
    assert ingest(api, crm, [event("ann", "c01", t(clock, minutes=-4))])["stored"] == 1  # within the allowed skew


# ---- exfiltration alerts ----------------------------------------------------------------------


def test_a_leavers_export_spike_raises_an_alert_naming_the_clients(
    api: TestClient, admin: dict[str, str], crm: dict[str, str], people: None, clock: ManualClock
) -> None:
    set_leaving(api, admin, "ann", clock)
    assert ingest(api, crm, history("ann", clock, steady))["alerts_raised"] == []
    twelve = CLIENTS[2:14]
    result = ingest(api, crm, spike("ann", clock, twelve, 300))
    assert len(result["alerts_raised"]) == 1
    alert = ok(api.get(f"/v1/alerts/{result['alerts_raised'][0]}", headers=admin))
    assert alert["employee"] == "ann"
    assert alert["kind"] == "exfiltration"
    assert alert["status"] == "open"
    assert alert["clients"] == sorted(twelve)
    assert alert["score"] >= 6
    assert alert["details"]["median"] == 5
    assert alert["details"]["recent"] == 300
    assert "mad" in alert["details"]
    assert alert["window_end"].startswith("2026-11-02T09:00:00")
    assert alert["window_start"].startswith("2026-11-01T09:00:00")
    raised = audit_entries(api, admin, action="alert.raised")
    assert [e["entity_id"] for e in raised] == [str(alert["id"])]
    assert raised[0]["data"]["clients"] == sorted(twelve)

    # A second spike updates the same open alert.
    clock.advance(dt.timedelta(hours=2))
    again = ingest(api, crm, spike("ann", clock, ["c01", "c02"], 200))
    assert again["alerts_raised"] == [alert["id"]]
    page = alerts(api, admin, employee="ann")
    assert [a["id"] for a in page["items"]] == [alert["id"]]
    updated = page["items"][0]
    assert updated["clients"] == sorted({*twelve, "c01", "c02"})
    assert updated["details"]["recent"] == 500
    assert updated["details"]["evaluations"] == 2
    assert updated["updated_at"] > alert["updated_at"]
    assert [e["entity_id"] for e in audit_entries(api, admin, action="alert.updated")] == [str(alert["id"])]

    with db_session(api) as session:
        assert events_service.open_alert_clients(session, ["ann", "bob"]) == {"ann": {*twelve, "c01", "c02"}}


def test_an_exit_within_30_days_counts_as_leaving(
    api: TestClient, admin: dict[str, str], crm: dict[str, str], people: None, clock: ManualClock
) -> None:
    body = employee_body(
        name="Employee bob", email="bob@example.com", exit_at=(clock.now() + dt.timedelta(days=20)).isoformat()
    )
    ok(api.put("/v1/employees/bob", json=body, headers=admin))
    ingest(api, crm, history("bob", clock, steady))
    assert len(ingest(api, crm, spike("bob", clock, CLIENTS[:12], 300))["alerts_raised"]) == 1


def test_the_same_spike_for_an_active_employee_raises_nothing(
    api: TestClient, admin: dict[str, str], crm: dict[str, str], people: None, clock: ManualClock
) -> None:
    body = employee_body(
        name="Employee bob", email="bob@example.com", exit_at=(clock.now() + dt.timedelta(days=45)).isoformat()
    )
    ok(api.put("/v1/employees/bob", json=body, headers=admin))  # active, exit beyond 30 days
    ingest(api, crm, history("bob", clock, steady) + history("cat", clock, steady))
    assert (
        ingest(api, crm, spike("bob", clock, CLIENTS[:12], 300) + spike("cat", clock, CLIENTS[:12], 300))[
            "alerts_raised"
        ]
        == []
    )
    assert alerts(api, admin)["items"] == []


def test_steady_heavy_use_by_a_leaver_raises_nothing(
    api: TestClient, admin: dict[str, str], crm: dict[str, str], people: None, clock: ManualClock
) -> None:
    set_leaving(api, admin, "ann", clock)
    ingest(api, crm, history("ann", clock, lambda d: 100))
    assert ingest(api, crm, spike("ann", clock, CLIENTS[:4], 100))["alerts_raised"] == []
    assert alerts(api, admin)["items"] == []


def test_a_leaver_without_history_is_judged_by_the_absolute_rule(
    api: TestClient, admin: dict[str, str], crm: dict[str, str], people: None, clock: ManualClock
) -> None:
    set_leaving(api, admin, "ann", clock)
    assert ingest(api, crm, spike("ann", clock, CLIENTS[:5], 50))["alerts_raised"] == []
    raised = ingest(api, crm, spike("ann", clock, CLIENTS[5:10], 75))["alerts_raised"]  # 125 today
    assert len(raised) == 1
    alert = ok(api.get(f"/v1/alerts/{raised[0]}", headers=admin))
    assert alert["details"]["rule"] == "absolute"
    assert alert["clients"] == sorted(CLIENTS[:10])


def _raise_alert(api: TestClient, admin: dict[str, str], crm: dict[str, str], clock: ManualClock, employee: str) -> int:
    set_leaving(api, admin, employee, clock)
    raised = ingest(api, crm, spike(employee, clock, CLIENTS[:5], 150))["alerts_raised"]
    assert len(raised) == 1
    return int(raised[0])


def test_resolve_once_then_409(
    api: TestClient, admin: dict[str, str], crm: dict[str, str], people: None, clock: ManualClock, db: Database
) -> None:
    alert_id = _raise_alert(api, admin, crm, clock, "ann")
    url = f"/v1/alerts/{alert_id}/resolve"
    done = ok(
        api.post(
            url, json={"resolution": "Exports were for the client's audit; confirmed by the manager."}, headers=admin
        )
    )
    assert done["status"] == "resolved"
    assert done["resolved_by"] == "admin:test-admin"
    assert done["resolved_at"].startswith("2026-11-02T09:00:00")
    assert done["resolution"].startswith("Exports were")
    before = snapshot(db, ("access_event", "alert", "audit_entry"))
    assert_problem(api.post(url, json={"resolution": "again"}, headers=admin), 409)
    assert snapshot(db, ("access_event", "alert", "audit_entry")) == before
    assert [e["entity_id"] for e in audit_entries(api, admin, action="alert.resolved")] == [str(alert_id)]
    assert_problem(api.post(url, json={"resolution": ""}, headers=admin), 422, loc=["body", "resolution"])
    assert_problem(api.post(url, json={"resolution": "x" * 2001}, headers=admin), 422, loc=["body", "resolution"])
    assert_problem(api.post("/v1/alerts/999999/resolve", json={"resolution": "x"}, headers=admin), 404)
    assert_problem(api.get("/v1/alerts/999999", headers=admin), 404)

    # A new spike after resolution opens a new alert rather than reopening the old one.
    with db_session(api) as session:
        assert events_service.open_alert_clients(session, ["ann"]) == {}
    new = ingest(api, crm, spike("ann", clock, CLIENTS[5:10], 150))["alerts_raised"]
    assert len(new) == 1 and new[0] != alert_id


def test_alerts_list_filters_and_pagination(
    api: TestClient, admin: dict[str, str], crm: dict[str, str], people: None, clock: ManualClock
) -> None:
    ids = [_raise_alert(api, admin, crm, clock, e) for e in ("ann", "bob", "cat")]
    ok(api.post(f"/v1/alerts/{ids[1]}/resolve", json={"resolution": "benign"}, headers=admin))
    assert [a["id"] for a in alerts(api, admin)["items"]] == ids[::-1]
    assert [a["id"] for a in alerts(api, admin, status="open")["items"]] == [ids[2], ids[0]]
    assert [a["id"] for a in alerts(api, admin, status="resolved")["items"]] == [ids[1]]
    assert [a["id"] for a in alerts(api, admin, employee="cat")["items"]] == [ids[2]]
    assert alerts(api, admin, employee="mgr")["items"] == []
    first = alerts(api, admin, limit=2)
    assert [a["id"] for a in first["items"]] == [ids[2], ids[1]] and first["next_offset"] == 2
    last = alerts(api, admin, limit=2, offset=2)
    assert [a["id"] for a in last["items"]] == [ids[0]] and last["next_offset"] is None
    assert_problem(api.get("/v1/alerts", params={"status": "closed"}, headers=admin), 422, loc=["query", "status"])
    assert_problem(api.get("/v1/alerts", params={"employee": "bad id"}, headers=admin), 422, loc=["query", "employee"])


def test_scopes(api: TestClient, auth: Auth, crm: dict[str, str], people: None, clock: ManualClock) -> None:
    one = {"events": [event("ann", "c01", t(clock, hours=1))]}
    assert ok(api.post(URL, json=one, headers=crm))["stored"] == 1
    assert_problem(api.get("/v1/alerts", headers=crm), 403)
    assert_problem(api.get("/v1/alerts", headers=auth("account_manager", emp="ann")), 403)
    assert_problem(api.get("/v1/alerts/1", headers=auth("manager", emp="mgr")), 403)
    assert_problem(api.post("/v1/alerts/1/resolve", json={"resolution": "x"}, headers=auth("hr")), 403)
    assert_problem(api.post(URL, json=one, headers=auth("integration", scope="access:admin")), 403)
    # An account manager holds access:check but may not report events (they could pad their own baseline).
    assert_problem(api.post(URL, json=one, headers=auth("account_manager", emp="ann")), 403)
    assert ok(api.post(URL, json=one, headers=auth("hr")))["stored"] == 1
    assert api.post(URL, json=one).status_code == 401
    assert ok(api.get("/v1/alerts", headers=auth("integration", scope="access:admin")))["items"] == []


def test_concurrent_spikes_share_one_open_alert(
    events_app: FastAPI,
    api: TestClient,
    admin: dict[str, str],
    crm: dict[str, str],
    people: None,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_leaving(api, admin, "ann", clock)
    original = events_service.anomaly.detect

    def slow_detect(*args: Any, **kwargs: Any) -> Any:
        threading.Event().wait(0.3)  # widen the window between "no open alert yet" and the insert
        return original(*args, **kwargs)

    monkeypatch.setattr(events_service.anomaly, "detect", slow_detect)
    shared = event("ann", "c14", t(clock, minutes=1), event_id="shared")
    batches = [spike("ann", clock, CLIENTS[3 * i : 3 * i + 3], 150) + [shared] for i in range(4)]
    clients = [TestClient(events_app, raise_server_exceptions=False) for _ in batches]
    barrier = threading.Barrier(len(batches))
    responses: list[Any] = []

    def post(c: TestClient, batch: list[dict[str, Any]]) -> None:
        barrier.wait()
        responses.append(c.post(URL, json={"events": batch}, headers=crm))

    threads = [threading.Thread(target=post, args=(c, b)) for c, b in zip(clients, batches, strict=True)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    for c in clients:
        c.close()
    assert [r.status_code for r in responses] == [200] * 4, [r.text for r in responses]
    assert sum(r.json()["stored"] for r in responses) == 4 * 3 + 1
    page = alerts(api, admin)
    assert len(page["items"]) == 1
    assert page["items"][0]["clients"] == sorted(CLIENTS[:12] + ["c14"])
    assert {r.json()["alerts_raised"][0] for r in responses} == {page["items"][0]["id"]}
    assert ok(api.get("/v1/audit/verify", headers=admin))["ok"] is True
