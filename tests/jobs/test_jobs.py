"""Long requests as jobs (issue 17 point 8): `Prefer: respond-async` answers 202 with a job a worker runs.

Every job here is run by calling the worker's own function (app.worker.run_jobs) once, with the injected clock.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.audit.models import AuditEntry
from app.core.clock import ManualClock
from app.core.db import Database
from app.jobs import service as jobs
from app.jobs.models import Job
from app.transfer.models import HandoverItem
from app.worker import JOB_RUNNERS, run_jobs
from tests.conftest import START
from tests.support.company import EFFECTIVE, open_for, second_leaver
from tests.support.problems import assert_problem

ASYNC = {"Prefer": "respond-async"}
ISO_UTC = "%Y-%m-%dT%H:%M:%SZ"


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime(ISO_UTC)


def _jobs(db: Database) -> int:
    with db.session(write=False) as s:
        return s.scalar(select(func.count()).select_from(Job)) or 0


def _items(db: Database) -> int:
    with db.session(write=False) as s:
        return s.scalar(select(func.count()).select_from(HandoverItem)) or 0


def _work(db: Database, clock: ManualClock) -> int:
    return run_jobs(db, clock, threading.Event())


def _simulation(**extra: Any) -> dict[str, Any]:
    return {"leavers": ["e0", "e2"], "effective_at": EFFECTIVE.isoformat(), "include_items": True, **extra}


def test_async_joint_plan_is_a_job_the_worker_runs_with_the_synchronous_answer(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, company: dict[str, Any]
) -> None:
    second_leaver(client, auth)
    a, b = open_for(client, auth, "e0"), open_for(client, auth, "e1")
    r = client.post("/v1/handover-plans", json={"handover_ids": [b, a]}, headers={**auth("hr"), **ASYNC})
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"/v1/jobs/{job['id']}" == job["location"]
    assert r.headers["preference-applied"] == "respond-async"
    assert job["kind"] == "handover-plans" and job["state"] == "queued" and job["progress"] == 0
    assert job["created_at"] == _iso(START) and job["started_at"] is None and job["finished_at"] is None
    assert job["result"] is None and job["problem"] is None and job["created_by"] == "hr:test-hr"
    assert _items(db) == 0  # nothing planned in the request
    with db.session(write=False) as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "job.created")).one()
        assert entry.entity_id == str(job["id"]) and entry.actor == "hr:test-hr"
        assert entry.data == {"kind": "handover-plans", "request": {"handover_ids": [b, a]}}
    assert client.get(r.headers["location"], headers=auth("hr")).json()["state"] == "queued"

    ran_at = clock.advance(dt.timedelta(minutes=1))
    assert _work(db, clock) == 1
    done = client.get(r.headers["location"], headers=auth("hr"))
    assert done.status_code == 200, done.text
    got = done.json()
    assert got["state"] == "succeeded" and got["progress"] == 1 and got["attempts"] == 1
    assert got["started_at"] == got["finished_at"] == _iso(ran_at)
    assert [h["handover_id"] for h in got["result"]["handovers"]] == [b, a]
    assert client.get(f"/v1/handovers/{a}", headers=auth()).json()["status"] == "planned"
    assert _items(db) == 12
    assert _work(db, clock) == 0  # run once
    # The same request synchronously (a re-plan of the same handovers) answers exactly what the job holds.
    sync = client.post("/v1/handover-plans", json={"handover_ids": [b, a]}, headers=auth("hr"))
    assert sync.status_code == 200 and "preference-applied" not in sync.headers
    assert sync.json() == got["result"]


def test_async_simulation_result_is_identical_to_the_synchronous_answer(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, company: dict[str, Any]
) -> None:
    sync = client.post("/v1/simulations", json=_simulation(), headers=auth("hr"))
    assert sync.status_code == 200, sync.text
    r = client.post("/v1/simulations", json=_simulation(), headers={**auth("hr"), **ASYNC})
    assert r.status_code == 202, r.text
    assert r.json()["kind"] == "simulations"
    assert _work(db, clock) == 1
    got = client.get(r.headers["location"], headers=auth("hr")).json()
    assert got["state"] == "succeeded"
    assert got["result"] == sync.json()


def test_a_refusal_found_while_running_is_the_jobs_problem(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, company: dict[str, Any]
) -> None:
    hid = open_for(client, auth, "e0")
    r = client.post("/v1/handover-plans", json={"handover_ids": [hid]}, headers={**auth("hr"), **ASYNC})
    assert r.status_code == 202, r.text
    assert client.post(f"/v1/handovers/{hid}/cancel", json={"reason": "changed plans"}, headers=auth("hr")).is_success
    sim = client.post("/v1/simulations", json=_simulation(leavers=["ghost"]), headers={**auth("hr"), **ASYNC})
    assert sim.status_code == 202, sim.text  # an unknown leaver is found by the planning itself, as synchronously
    clock.advance(dt.timedelta(seconds=5))
    assert _work(db, clock) == 2
    failed = client.get(r.headers["location"], headers=auth("hr")).json()
    assert failed["state"] == "failed" and failed["result"] is None and failed["progress"] == 1
    problem = failed["problem"]
    assert problem["status"] == 409 and problem["type"] == "urn:handover:problem:handover-not-plannable"
    assert problem["instance"] == r.headers["location"] and problem["handover_ids"] == [hid]
    assert failed["finished_at"] == _iso(START + dt.timedelta(seconds=5))
    assert _items(db) == 0
    ghost = client.get(sim.headers["location"], headers=auth("hr")).json()["problem"]
    sync = client.post("/v1/simulations", json=_simulation(leavers=["ghost"]), headers=auth("hr"))
    body = assert_problem(sync, 422)
    assert ghost["status"] == 422 and ghost["detail"] == body["detail"] and ghost["errors"] == body.get("errors")
    with db.session(write=False) as s:
        assert s.scalar(select(func.count()).where(AuditEntry.action == "job.failed")) == 2


def test_refusals_of_the_request_itself_answer_at_once_and_make_no_job(
    client: TestClient, auth: Any, db: Database, company: dict[str, Any]
) -> None:
    hid = open_for(client, auth, "e0")
    for headers, status in (
        (auth("account_manager", emp="e3"), 403),  # not a planner
        (auth("manager", emp="m2"), 404),  # another team's leaver
        (auth("auditor"), 403),  # no handovers:write
    ):
        r = client.post("/v1/handover-plans", json={"handover_ids": [hid]}, headers={**headers, **ASYNC})
        assert_problem(r, status)
        r = client.post("/v1/simulations", json=_simulation(leavers=["e0"]), headers={**headers, **ASYNC})
        assert_problem(r, status)
    r = client.post("/v1/handover-plans", json={"handover_ids": [hid, 999]}, headers={**auth("hr"), **ASYNC})
    assert_problem(r, 404)
    assert_problem(client.post("/v1/simulations", json={"leavers": []}, headers={**auth("hr"), **ASYNC}), 422)
    assert _jobs(db) == 0


def test_a_job_is_seen_only_by_whoever_asked_for_it_and_admins(
    client: TestClient, auth: Any, db: Database, company: dict[str, Any]
) -> None:
    r = client.post("/v1/simulations", json=_simulation(), headers={**auth("manager", emp="m1"), **ASYNC})
    assert r.status_code == 202, r.text
    url = r.headers["location"]
    assert client.get(url, headers=auth("manager", emp="m1")).status_code == 200
    assert client.get(url, headers=auth("admin")).status_code == 200
    for other in (auth("manager", sub="another-m", emp="m2"), auth("hr"), auth("integration", scope="handovers:write")):
        assert_problem(client.get(url, headers=other), 404)
        assert client.get("/v1/jobs", headers=other).json()["items"] == []
    assert_problem(client.get(url, headers=auth("auditor")), 403)
    assert_problem(client.get("/v1/jobs/999", headers=auth("admin")), 404)
    assert [j["id"] for j in client.get("/v1/jobs", headers=auth("admin")).json()["items"]] == [r.json()["id"]]


def test_jobs_list_is_paginated_with_a_hard_maximum(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, company: dict[str, Any]
) -> None:
    ids = []
    for _ in range(3):
        r = client.post("/v1/simulations", json=_simulation(), headers={**auth("hr"), **ASYNC})
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    first = client.get("/v1/jobs?limit=2", headers=auth("hr")).json()
    assert [j["id"] for j in first["items"]] == ids[::-1][:2] and first["next_offset"] == 2
    rest = client.get("/v1/jobs?limit=2&offset=2", headers=auth("hr")).json()
    assert [j["id"] for j in rest["items"]] == [ids[0]] and rest["next_offset"] is None
    assert_problem(client.get("/v1/jobs?limit=201", headers=auth("hr")), 422, loc=["query", "limit"])
    assert_problem(client.get("/v1/jobs?state=paused", headers=auth("hr")), 422)
    assert len(client.get("/v1/jobs?state=queued&kind=simulations", headers=auth("hr")).json()["items"]) == 3
    assert client.get("/v1/jobs?kind=handover-plans", headers=auth("hr")).json()["items"] == []


@pytest.mark.parametrize(
    "prefer", ["respond-async=yes", "respond-asynchronously", "wait=10", "return=minimal", ";respond-async", "async"]
)
def test_another_or_an_invalid_prefer_value_is_ignored(
    client: TestClient, auth: Any, db: Database, company: dict[str, Any], prefer: str
) -> None:
    r = client.post("/v1/simulations", json=_simulation(), headers={**auth("hr"), "Prefer": prefer})
    assert r.status_code == 200, r.text
    assert "preference-applied" not in r.headers and r.json()["clients"] == 8
    hid = open_for(client, auth, "e0")
    r = client.post("/v1/handover-plans", json={"handover_ids": [hid]}, headers={**auth("hr"), "Prefer": prefer})
    assert r.status_code == 200 and r.json()["handovers"][0]["items"] == 8
    assert _jobs(db) == 0


@pytest.mark.parametrize("prefer", ["wait=10, respond-async", "RESPOND-ASYNC", "respond-async; x=1", "respond-async="])
def test_respond_async_among_other_preferences_is_honoured(
    client: TestClient, auth: Any, db: Database, company: dict[str, Any], prefer: str
) -> None:
    r = client.post("/v1/simulations", json=_simulation(), headers={**auth("hr"), "Prefer": prefer})
    assert r.status_code == 202, r.text
    assert _jobs(db) == 1


def test_an_idempotency_key_makes_one_job_and_replays_the_202(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, company: dict[str, Any]
) -> None:
    hid = open_for(client, auth, "e0")
    for path, body, key in (
        ("/v1/handover-plans", {"handover_ids": [hid]}, "key-plans"),
        ("/v1/simulations", _simulation(), "key-sim"),
    ):
        headers = {**auth("hr"), **ASYNC, "Idempotency-Key": key}
        first = client.post(path, json=body, headers=headers)
        again = client.post(path, json=body, headers=headers)
        assert first.status_code == again.status_code == 202, (first.text, again.text)
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json() == first.json()
        assert again.headers["location"] == first.headers["location"]
        assert again.headers["preference-applied"] == "respond-async"
    # The synchronous request is another request: the same key answers 422 for it.
    sync = client.post(
        "/v1/handover-plans", json={"handover_ids": [hid]}, headers={**auth("hr"), "Idempotency-Key": "key-plans"}
    )
    assert_problem(sync, 422, loc=["header", "Idempotency-Key"])
    assert _jobs(db) == 2
    assert _work(db, clock) == 2
    # Replayed after it ran: still the 202 it answered, and the job resource tells the rest.
    replay = {**auth("hr"), **ASYNC, "Idempotency-Key": "key-sim"}
    again = client.post("/v1/simulations", json=_simulation(), headers=replay)
    assert again.status_code == 202 and again.json()["state"] == "queued"
    assert client.get(again.headers["location"], headers=auth("hr")).json()["state"] == "succeeded"
    # Without Prefer a simulation stays a read that takes no key, as before.
    plain = {**auth("hr"), "Idempotency-Key": "sim-sync"}
    assert client.post("/v1/simulations", json=_simulation(), headers=plain).status_code == 200
    assert "idempotent-replayed" not in client.post("/v1/simulations", json=_simulation(), headers=plain).headers


def _lease(db: Database) -> dt.timedelta:
    return dt.timedelta(seconds=db.settings.job_lease_seconds)


def test_a_leased_job_is_not_run_twice_and_a_crashed_workers_job_is_run_again(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, company: dict[str, Any]
) -> None:
    hid = open_for(client, auth, "e0")
    r = client.post("/v1/handover-plans", json={"handover_ids": [hid]}, headers={**auth("hr"), **ASYNC})
    assert r.status_code == 202, r.text
    kinds = set(JOB_RUNNERS)
    crashed = jobs.claim(db, clock, lease=_lease(db), kinds=kinds)  # this worker then dies
    assert crashed is not None and crashed.attempts == 1
    assert client.get(r.headers["location"], headers=auth("hr")).json()["state"] == "running"
    assert jobs.claim(db, clock, lease=_lease(db), kinds=kinds) is None  # leased: no second worker takes it
    assert _work(db, clock) == 0
    clock.advance(_lease(db) + dt.timedelta(seconds=1))
    assert _work(db, clock) == 1  # the lease expired: another worker runs it from the start
    got = client.get(r.headers["location"], headers=auth("hr")).json()
    assert got["state"] == "succeeded" and got["attempts"] == 2 and got["started_at"] == _iso(START)
    # The first worker, were it only slow, finds its lease gone: its run is discarded, nothing written twice.
    items = _items(db)
    assert jobs.run(db, clock, crashed, JOB_RUNNERS[crashed.kind]) == "running"
    assert _items(db) == items == 8
    with db.session(write=False) as s:
        assert s.scalar(select(func.count()).where(AuditEntry.action == "handover.planned")) == 1


def test_a_job_interrupted_too_often_fails(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, company: dict[str, Any]
) -> None:
    r = client.post("/v1/simulations", json=_simulation(), headers={**auth("hr"), **ASYNC})
    for _ in range(jobs.MAX_ATTEMPTS):
        assert jobs.claim(db, clock, lease=_lease(db), kinds=set(JOB_RUNNERS)) is not None
        clock.advance(_lease(db) + dt.timedelta(seconds=1))
    assert _work(db, clock) == 0
    got = client.get(r.headers["location"], headers=auth("hr")).json()
    assert got["state"] == "failed" and got["problem"]["status"] == 500
    assert "interrupted 3 times" in got["problem"]["detail"]


def test_postgresql_workers_skip_a_job_another_holds(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, company: dict[str, Any], backend: str
) -> None:
    """SKIP LOCKED: while one worker's claim transaction holds the row, another claims nothing instead of waiting."""
    if backend != "postgresql":
        pytest.skip("SQLite has one writer at a time: its write lock is the lease's guard")
    r = client.post("/v1/simulations", json=_simulation(), headers={**auth("hr"), **ASYNC})
    assert r.status_code == 202
    holder = db.session()
    try:
        assert holder.scalars(select(Job).with_for_update()).one().state == "queued"
        assert jobs.claim(db, clock, lease=_lease(db), kinds=set(JOB_RUNNERS)) is None
    finally:
        holder.rollback()
        holder.close()
    assert jobs.claim(db, clock, lease=_lease(db), kinds=set(JOB_RUNNERS)) is not None
