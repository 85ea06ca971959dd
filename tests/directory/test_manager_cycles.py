"""Manager cycles are refused on every directory write: a 422 naming each changed row on the loop, nothing written.

A cycle (A under B, B under A; or A under A) would let each approve the other's exit. The concurrent case, two
opposite changes at once on PostgreSQL, is in test_concurrent_writes.py; the HR webhook's in the transfer tests.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy import update

from app.core.db import Database
from app.directory.models import Employee
from tests.support.directory import (
    assert_problem,
    batch_employees,
    employee_body,
    employee_item,
    ok,
    snapshot,
)

Auth = Callable[..., dict[str, str]]
BATCH = "/v1/employees/batch"


def cycle_errors(body: dict[str, object]) -> list[tuple[list[str | int], str]]:
    errors = body["errors"]
    assert isinstance(errors, list)
    assert all(e["type"] == "cycle" for e in errors), errors
    return [(e["loc"], e["msg"]) for e in errors]


def test_put_that_closes_a_loop_is_refused(client: TestClient, auth: Auth, db: Database) -> None:
    hr = auth("hr")
    batch_employees(client, hr, [employee_item("c"), employee_item("b", manager="c"), employee_item("a", manager="b")])
    before = snapshot(db)
    body = assert_problem(client.put("/v1/employees/c", json=employee_body(manager="a"), headers=hr), 422)
    assert cycle_errors(body) == [(["body", "manager"], "would make a management cycle: c → a → b → c")]
    assert snapshot(db) == before
    # Making oneself one's own manager is the shortest loop.
    assert_problem(
        client.put("/v1/employees/a", json=employee_body(manager="a"), headers=hr), 422, loc=["body", "manager"]
    )
    assert snapshot(db) == before
    # Under someone outside the loop is fine.
    ok(client.put("/v1/employees/c", json=employee_body(manager=None), headers=hr))
    ok(client.put("/v1/employees/a", json=employee_body(manager="c"), headers=hr))


def test_new_employee_under_themselves_is_refused(client: TestClient, auth: Auth, db: Database) -> None:
    before = snapshot(db)
    r = client.put("/v1/employees/n", json=employee_body(manager="n"), headers=auth("hr"))
    assert_problem(r, 422, loc=["body", "manager"])
    assert snapshot(db) == before


def test_batch_with_a_loop_among_its_rows_names_each_row_on_it(client: TestClient, auth: Auth, db: Database) -> None:
    hr = auth("hr")
    batch_employees(client, hr, [employee_item("boss")])
    before = snapshot(db)
    items = [
        employee_item("ok-1", manager="boss"),
        employee_item("x", manager="y"),
        employee_item("z", manager="y"),  # under the loop, not on it
        employee_item("y", manager="x"),
        employee_item("self", manager="self"),
    ]
    body = assert_problem(client.post(BATCH, json={"items": items}, headers=hr), 422)
    assert [e["loc"] for e in body["errors"]] == [["body", "items", 4, "manager"]]  # caught before any write
    assert snapshot(db) == before
    items.pop()
    body = assert_problem(client.post(BATCH, json={"items": items}, headers=hr), 422)
    assert cycle_errors(body) == [
        (["body", "items", 1, "manager"], "would make a management cycle: x → y → x"),
        (["body", "items", 3, "manager"], "would make a management cycle: y → x → y"),
    ]
    assert snapshot(db) == before


def test_batch_with_a_loop_through_stored_rows_is_refused(client: TestClient, auth: Auth, db: Database) -> None:
    hr = auth("hr")
    # p ← q ← s: q reports to p, s to q.
    batch_employees(client, hr, [employee_item("p"), employee_item("q", manager="p"), employee_item("s", manager="q")])
    before = snapshot(db)
    items = [employee_item("new", manager="s"), employee_item("p", manager="new")]
    body = assert_problem(client.post(BATCH, json={"items": items}, headers=hr), 422)
    # p → new → s → q → p; only p's row changes a stored manager, but new's is new, so both are named.
    assert cycle_errors(body) == [
        (["body", "items", 0, "manager"], "would make a management cycle: new → s → q → p → new"),
        (["body", "items", 1, "manager"], "would make a management cycle: p → new → s → q → p"),
    ]
    assert snapshot(db) == before
    assert_problem(client.get("/v1/employees/new", headers=hr), 404)


def test_batch_may_turn_a_chain_around(client: TestClient, auth: Auth) -> None:
    """b under a, turned into a under b in one batch: the stored edge the batch replaces is not part of a loop."""
    hr = auth("hr")
    batch_employees(client, hr, [employee_item("a"), employee_item("b", manager="a")])
    result = batch_employees(client, hr, [employee_item("a", manager="b"), employee_item("b", manager=None)])
    assert (result["created"], result["updated"]) == (0, 2)
    assert ok(client.get("/v1/employees/a", headers=hr))["manager"] == "b"
    assert ok(client.get("/v1/employees/b", headers=hr))["manager"] is None


def test_a_stored_loop_does_not_block_unrelated_changes(client: TestClient, auth: Auth, db: Database) -> None:
    """A loop stored before cycles were refused: rows on it can still be updated without changing their manager,
    and someone may join under it; a change that makes a new loop through it is still refused."""
    hr = auth("hr")
    batch_employees(client, hr, [employee_item("x"), employee_item("y", manager="x"), employee_item("w")])
    with db.engine.begin() as conn:
        conn.execute(update(Employee).where(Employee.external_id == "x").values(manager_id="y"))
    ok(client.put("/v1/employees/x", json=employee_body(manager="y", title="Lead"), headers=hr))
    ok(client.put("/v1/employees/w", json=employee_body(manager="x"), headers=hr))
    body = assert_problem(client.put("/v1/employees/y", json=employee_body(manager="w"), headers=hr), 422)
    assert cycle_errors(body) == [(["body", "manager"], "would make a management cycle: y → w → x → y")]


def test_a_thousand_row_chain_is_checked_in_one_batch(client: TestClient, auth: Auth, db: Database) -> None:
    """The deepest possible batch: 1,000 rows, each under the previous; closing the chain into a loop is refused."""
    hr = auth("hr")
    chain = [employee_item("n-0000")] + [employee_item(f"n-{i:04d}", manager=f"n-{i - 1:04d}") for i in range(1, 1000)]
    assert batch_employees(client, hr, chain[::-1])["created"] == 1000
    before = snapshot(db)
    chain[0]["manager"] = "n-0999"
    body = assert_problem(client.post(BATCH, json={"items": chain}, headers=hr), 422)
    assert cycle_errors(body) == [
        (
            ["body", "items", 0, "manager"],
            "would make a management cycle: n-0000 → n-0999 → n-0998 → … → n-0002 → n-0001 → n-0000 (1000 employees)",
        )
    ]
    assert snapshot(db) == before
    # Cut at n-0500 instead: n-0500 heads the chain, n-0000 under n-0999.
    chain[500]["manager"] = None
    assert batch_employees(client, hr, chain)["updated"] == 1000
