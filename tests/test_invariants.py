"""A stateful property test of the handover workflow, through the real HTTP API on a real database.

Hypothesis drives a small company (three possible leavers, e0 and e1 under m1 and x1 under m2; six clients; one
CRM webhook endpoint subscribed to every event) through random sequences of: open a handover (POST or the signed
HR webhook, which re-times an open one), plan, override an item with its ETag (sometimes a stale one), approve,
move the injected clock, execute (POST …/execute or the worker), cancel (POST or the HR `employee.exit_cancelled`
event, which undoes an executed handover), undo, complete, sign off (which may complete), and `progress` (a few
legal steps at once, so that short sequences reach the late states). Rules pick handovers from those that exist,
in any state, so illegal moves are tried too: they must answer problem+json (409; 412 for a stale ETag; 422 for
a broken constraint; 403 for a token of someone whose exit has passed) and change no row of any table the
workflow writes.

A small model predicts every status, the leavers' directory status and exit time, and every audit action on
each handover. After every step, read-only queries check:

1. every client has exactly one owner, an existing employee, and at most one person holds owner-level access;
2. no departed employee holds a grant valid after their exit: once an exit is committed (approved) no grant
   window outlives it, and once an exit time has passed the access decision refuses the employee;
3. every state change has exactly one audit entry (the model's list, per handover, each with the status it led
   to) and the hash chain verifies (the service after every step, `GET /v1/audit/verify` after every sequence);
4. the outbox holds one event per state change, in the audit order, and `client.reassigned` follows exactly the
   executions and undos.

The machine found three access bugs, fixed since; the regression tests at the end replay each one: grants
outliving a successor's own approved exit (on approve, and again on reschedule), and undo giving the leaver back
access to clients that stay with their new owner.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.access import service as access_service
from app.access.models import AccessGrant
from app.audit import service as audit_service
from app.audit.models import AuditEntry
from app.core.clock import ManualClock
from app.core.config import Settings
from app.core.db import Database, transaction
from app.directory.models import Client, Employee
from app.notify.models import OutboxMessage
from app.transfer import service as transfer_service
from app.transfer.models import Handover
from app.worker import execute_due_handovers, run_once
from tests.conftest import START
from tests.fuzz.world import World, x_clients
from tests.support.checklist import complete_checklist
from tests.support.company import EFFECTIVE, clients, employees, open_for, plan
from tests.support.db import snapshot
from tests.support.events import subscribe
from tests.support.hr import SECRET, deliver, exit_event
from tests.support.problems import assert_problem

LEAVERS = ("e0", "e1", "x1")  # e0 and e1 under m1 (e1 is also a likely successor of e0), x1 under m2
MANAGERS = {"e0": "m1", "e1": "m1", "x1": "m2"}
OFFSETS = (-1, 2, 24, 72, 24 * 14)  # hours from now to the effective time (an immediate termination is late)
STEPS = (1, 24, 24 * 7, 24 * 31)  # hours the clock moves (31 days: past the undo window)
OVERRIDES: tuple[dict[str, Any], ...] = (
    {"successor": "m1"},  # a senior manager with room: fits every client
    {"successor": "e2"},
    {"successor": "e4"},
    {"successor": "e3"},  # a junior: breaks seniority or clearance for most clients (422)
    {"successor": "e3", "force": True, "reason": "the client asked for Jo"},
    {"successor": "e1", "force": True, "reason": "Wang knows them best"},  # possibly leaving
    {"interim_owner": "m2"},
    {"interim_owner": "LEAVER"},  # the leaver: always refused
)
STATE_ACTIONS = frozenset(transfer_service.EVENTS)  # handover.created … handover.undone
RESULT = {
    "handover.created": "draft",
    "handover.planned": "planned",
    "handover.approved": "approved",
    "handover.executed": "executed",
    "handover.completed": "completed",
    "handover.cancelled": "cancelled",
    "handover.undone": "undone",
}
OPEN = ("draft", "planned", "approved", "executed")
# Audit entries on a handover that are not state changes of it (no `status` in most): the model leaves them out.
NOT_STATE_CHANGES = frozenset(
    {
        "handover.overdue",  # an approval reminder (tests/transfer/test_deadlines.py)
        # The re-checks at approval and on directory changes (tests/transfer/test_rechecks.py): an item added for a
        # client that arrived late, an item given another successor, the approved messages and follow-ups that
        # follow it, and a client that can go to no one.
        "handover.item.added",
        "handover.item.replanned",
        "handover.messages_rerouted",
        "handover.attention",
        # Account-team seats moved or put back with the clients (tests/transfer/test_seats.py).
        "handover.seats_removed",
        "handover.seats_restored",
        # CRM records moved with the clients, and their rules and overrides (tests/book/test_follow.py,
        # tests/book/test_rules.py).
        "record.reassigned",
        "record.restored",
        "handover.record_override",
        "handover.record_rules",
        "handover.confidentiality",  # a checklist setting (tests/transfer/test_checklist_templates.py)
    }
)
UNDO_WINDOW = dt.timedelta(days=30)
# The tables a handover request, the HR webhook or the worker's execution can write (the others hold templates,
# the risk model, endpoints, contacts, account teams, access events, alerts, deliveries and idempotency keys).
WRITTEN = (
    "employee",
    "client",
    "handover",
    "handover_item",
    "follow_up",
    "access_grant",
    "audit_entry",
    "outbox_message",
    "inbound_event",
)


@dataclass
class Case:
    """What the model knows about one handover."""

    id: int
    leaver: str
    status: str
    effective_at: dt.datetime
    executed_at: dt.datetime | None = None
    actions: list[str] = field(default_factory=list)  # every audit action on the handover, in order
    # Issue 15: not approved by its effective time, its clients went to the interim owner (and the leaver departed);
    # opened for someone who had departed already.
    taken: bool = False
    departed_before: bool = False
    held: bool = False  # the interim owner holds the clients now (a later exit time gives them back)


@dataclass
class Context:
    client: TestClient
    db: Database
    clock: ManualClock
    auth: Callable[..., dict[str, str]]
    world: World


def _changed(before: dict[str, list[tuple[Any, ...]]], after: dict[str, list[tuple[Any, ...]]]) -> list[str]:
    return [name for name in before if before[name] != after[name]]


def _window_open_after(grant: Any, when: dt.datetime) -> bool:
    """Whether [valid_from, min(valid_until, revoked_at)) holds some instant later than `when`."""
    ends = [x for x in (grant.valid_until, grant.revoked_at) if x is not None]
    end = min(ends) if ends else None
    return end is None or (end > when and end > grant.valid_from)


def grants_past_exit(session: Session, now: dt.datetime) -> list[tuple[Any, ...]]:
    """Grants valid after their holder's committed exit.

    An exit is committed when the leaver's handover is approved (approval cuts every grant they hold at the
    effective time, by its window) or executed (the leaver departed). A grant counts if its window
    [valid_from, min(valid_until, revoked_at)) holds any instant after the exit.
    """
    people = session.execute(select(Employee.external_id, Employee.status, Employee.exit_at)).all()
    committed = {e: x or now for e, s, x in people if s == "departed"}
    for leaver, effective_at in session.execute(
        select(Handover.leaver_id, Handover.effective_at).where(Handover.status.in_(("approved", "executed")))
    ):
        committed[leaver] = effective_at
    g = AccessGrant
    return [
        tuple(grant)
        for grant in session.execute(
            select(
                g.id, g.employee_id, g.client_id, g.level, g.valid_from, g.valid_until, g.revoked_at, g.handover_id
            ).where(g.employee_id.in_(committed))
        )
        if _window_open_after(grant, committed[grant.employee_id])
    ]


class HandoverWorkflow(RuleBasedStateMachine):
    ctx: ClassVar[Context]
    reached: ClassVar[Counter[str]] = Counter()  # what the run did: "<action>" for moves, "<status>" for refusals

    handovers = Bundle("handovers")

    def __init__(self) -> None:
        super().__init__()
        self.ctx.world.reset()  # the seeded company, the clock back at START
        self.cases: dict[int, Case] = {}
        self.employee: dict[str, tuple[str, dt.datetime | None]] = {e: ("active", None) for e in LEAVERS}

    # ---- helpers ------------------------------------------------------------------------------

    @property
    def now(self) -> dt.datetime:
        return self.ctx.clock.now()

    def _refused(self, call: Callable[[], Response], status: int) -> dict[str, Any]:
        """The request answers a problem with `status` and changes nothing at all."""
        before = snapshot(self.ctx.db, WRITTEN)
        self.reached[f"refused {status}"] += 1
        body = assert_problem(call(), status)
        assert not _changed(before, snapshot(self.ctx.db, WRITTEN)), (
            f"a refused request ({status}) changed the database"
        )
        return body

    def _unchanged(self, call: Callable[[], Response]) -> Response:
        before = snapshot(self.ctx.db, WRITTEN)
        r = call()
        assert r.status_code == 200, r.text
        assert not _changed(before, snapshot(self.ctx.db, WRITTEN)), "a no-op changed the database"
        return r

    def _open_case(self, leaver: str) -> Case | None:
        found = [c for c in self.cases.values() if c.leaver == leaver and c.status in OPEN]
        assert len(found) <= 1
        return found[0] if found else None

    def _moved(self, case: Case, action: str) -> None:
        self.reached[action] += 1
        case.status = RESULT[action]
        case.actions.append(action)
        if action == "handover.executed":
            case.executed_at = self.now
            self.employee[case.leaver] = ("departed", case.effective_at)
        elif action == "handover.cancelled" and case.departed_before:
            self.employee[case.leaver] = ("departed", case.effective_at)  # they had left before it was opened
        elif action in ("handover.cancelled", "handover.undone"):
            self.employee[case.leaver] = ("active", None)

    def _take_over_if_due(self, case: Case) -> None:
        """Issue 15: a handover not approved when its effective time has come hands the clients to the interim
        owner (audited on the handover), and the leaver departs."""
        if case.status in ("draft", "planned") and not case.held and case.effective_at <= self.now:
            case.taken = case.held = True
            case.actions.append("handover.interim_owner")
            self.reached["taken over by the interim owner"] += 1
            self.employee[case.leaver] = ("departed", case.effective_at)

    def _reschedule(self, case: Case, effective_at: dt.datetime) -> None:
        if case.effective_at != effective_at:
            case.effective_at = effective_at
            case.actions.append("handover.rescheduled")
            self.reached["handover.rescheduled"] += 1
            state, _ = self.employee[case.leaver]
            self.employee[case.leaver] = (state, effective_at)
            self._take_over_if_due(case)

    def _execute(self, case: Case, *, immediate: bool) -> None:
        if immediate and case.effective_at > self.now:
            self._reschedule(case, self.now)
        self._moved(case, "handover.executed")

    def _undo_allowed(self, case: Case) -> bool:
        return case.status in ("executed", "completed") and self.now <= (case.executed_at or self.now) + UNDO_WINDOW

    def _items(self, case: Case) -> list[dict[str, Any]]:
        r = self.ctx.client.get(f"/v1/handovers/{case.id}/items", headers=self.ctx.auth("admin"))
        assert r.status_code == 200, r.text
        items: list[dict[str, Any]] = r.json()["items"]
        return items

    # ---- opening --------------------------------------------------------------------------------

    @initialize(target=handovers, stage=st.integers(0, 3), by_hand=st.booleans())
    def first_handover(self, stage: int, by_hand: bool) -> int:
        """e0's handover, taken 0 (draft) … 3 (executed) legal steps forward: every sequence starts somewhere."""
        hid = self.open_handover("e0", 24 * 14, webhook=False)
        assert isinstance(hid, int)
        for _ in range(stage):
            self._step_forward(self.cases[hid], by_hand=by_hand)
        return hid

    @rule(
        target=handovers,
        leaver=st.sampled_from(LEAVERS),
        hours=st.sampled_from(OFFSETS),
        webhook=st.booleans(),
    )
    def open_handover(self, leaver: str, hours: int, webhook: bool) -> Any:
        effective_at = self.now + dt.timedelta(hours=hours)
        c, auth = self.ctx.client, self.ctx.auth
        if webhook:
            # Stamped now: the HR system sends in order (an older exit than the latest event would be ignored).
            event = {**exit_event(leaver, effective_at, reason="resignation"), "timestamp": self.now.isoformat()}

            def call() -> Response:
                response: Response = deliver(c, event, clock=self.ctx.clock)
                return response

        else:
            body = {"leaver": leaver, "reason": "resignation", "effective_at": effective_at.isoformat()}

            def call() -> Response:
                response: Response = c.post("/v1/handovers", json=body, headers=auth("hr"))
                return response

        open_case = self._open_case(leaver)
        departed = self.employee[leaver][0] == "departed"
        if webhook and open_case is not None:
            if open_case.status == "executed":
                self._refused(call, 409)  # an executed handover cannot move
                return multiple()
            if open_case.held and open_case.status in ("draft", "planned") and effective_at > self.now:
                if open_case.departed_before:
                    self._refused(call, 409)  # gone before the opening: the clients stay with the interim owner
                    return multiple()
                # Moved to a time that has not come: the takeover is reversed until then (issue 15).
                open_case.held = False
                open_case.actions.append("handover.interim_returned")
                self.reached["takeover given back"] += 1
                self.employee[leaver] = ("leaving", open_case.effective_at)
            r = call()  # the HR system re-announces the exit: the open handover moves to the new time
            assert r.status_code == 200, r.text
            assert r.json()["handover_id"] == open_case.id
            self._reschedule(open_case, effective_at)
            return multiple()
        if open_case is not None:
            self._refused(call, 409)  # one open handover per leaver
            return multiple()
        r = call()
        assert r.status_code == (200 if webhook else 201), r.text
        hid = int(r.json()["handover_id" if webhook else "id"])
        self.reached["opened by the HR webhook" if webhook else "opened by POST"] += 1
        assert hid not in self.cases
        if departed:  # issue 15: gone already, so effective now at the latest, and taken over at once
            self.reached["opened for a departed leaver"] += 1
            effective_at = min(effective_at, self.now)
        case = Case(hid, leaver, "draft", effective_at, actions=["handover.created"], departed_before=departed)
        self.cases[hid] = case
        self.employee[leaver] = ("departed" if departed else "leaving", effective_at)
        self._take_over_if_due(case)
        return hid

    # ---- planning and review ------------------------------------------------------------------

    @rule(h=handovers)
    def plan(self, h: int) -> None:
        case = self.cases[h]

        def call() -> Response:
            response: Response = self.ctx.client.post(f"/v1/handovers/{h}/plan", headers=self.ctx.auth("hr"))
            return response

        if case.status not in ("draft", "planned"):
            self._refused(call, 409)
            return
        r = call()
        assert r.status_code == 200, r.text
        self._moved(case, "handover.planned")

    @rule(
        h=handovers,
        index=st.integers(0, 6),
        choice=st.sampled_from(OVERRIDES),
        stale=st.sampled_from((False, False, False, True)),
    )
    def override(self, h: int, index: int, choice: dict[str, Any], stale: bool) -> None:
        case = self.cases[h]
        if case.status == "draft":  # a draft has no items yet: review starts with a plan
            self.plan(h)
        items = self._items(case)
        if not items:
            return
        item = items[index % len(items)]
        url = f"/v1/handovers/{h}/items/{item['id']}"
        r = self.ctx.client.get(url, headers=self.ctx.auth("admin"))
        assert r.status_code == 200, r.text
        etag = r.headers["etag"]
        body = {k: (case.leaver if v == "LEAVER" else v) for k, v in choice.items()}
        headers = {**self.ctx.auth("hr"), "If-Match": f'"item-{item["id"]}-v0"' if stale else etag}

        def call() -> Response:
            response: Response = self.ctx.client.patch(url, json=body, headers=headers)
            return response

        if stale:  # the ETag is checked first, whatever the state
            self._refused(call, 412)
            return
        if case.status not in ("draft", "planned"):
            self._refused(call, 409)
            return
        if body.get("interim_owner") == case.leaver:
            self._refused(call, 422)
            return
        before = snapshot(self.ctx.db, WRITTEN)
        r = call()
        if r.status_code == 422:  # a hard constraint, without force
            assert_problem(r, 422)
            self.reached["override refused by a constraint"] += 1
            assert not body.get("force")
            assert not _changed(before, snapshot(self.ctx.db, WRITTEN))
            return
        assert r.status_code == 200, r.text
        out = r.json()
        self.reached["override"] += 1
        assert out["manual"] is True and out["version"] == item["version"] + 1
        assert (out["successor"], out["interim_owner"]) == (body.get("successor"), body.get("interim_owner"))

    @rule(h=handovers, as_admin=st.booleans())
    def approve(self, h: int, as_admin: bool) -> None:
        case = self.cases[h]
        headers = self.ctx.auth("admin") if as_admin else self.ctx.auth("manager", emp=MANAGERS[case.leaver])

        def call() -> Response:
            response: Response = self.ctx.client.post(f"/v1/handovers/{h}/approve", headers=headers)
            return response

        if case.status != "planned":
            self._refused(call, 409)
            return
        r = call()
        assert r.status_code == 200, r.text
        self._moved(case, "handover.approved")
        if case.effective_at <= self.now:  # approved late (issue 15): executed at once
            self.reached["executed at a late approval"] += 1
            self._moved(case, "handover.executed")

    # ---- time and execution -------------------------------------------------------------------

    @rule(hours=st.sampled_from(STEPS))
    def advance_clock(self, hours: int) -> None:
        self.ctx.clock.advance(dt.timedelta(hours=hours))

    @rule(h=handovers)
    def execute_now(self, h: int) -> None:
        case = self.cases[h]

        def call() -> Response:
            response: Response = self.ctx.client.post(f"/v1/handovers/{h}/execute", headers=self.ctx.auth("admin"))
            return response

        if case.status in ("executed", "completed"):
            self._unchanged(call)  # idempotent: nothing to do, not an error
            return
        if case.status != "approved":
            self._refused(call, 409)
            return
        r = call()
        assert r.status_code == 200, r.text
        self.reached["executed by POST"] += 1
        self._execute(case, immediate=True)

    @rule(deliver=st.booleans())
    def worker_pass(self, deliver: bool) -> None:
        """The worker: a whole pass (due executions, overdue follow-ups, outbox deliveries), or only its
        execution job (delivering the outbox is slow and irrelevant to these invariants)."""
        due = sorted(
            (c for c in self.cases.values() if c.status == "approved" and c.effective_at <= self.now),
            key=lambda c: c.effective_at,
        )
        if deliver:
            done = run_once(self.ctx.db, self.ctx.clock)["execute_due_handovers"]
        else:
            with transaction(self.ctx.db) as session:
                done = execute_due_handovers(session, self.ctx.clock)
        assert done == len(due), (done, due)
        for case in due:
            self.reached["executed by the worker"] += 1
            self._execute(case, immediate=False)
        if deliver:  # the whole pass also hands what is not approved in time to the interim owner
            for case in sorted(self.cases.values(), key=lambda c: (c.effective_at, c.id)):
                self._take_over_if_due(case)

    @rule(h=handovers, steps=st.integers(1, 4), by_hand=st.booleans())
    def progress(self, h: int, steps: int, by_hand: bool) -> None:
        """Up to `steps` legal steps forward, so that short sequences reach the late states too."""
        for _ in range(steps):
            self._step_forward(self.cases[h], by_hand=by_hand)

    def _step_forward(self, case: Case, *, by_hand: bool) -> None:
        """Plan, approve, execute (by hand now, or by the worker at the effective time), sign off every item."""
        h = case.id
        if case.status == "draft":
            self.plan(h)
        elif case.status == "planned":
            self.approve(h, as_admin=False)
        elif case.status == "approved" and by_hand:
            self.execute_now(h)
        elif case.status == "approved":
            if case.effective_at > self.now:
                self.ctx.clock.set(case.effective_at)
            self.worker_pass(deliver=False)
        elif case.status == "executed":
            for index, item in enumerate(self._items(case)):
                for outgoing in (True, False):
                    signed = item["outgoing_signed_at" if outgoing else "incoming_signed_at"]
                    if item["status"] in ("transferred", "confirmed") and signed is None:
                        self.sign_off(h, index, outgoing)

    # ---- cancel, undo, complete ---------------------------------------------------------------

    @rule(h=handovers)
    def cancel(self, h: int) -> None:
        case = self.cases[h]

        def call() -> Response:
            response: Response = self.ctx.client.post(
                f"/v1/handovers/{h}/cancel", json={"reason": "stays after all"}, headers=self.ctx.auth("hr")
            )
            return response

        if case.status not in ("draft", "planned", "approved"):
            self._refused(call, 409)
            return
        r = call()
        assert r.status_code == 200, r.text
        self._moved(case, "handover.cancelled")

    @rule(leaver=st.sampled_from(LEAVERS))
    def exit_cancelled_by_hr(self, leaver: str) -> None:
        """HR withdraws the exit: the latest open or completed handover is cancelled, or undone if executed."""
        event = {
            "type": "employee.exit_cancelled",
            "timestamp": self.now.isoformat(),
            "data": {"employee": leaver, "reason": "withdrawn"},
        }

        def call() -> Response:
            response: Response = deliver(self.ctx.client, event, clock=self.ctx.clock)
            return response

        latest = max(
            (c for c in self.cases.values() if c.leaver == leaver and c.status in (*OPEN, "completed")),
            key=lambda c: c.id,
            default=None,
        )
        if latest is None:
            r = self._unchanged_except_inbound(call)
            assert r.json()["handover_id"] is None
            return
        if latest.status in ("executed", "completed") and not self._undo_allowed(latest):
            self._refused(call, 409)
            return
        r = call()
        assert r.status_code == 200, r.text
        assert r.json()["handover_id"] == latest.id
        undo = latest.status in ("executed", "completed")
        self.reached["exit cancelled by HR"] += 1
        self._moved(latest, "handover.undone" if undo else "handover.cancelled")

    def _unchanged_except_inbound(self, call: Callable[[], Response]) -> Response:
        before = snapshot(self.ctx.db, WRITTEN)
        r = call()
        assert r.status_code == 200, r.text
        assert _changed(before, snapshot(self.ctx.db, WRITTEN)) == ["inbound_event"]
        return r

    @rule(h=handovers)
    def undo(self, h: int) -> None:
        case = self.cases[h]

        def call() -> Response:
            response: Response = self.ctx.client.post(
                f"/v1/handovers/{h}/undo", json={"reason": "back"}, headers=self.ctx.auth()
            )
            return response

        if not self._undo_allowed(case):
            self._refused(call, 409)
            return
        r = call()
        assert r.status_code == 200, r.text
        self._moved(case, "handover.undone")

    @rule(h=handovers)
    def complete(self, h: int) -> None:
        case = self.cases[h]

        def call() -> Response:
            response: Response = self.ctx.client.post(
                f"/v1/handovers/{h}/complete",
                json={"reason": "open items closed by the manager"},
                headers=self.ctx.auth("manager", emp=MANAGERS[case.leaver]),
            )
            return response

        if case.status != "executed":
            self._refused(call, 409)
            return
        r = call()
        assert r.status_code == 200, r.text
        self._moved(case, "handover.completed")

    @rule(h=handovers, index=st.integers(0, 6), outgoing=st.booleans())
    def sign_off(self, h: int, index: int, outgoing: bool) -> None:
        case = self.cases[h]
        items = self._items(case)
        if not items:
            return
        item = items[index % len(items)]
        if outgoing:
            before_exit = self.now < case.effective_at
            signer = case.leaver if before_exit else MANAGERS[case.leaver]
            body: dict[str, Any] = {"side": "outgoing"} if before_exit else {"side": "outgoing", "reason": "gone"}
            signed = item["outgoing_signed_at"] is not None
        else:
            signer = item["transferred_to"] or item["successor"] or item["interim_owner"]
            body = {"side": "incoming"}
            signed = item["incoming_signed_at"] is not None
        role = "manager" if signer in ("m1", "m2", "ceo") else "account_manager"
        headers = self.ctx.auth(role, emp=signer)
        url = f"/v1/handovers/{h}/items/{item['id']}/sign-off"

        def call() -> Response:
            response: Response = self.ctx.client.post(url, json=body, headers=headers)
            return response

        state, exit_at = self.employee.get(signer, ("active", None))
        if state == "departed" or (exit_at is not None and exit_at <= self.now):
            self._refused(call, 403)  # a leaver's token stops working at the exit time
            return
        illegal = (
            case.status not in ("approved", "executed")
            or item["status"] in ("cancelled", "reverted", "closed")
            or signed
        )
        if not illegal:  # sign-off waits for the required checklist entries (issue 16): an admin ticks them first
            complete_checklist(self.ctx.client, self.ctx.auth(), h, item["id"])
        if role == "manager" and signer not in (MANAGERS[case.leaver], "ceo"):
            # A manager receiving a client of another team's leaver (as successor or interim owner) does not see
            # that handover today: managers see their own team's only. Reported; accepted either way here.
            before = snapshot(self.ctx.db, WRITTEN)
            r = call()
            if r.status_code == 404:
                assert_problem(r, 404)
                assert not _changed(before, snapshot(self.ctx.db, WRITTEN)), "a refused sign-off changed the database"
                self.reached["sign-off hidden from a manager of another team"] += 1
                return
            if illegal:
                assert_problem(r, 409)
                assert not _changed(before, snapshot(self.ctx.db, WRITTEN)), "a refused sign-off changed the database"
                return
        elif illegal:
            self._refused(call, 409)
            return
        else:
            r = call()
        assert r.status_code == 200, r.text
        self.reached[f"signed {body['side']}"] += 1
        # Both sides signed on an executed handover whose time has come: the last one completes it.
        left = [i for i in self._items(case) if i["status"] not in ("confirmed", "closed")]
        if case.status == "executed" and self.now >= case.effective_at and not left:
            self._moved(case, "handover.completed")

    # ---- invariants ---------------------------------------------------------------------------

    @invariant()
    def invariants_hold(self) -> None:
        """After every step, with read-only queries on one read session."""
        with self.ctx.db.session(write=False) as session:
            self.check_model(session)
            self.check_every_client_has_exactly_one_owner(session)
            self.check_no_departed_employee_keeps_access(session)
            self.check_every_state_change_is_audited_once(session)
            self.check_one_event_per_state_change(session)

    def check_model(self, session: Session) -> None:
        statuses = {h: status for h, status in session.execute(select(Handover.id, Handover.status))}
        assert statuses == {h: c.status for h, c in self.cases.items()}
        people = session.execute(
            select(Employee.external_id, Employee.status, Employee.exit_at).where(Employee.external_id.in_(LEAVERS))
        )
        assert {e: (s, x) for e, s, x in people} == self.employee

    def check_every_client_has_exactly_one_owner(self, session: Session) -> None:
        staff = set(session.scalars(select(Employee.external_id)))
        owners = session.execute(select(Client.external_id, Client.owner_id)).all()
        assert len(owners) == len(self.ctx.world.rows["client"]), "a client disappeared"
        orphans = [(c, o) for c, o in owners if o is None or o not in staff]
        assert not orphans, f"clients without an existing owner: {orphans}"
        # In the access model too: at most one person holds owner-level access (owner or interim) right now.
        now, g = self.now, AccessGrant
        holders: dict[str, set[str]] = defaultdict(set)
        for client_id, employee_id in session.execute(
            select(g.client_id, g.employee_id).where(
                g.level.in_(("owner", "interim")),
                g.valid_from <= now,
                (g.valid_until.is_(None)) | (g.valid_until > now),
                (g.revoked_at.is_(None)) | (g.revoked_at > now),
            )
        ):
            holders[client_id].add(employee_id)
        shared = {c: sorted(e) for c, e in holders.items() if len(e) > 1}
        assert not shared, f"clients with more than one owner-level grant holder: {shared}"

    def check_no_departed_employee_keeps_access(self, session: Session) -> None:
        """Once an exit is committed, no grant outlives it (by its window alone); once an exit time has passed,
        the access decision refuses the employee, whatever their grants say."""
        kept = grants_past_exit(session, self.now)
        assert not kept, f"departed or leaving employees with grants valid after their exit: {kept}"
        now = self.now
        people = session.execute(select(Employee.external_id, Employee.status, Employee.exit_at)).all()
        gone = [e for e, s, x in people if s == "departed" or (x is not None and x <= now)]
        accounts = list(session.scalars(select(Client.external_id)))
        checks = [(e, c, "view", now) for e in gone for c in accounts]
        allowed = [d for d in access_service.decide_batch(session, checks) if d.allowed] if checks else []
        assert not allowed, f"access allowed to employees past their exit: {allowed}"

    def check_every_state_change_is_audited_once(self, session: Session) -> None:
        """The model's list of audit actions per handover, exactly; each records the status it led to."""
        actions: dict[int, list[str]] = defaultdict(list)
        last_status: dict[int, str] = {}
        for entity_id, action, data in session.execute(
            select(AuditEntry.entity_id, AuditEntry.action, AuditEntry.data)
            .where(AuditEntry.entity_type == "handover")
            .order_by(AuditEntry.seq)
        ):
            if action in NOT_STATE_CHANGES:
                continue  # a reminder, a re-check or records moving: not a state change (see NOT_STATE_CHANGES)
            actions[int(entity_id)].append(action)
            if action in RESULT:
                assert data["status"] == RESULT[action], (action, data)
            last_status[int(entity_id)] = data["status"]
        assert dict(actions) == {h: c.actions for h, c in self.cases.items()}
        assert last_status == {h: c.status for h, c in self.cases.items()}
        verification = audit_service.verify(session)
        assert verification.ok and verification.count == verification.total, verification

    def check_one_event_per_state_change(self, session: Session) -> None:
        """The outbox's events per handover are its state changes, in order; a `client.reassigned` event follows
        an execution or an undo (and only those)."""
        events: dict[int, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
        for event_type, payload in session.execute(
            select(OutboxMessage.event_type, OutboxMessage.payload)
            .where(OutboxMessage.category == "event")
            .order_by(OutboxMessage.id)
        ):
            data = payload["data"]
            if (event_type in STATE_ACTIONS or event_type == "client.reassigned") and data["handover_id"] is not None:
                events[int(data["handover_id"])].append((event_type, data))
        for h, case in self.cases.items():
            seen = events.pop(h, [])
            assert [t for t, _ in seen if t in STATE_ACTIONS] == [a for a in case.actions if a in STATE_ACTIONS], (
                h,
                seen,
            )
            for (t, data), (prev, _) in zip(seen[1:], seen, strict=False):
                if t == "client.reassigned" and case.taken and all(m["interim"] for m in data["clients"]):
                    continue  # to the interim owner at the effective time, or back when cancelled (issue 15)
                if t == "client.reassigned":  # one batch: fewer than 500 clients
                    assert prev in ("handover.executed", "handover.undone"), (h, seen)
                    assert data["undo"] == (prev == "handover.undone") and data["batches"] == 1, (h, data)
            for t, data in seen:
                if t in STATE_ACTIONS:
                    assert data["status"] == RESULT[t], (t, data)
        assert not events, f"events for unknown handovers: {events}"

    def teardown(self) -> None:
        # The service verifies the chain after every step (above); the auditor's endpoint once per sequence.
        r = self.ctx.client.get("/v1/audit/verify", headers=self.ctx.auth("auditor"))
        assert r.status_code == 200, r.text
        assert r.json()["ok"] is True, r.json()


@pytest.fixture
def hr_webhook(app: FastAPI) -> Iterator[None]:
    """The signed HR webhook needs its secret; everything else is the app as the other tests run it.
    (Set by hand: monkeypatch cannot restore an attribute of starlette's State, which lives in a dict.)"""
    original = app.state.settings
    app.state.settings = original.model_copy(update={"hr_webhook_secret": SecretStr(SECRET)})
    try:
        yield
    finally:
        app.state.settings = original


@pytest.fixture
def workflow(
    app: FastAPI,
    client: TestClient,
    db: Database,
    clock: ManualClock,
    auth: Any,
    settings: Settings,
    hr_webhook: None,
) -> Context:
    """The seeded company (e0 with three clients, e1 with one, x1 with two; one CRM endpoint subscribed to every
    event, so that every event is one outbox row), kept as rows to be put back before every sequence."""
    company = clients(3) + x_clients() + [{**clients(4)[3], "external_id": "y0", "owner": "e1"}]
    for path, rows in (("/v1/employees/batch", employees()), ("/v1/clients/batch", company)):
        r = client.post(path, json={"items": rows}, headers=auth("hr"))
        assert r.status_code == 200, r.text
    subscribe(db, settings)
    return Context(client=client, db=db, clock=clock, auth=auth, world=World(app, {}))


def test_workflow_invariants(workflow: Context) -> None:
    HandoverWorkflow.ctx = workflow
    HandoverWorkflow.reached = Counter()
    run_state_machine_as_test(
        HandoverWorkflow,
        settings=settings(
            max_examples=30,
            stateful_step_count=20,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )
    # The sequences did reach every state change, both ways in and out, and tried illegal moves.
    wanted = {*RESULT, "opened by the HR webhook", "executed by POST", "executed by the worker", "refused 409"}
    wanted -= {"handover.created"}
    assert wanted <= set(HandoverWorkflow.reached), HandoverWorkflow.reached


# ---- bugs the invariants found, kept as regression tests (fixed in e089aec) -----------------------------------


def _open(client: TestClient, auth: Any, leaver: str, effective_at: dt.datetime) -> int:
    return open_for(client, auth, leaver, effective_at, reason="resignation")


def _first_successor(client: TestClient, auth: Any, hid: int) -> str:
    items = client.get(f"/v1/handovers/{hid}/items", headers=auth()).json()["items"]
    return str(next(i["successor"] for i in items if i["successor"]))


def _approve(client: TestClient, auth: Any, hid: int) -> None:
    r = client.post(f"/v1/handovers/{hid}/approve", headers=auth())
    assert r.status_code == 200, r.text


def test_a_successor_whose_exit_was_approved_first_keeps_no_access_past_it(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, company: Any
) -> None:
    h0 = _open(client, auth, "e0", EFFECTIVE)
    plan(client, auth, h0)
    successor = _first_successor(client, auth, h0)
    h1 = _open(client, auth, successor, START + dt.timedelta(days=2))  # the successor leaves first
    plan(client, auth, h1)
    _approve(client, auth, h1)
    # Their exit is committed; approving e0's plan now must not give them access beyond it (or must be refused).
    r = client.post(f"/v1/handovers/{h0}/approve", headers=auth())
    assert r.status_code in (200, 409, 422), r.text
    with db.session(write=False) as session:
        assert grants_past_exit(session, clock.now()) == []


def test_rescheduling_does_not_extend_a_leaving_successors_cut_grant(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, company: Any, hr_webhook: None
) -> None:
    h0 = _open(client, auth, "e0", EFFECTIVE)
    plan(client, auth, h0)
    _approve(client, auth, h0)
    successor = _first_successor(client, auth, h0)
    # The successor leaves before e0 does: approving their exit cuts the shadow grants e0's plan gave them.
    h1 = _open(client, auth, successor, START + dt.timedelta(days=2))
    plan(client, auth, h1)
    _approve(client, auth, h1)
    with db.session(write=False) as session:
        assert grants_past_exit(session, clock.now()) == []
    # HR moves e0's exit later: the shadow windows of e0's handover follow it; the cut one must not.
    event = {**exit_event("e0", EFFECTIVE + dt.timedelta(days=7)), "timestamp": clock.now().isoformat()}
    assert deliver(client, event, clock=clock).status_code == 200
    with db.session(write=False) as session:
        assert grants_past_exit(session, clock.now()) == []


def test_undo_gives_the_leaver_back_only_the_clients_that_come_back(
    client: TestClient, auth: Any, db: Database, clock: ManualClock, company: Any
) -> None:
    h0 = _open(client, auth, "e0", EFFECTIVE)
    plan(client, auth, h0)
    item = client.get(f"/v1/handovers/{h0}/items", headers=auth()).json()["items"][0]
    url = f"/v1/handovers/{h0}/items/{item['id']}"
    etag = client.get(url, headers=auth()).headers["etag"]
    body = {"successor": "e1", "force": True, "reason": "Wang knows them"}
    assert client.patch(url, json=body, headers={**auth("hr"), "If-Match": etag}).status_code == 200
    _approve(client, auth, h0)
    assert client.post(f"/v1/handovers/{h0}/execute", headers=auth()).status_code == 200
    # e1 leaves too, and their handover moves the client on to someone else.
    h1 = _open(client, auth, "e1", EFFECTIVE)
    plan(client, auth, h1)
    _approve(client, auth, h1)
    assert client.post(f"/v1/handovers/{h1}/execute", headers=auth()).status_code == 200
    # Undoing e0's handover leaves that client with its current owner (rightly) ...
    assert client.post(f"/v1/handovers/{h0}/undo", headers=auth()).status_code == 200
    now, g = clock.now(), AccessGrant
    with db.session(write=False) as session:
        owner = session.scalar(select(Client.owner_id).where(Client.external_id == item["client"]))
        holders = set(
            session.scalars(
                select(g.employee_id).where(
                    g.client_id == item["client"],
                    g.level.in_(("owner", "interim")),
                    g.valid_from <= now,
                    (g.valid_until.is_(None)) | (g.valid_until > now),
                    g.revoked_at.is_(None),
                )
            )
        )
    assert owner != "e0"
    # ... so e0 must not get owner access to it back.
    assert holders == {owner}
