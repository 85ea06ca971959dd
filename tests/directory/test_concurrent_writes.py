"""Concurrent directory writes on PostgreSQL, through real HTTP: owners, grants, created-ness and manager cycles stay
right under any interleaving (SQLite serialises writers with BEGIN IMMEDIATE, so the races need PostgreSQL).

Each thread has its own TestClient on the one app (no lifespan: each request runs on its own event loop, and the
sync route on that loop's thread pool), released together by a barrier.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response

from app.core.clock import ManualClock
from tests.support.directory import (
    audit_entries,
    batch_employees,
    client_body,
    client_item,
    employee_body,
    employee_item,
    ok,
)

Auth = Callable[..., dict[str, str]]


@pytest.fixture(autouse=True)
def _postgresql_only(backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite serialises writers (BEGIN IMMEDIATE); these races need PostgreSQL")


def race(app: FastAPI, calls: list[Callable[[TestClient], Response]]) -> list[Response]:
    """Runs every call at once, one thread and one TestClient each; answers in the calls' order."""
    barrier = threading.Barrier(len(calls))
    clients = [TestClient(app, raise_server_exceptions=False) for _ in calls]
    answers: list[Response | BaseException | None] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            barrier.wait(30)
            answers[i] = calls[i](clients[i])
        except BaseException as exc:  # pragma: no cover - reported below
            answers[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    out: list[Response] = []
    for a in answers:
        assert isinstance(a, Response), a
        out.append(a)
    return out


def edit_allowed(client: TestClient, auth: Auth, employee: str, client_id: str) -> bool:
    body = {"employee": employee, "client": client_id, "action": "edit"}
    allowed: bool = ok(client.post("/v1/access/check", json=body, headers=auth("admin")))["allowed"]
    return allowed


def open_owner_grants(client: TestClient, auth: Auth, client_id: str, at: dt.datetime) -> list[str]:
    params = {"client": client_id, "level": "owner", "valid_at": at.isoformat(), "limit": 200}
    page = ok(client.get("/v1/access/grants", params=params, headers=auth("admin")))
    return sorted(g["employee"] for g in page["items"])


def grant_problems(client: TestClient, auth: Auth, client_id: str, people: list[str], at: dt.datetime) -> list[str]:
    """What is wrong with the client's access: only its owner may edit, through one open owner grant."""
    owner = ok(client.get(f"/v1/clients/{client_id}", headers=auth("admin")))["owner"]
    problems = []
    grants = open_owner_grants(client, auth, client_id, at)
    if grants != [owner]:
        problems.append(f"{client_id}: owner {owner}, open owner grants {grants}")
    for person in people:
        if edit_allowed(client, auth, person, client_id) != (person == owner):
            problems.append(f"{client_id}: owner {owner}, {person} may edit: {person != owner}")
    return problems


@pytest.fixture
def people(client: TestClient, auth: Auth) -> list[str]:
    names = ["own-a", "own-b"]
    batch_employees(client, auth("hr"), [employee_item(n) for n in names])
    return names


# ---- owners and their grants ------------------------------------------------------------------


def test_concurrent_owner_changes_keep_the_grants_with_the_owner(
    app: FastAPI, client: TestClient, auth: Auth, clock: ManualClock, people: list[str]
) -> None:
    """A→B and back to A at once: the second used to read A unlocked, see no change and leave B's grant open."""
    a, b = people
    hr = auth("hr")
    problems: list[str] = []
    for trial in range(30):
        clock.advance(dt.timedelta(seconds=1))
        path = f"/v1/clients/c-{trial}"
        ok(client.put(path, json=client_body(a), headers=hr), 201)
        answers = race(
            app,
            [
                lambda c: c.put(path, json=client_body(b), headers=hr),
                lambda c: c.put(path, json=client_body(a), headers=hr),
            ],
        )
        assert [r.status_code for r in answers] == [200, 200], [r.text for r in answers]
        problems += grant_problems(client, auth, f"c-{trial}", people, clock.now())
    assert not problems, f"{len(problems)} problems in 30 trials: {problems}"


def test_concurrent_creates_of_one_client_create_it_once(
    app: FastAPI, client: TestClient, auth: Auth, clock: ManualClock, people: list[str]
) -> None:
    """20 PUTs of one new client at once: one 201 and one client.created, whoever wins; the owner's grant follows."""
    hr = auth("hr")
    problems: list[str] = []
    for trial in range(3):
        cid = f"new-{trial}"
        answers = race(
            app,
            [
                (lambda owner: lambda c: c.put(f"/v1/clients/{cid}", json=client_body(owner), headers=hr))(
                    people[i % 2]
                )
                for i in range(20)
            ],
        )
        codes = sorted(r.status_code for r in answers)
        if codes != [200] * 19 + [201]:
            problems.append(f"{cid}: statuses {codes}")
        actions = [e["action"] for e in audit_entries(client, auth("admin"), entity_type="client", entity_id=cid)]
        if actions.count("client.created") != 1 or actions.count("client.updated") != 19:
            problems.append(f"{cid}: audit {sorted(actions)}")
        problems += grant_problems(client, auth, cid, people, clock.now())
    assert not problems, problems


def test_concurrent_creates_of_one_employee_create_it_once(app: FastAPI, client: TestClient, auth: Auth) -> None:
    hr = auth("hr")
    answers = race(app, [lambda c: c.put("/v1/employees/e-new", json=employee_body(), headers=hr) for _ in range(20)])
    assert sorted(r.status_code for r in answers) == [200] * 19 + [201], [r.text for r in answers]
    actions = [e["action"] for e in audit_entries(client, auth("admin"), entity_type="employee", entity_id="e-new")]
    assert sorted(actions) == ["employee.created"] + ["employee.updated"] * 19


def test_concurrent_batches_of_the_same_new_rows_count_each_creation_once(
    app: FastAPI, client: TestClient, auth: Auth, clock: ManualClock, people: list[str]
) -> None:
    """Eight batches of the same ten new employees, then of ten new clients, each batch in its own order (row locks
    are taken by external id, so different orders do not deadlock)."""
    hr = auth("hr")
    shuffle = random.Random(18)
    emp_ids = [f"be-{i}" for i in range(10)]
    cli_ids = [f"bc-{i}" for i in range(10)]

    def batches(path: str, make: Callable[[str, int], dict[str, Any]], ids: list[str]) -> list[dict[str, Any]]:
        calls = []
        for t in range(8):
            order = shuffle.sample(ids, len(ids))
            items = [make(x, t) for x in order]
            calls.append(lambda c, items=items: c.post(path, json={"items": items}, headers=hr))
        return [ok(r) for r in race(app, calls)]

    emp = batches("/v1/employees/batch", lambda x, t: employee_item(x, manager=people[t % 2]), emp_ids)
    assert sum(r["created"] for r in emp) == 10 and sum(r["updated"] for r in emp) == 70, emp
    cli = batches("/v1/clients/batch", lambda x, t: client_item(x, people[t % 2]), cli_ids)
    assert sum(r["created"] for r in cli) == 10 and sum(r["updated"] for r in cli) == 70, cli
    admin = auth("admin")
    created = [e["entity_id"] for e in audit_entries(client, admin, action="employee.created")]
    assert sorted(x for x in created if x.startswith("be-")) == sorted(emp_ids)
    assert sorted(e["entity_id"] for e in audit_entries(client, admin, action="client.created")) == sorted(cli_ids)
    problems = [p for cid in cli_ids for p in grant_problems(client, auth, cid, people, clock.now())]
    assert not problems, problems


# ---- manager cycles ---------------------------------------------------------------------------


def managers(client: TestClient, auth: Auth) -> dict[str, str | None]:
    page = ok(client.get("/v1/employees", params={"limit": 200}, headers=auth("admin")))
    return {e["external_id"]: e["manager"] for e in page["items"]}


def cycle_in(graph: dict[str, str | None]) -> list[str] | None:
    for start in graph:
        path: list[str] = []
        node: str | None = start
        while node is not None and node not in path:
            path.append(node)
            node = graph.get(node)
        if node is not None:
            return path[path.index(node) :]
    return None


def test_concurrent_opposite_manager_changes_cannot_both_pass(app: FastAPI, client: TestClient, auth: Auth) -> None:
    """A reports to B and B to A, sent at once: exactly one is accepted, the other is a 422 naming its manager."""
    hr = auth("hr")
    problems: list[str] = []
    for trial in range(20):
        a, b = f"x{trial}", f"y{trial}"
        batch_employees(client, hr, [employee_item(a), employee_item(b)])
        answers = race(
            app,
            [
                lambda c: c.put(f"/v1/employees/{a}", json=employee_body(manager=b), headers=hr),
                lambda c: c.put(f"/v1/employees/{b}", json=employee_body(manager=a), headers=hr),
            ],
        )
        codes = sorted(r.status_code for r in answers)
        if codes != [200, 422]:
            problems.append(f"trial {trial}: statuses {codes}")
        for r in answers:
            if r.status_code == 422:
                assert [e["loc"] for e in r.json()["errors"]] == [["body", "manager"]], r.text
        cycle = cycle_in(managers(client, auth))
        if cycle:
            problems.append(f"trial {trial}: stored cycle {cycle}")
    assert not problems, problems


def test_an_unchanged_manager_is_checked_against_the_committed_one(
    app: FastAPI, client: TestClient, auth: Auth
) -> None:
    """A reports to M. One batch makes A report to no one and M to A; at once a PUT keeps A under M. In either order
    no cycle is stored, and a PUT that answers 200 wrote A under M: it read A's manager under a row lock, so it cannot
    take "under M" for unchanged after the batch moved A, and skip the manager or the cycle check."""
    hr = auth("hr")
    problems: list[str] = []
    for trial in range(20):
        a, m = f"a{trial}", f"m{trial}"
        batch_employees(client, hr, [employee_item(m), employee_item(a, manager=m)])
        flip = [employee_item(a, manager=None), employee_item(m, manager=a)]
        answers = race(
            app,
            [
                lambda c: c.post("/v1/employees/batch", json={"items": flip}, headers=hr),
                lambda c: c.put(f"/v1/employees/{a}", json=employee_body(manager=m), headers=hr),
            ],
        )
        assert all(r.status_code in (200, 422) for r in answers), [r.text for r in answers]
        put = answers[1]
        if put.status_code == 200 and put.json()["manager"] != m:
            problems.append(f"trial {trial}: the PUT answered 200 with manager {put.json()['manager']}")
        cycle = cycle_in(managers(client, auth))
        if cycle:
            problems.append(f"trial {trial}: stored cycle {cycle}, statuses {[r.status_code for r in answers]}")
    assert not problems, problems
