"""POST /v1/hooks/hr when deliveries arrive out of order (issue #3).

An employee's `employee.exit` and `employee.exit_cancelled` are ordered by the body's `timestamp` (when the event
happened at HR), not by arrival and not by the `webhook-timestamp` header (the signing time of the attempt):

- older than the latest one processed for the employee: answered 200 `ignored: "stale"`, audited as
  `hr_event.ignored`, and nothing else is written but its inbound_event row (so a replay answers the same);
- the same timestamp as the latest: applied, so the later arrival wins (webhook-ids are opaque, not ordered);
- every processed event counts, a no-op exit_cancelled too; a refused one (4xx) does not.

Every event goes through the real signed webhook, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select

from app.core.clock import ManualClock
from app.core.db import Database
from app.intake import service as hooks_service
from app.intake.models import InboundEvent
from app.main import create_app
from app.metadata import metadata
from app.transfer import service as transfer_service
from app.transfer.models import Handover
from tests.conftest import START, make_settings
from tests.support.company import EFFECTIVE
from tests.support.db import employee, handovers
from tests.support.hr import SECRET, URL, deliver, ok, signed
from tests.support.problems import assert_problem

T0 = START - dt.timedelta(hours=4)
T1 = START - dt.timedelta(hours=3)
T2 = START - dt.timedelta(hours=2)
T3 = START - dt.timedelta(hours=1)


@pytest.fixture
def hook_app(database_url: str, clock: ManualClock) -> Iterator[FastAPI]:
    app = create_app(make_settings(database_url, hr_webhook_secret=SECRET), clock=clock)
    yield app
    app.state.db.dispose()


@pytest.fixture
def hook(hook_app: FastAPI, db: Database) -> Iterator[TestClient]:
    with TestClient(hook_app, raise_server_exceptions=False) as c:
        yield c


def _iso(t: dt.datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def exit_at(at: dt.datetime, effective_at: dt.datetime = EFFECTIVE, employee: str = "e0") -> dict[str, Any]:
    return {
        "type": "employee.exit",
        "timestamp": _iso(at),
        "data": {"employee": employee, "effective_at": _iso(effective_at), "reason": "resignation"},
    }


def cancelled_at(at: dt.datetime, employee: str = "e0") -> dict[str, Any]:
    return {
        "type": "employee.exit_cancelled",
        "timestamp": _iso(at),
        "data": {"employee": employee, "reason": "stays after all"},
    }


def updated_at(at: dt.datetime, title: str, employee: str = "e0") -> dict[str, Any]:
    data = {"employee": employee, "name": "Eve Zero", "email": f"{employee}@example.com", "seniority": 2}
    return {"type": "employee.updated", "timestamp": _iso(at), "data": {**data, "title": title, "manager": "m1"}}


def send(hook: TestClient, clock: ManualClock, event: dict[str, Any] | bytes, **kwargs: Any) -> Response:
    return deliver(hook, event, clock=clock, **kwargs)


def tables(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in primary-key order."""
    with db.engine.connect() as conn:
        return {
            t.name: [tuple(r) for r in conn.execute(select(t).order_by(*t.primary_key.columns))]
            for t in metadata.sorted_tables
        }


def changed(before: dict[str, list[tuple[Any, ...]]], after: dict[str, list[tuple[Any, ...]]]) -> set[str]:
    return {name for name in before if before[name] != after[name]}


def ignored_audits(db: Database) -> list[dict[str, Any]]:
    audit = metadata.tables["audit_entry"]
    with db.engine.connect() as conn:
        rows = conn.execute(
            select(audit.c.actor, audit.c.entity_type, audit.c.entity_id, audit.c.data)
            .where(audit.c.action == "hr_event.ignored")
            .order_by(audit.c.seq)
        ).all()
    return [{"actor": r[0], "entity_type": r[1], "entity_id": r[2], "data": r[3]} for r in rows]


def only(db: Database, leaver: str = "e0") -> Handover:
    [h] = handovers(db, leaver)
    return h


def assert_stale(body: dict[str, Any], *, webhook_id: str | None = None) -> None:
    assert body["ignored"] == "stale", body
    assert body["replayed"] is False
    assert body["handover_id"] is None
    if webhook_id is not None:
        assert body["webhook_id"] == webhook_id


# ---- the two cases ----------------------------------------------------------------------


def test_older_exit_cancelled_after_a_newer_exit_leaves_the_handover_open(
    hook: TestClient, db: Database, clock: ManualClock, company: Any
) -> None:
    opened = ok(send(hook, clock, exit_at(T2), msg_id="msg_exit_t2"))
    assert opened["ignored"] is None
    before = tables(db)
    late = ok(send(hook, clock, cancelled_at(T1), msg_id="msg_cancel_t1"))
    assert_stale(late, webhook_id="msg_cancel_t1")
    h = only(db)
    assert (h.id, h.status, h.effective_at) == (opened["handover_id"], "draft", EFFECTIVE)
    leaver = employee(db, "e0")
    assert leaver is not None and (leaver.status, leaver.exit_at) == ("leaving", EFFECTIVE)
    assert changed(before, tables(db)) == {"inbound_event", "audit_entry"}


def test_older_exit_after_a_newer_exit_cancelled_does_not_reopen(
    hook: TestClient, db: Database, clock: ManualClock, company: Any
) -> None:
    ok(send(hook, clock, exit_at(T0)))
    cancelled = ok(send(hook, clock, cancelled_at(T2)))
    assert cancelled["ignored"] is None and cancelled["handover_id"] is not None
    before = tables(db)
    assert_stale(ok(send(hook, clock, exit_at(T1))))
    assert [h.status for h in handovers(db)] == ["cancelled"]
    leaver = employee(db, "e0")
    assert leaver is not None and (leaver.status, leaver.exit_at) == ("active", None)
    assert changed(before, tables(db)) == {"inbound_event", "audit_entry"}


def test_a_no_op_exit_cancelled_still_counts(hook: TestClient, db: Database, clock: ManualClock, company: Any) -> None:
    """HR said at T2 that the exit is withdrawn; an exit from T1 delivered afterwards must not open one."""
    nothing = ok(send(hook, clock, cancelled_at(T2)))
    assert (nothing["handover_id"], nothing["ignored"]) == (None, None)
    assert_stale(ok(send(hook, clock, exit_at(T1))))
    assert handovers(db) == []


def test_a_newer_event_applies_after_a_stale_one(
    hook: TestClient, db: Database, clock: ManualClock, company: Any
) -> None:
    ok(send(hook, clock, exit_at(T0)))
    ok(send(hook, clock, cancelled_at(T2)))
    assert_stale(ok(send(hook, clock, exit_at(T1))))
    reopened = ok(send(hook, clock, exit_at(T3)))
    assert reopened["ignored"] is None
    assert [h.status for h in handovers(db)] == ["cancelled", "draft"]
    assert reopened["handover_id"] == handovers(db)[1].id


def test_in_order_events_all_apply(hook: TestClient, db: Database, clock: ManualClock, company: Any) -> None:
    for event in (exit_at(T0), cancelled_at(T1), exit_at(T2), cancelled_at(T3)):
        assert ok(send(hook, clock, event))["ignored"] is None
    assert [h.status for h in handovers(db)] == ["cancelled", "cancelled"]
    assert ignored_audits(db) == []


def test_employees_are_ordered_independently(hook: TestClient, db: Database, clock: ManualClock, company: Any) -> None:
    ok(send(hook, clock, exit_at(T2, employee="e0")))
    other = ok(send(hook, clock, exit_at(T1, employee="e1")))
    assert other["ignored"] is None
    assert only(db, "e1").status == "draft"


# ---- reschedules --------------------------------------------------------------------------------


def test_an_older_exit_does_not_move_a_newer_effective_time_back(
    hook: TestClient, db: Database, clock: ManualClock, company: Any
) -> None:
    first, moved, old = EFFECTIVE, EFFECTIVE + dt.timedelta(days=14), EFFECTIVE + dt.timedelta(days=7)
    ok(send(hook, clock, exit_at(T0, first)))
    assert ok(send(hook, clock, exit_at(T2, moved)))["ignored"] is None
    assert only(db).effective_at == moved
    before = tables(db)
    assert_stale(ok(send(hook, clock, exit_at(T1, old))))
    h = only(db)
    assert h.effective_at == moved
    leaver = employee(db, "e0")
    assert leaver is not None and leaver.exit_at == moved
    assert changed(before, tables(db)) == {"inbound_event", "audit_entry"}


def test_the_newest_exit_date_wins_whatever_the_arrival_order(
    hook: TestClient, db: Database, clock: ManualClock, company: Any
) -> None:
    """Three reschedules delivered newest first: the first to arrive is the one that stays."""
    dates = {T1: EFFECTIVE, T2: EFFECTIVE + dt.timedelta(days=3), T3: EFFECTIVE + dt.timedelta(days=5)}
    results = [ok(send(hook, clock, exit_at(t, dates[t]))) for t in (T3, T1, T2)]
    assert [r["ignored"] for r in results] == [None, "stale", "stale"]
    assert only(db).effective_at == dates[T3]


def test_a_stale_exit_for_an_executed_handover_is_ignored_not_refused(
    hook: TestClient, db: Database, clock: ManualClock, company: Any
) -> None:
    """A fresh exit for an executed handover is a 409; a stale one is not news, so it answers 200 ignored."""
    ok(send(hook, clock, exit_at(T2)))
    with db.engine.begin() as conn:  # executed, as far as HR events are concerned
        conn.execute(metadata.tables["handover"].update().values(status="executed"))
    assert_stale(ok(send(hook, clock, exit_at(T1, EFFECTIVE + dt.timedelta(days=1)))))
    assert_problem(send(hook, clock, exit_at(T3, EFFECTIVE + dt.timedelta(days=1))), 409)


# ---- equal timestamps ---------------------------------------------------------------------------


@pytest.mark.parametrize("ids", [("msg_a", "msg_b"), ("msg_b", "msg_a")])
def test_equal_timestamps_apply_in_arrival_order(
    hook: TestClient, db: Database, clock: ManualClock, company: Any, ids: tuple[str, str]
) -> None:
    """The rule: same timestamp, different webhook-ids -> both apply, the later arrival wins (ids are not ordered)."""
    first, second = EFFECTIVE + dt.timedelta(days=1), EFFECTIVE + dt.timedelta(days=2)
    ok(send(hook, clock, exit_at(T2, first), msg_id=ids[0]))
    assert ok(send(hook, clock, exit_at(T2, second), msg_id=ids[1]))["ignored"] is None
    assert only(db).effective_at == second
    assert ignored_audits(db) == []


def test_equal_timestamps_exit_then_cancel_cancels(
    hook: TestClient, db: Database, clock: ManualClock, company: Any
) -> None:
    ok(send(hook, clock, exit_at(T2), msg_id="msg_z"))
    assert ok(send(hook, clock, cancelled_at(T2), msg_id="msg_a"))["ignored"] is None
    assert only(db).status == "cancelled"


def test_equal_timestamps_cancel_then_exit_opens(
    hook: TestClient, db: Database, clock: ManualClock, company: Any
) -> None:
    ok(send(hook, clock, exit_at(T0)))
    ok(send(hook, clock, cancelled_at(T2), msg_id="msg_z"))
    reopened = ok(send(hook, clock, exit_at(T2), msg_id="msg_a"))
    assert reopened["ignored"] is None
    assert [h.status for h in handovers(db)] == ["cancelled", "draft"]


def test_sub_second_timestamps_are_ordered(hook: TestClient, db: Database, clock: ManualClock, company: Any) -> None:
    later = T2 + dt.timedelta(microseconds=500)
    ok(send(hook, clock, exit_at(later)))
    assert_stale(ok(send(hook, clock, cancelled_at(T2))))
    assert only(db).status == "draft"


def test_offsets_are_compared_as_instants(hook: TestClient, db: Database, clock: ManualClock, company: Any) -> None:
    """07:00Z written as 08:30+01:30 is later than 06:30Z written as 06:30Z (not earlier, as text would say)."""
    ok(send(hook, clock, {**exit_at(T2), "timestamp": "2026-11-02T08:30:00+01:30"}))  # = 07:00Z = T2
    assert_stale(ok(send(hook, clock, {**cancelled_at(T1), "timestamp": "2026-11-02T06:30:00Z"})))
    assert ok(send(hook, clock, {**cancelled_at(T2), "timestamp": "2026-11-02T02:00:00-05:00"}))["ignored"] is None
    assert only(db).status == "cancelled"


# ---- the event's time, not the delivery's ------------------------------------------------------


def test_the_webhook_timestamp_header_does_not_order(
    hook: TestClient, db: Database, clock: ManualClock, company: Any
) -> None:
    """A late retry of an old event is signed now; a newer event may be signed earlier (within the tolerance)."""
    now = int(clock.now().timestamp())
    ok(send(hook, clock, exit_at(T2), ts=now - 240))
    assert_stale(ok(send(hook, clock, cancelled_at(T1), ts=now)))
    assert only(db).status == "draft"


# ---- what a stale event writes ------------------------------------------------------------------


def test_a_stale_event_is_audited_and_writes_nothing_else(
    hook: TestClient, db: Database, clock: ManualClock, company: Any, auth: Any
) -> None:
    ok(send(hook, clock, exit_at(T2), msg_id="msg_latest"))
    before = tables(db)
    clock.advance(dt.timedelta(minutes=1))
    late = ok(send(hook, clock, cancelled_at(T1), msg_id="msg_late"))
    assert late == {
        "webhook_id": "msg_late",
        "type": "employee.exit_cancelled",
        "replayed": False,
        "handover_id": None,
        "ignored": "stale",
    }
    after = tables(db)
    assert changed(before, after) == {"inbound_event", "audit_entry"}
    assert len(after["audit_entry"]) == len(before["audit_entry"]) + 1
    assert len(after["inbound_event"]) == len(before["inbound_event"]) + 1
    [audit] = ignored_audits(db)
    assert audit == {
        "actor": "hr_webhook",
        "entity_type": "employee",
        "entity_id": "e0",
        "data": {
            "reason": "stale",
            "webhook_id": "msg_late",
            "type": "employee.exit_cancelled",
            "timestamp": T1.isoformat(),
            "latest": {"webhook_id": "msg_latest", "type": "employee.exit", "timestamp": T2.isoformat()},
        },
    }
    with db.session(write=False) as session:
        row = session.get(InboundEvent, "msg_late")
        assert row is not None
        assert (row.event_type, row.employee_id, row.occurred_at, row.received_at) == (
            "employee.exit_cancelled",
            "e0",
            T1,
            clock.now(),
        )
        assert row.result == {"handover_id": None, "ignored": "stale"}
    # The audit chain still verifies.
    r = hook.get("/v1/audit/verify", headers=auth("auditor"))
    assert r.status_code == 200 and r.json()["ok"] is True, r.text


def test_a_replayed_stale_event_answers_stale_again_and_changes_nothing(
    hook: TestClient, db: Database, clock: ManualClock, company: Any
) -> None:
    ok(send(hook, clock, exit_at(T2)))
    body, headers = signed(cancelled_at(T1), clock=clock)
    first = ok(hook.post(URL, content=body, headers=headers))
    assert_stale(first)
    before = tables(db)
    again = ok(hook.post(URL, content=body, headers=headers))
    assert again == {**first, "replayed": True}
    assert tables(db) == before
    assert len(ignored_audits(db)) == 1


def test_an_applied_event_records_its_time(hook: TestClient, db: Database, clock: ManualClock, company: Any) -> None:
    ok(send(hook, clock, {**exit_at(T2), "timestamp": "2026-11-02T08:00:00.123456+01:00"}, msg_id="msg_t"))
    with db.session(write=False) as session:
        row = session.get(InboundEvent, "msg_t")
        assert row is not None
        assert (row.employee_id, row.occurred_at) == ("e0", dt.datetime(2026, 11, 2, 7, 0, 0, 123456, tzinfo=dt.UTC))
        assert row.result == {"handover_id": only(db).id}


# ---- what does not take part ---------------------------------------------------------------------


def test_an_older_employee_updated_does_not_overwrite_a_newer_record(
    hook: TestClient, db: Database, clock: ManualClock, company: Any
) -> None:
    """A late retry of an old update is stale like an old exit: the newer record stays, audited, nothing else."""
    assert ok(send(hook, clock, updated_at(T3, "Senior"), msg_id="msg_upd_t3"))["ignored"] is None
    before = tables(db)
    late = ok(send(hook, clock, updated_at(T1, "Junior"), msg_id="msg_upd_t1"))
    assert_stale(late, webhook_id="msg_upd_t1")
    record = employee(db, "e0")
    assert record is not None and record.title == "Senior"
    assert changed(before, tables(db)) == {"inbound_event", "audit_entry"}
    [audit] = ignored_audits(db)
    assert audit["data"]["latest"] == {
        "webhook_id": "msg_upd_t3",
        "type": "employee.updated",
        "timestamp": T3.isoformat(),
    }
    newer = ok(send(hook, clock, updated_at(T3 + dt.timedelta(minutes=30), "Lead")))
    assert newer["ignored"] is None
    record = employee(db, "e0")
    assert record is not None and record.title == "Lead"


def test_updates_and_exits_are_ordered_apart(hook: TestClient, db: Database, clock: ManualClock, company: Any) -> None:
    """An update older than the latest exit still applies, and an exit older than the latest update too: HR's
    record and the exit are separate streams (an update keeps the exit state it does not mention)."""
    ok(send(hook, clock, updated_at(T3, "Senior")))
    assert ok(send(hook, clock, exit_at(T2)))["ignored"] is None
    assert ok(send(hook, clock, updated_at(T3 + dt.timedelta(minutes=45), "Lead")))["ignored"] is None
    older_exit = ok(send(hook, clock, exit_at(T1, EFFECTIVE + dt.timedelta(days=1))))
    assert older_exit["ignored"] == "stale"  # stale against the exit at T2; the updates do not order it
    record = employee(db, "e0")
    assert record is not None and (record.title, record.status, record.exit_at) == ("Lead", "leaving", EFFECTIVE)
    assert only(db).status == "draft"


@pytest.mark.parametrize("path", ["hook", "put", "batch"])
def test_an_update_that_omits_the_exit_state_keeps_it(
    hook: TestClient, db: Database, clock: ManualClock, company: Any, auth: Any, path: str
) -> None:
    """Before: an HR update of a leaver's title (no status in it) made them `active` with no exit time again, so
    they were back in the candidate pool for their colleagues' clients while their own handover was open."""
    ok(send(hook, clock, exit_at(T1)))
    leaver = employee(db, "e0")
    assert leaver is not None and (leaver.status, leaver.exit_at) == ("leaving", EFFECTIVE)
    record = {"name": "Eve Zero", "email": "e0@example.com", "seniority": 2, "title": "Senior", "manager": "m1"}
    if path == "hook":
        ok(send(hook, clock, updated_at(T2, "Senior")))
    elif path == "put":
        r = hook.put("/v1/employees/e0", json=record, headers=auth("hr"))
        assert r.status_code == 200, r.text
        assert (r.json()["status"], r.json()["exit_at"]) == ("leaving", _iso(EFFECTIVE))
    else:
        r = hook.post("/v1/employees/batch", json={"items": [{**record, "external_id": "e0"}]}, headers=auth("hr"))
        assert r.status_code == 200, r.text
    leaver = employee(db, "e0")
    assert leaver is not None and (leaver.title, leaver.status, leaver.exit_at) == ("Senior", "leaving", EFFECTIVE)
    audit = metadata.tables["audit_entry"]
    with db.engine.connect() as conn:
        data = conn.execute(
            select(audit.c.data)
            .where(audit.c.action == "employee.updated", audit.c.entity_id == "e0")
            .order_by(audit.c.seq.desc())
            .limit(1)
        ).scalar_one()
    assert data["title"] == "Senior" and "status" not in data and "exit_at" not in data  # what was applied


def test_an_update_that_gives_the_exit_state_sets_both(
    hook: TestClient, db: Database, clock: ManualClock, company: Any, auth: Any
) -> None:
    ok(send(hook, clock, exit_at(T1)))
    r = hook.put(
        "/v1/employees/e0",
        json={"name": "Eve Zero", "email": "e0@example.com", "seniority": 2, "status": "active"},
        headers=auth("hr"),
    )
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["exit_at"]) == ("active", None)


def test_a_new_employee_without_an_exit_state_is_active(hook: TestClient, db: Database, clock: ManualClock) -> None:
    event = updated_at(T1, "New", employee="newbie")
    del event["data"]["manager"]
    ok(send(hook, clock, event))
    record = employee(db, "newbie")
    assert record is not None and (record.title, record.status, record.exit_at) == ("New", "active", None)


def test_a_refused_event_does_not_count(hook: TestClient, db: Database, clock: ManualClock, company: Any) -> None:
    """An exit at T3 for an employee HR has not sent yet is refused (422) and rolled back: it orders nothing."""
    assert_problem(send(hook, clock, exit_at(T3, employee="newbie")), 422, loc=["body", "data", "employee"])
    ok(send(hook, clock, updated_at(T0, "New", employee="newbie")))
    applied = ok(send(hook, clock, exit_at(T1, employee="newbie")))
    assert applied["ignored"] is None
    assert only(db, "newbie").status == "draft"


# ---- malformed and implausible timestamps --------------------------------------------------------


@pytest.mark.parametrize(
    "timestamp",
    [
        "yesterday",
        "2026-11-02T09:00:00",  # no offset
        "2026-11-02 09:00:00Z",  # not RFC 3339 (space)
        "2026-11-02",  # a date
        "2026-13-02T09:00:00Z",  # month 13
        "2026-11-02T25:00:00Z",
        "1793610000",  # Unix seconds as text
        1793610000,  # Unix seconds as a number
        1793610000.5,
        True,
        None,
        "",
        "9999-12-31T23:59:59-01:00",  # overflows when converted to UTC
        "1899-12-31T23:59:59Z",
        {"at": "2026-11-02T09:00:00Z"},
    ],
)
def test_malformed_timestamp_is_422_and_writes_nothing(
    hook: TestClient, db: Database, clock: ManualClock, company: Any, timestamp: Any
) -> None:
    ok(send(hook, clock, exit_at(T0)))
    before = tables(db)
    for event in (exit_at(T1), cancelled_at(T1)):
        event["timestamp"] = timestamp
        assert_problem(send(hook, clock, event, msg_id="msg_bad"), 422, loc=["body", "timestamp"])
    assert tables(db) == before
    # The id was not consumed: the sender's corrected retry is processed.
    assert ok(send(hook, clock, cancelled_at(T2), msg_id="msg_bad"))["replayed"] is False
    assert only(db).status == "cancelled"


def test_missing_timestamp_is_422_and_writes_nothing(
    hook: TestClient, db: Database, clock: ManualClock, company: Any
) -> None:
    event = cancelled_at(T1)
    del event["timestamp"]
    ok(send(hook, clock, exit_at(T0)))
    before = tables(db)
    problem = assert_problem(send(hook, clock, event), 422, loc=["body", "timestamp"])
    assert any(e["type"] == "missing" for e in problem["errors"])
    assert tables(db) == before


def test_a_timestamp_in_the_future_is_422_and_writes_nothing(
    hook: TestClient, db: Database, clock: ManualClock, company: Any
) -> None:
    """Accepted, a time from next year would make every real event of the employee stale."""
    ok(send(hook, clock, exit_at(T0)))
    before = tables(db)
    for ahead in (dt.timedelta(minutes=5, seconds=1), dt.timedelta(days=365)):
        problem = assert_problem(
            send(hook, clock, cancelled_at(START + ahead), msg_id="msg_future"), 422, loc=["body", "timestamp"]
        )
        assert "future" in problem["detail"]
    assert tables(db) == before
    assert only(db).status == "draft"


def test_a_timestamp_within_the_clock_tolerance_is_accepted(
    hook: TestClient, db: Database, clock: ManualClock, company: Any
) -> None:
    ok(send(hook, clock, exit_at(START + dt.timedelta(minutes=5))))
    assert_stale(ok(send(hook, clock, cancelled_at(START))))


def test_openapi_documents_the_ordering(hook_app: FastAPI) -> None:
    op = hook_app.openapi()["paths"][URL]["post"]
    assert "stale" in op["description"] and "stale" in op["responses"]["200"]["description"]
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    components = hook_app.openapi()["components"]["schemas"]
    for ref in schema["oneOf"]:
        ts = components[ref["$ref"].rsplit("/", 1)[1]]["properties"]["timestamp"]
        assert ts["format"] == "date-time" and ts["pattern"], ts
    result = hook_app.openapi()["components"]["schemas"]["HrEventResult"]
    assert "ignored" in result["required"]
    assert json.dumps(result["properties"]["ignored"]).count("stale") >= 1


# ---- concurrency (PostgreSQL) -------------------------------------------------------------------


def test_concurrent_events_of_one_employee_are_serialised(
    hook_app: FastAPI,
    db: Database,
    clock: ManualClock,
    company: Any,
    backend: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A newer exit holds its transaction open; an older cancel must wait for it and then come out stale.

    Without the per-employee lock the cancel would read T0 as the latest, apply, and cancel the handover once the
    exit committed (its UPDATE waits on the exit's row lock, then goes ahead).
    """
    if backend != "postgresql":
        pytest.skip("SQLite serialises writers (BEGIN IMMEDIATE); the race needs PostgreSQL")
    with TestClient(hook_app, raise_server_exceptions=False) as c:
        ok(deliver(c, exit_at(T0), clock=clock))
    original_open = transfer_service.open_from_exit
    entered = threading.Event()

    def slow_open(*args: Any, **kwargs: Any) -> Handover:
        h = original_open(*args, **kwargs)
        entered.set()
        threading.Event().wait(1.0)
        return h

    monkeypatch.setattr(transfer_service, "open_from_exit", slow_open)
    clients = [TestClient(hook_app, raise_server_exceptions=False) for _ in range(2)]
    responses: dict[str, Response] = {}

    def post(c: TestClient, name: str, event: dict[str, Any]) -> None:
        body, headers = signed(event, clock=clock, msg_id=f"msg_{name}")
        responses[name] = c.post(URL, content=body, headers=headers)

    later = EFFECTIVE + dt.timedelta(days=7)
    newer = threading.Thread(target=post, args=(clients[0], "exit", exit_at(T2, later)))
    newer.start()
    assert entered.wait(15), "the exit never reached open_from_exit"
    older = threading.Thread(target=post, args=(clients[1], "cancel", cancelled_at(T1)))
    older.start()
    newer.join(30)
    older.join(30)
    for c in clients:
        c.close()
    assert ok(responses["exit"])["ignored"] is None
    assert_stale(ok(responses["cancel"]))
    h = only(db)
    assert (h.status, h.effective_at) == ("draft", later)


def test_lock_keys_differ_per_employee() -> None:
    keys = {hooks_service.lock_key(e) for e in ("e0", "e1", "E0", "e0 ")}
    assert len(keys) == 4
    assert all(-(2**63) <= k < 2**63 for k in keys)
