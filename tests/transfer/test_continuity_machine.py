"""Issue 15, continuity of ownership: the interleavings beside the exits of tests/transfer/test_continuity.py.

Role changes (HR `employee.exit` with reason role_change, and POST /v1/handovers), leaves (HR exit with reason
leave and return_at; POST with reason leave, return_at and an optional delegate), cancelling a leave, a leave's
return (the clock past return_at and a worker pass), and the CRM changing the owner of existing clients, also to a
leaver whose handover is approved, executed, or whose leave is scheduled or running.

How a person on leave counts in the invariant: the owner stays the owner (ownership does not move, the person stays
`active`), and the leave's delegate holds an interim grant on the person's clients for [effective_at, return_at).
The client has someone who can act, so it is not a violation; the owner's own access check answers
`employee_away` meanwhile. The invariant (`continuity.violations`) reads the owner's status, exit and grants, not
the suspension, so it must not flag such a client, and the access decision through HTTP must show the delegate
acting for it.

After every step: the pure rule on a database snapshot and the SQL statement agree, and for a sample of clients
the access decision through HTTP agrees with the invariant's verdict (a client not flagged has an owner who can
act, or an owner away whose leave's delegate can; a flagged one has an owner who cannot act). After every worker
pass the invariant holds. Real HTTP through TestClient, the injected clock, the worker's database jobs, both
databases.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any, ClassVar

import pytest
from fastapi.testclient import TestClient
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from sqlalchemy import select, update

from app.access.models import AccessGrant
from app.core.clock import ManualClock
from app.core.db import Database
from app.transfer import continuity
from app.transfer.models import Handover
from tests.conftest import START, _clean
from tests.support.company import EFFECTIVE, clients, employees
from tests.support.continuity import S, acts_for_all, check, events, handovers_of, owners, record, run_machine, work
from tests.support.hr import deliver

H = dt.timedelta(hours=1)
LEAVERS = ("e0", "e1", "e2")
OWNERS = ("e0", "e1", "e2", "m1", "x1")  # clearance enough for every client below
DELEGATES = (None, "m1", "m2", "e1")
REACHED: Counter[str] = Counter()

pytestmark = pytest.mark.usefixtures("company")


class Interleavings(RuleBasedStateMachine):
    ctx: ClassVar[dict[str, Any]]

    def __init__(self) -> None:
        super().__init__()
        c, auth, db, clock = self.ctx["client"], self.ctx["auth"], self.ctx["db"], self.ctx["clock"]
        _clean(db)
        clock.set(START)
        for path, rows in (("/v1/employees/batch", employees()), ("/v1/clients/batch", clients(4))):
            assert c.post(path, json={"items": rows}, headers=auth("hr")).status_code == 200
        self.c, self.auth, self.db, self.clock = c, auth, db, clock
        self.hook: TestClient = self.ctx["hook"]
        self.clients = [f"c{i}" for i in range(4)]

    # ---- helpers ----------------------------------------------------------------------------------

    def _hr(self, data: dict[str, Any], kind: str = "employee.exit") -> int:
        self.clock.advance(S)
        event = {"type": kind, "timestamp": self.clock.now().isoformat(), "data": data}
        r = deliver(self.hook, event, clock=self.clock)
        assert r.status_code in (200, 409, 422), r.text
        if r.status_code != 200:
            assert r.headers["content-type"].startswith("application/problem+json")
        REACHED[f"hr {kind} {data.get('reason')} {r.status_code}"] += 1
        return r.status_code

    def _post(self, body: dict[str, Any]) -> int:
        self.clock.advance(S)
        r = self.c.post("/v1/handovers", json=body, headers=self.auth("hr"))
        assert r.status_code in (201, 409, 422), r.text
        if r.status_code != 201:
            assert r.headers["content-type"].startswith("application/problem+json")
        REACHED[f"post {body['reason']} {r.status_code}"] += 1
        return r.status_code

    def _latest(self, who: str) -> dict[str, Any] | None:
        hs = handovers_of(self.c, self.auth, who)
        return max(hs, key=lambda h: h["id"]) if hs else None

    # ---- HR and the API open exits, role changes and leaves --------------------------------------

    @rule(
        leaver=st.sampled_from(LEAVERS),
        hours=st.sampled_from([-1, 1, 48]),
        reason=st.sampled_from(["other", "role_change"]),
    )
    def hr_exit(self, leaver: str, hours: int, reason: str) -> None:
        at = self.clock.now() + hours * H
        self._hr({"employee": leaver, "effective_at": at.isoformat(), "reason": reason})

    @rule(leaver=st.sampled_from(LEAVERS), hours=st.sampled_from([-1, 1, 48]), days=st.sampled_from([1, 7]))
    def hr_leave(self, leaver: str, hours: int, days: int) -> None:
        start = self.clock.now() + hours * H
        data = {"employee": leaver, "effective_at": start.isoformat(), "reason": "leave"}
        self._hr({**data, "return_at": (start + dt.timedelta(days=days)).isoformat()})

    @rule(
        leaver=st.sampled_from(LEAVERS),
        hours=st.sampled_from([1, 48]),
        reason=st.sampled_from(["role_change", "resignation"]),
    )
    def post_exit(self, leaver: str, hours: int, reason: str) -> None:
        at = self.clock.now() + hours * H
        self._post({"leaver": leaver, "reason": reason, "effective_at": at.isoformat()})

    @rule(
        leaver=st.sampled_from(LEAVERS),
        hours=st.sampled_from([1, 48]),
        days=st.sampled_from([1, 7]),
        delegate=st.sampled_from(DELEGATES),
    )
    def post_leave(self, leaver: str, hours: int, days: int, delegate: str | None) -> None:
        start = self.clock.now() + hours * H
        body = {"leaver": leaver, "reason": "leave", "effective_at": start.isoformat()}
        body["return_at"] = (start + dt.timedelta(days=days)).isoformat()
        if delegate is not None:
            body["delegate"] = delegate
        self._post(body)

    @rule(leaver=st.sampled_from(LEAVERS))
    def hr_cancelled(self, leaver: str) -> None:
        self._hr({"employee": leaver}, "employee.exit_cancelled")

    @rule(leaver=st.sampled_from(LEAVERS), how=st.sampled_from(["cancel", "complete"]))
    def end_leave(self, leaver: str, how: str) -> None:
        """POST /cancel or /complete on the person's scheduled leave."""
        h = self._latest(leaver)
        if h is None or h["reason"] != "leave" or h["status"] != "scheduled":
            return
        self.clock.advance(S)
        r = self.c.post(f"/v1/handovers/{h['id']}/{how}", json={"reason": "back"}, headers=self.auth())
        assert r.status_code in (200, 409), r.text
        REACHED[f"leave {how} {r.status_code}"] += 1

    @rule(leaver=st.sampled_from(LEAVERS), status=st.sampled_from(["active", "leaving", "departed"]))
    def hr_updated(self, leaver: str, status: str) -> None:
        exit_at = (self.clock.now() + 2 * H).isoformat() if status == "leaving" else None
        self._hr({"employee": leaver, **record(leaver, status=status, exit_at=exit_at)}, "employee.updated")

    @rule(leaver=st.sampled_from(LEAVERS))
    def plan_and_approve(self, leaver: str) -> None:
        h = self._latest(leaver)
        if h is None or h["status"] not in ("draft", "planned"):
            return
        assert self.c.post(f"/v1/handovers/{h['id']}/plan", headers=self.auth("hr")).status_code == 200
        r = self.c.post(f"/v1/handovers/{h['id']}/approve", headers=self.auth())
        assert r.status_code in (200, 409), r.text
        REACHED[f"approve {h['reason']} {r.status_code}"] += 1

    # ---- the CRM ---------------------------------------------------------------------------------

    @rule(owner=st.sampled_from(OWNERS))
    def new_client(self, owner: str) -> None:
        cid = f"n{len(self.clients)}"
        row = {"name": f"New {cid}", "tier": "standard", "owner": owner, "sensitivity": 1}
        r = self.c.put(f"/v1/clients/{cid}", json=row, headers=self.auth("hr"))
        assert r.status_code == 201, r.text
        self.clients.append(cid)

    def _give(self, cid: str, owner: str) -> None:
        body = self.c.get(f"/v1/clients/{cid}", headers=self.auth()).json()
        row = {k: body[k] for k in ("name", "tier", "sensitivity", "contacts", "status")} | {"owner": owner}
        r = self.c.put(f"/v1/clients/{cid}", json=row, headers=self.auth("hr"))
        assert r.status_code == 200, r.text

    @rule(index=st.integers(0, 15), owner=st.sampled_from(OWNERS))
    def owner_change(self, index: int, owner: str) -> None:
        self._give(self.clients[index % len(self.clients)], owner)

    @rule(index=st.integers(0, 15), pick=st.integers(0, 2))
    def give_to_leaver(self, index: int, pick: int) -> None:
        """A client the leaver did not hold goes to them while their latest handover is in some state."""
        with self.db.session(write=False) as s:
            leavers = sorted(set(s.scalars(select(Handover.leaver_id))))
        if not leavers:
            return
        leaver = leavers[pick % len(leavers)]
        h = self._latest(leaver)
        mine = owners(self.db)
        others = [c for c in self.clients if mine.get(c) != leaver]
        if h is None or not others:
            return
        self._give(others[index % len(others)], leaver)
        running = h["reason"] == "leave" and h["status"] == "scheduled" and self._started(h)
        REACHED[
            f"give {h['reason'] if h['reason'] in ('leave', 'role_change') else 'exit'} {h['status']}"
            f"{' running' if running else ''}"
        ] += 1

    def _started(self, h: dict[str, Any]) -> bool:
        return dt.datetime.fromisoformat(h["effective_at"]) <= self.clock.now()

    # ---- time and the worker ---------------------------------------------------------------------

    @rule(hours=st.sampled_from([1, 24, 24 * 8]))
    def advance(self, hours: int) -> None:
        self.clock.advance(hours * H)

    @rule(hours=st.sampled_from([0, 2, 24 * 8]))
    def worker(self, hours: int) -> None:
        self.clock.advance(hours * H)
        done = work(self.db, self.clock)
        REACHED.update(f"job {k}" for k, v in done.items() if v > 0)
        with self.db.session(write=False) as s:
            REACHED.update(
                f"{'exit' if r not in ('leave', 'role_change') else r} {st_}"
                for r, st_ in s.execute(select(Handover.reason, Handover.status))
            )
        # An execution that gives a client to a successor on leave lays the leave's delegate grant
        # (`rechecks.cover_receivers_on_leave`): no violation of any kind after a worker pass.
        assert self._violations() == []

    @initialize(
        leaver=st.sampled_from(LEAVERS),
        kind=st.sampled_from(["leave", "leave_now", "role_change", "role_change_approved", "exit_approved"]),
        other=st.sampled_from(["leave", "role_change_approved"]),
    )
    def first(self, leaver: str, kind: str, other: str) -> None:
        """Every sequence starts with a leave, a role change or an exit under way (sometimes approved), and another
        leaver's leave or approved role change, so that short sequences reach their times."""
        for who, what in ((leaver, kind), (LEAVERS[(LEAVERS.index(leaver) + 1) % len(LEAVERS)], other)):
            if what.startswith("leave"):
                self.hr_leave(who, -1 if what == "leave_now" else 1, 1)
                continue
            self.hr_exit(who, 48, "role_change" if what.startswith("role_change") else "other")
            if what.endswith("approved"):
                self.plan_and_approve(who)

    # ---- after every step ------------------------------------------------------------------------

    def _violations(self) -> list[continuity.Violation]:
        with self.db.session(write=False) as s:
            found = continuity.violations_in(s, self.clock.now())
            assert found == continuity.violations(continuity.snapshot(s), self.clock.now())
            return found

    def _delegates(self, now: dt.datetime) -> dict[str, str]:
        """The delegate of each person whose leave is running now."""
        with self.db.session(write=False) as s:
            rows = s.execute(
                select(Handover.leaver_id, Handover.delegate_id).where(
                    Handover.reason == "leave",
                    Handover.status == "scheduled",
                    Handover.effective_at <= now,
                    Handover.return_at > now,
                )
            )
            return {leaver: delegate for leaver, delegate in rows if delegate is not None}

    @invariant()
    def http_agrees_with_the_invariant(self) -> None:
        now = self.clock.now()
        flagged = {v.client for v in self._violations()}
        held = sorted(owners(self.db).items())
        away = self._delegates(now)
        # A sample, and every client of a person on leave now (the CRM may have given them one during the leave).
        sample = sorted(set(held[:: max(1, len(held) // 4)]) | {(c, o) for c, o in held if o in away})
        for cid, owner in sample:
            owner_acts = all(check(self.c, self.auth, owner, cid, a) for a in ("view", "edit"))
            if cid in flagged:
                assert not owner_acts, (cid, owner)
                continue
            if owner in away and not owner_acts:
                REACHED["checked a client of a person on leave"] += 1
                delegate = away[owner]
                who = [delegate, *(p for p in ("m1", "m2", *OWNERS) if p not in (owner, delegate))]
                assert any(all(check(self.c, self.auth, p, cid, a) for a in ("view", "edit")) for p in who), (
                    f"{cid}: owner {owner} is away, nobody (their delegate {delegate} first) can act for it"
                )
            else:
                assert owner_acts, (cid, owner)


def test_role_changes_leaves_and_owner_changes_keep_the_invariant(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, hook: TestClient
) -> None:
    REACHED.clear()
    Interleavings.ctx = {"client": client, "auth": auth, "db": db, "clock": clock, "hook": hook}
    run_machine(Interleavings, max_examples=30)
    print(sorted(REACHED.items()))
    # The runs did reach the interleavings the issue names.
    wanted = {
        "leave scheduled",
        "role_change executed",
        "checked a client of a person on leave",
    }
    assert wanted <= set(REACHED), sorted(wanted - set(REACHED))
    # Clients given to a leaver during an exit, a role change and a running leave (which states is the seed's luck;
    # the dedicated tests pin each state).
    gives = {k.split()[1] for k in REACHED if k.startswith("give ") and (k.count(" ") == 2 or k.endswith("running"))}
    assert len({"exit", "role_change", "leave"} & gives) >= 2, sorted(REACHED)
    # A cancelled leave is reached by most seeds; tests/transfer/test_leave.py pins it (cancel while scheduled/running).


# ---- regressions: a person on leave in the invariant ----------------------------------------------------------

RETURN = EFFECTIVE + dt.timedelta(days=7)
LATE = {"tier": "standard", "owner": "e0", "sensitivity": 1}


def _violations(db: Database, at: dt.datetime) -> list[tuple[str, str, str]]:
    with db.session(write=False) as s:
        found = continuity.violations_in(s, at)
        assert found == continuity.violations(continuity.snapshot(s), at)
        return [(v.client, v.owner, v.reason) for v in found]


def _leave(client: TestClient, auth: Any, **extra: Any) -> dict[str, Any]:
    body = {"leaver": "e0", "reason": "leave", "effective_at": EFFECTIVE.isoformat(), "return_at": RETURN.isoformat()}
    r = client.post("/v1/handovers", json={**body, **extra}, headers=auth("hr"))
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_a_client_given_to_a_person_on_leave_is_held_by_the_delegate(
    client: TestClient, auth: Any, db: Database, clock: ManualClock
) -> None:
    """The bug: the delegate's grants were written for the clients owned when the leave opened only; a client the
    CRM gave the person afterwards had an owner away and nobody who could act for it (and the invariant, reading
    no suspension, did not see it)."""
    h = _leave(client, auth, delegate="m2")
    assert client.put("/v1/clients/before", json={"name": "Before", **LATE}, headers=auth("hr")).status_code == 201
    clock.set(EFFECTIVE + dt.timedelta(days=1))
    assert client.put("/v1/clients/during", json={"name": "During", **LATE}, headers=auth("hr")).status_code == 201
    late = ["before", "during", "c0"]
    for at in (EFFECTIVE, clock.now(), RETURN - S):
        assert acts_for_all(client, auth, "m2", late, at), at
        assert not check(client, auth, "e0", "during", "view", at)
        assert _violations(db, at) == []
    assert owners(db)["during"] == "e0"  # ownership did not move
    # Back at return_at: the person acts again, the delegate's window (late clients' too) has ended.
    assert acts_for_all(client, auth, "e0", late, RETURN)
    assert not check(client, auth, "m2", "during", "view", RETURN)
    # HR moves the leave: the late clients' grants move with it; cancelling it ends them.
    later = EFFECTIVE + dt.timedelta(days=3)
    r = client.post(f"/v1/handovers/{h['id']}/cancel", json={}, headers=auth("hr"))
    assert r.status_code == 200, r.text
    assert not check(client, auth, "m2", "during", "view", RETURN - S)
    assert acts_for_all(client, auth, "e0", late, later)
    assert _violations(db, later) == []


def test_a_client_of_a_person_on_leave_nobody_covers_is_a_violation(
    client: TestClient, auth: Any, db: Database, clock: ManualClock
) -> None:
    _leave(client, auth)
    clock.set(EFFECTIVE + dt.timedelta(hours=1))
    assert _violations(db, clock.now()) == []  # away, and the delegate holds every client
    assert not check(client, auth, "e0", "c1", "view") and acts_for_all(client, auth, "m1", ["c1"])
    # The delegate's grant on c1 is lost behind the service's back: nobody can act for c1 until e0 is back.
    with db.engine.begin() as conn:
        conn.execute(
            update(AccessGrant)
            .where(AccessGrant.client_id == "c1", AccessGrant.employee_id == "m1")
            .values(revoked_at=clock.now())
        )
    assert _violations(db, clock.now()) == [("c1", "e0", continuity.OWNER_AWAY)]
    assert _violations(db, RETURN) == []  # back: their own grant holds again
    # The sweeper alerts it and repairs nothing by rule (the person stays the owner).
    assert work(db, clock)["sweep_ownership"] == 0
    assert owners(db)["c1"] == "e0"
    [alert] = events(db, "ownership.violation") or [None]
    assert alert is None or [(c["client"], c["reason"], c["repaired"]) for c in alert["clients"]] == [
        ("c1", "owner_away", False)
    ]


@pytest.mark.parametrize("started", [False, True])
def test_a_departure_signal_during_a_leave_opens_the_exit(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, started: bool
) -> None:
    """The bug: a status change to leaving (HR's employee.updated, PUT, batch) found the open leave and opened no
    exit, so at the exit time nobody took the person's clients over (`owner_exit_passed`, left to the workflow that
    never came). Now it ends the leave first, as an `employee.exit` does."""
    leave = _leave(client, auth)
    if started:
        clock.set(EFFECTIVE + dt.timedelta(hours=1))
    exit_at = clock.now() + dt.timedelta(hours=2)
    r = client.put(
        "/v1/employees/e0", json=record("e0", status="leaving", exit_at=exit_at.isoformat()), headers=auth("hr")
    )
    assert r.status_code == 200, r.text
    assert (r.json()["status"], dt.datetime.fromisoformat(r.json()["exit_at"])) == ("leaving", exit_at)
    after = client.get(f"/v1/handovers/{leave['id']}", headers=auth()).json()
    assert after["status"] == ("completed" if started else "cancelled")
    [exit_h] = [h for h in handovers_of(client, auth, "e0") if h["id"] != leave["id"]]
    assert (exit_h["reason"], dt.datetime.fromisoformat(exit_h["effective_at"])) == ("unknown", exit_at)
    assert acts_for_all(client, auth, "e0", ["c0", "c1"])  # back from the leave until the exit
    clock.set(exit_at)
    work(db, clock)
    assert _violations(db, clock.now()) == []
    assert {o for c, o in owners(db).items() if c.startswith("c")} == {"m1"}
    assert acts_for_all(client, auth, "m1", ["c0", "c1"])
