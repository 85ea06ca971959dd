"""A leave is a delegation, not an exit (issue 15, point 7).

`reason: leave` with a `return_at`: ownership does not move and the person stays `active` (their token keeps
authenticating). For the period [effective_at, return_at):

- a delegate (the request's `delegate`, by default the interim owner rule of `app.transfer.interim`) holds an
  `interim` grant on each client the person owns when the leave is opened;
- the person's own access is suspended: the access decision answers `employee_away` for them.

Both are stored windows (access grants and an access suspension keyed by the handover), so the decision changes at
effective_at and at return_at to the second, whether or not any job has run.

Lifecycle: a leave skips planning and approval of successors (nobody succeeds anybody).

- opened → `scheduled` at once, grants and suspension written in the same transaction (audit `handover.created`,
  then `handover.scheduled`);
- `scheduled` → `completed` by the worker at return_at (`handover.completed`, actor `system:worker`), or earlier by
  POST /complete once the leave has started: the person is back now, the windows end now;
- `scheduled` → `cancelled` (POST /cancel or HR's `employee.exit_cancelled`): grants and suspension are revoked
  now, so a leave cancelled while running ends at once;
- HR re-announcing the leave with other times moves both windows (`handover.rescheduled`);
- an exit announced while on leave ends the leave now (or cancels it before it starts) and opens the exit;
- a leave is never planned, approved, executed or undone (409).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.access import service as access
from app.core.config import Settings
from app.directory import service as directory
from app.directory.models import Employee
from app.transfer import rechecks, service
from app.transfer.errors import HandoverAlreadyOpen, LeaveDuringExit, LeaveInvalid, LeaveNotMovable, LeaveNotStarted
from app.transfer.interim import interim_owner
from app.transfer.models import OPEN_STATUSES, Handover

REASON = "leave"
WORKER = "system:worker"
API_LOCS: dict[str, list[str | int]] = {"leaver": ["body", "leaver"], "delegate": ["body", "delegate"]}
HR_LOCS: dict[str, list[str | int]] = {"leaver": ["body", "data", "employee"], "delegate": ["body", "data", "employee"]}


def is_leave(h: Handover) -> bool:
    return h.reason == REASON


def allowed_transitions(h: Handover) -> list[str]:
    """What the handover may become next, as the API shows it (a completed leave is not undone)."""
    if is_leave(h) and h.status != "scheduled":
        return []
    return list(service.TRANSITIONS[h.status])


def _invalid(message: str, loc: list[str | int], msg: str, kind: str) -> LeaveInvalid:
    return LeaveInvalid(message, errors=[{"loc": loc, "msg": msg, "type": kind}])


def _delegate(
    session: Session,
    leaver: str,
    delegate: str | None,
    *,
    at: dt.datetime,
    until: dt.datetime,
    settings: Settings,
    locs: dict[str, list[str | int]],
) -> str:
    """The named delegate if they can act for the whole leave [at, until), else the interim owner rule; 422 if
    nobody. A delegate who is on leave themselves during it, or whose exit falls inside it, would leave the clients
    with nobody who can act: refused."""
    if delegate is None:
        found = interim_owner(session, leaver, at=at, settings=settings)
        if found is None:
            raise _invalid(
                "Nobody can stand in for the leave: name a delegate.",
                locs["delegate"],
                "nobody up the manager chain (nor HANDOVER_INTERIM_OWNER) can act at effective_at",
                "no_delegate",
            )
        _away_during(session, found, at=at, until=until, locs=locs, named=False)
        return found
    if delegate == leaver:
        raise _invalid("The delegate is the person on leave.", locs["delegate"], "is the leaver", "value_error")
    person = session.get(Employee, delegate)
    if person is None:
        raise _invalid(f"No employee {delegate!r}.", locs["delegate"], "unknown employee", "unknown_reference")
    if not directory.can_act(person, at):
        raise _invalid(
            f"Employee {delegate!r} cannot act at the leave's start.", locs["delegate"], "cannot act", "invalid_state"
        )
    _away_during(session, delegate, at=at, until=until, locs=locs, named=True)
    return delegate


def _away_during(
    session: Session, who: str, *, at: dt.datetime, until: dt.datetime, locs: dict[str, list[str | int]], named: bool
) -> None:
    """422 if `who` leaves (exit time before `until`) or is on a leave of their own that overlaps [at, until)."""
    hint = "" if named else " (the interim owner rule's choice): name another delegate"
    exit_at = session.scalar(select(Employee.exit_at).where(Employee.external_id == who))
    if exit_at is not None and exit_at < until:
        raise _invalid(
            f"Employee {who!r} leaves during the leave{hint}.",
            locs["delegate"],
            "departs during the leave",
            "invalid_state",
        )
    overlapping = session.scalar(
        select(Handover.id)
        .where(
            Handover.leaver_id == who,
            Handover.reason == REASON,
            Handover.status.in_(OPEN_STATUSES),
            Handover.effective_at < until,
            Handover.return_at > at,
        )
        .limit(1)
    )
    if overlapping is not None:
        raise _invalid(
            f"Employee {who!r} is on leave during the leave (handover {overlapping}){hint}.",
            locs["delegate"],
            "on leave during the leave",
            "invalid_state",
        )


def open_leave(
    session: Session,
    *,
    leaver: str,
    effective_at: dt.datetime,
    return_at: dt.datetime,
    delegate: str | None,
    source: str,
    actor: str,
    now: dt.datetime,
    settings: Settings,
    locs: dict[str, list[str | int]] = API_LOCS,
) -> Handover:
    """Opens a leave, scheduled at once: the delegate's interim grants and the person's suspension, both for
    [effective_at, return_at). Every check runs before the first write."""
    if return_at <= effective_at:  # the request schemas refuse this already; kept for other callers
        raise _invalid(
            "A leave ends after it starts.", ["body", "return_at"], "must be after effective_at", "value_error"
        )
    emp = session.get(Employee, leaver, with_for_update=True)
    if emp is None:
        raise _invalid(f"No employee {leaver!r}.", locs["leaver"], "unknown employee", "unknown_reference")
    if emp.status == "departed":
        raise _invalid(
            f"Employee {leaver!r} has already departed.", locs["leaver"], "already departed", "invalid_state"
        )
    open_one = session.scalar(
        select(Handover.id).where(Handover.leaver_id == leaver, Handover.status.in_(OPEN_STATUSES))
    )
    if open_one is not None:
        raise HandoverAlreadyOpen(
            f"Employee {leaver!r} already has an open handover ({open_one}).", extra={"handover_id": open_one}
        )
    chosen = _delegate(session, leaver, delegate, at=effective_at, until=return_at, settings=settings, locs=locs)
    h = Handover(
        leaver_id=leaver,
        manager_id=emp.manager_id,
        reason=REASON,
        destination_competitor=None,
        status="scheduled",
        effective_at=effective_at,
        return_at=return_at,
        delegate_id=chosen,
        source=source,
        candidate_pool={"kind": "organisation"},
        leaver_status_before=emp.status,
        version=1,
        created_by=actor,
        created_at=now,
        updated_at=now,
    )
    session.add(h)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise HandoverAlreadyOpen(f"Employee {leaver!r} already has an open handover.") from exc
    window: dict[str, Any] = {"effective_at": effective_at.isoformat(), "return_at": return_at.isoformat()}
    service.record(session, actor, "handover.created", h, now, reason=REASON, source=source, **window)
    clients = _delegate_clients(session, h, actor=actor, now=now)
    access.suspend(
        session,
        employee=leaver,
        valid_from=effective_at,
        valid_until=return_at,
        handover_id=h.id,
        reason="leave",
        actor=actor,
        now=now,
    )
    service.record(session, actor, "handover.scheduled", h, now, delegate=chosen, clients=clients, **window)
    return h


def _delegate_clients(session: Session, h: Handover, *, actor: str, now: dt.datetime) -> int:
    """An interim grant to the delegate on each client the person owns, for the leave's window (clients the CRM
    gives the person later get theirs in `rechecks.adopt_late_clients`)."""
    return rechecks.delegate_grants(session, h, actor=actor, now=now)


def reschedule(
    session: Session,
    h: Handover,
    *,
    effective_at: dt.datetime,
    return_at: dt.datetime,
    actor: str,
    now: dt.datetime,
) -> None:
    """HR moved the leave: both windows move with it."""
    if h.status != "scheduled":
        raise LeaveNotMovable(
            f"A leave in status {h.status} cannot be moved.", extra={"allowed": allowed_transitions(h)}
        )
    old: dict[str, Any] = {"old_effective_at": h.effective_at.isoformat()}
    old["old_return_at"] = h.return_at.isoformat() if h.return_at else None
    h.effective_at, h.return_at = effective_at, return_at
    h.version += 1
    h.updated_at = now
    access.move_windows(session, handover_id=h.id, valid_from=effective_at, valid_until=return_at)
    service.record(
        session,
        actor,
        "handover.rescheduled",
        h,
        now,
        effective_at=effective_at.isoformat(),
        return_at=return_at.isoformat(),
        **old,
    )


def complete(session: Session, h: Handover, *, actor: str, now: dt.datetime, reason: str | None) -> Handover:
    """The person is back: at return_at (the worker), or earlier (the windows end now)."""
    if h.status == "scheduled" and now < h.effective_at:
        raise LeaveNotStarted("The leave has not started: cancel it instead.", extra={"allowed": ["cancelled"]})
    service.move(h, "completed", now)
    early = h.return_at is not None and now < h.return_at
    if early:
        access.end_windows(session, handover_id=h.id, at=now)
    h.completed_by, h.completed_at, h.completion_reason = actor, now, reason
    service.record(session, actor, "handover.completed", h, now, reason=reason, early=early)
    return h


def complete_due(session: Session, *, now: dt.datetime, limit: int = 200) -> list[int]:
    """Completes the leaves whose return time has come; safe with several workers (SKIP LOCKED). Access does not
    wait for this: the windows already end at return_at."""
    due = list(
        session.scalars(
            select(Handover)
            .where(Handover.status == "scheduled", Handover.return_at <= now)
            .order_by(Handover.return_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    for h in due:
        complete(session, h, actor=WORKER, now=now, reason=None)
    return [h.id for h in due]


# ---- HR's exit events (app.main binds intake to these) ------------------------------------------------------


def open_from_exit(
    session: Session,
    *,
    leaver: str,
    effective_at: dt.datetime,
    reason: str,
    destination_competitor: bool | None,
    actor: str,
    now: dt.datetime,
    settings: Settings,
    return_at: dt.datetime | None = None,
) -> Handover:
    """`employee.exit`: a leave opens (or moves) a delegation; any other reason goes to the exit workflow. An exit
    announced while on leave ends the leave first (or cancels it, not yet started)."""
    h = session.scalar(
        select(Handover).where(Handover.leaver_id == leaver, Handover.status.in_(OPEN_STATUSES)).with_for_update()
    )
    if reason == REASON:
        if return_at is None:  # the event schema refuses this already
            raise _invalid("A leave needs return_at.", ["body", "data", "return_at"], "required for a leave", "missing")
        if h is None:
            return open_leave(
                session,
                leaver=leaver,
                effective_at=effective_at,
                return_at=return_at,
                delegate=None,
                source="hr_webhook",
                actor=actor,
                now=now,
                settings=settings,
                locs=HR_LOCS,
            )
        if not is_leave(h):
            raise LeaveDuringExit(
                f"Employee {leaver!r} has an open handover ({h.id}) for an exit; a leave cannot start during it.",
                extra={"handover_id": h.id},
            )
        if (h.effective_at, h.return_at) != (effective_at, return_at):
            reschedule(session, h, effective_at=effective_at, return_at=return_at, actor=actor, now=now)
        return h
    if h is not None and is_leave(h):
        if now < h.effective_at:
            service.cancel(session, h, actor=actor, now=now, reason="an exit was announced")
        else:
            complete(session, h, actor=actor, now=now, reason="an exit was announced")
        session.flush()
    return service.open_from_exit(
        session,
        leaver=leaver,
        effective_at=effective_at,
        reason=reason,
        destination_competitor=destination_competitor,
        actor=actor,
        now=now,
        settings=settings,
    )


def cancel_for_exit(
    session: Session, *, leaver: str, reason: str | None, actor: str, now: dt.datetime
) -> Handover | None:
    """`employee.exit_cancelled`: a scheduled leave is cancelled; a finished one is history (nothing to cancel);
    anything else goes to the exit workflow."""
    latest = session.scalar(
        select(Handover)
        .where(Handover.leaver_id == leaver, Handover.status.in_((*OPEN_STATUSES, "completed")))
        .order_by(Handover.id.desc())
        .limit(1)
    )
    if latest is not None and is_leave(latest):
        if latest.status != "scheduled":
            return None
        return service.cancel(session, latest, actor=actor, now=now, reason=reason)
    return service.cancel_for_exit(session, leaver=leaver, reason=reason, actor=actor, now=now)


def on_departures(
    session: Session,
    departures: Sequence[tuple[str, dt.datetime | None]],
    *,
    source: str,
    actor: str,
    now: dt.datetime,
    settings: Settings,
) -> list[int]:
    """A status change to leaving/departed is an exit, never a leave (a leave names its return): the workflow's
    rule. Like an `employee.exit`, it ends a leave under way first (or cancels one not yet started): otherwise the
    leave, open, would keep the exit from opening its handover and nobody would take the clients over at the exit."""
    ids = [e for e, _ in departures]
    leaves = session.scalars(
        select(Handover)
        .where(Handover.leaver_id.in_(ids), Handover.reason == REASON, Handover.status == "scheduled")
        .with_for_update()
    ).all()
    exits = dict(departures)
    for h in leaves:
        if now < h.effective_at:
            # Cancelling takes a `leaving` person back to who they were: the departure just recorded stays.
            row = session.execute(
                select(Employee.status, Employee.exit_at).where(Employee.external_id == h.leaver_id)
            ).one_or_none()
            status, exit_at = (row[0], row[1]) if row is not None else ("", None)
            service.cancel(session, h, actor=actor, now=now, reason="an exit was announced")
            if status == "leaving":
                directory.set_exit(
                    session, h.leaver_id, exits.get(h.leaver_id) or exit_at or now, now=now, leaving=True
                )
        else:
            complete(session, h, actor=actor, now=now, reason="an exit was announced")
    if leaves:
        session.flush()
    return service.on_departures(session, departures, source=source, actor=actor, now=now, settings=settings)
