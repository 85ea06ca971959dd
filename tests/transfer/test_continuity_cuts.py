"""Grants cut by several handovers (issue 15): a leaver's grant cut at one exit is cut again by a later, earlier
exit; lifting one cut (cancel, undo, reschedule) gives back only what the other cuts and the grant's own end allow.

Found by tests/test_invariants.py's state machine (a departed leaver kept an owner grant past the exit a second
handover set); replayed here as plain steps through the HTTP API and the worker, on both databases.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.core.clock import ManualClock
from app.core.db import Database
from app.main import create_app
from app.worker import run_once
from tests.conftest import START, make_settings
from tests.support.company import EFFECTIVE, approve, clients, open_for, plan, second_leaver
from tests.support.hr import SECRET, deliver, exit_event

pytestmark = pytest.mark.usefixtures("company")

H = dt.timedelta(hours=1)


def grants(http: TestClient, auth: Any, employee: str, **params: Any) -> list[dict[str, Any]]:
    r = http.get("/v1/access/grants", params={"employee": employee, "limit": 200, **params}, headers=auth())
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def exit_of(client: TestClient, auth: Any, employee: str) -> tuple[str, dt.datetime | None]:
    r = client.get(f"/v1/employees/{employee}", headers=auth())
    assert r.status_code == 200, r.text
    body = r.json()
    return body["status"], dt.datetime.fromisoformat(body["exit_at"]) if body["exit_at"] else None


def _end(g: dict[str, Any]) -> dt.datetime | None:
    ends = [dt.datetime.fromisoformat(g[k]) for k in ("valid_until", "revoked_at") if g[k]]
    return min(ends) if ends else None


def outliving(client: TestClient, auth: Any, employee: str, when: dt.datetime) -> list[dict[str, Any]]:
    """The employee's grants whose window holds some instant after `when`."""
    out = []
    for g in grants(client, auth, employee):
        end = _end(g)
        if end is None or (end > when and end > dt.datetime.fromisoformat(g["valid_from"])):
            out.append(g)
    return out


@pytest.fixture
def hook(database_url: str, clock: ManualClock, db: Database) -> Iterator[TestClient]:
    """The app with HR's webhook secret configured (same database and clock as `client`)."""
    app: FastAPI = create_app(make_settings(database_url, hr_webhook_secret=SECRET), clock=clock)
    try:
        with TestClient(app, raise_server_exceptions=False) as c:
            yield c
    finally:
        app.state.db.dispose()


def cancel(client: TestClient, auth: Any, hid: int) -> None:
    r = client.post(f"/v1/handovers/{hid}/cancel", json={"reason": "stays"}, headers=auth("hr"))
    assert r.status_code == 200, r.text


def _executed_and_completed(client: TestClient, auth: Any, db: Database, clock: ManualClock) -> int:
    """e0 leaves at START + 3 days, the worker executes at that second, the handover is completed."""
    exit_at = START + dt.timedelta(days=3)
    h = open_for(client, auth, "e0", exit_at, reason="resignation")
    plan(client, auth, h)
    approve(client, auth, h)
    clock.set(exit_at)
    assert run_once(db, clock)["execute_due_handovers"] == 1
    r = client.post(f"/v1/handovers/{h}/complete", json={"reason": "done"}, headers=auth())
    assert r.status_code == 200, r.text
    assert exit_of(client, auth, "e0") == ("departed", exit_at)
    assert not outliving(client, auth, "e0", exit_at)
    return h


def test_a_later_handover_with_an_earlier_exit_cuts_grants_an_earlier_one_cut(
    client: TestClient, auth: Any, db: Database, clock: ManualClock
) -> None:
    """The machine's shrunk sequence: e0's exit executed and completed, then a new handover for the departed e0
    with an exit an hour ago. e0's grants, cut at the first exit, must end at the new, earlier one."""
    _executed_and_completed(client, auth, db, clock)
    earlier = clock.now() - H
    h2 = open_for(client, auth, "e0", earlier, reason="resignation")
    assert exit_of(client, auth, "e0") == ("departed", earlier)
    assert outliving(client, auth, "e0", earlier) == []
    # Cancelled: e0 stays departed with the exit HR gave last, and the grants stay cut at it.
    cancel(client, auth, h2)
    assert exit_of(client, auth, "e0") == ("departed", earlier)
    assert outliving(client, auth, "e0", earlier) == []


def test_a_later_exit_does_not_extend_and_undoing_the_first_gives_back_only_the_second(
    client: TestClient, auth: Any, db: Database, clock: ManualClock
) -> None:
    """A cut that does not bind (the second exit is later than the first) is still recorded: lifting the first cut
    (undo) leaves the grants ending at the second exit, not open-ended."""
    first = _executed_and_completed(client, auth, db, clock)
    first_exit = clock.now()
    clock.advance(2 * H)
    h2 = open_for(client, auth, "e0", clock.now() + H, reason="resignation")  # departed: effective now
    second_exit = clock.now()
    assert exit_of(client, auth, "e0") == ("departed", second_exit)
    assert outliving(client, auth, "e0", first_exit) == []  # the earlier cut still binds
    r = client.post(f"/v1/handovers/{first}/undo", json={"reason": "a mistake"}, headers=auth())
    assert r.status_code == 200, r.text
    # The clients came back to e0 from their successors, but e0's own grants end at the second handover's cut.
    ends = {g["client"]: _end(g) for g in grants(client, auth, "e0") if g["handover_id"] is None}
    assert ends and all(end is not None and end <= second_exit for end in ends.values()), ends
    # The second handover cancelled: nothing cuts them any more, they are open-ended again.
    cancel(client, auth, h2)
    ends = {g["client"]: _end(g) for g in grants(client, auth, "e0") if g["handover_id"] is None}
    assert set(ends.values()) == {None}, ends
    assert h2 != first


def test_a_grant_the_crm_ended_while_cut_is_not_extended_by_a_cancel(
    client: TestClient, auth: Any, db: Database, clock: ManualClock
) -> None:
    """e0's handover cuts e0's grant on c0 at the exit; the CRM moves c0 to e2 meanwhile (the grant ends now);
    cancelling the handover lifts the cut, and must not give e0 an open owner grant on e2's client back."""
    h = open_for(client, auth, "e0", EFFECTIVE, reason="resignation")
    plan(client, auth, h)
    approve(client, auth, h)
    clock.advance(H)
    moved_at = clock.now()
    body = {k: v for k, v in clients(1)[0].items() if k != "external_id"}
    r = client.put("/v1/clients/c0", json={**body, "owner": "e2"}, headers=auth("hr"))
    assert r.status_code in (200, 201), r.text
    cancel(client, auth, h)
    assert [g for g in outliving(client, auth, "e0", moved_at) if g["client"] == "c0"] == []
    later = (clock.now() + H).isoformat()
    assert grants(client, auth, "e0", valid_at=later, **{"client": "c0"}) == []
    # The other clients are e0's again, open-ended.
    ends = {g["client"]: _end(g) for g in grants(client, auth, "e0") if g["client"] != "c0"}
    assert set(ends.values()) == {None}, ends


@pytest.mark.parametrize("days", [-1, 1])
def test_an_exit_moved_after_the_takeover_moves_the_leavers_cut_but_never_past_the_takeover(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, hook: TestClient, days: int
) -> None:
    """Not approved by the effective time: the interim owner took the clients over and e0 departed. HR then moves
    the exit: earlier, e0's grants end at the new exit (never past the takeover); later, the takeover is given back
    and e0's grants end at the new exit."""
    h = open_for(client, auth, "e0", EFFECTIVE, reason="resignation")
    clock.set(EFFECTIVE)
    assert run_once(db, clock)["take_over_interim"] == 1
    took_over = clock.now()
    clock.advance(H)
    moved = EFFECTIVE + dt.timedelta(days=days)
    event = {**exit_event("e0", moved), "timestamp": clock.now().isoformat()}
    r = deliver(hook, event, clock=clock)
    assert r.status_code == 200, r.text
    assert r.json()["handover_id"] == h
    if days > 0:
        # A time that has not come: the takeover is given back (continuity.give_back), so e0 holds until the new
        # exit and not a second past it.
        assert exit_of(client, auth, "e0") == ("leaving", moved)
        assert outliving(client, auth, "e0", moved) == []
        holders = {g["employee"] for g in grants(client, auth, "e0", valid_at=clock.now().isoformat())}
        assert holders == {"e0"}
        return
    assert exit_of(client, auth, "e0") == ("departed", moved)
    assert outliving(client, auth, "e0", min(moved, took_over)) == []
    holders = {g["employee"] for g in grants(client, auth, "e0", valid_at=clock.now().isoformat())}
    assert holders == set()


def _successor(client: TestClient, auth: Any, hid: int, employee: str) -> str:
    """The first item of the handover goes to `employee` (an override with its ETag); returns its client."""
    items = client.get(f"/v1/handovers/{hid}/items", headers=auth()).json()["items"]
    url = f"/v1/handovers/{hid}/items/{items[0]['id']}"
    etag = client.get(url, headers=auth()).headers["etag"]
    r = client.patch(
        url,
        json={"successor": employee, "force": True, "reason": "knows them"},
        headers={**auth("hr"), "If-Match": etag},
    )
    assert r.status_code == 200, r.text
    return str(items[0]["client"])


def test_a_revoked_shadow_grant_stays_cut_when_its_holders_exit_moves(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, hook: TestClient
) -> None:
    """The machine's shrunk sequence: e1, successor-to-be of one of e0's clients (a shadow grant until e0's exit),
    leaves an hour ago and the interim owner takes e1's clients over (e1's grants cut then). A week later e0's
    handover is cancelled (the shadow grant revoked now, after the cut) and HR moves e1's exit to an hour ago:
    re-laying the takeover lifts e1's cut and cuts again, and the revoked shadow grant must be cut too, not left
    open until its revocation, past e1's exit."""
    second_leaver(client, auth)
    h0 = open_for(client, auth, "e0", EFFECTIVE, reason="resignation")
    plan(client, auth, h0)
    shadowed = _successor(client, auth, h0, "e1")
    approve(client, auth, h0)
    assert [g["level"] for g in grants(client, auth, "e1", client=shadowed)] == ["shadow", "owner"]
    h1 = open_for(client, auth, "e1", clock.now() - H, reason="resignation")
    assert exit_of(client, auth, "e1")[0] == "departed"
    clock.advance(dt.timedelta(days=8))
    cancel(client, auth, h0)
    plan(client, auth, h1)
    moved = clock.now() - H
    r = deliver(hook, {**exit_event("e1", moved), "timestamp": clock.now().isoformat()}, clock=clock)
    assert r.status_code == 200, r.text
    assert r.json()["handover_id"] == h1
    status, exit_at = exit_of(client, auth, "e1")
    assert status == "departed" and exit_at == moved
    assert [
        (g["client"], g["level"], g["valid_until"], g["revoked_at"]) for g in outliving(client, auth, "e1", exit_at)
    ] == []


def test_a_second_handover_for_a_departed_leaver_does_not_plan_clients_the_first_gave_the_interim_owner(
    client: TestClient, auth: Any, db: Database, clock: ManualClock
) -> None:
    """The machine's shrunk sequence: e0's handover gives c0 to m1 (e0's manager, also the interim owner) and is
    executed; HR then opens a second handover for the departed e0, taken over by m1 at once (e0 holds nothing now).
    c0 is m1's by the first handover (its former owner e0), not held for e0 by the takeover: the second plan must
    not move it on, or m1's owner grant and the new successor's would both hold."""
    h0 = open_for(client, auth, "e0", EFFECTIVE, reason="resignation")
    plan(client, auth, h0)
    assert _successor(client, auth, h0, "m1") == "c0"
    approve(client, auth, h0)
    r = client.post(f"/v1/handovers/{h0}/execute", headers=auth())
    assert r.status_code == 200, r.text
    r = client.post(f"/v1/handovers/{h0}/complete", json={"reason": "done"}, headers=auth())
    assert r.status_code == 200, r.text
    owners = {
        c["external_id"]: c["owner"]
        for c in client.get("/v1/clients", params={"limit": 100}, headers=auth()).json()["items"]
    }
    assert owners["c0"] == "m1" and "e0" not in owners.values()
    h1 = open_for(client, auth, "e0", clock.now() + 72 * H, reason="resignation")
    plan(client, auth, h1)
    items = client.get(f"/v1/handovers/{h1}/items", headers=auth()).json()["items"]
    assert [i["client"] for i in items] == []
    r = client.post(f"/v1/handovers/{h1}/approve", headers=auth())
    assert r.status_code == 200, r.text
    now = clock.now().isoformat()
    holders = [
        g["employee"]
        for g in grants(client, auth, "m1", client="c0", valid_at=now)
        if g["level"] in ("owner", "interim")
    ]
    assert holders == ["m1"]
    owners = {
        c["external_id"]: c["owner"]
        for c in client.get("/v1/clients", params={"limit": 100}, headers=auth()).json()["items"]
    }
    assert owners["c0"] == "m1"
