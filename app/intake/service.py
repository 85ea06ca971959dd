"""Applies a verified HR event exactly once per webhook-id, in the caller's transaction (no commit here).

The inbound_event row is inserted and flushed before the effect: a concurrent delivery of the same id then
waits on (PostgreSQL) or is serialised behind (SQLite) the primary key, and answers the first one's result.

Order. Senders retry, so an employee's events can arrive out of order: a retried old `employee.exit_cancelled`
must not cancel the handover a newer `employee.exit` re-opened, nor an old exit move a newer effective time
back. `employee.exit` and `employee.exit_cancelled` of one employee are therefore ordered by the event's own
time, the body's `timestamp` (not the `webhook-timestamp` header: that is when this delivery attempt was
signed, so a late retry of an old event carries a new one). The rule:

- an event older than the latest one already processed for the employee is *stale*: it is recorded (its
  inbound_event row, so a replay answers the same) and audited (`hr_event.ignored`), and changes nothing else;
- an event with the *same* timestamp as the latest one is applied: equal times cannot be ordered (webhook-ids
  are opaque, not sortable), so the later arrival wins, which is right whenever the sender delivers in order;
- every processed event counts, including a no-op (`exit_cancelled` with nothing to cancel): after it, an
  older exit is stale. A refused event (4xx) is rolled back and does not count.

`employee.updated` events of one employee are ordered the same way among themselves (a retried old update must
not overwrite a newer record), but apart from the exit events: an update neither is stale against an exit nor
makes one stale. An update that omits the exit state (`status`, `exit_at`) keeps the stored one, which the exit
events own (see `directory.service.LIFECYCLE`).
On PostgreSQL, events of one employee are serialised by a transaction-scoped advisory lock, so two concurrent
deliveries cannot both read the same "latest" and apply in the wrong order; SQLite serialises writers anyway.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.access import service as access
from app.audit import service as audit
from app.core.config import Settings
from app.core.errors import Unprocessable
from app.core.signing import DEFAULT_TOLERANCE
from app.directory import schemas as directory_schemas
from app.directory import service as directory
from app.intake.errors import HrEventInFuture
from app.intake.models import InboundEvent
from app.intake.schemas import EmployeeUpdatedEvent, ExitCancelledEvent, ExitEvent

ACTOR = "hr_webhook"
SOURCE = "hr"
# The events ordered by their timestamp per employee, each against the others of its group (module docstring).
ORDERED_TYPES = ("employee.exit", "employee.exit_cancelled")
ORDER_GROUPS: dict[str, tuple[str, ...]] = {
    "employee.exit": ORDERED_TYPES,
    "employee.exit_cancelled": ORDERED_TYPES,
    "employee.updated": ("employee.updated",),
}
STALE = "stale"
# A directory row with one of these statuses is a departure signal (it opens a handover, issue 15).
DEPARTURE_STATUSES = frozenset({"leaving", "departed"})
# How far an event's timestamp may lie ahead of the receiver's clock: the signature's tolerance. A time further
# ahead is a sender error, and accepting it would make every later event of that employee stale.
FUTURE_TOLERANCE = DEFAULT_TOLERANCE

Event = ExitEvent | ExitCancelledEvent | EmployeeUpdatedEvent

logger = logging.getLogger("handover.hooks")


class ExitWorkflow(Protocol):
    """What HR's exit events do to the handover workflow; bound to the transfer service in the composition root
    (`app.main`), so intake never imports it."""

    def open_from_exit(
        self,
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
    ) -> HasId: ...

    def cancel_for_exit(
        self, session: Session, *, leaver: str, reason: str | None, actor: str, now: dt.datetime
    ) -> HasId | None: ...

    def on_departures(
        self,
        session: Session,
        departures: Sequence[tuple[str, dt.datetime | None]],
        *,
        source: str,
        actor: str,
        now: dt.datetime,
        settings: Settings,
    ) -> list[int]: ...


class LateOwners(Protocol):
    """What the workflow does when the CRM gives clients to someone (a leaver's handover takes them in); bound to
    `app.transfer.rechecks.adopt_late_clients` in the composition root."""

    def __call__(
        self,
        session: Session,
        changes: Sequence[tuple[str, str | None, str]],
        *,
        actor: str,
        now: dt.datetime,
        settings: Settings,
    ) -> None: ...


class HasId(Protocol):
    @property
    def id(self) -> int: ...


# ---- directory records pushed by the CRM and HR --------------------------------------------------


def put_employees(
    session: Session,
    rows: Sequence[tuple[str, directory_schemas.EmployeeIn]],
    *,
    actor: str,
    now: dt.datetime,
    loc_prefix: Sequence[str | int] = ("body", "items"),
    row_index: bool = True,
    exits: ExitWorkflow | None = None,
    settings: Settings | None = None,
    source: str = "api",
) -> tuple[int, int]:
    """Employees created or replaced: (created, updated). Every row that says the employee is `leaving` or
    `departed` is a departure signal: with `exits`, the workflow opens their handover in this transaction (issue 15;
    it skips anyone who holds no clients or already has one open)."""
    written = directory.upsert_employees(
        session, rows, actor=actor, now=now, loc_prefix=loc_prefix, row_index=row_index
    )
    departures = [
        (eid, row.exit_at)
        for eid, row in rows
        if row.status in DEPARTURE_STATUSES and row.model_fields_set & directory.LIFECYCLE
    ]
    if exits is not None and settings is not None and departures:
        exits.on_departures(session, departures, source=source, actor=actor, now=now, settings=settings)
    return written


def put_clients(
    session: Session,
    rows: Sequence[tuple[str, directory_schemas.ClientIn]],
    *,
    actor: str,
    now: dt.datetime,
    loc_prefix: Sequence[str | int] = ("body", "items"),
    row_index: bool = True,
    late_owners: LateOwners | None = None,
    settings: Settings | None = None,
) -> tuple[int, int]:
    """Clients created or replaced, their owners' grants kept in step in the same transaction: (created, updated).
    With `late_owners` (and settings), clients given to a leaver join the leaver's handover in the same transaction."""
    written = directory.upsert_clients(session, rows, actor=actor, now=now, loc_prefix=loc_prefix, row_index=row_index)
    access.sync_owner_grants(session, written.owner_changes, actor=actor, now=now)
    if late_owners is not None and settings is not None:
        late_owners(session, written.owner_changes, actor=actor, now=now, settings=settings)
    return written.created, written.updated


# ---- HR events -------------------------------------------------------------------------------------


def _replay(row: InboundEvent, event_type: str) -> dict[str, Any]:
    if row.event_type != event_type:
        # Same id, other event: a sender bug. The first delivery stands; the id is the idempotency key.
        logger.warning("webhook-id %s replayed as %s, first seen as %s", row.webhook_id, event_type, row.event_type)
    return {
        "webhook_id": row.webhook_id,
        "type": row.event_type,
        "replayed": True,
        "handover_id": row.result.get("handover_id"),
        "ignored": row.result.get("ignored"),
    }


def _check_time(event: Event, now: dt.datetime) -> None:
    """422 for an event timestamp ahead of the clock (beyond the tolerance); nothing is written before this."""
    if event.timestamp > now + FUTURE_TOLERANCE:
        raise HrEventInFuture(
            "The event's timestamp is in the future.",
            errors=[
                {
                    "loc": ["body", "timestamp"],
                    "msg": f"must not be more than {int(FUTURE_TOLERANCE.total_seconds())} seconds in the future",
                    "type": "value_error",
                }
            ],
        )


def _claim(session: Session, webhook_id: str, event: Event, now: dt.datetime) -> InboundEvent | None:
    """Inserts the inbound_event row; None if another delivery of this id committed it first."""
    row = InboundEvent(
        webhook_id=webhook_id,
        source=SOURCE,
        event_type=event.type,
        received_at=now,
        result={},
        employee_id=event.data.employee,
        occurred_at=event.timestamp,
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        # Lost the race: the other delivery committed first (PostgreSQL blocked this insert until then).
        return None
    return row


def lock_key(employee: str) -> int:
    """A signed 64-bit advisory-lock key for one employee's HR events (stable across processes)."""
    digest = hashlib.blake2b(f"hr-event:{employee}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _lock_employee(session: Session, employee: str) -> None:
    """Serialises this employee's ordered events until commit (PostgreSQL; SQLite writers are serial already)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key(employee)})


def latest_event(
    session: Session, employee: str, *, types: Sequence[str] = ORDERED_TYPES, excluding: str | None = None
) -> InboundEvent | None:
    """The employee's processed event of `types` with the latest timestamp (ties: the last received).

    A stale event is older than that latest one by definition, so it can never be it: the latest is applied.
    """
    stmt = select(InboundEvent).where(
        InboundEvent.employee_id == employee,
        InboundEvent.event_type.in_(types),
        InboundEvent.occurred_at.is_not(None),
    )
    if excluding is not None:
        stmt = stmt.where(InboundEvent.webhook_id != excluding)
    return session.scalars(
        stmt.order_by(InboundEvent.occurred_at.desc(), InboundEvent.received_at.desc()).limit(1)
    ).first()


def _stale_against(session: Session, event: Event, webhook_id: str) -> InboundEvent | None:
    """The later event that makes this one stale, or None if this one is to be applied."""
    _lock_employee(session, event.data.employee)
    latest = latest_event(session, event.data.employee, types=ORDER_GROUPS[event.type], excluding=webhook_id)
    if latest is not None and latest.occurred_at is not None and event.timestamp < latest.occurred_at:
        return latest
    return None


def _ignore_stale(session: Session, event: Event, webhook_id: str, latest: InboundEvent, now: dt.datetime) -> None:
    """Audits the stale event; nothing else is written (its inbound_event row is already there)."""
    latest_at = latest.occurred_at.isoformat() if latest.occurred_at is not None else None
    logger.info(
        "HR event %s (%s, %s) for %s ignored: %s (%s) at %s was applied",
        webhook_id,
        event.type,
        event.timestamp.isoformat(),
        event.data.employee,
        latest.webhook_id,
        latest.event_type,
        latest_at,
    )
    audit.record(
        session,
        actor=ACTOR,
        action="hr_event.ignored",
        entity_type="employee",
        entity_id=event.data.employee,
        data={
            "reason": STALE,
            "webhook_id": webhook_id,
            "type": event.type,
            "timestamp": event.timestamp.astimezone(dt.UTC).isoformat(),
            "latest": {
                "webhook_id": latest.webhook_id,
                "type": latest.event_type,
                "timestamp": latest_at,
            },
        },
        at=now,
    )


def _relocate(exc: Unprocessable) -> None:
    """The workflow reports the leaver at `body.leaver` (its HTTP body); in this event it is `body.data.employee`."""
    for err in exc.errors or []:
        loc = list(err.get("loc", []))
        if loc[:2] == ["body", "leaver"]:
            err["loc"] = ["body", "data", "employee", *loc[2:]]


def _apply(
    session: Session,
    event: Event,
    now: dt.datetime,
    settings: Settings,
    exits: ExitWorkflow,
) -> int | None:
    """The event's effect; returns the handover it touched, if any."""
    try:
        if isinstance(event, ExitEvent):
            d = event.data
            h = exits.open_from_exit(
                session,
                leaver=d.employee,
                effective_at=d.effective_at,
                reason=d.reason,
                destination_competitor=d.destination_competitor,
                actor=ACTOR,
                now=now,
                settings=settings,
                return_at=d.return_at,
            )
            return h.id
        if isinstance(event, ExitCancelledEvent):
            cancelled = exits.cancel_for_exit(
                session, leaver=event.data.employee, reason=event.data.reason, actor=ACTOR, now=now
            )
            return cancelled.id if cancelled is not None else None
    except Unprocessable as exc:
        _relocate(exc)
        raise
    put_employees(
        session,
        [(event.data.employee, event.data.record())],
        actor=ACTOR,
        now=now,
        loc_prefix=("body", "data"),
        row_index=False,
        exits=exits,
        settings=settings,
        source="hr_webhook",
    )
    return None


def handle_event(
    session: Session,
    event: Event,
    *,
    webhook_id: str,
    now: dt.datetime,
    settings: Settings,
    exits: ExitWorkflow,
) -> dict[str, Any]:
    """Runs the event once; a known webhook-id answers the stored result and changes nothing.

    Returns `{"webhook_id", "type", "replayed", "handover_id", "ignored"}`; `ignored` is "stale" for an event
    older than the employee's latest of its group (see the module docstring). Domain errors from the effect propagate,
    and the caller's rollback removes the inbound_event row too, so the sender's retry is processed afresh.
    """
    seen = session.get(InboundEvent, webhook_id)
    if seen is not None:
        return _replay(seen, event.type)
    _check_time(event, now)
    row = _claim(session, webhook_id, event, now)
    if row is None:
        seen = session.get(InboundEvent, webhook_id, populate_existing=True)
        if seen is None:  # pragma: no cover - the conflicting row was committed, so it is visible now
            raise RuntimeError(f"inbound event {webhook_id!r} conflicted but cannot be read")
        return _replay(seen, event.type)
    latest = _stale_against(session, event, webhook_id)
    if latest is not None:
        _ignore_stale(session, event, webhook_id, latest, now)
        row.result = {"handover_id": None, "ignored": STALE}
        session.flush()
        return {"webhook_id": webhook_id, "type": event.type, "replayed": False, "handover_id": None, "ignored": STALE}
    handover_id = _apply(session, event, now, settings, exits)
    row.result = {"handover_id": handover_id}
    session.flush()
    return {
        "webhook_id": webhook_id,
        "type": event.type,
        "replayed": False,
        "handover_id": handover_id,
        "ignored": None,
    }
