"""Approval deadlines, and the reminders that chase a handover nobody approved in time.

The deadline (`approval_deadline`) is `approval_lead_working_days` working days (Monday to Friday, in UTC, at the
effective time's time of day) before the effective time, set when the handover is opened and moved when the
effective time moves. It is never after the effective time; when it would already be past at opening (a short
notice), it is the opening time, so the first reminder goes at the worker's next pass; when the effective time
itself is past (a person who already left), it is the effective time.

From the deadline on, while the handover is `draft` or `planned`, `remind_due` (run by `handover worker`) sends one
reminder, then one more each time 24 hours have passed since the previous one. The first goes to the approver
(the leaver's manager named on the handover); from the second on the approver's manager receives it too (an
escalation: the approver is still the one who can approve, so they keep getting it). A worker that was stopped
for days sends one reminder when it comes back, not the missed ones. Each reminder is one `approval_reminder`
notification per recipient, in the recipient's language, through the outbox; one `handover.overdue` event; and
one audit entry. Approval or cancellation stops them: the query asks for the two statuses, and a reminder written
but not yet sent is withdrawn at send time (`messaging.check_at_send`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.core.config import Settings
from app.directory import service as directory
from app.notify import events as notify_events
from app.notify import service as notify
from app.transfer.models import Handover

AWAITING_APPROVAL = ("draft", "planned")
REMINDER_INTERVAL = dt.timedelta(days=1)
REMINDER_BATCH = 200
ACTOR = "system:worker"
_DAY = dt.timedelta(days=1)


# ---- the date (pure) ---------------------------------------------------------------------------


def working_days_before(at: dt.datetime, days: int) -> dt.datetime:
    """`days` working days (Monday to Friday, in UTC) before `at`, at the same time of day. 0: `at` itself.

    Counting back from a Monday, the first working day before is the Friday; from a Saturday or Sunday, the
    Friday too. No public holidays: the service knows no calendar."""
    if days < 0:
        raise ValueError("days must be >= 0")
    out = at.astimezone(dt.UTC)
    counted = 0
    while counted < days:
        out -= _DAY
        if out.weekday() < 5:
            counted += 1
    return out


def approval_deadline(effective_at: dt.datetime, *, opened_at: dt.datetime, lead_working_days: int) -> dt.datetime:
    """The deadline: `lead_working_days` working days before the effective time, not before the opening time,
    and never after the effective time (the last rule wins: a handover opened after its effective time has the
    effective time as its deadline)."""
    wanted = working_days_before(effective_at, lead_working_days)
    return min(effective_at.astimezone(dt.UTC), max(wanted, opened_at.astimezone(dt.UTC)))


def lead_working_days(settings: Settings | None) -> int:
    """The configured lead, or the setting's default for callers without settings."""
    if settings is None:
        return int(Settings.model_fields["approval_lead_working_days"].default)
    return settings.approval_lead_working_days


# ---- the handover's deadline ------------------------------------------------------------------


def on_opened(h: Handover, *, now: dt.datetime, settings: Settings | None) -> None:
    h.approval_deadline = approval_deadline(
        h.effective_at, opened_at=now, lead_working_days=lead_working_days(settings)
    )
    h.reminders_sent = 0
    h.last_reminded_at = None


def on_rescheduled(h: Handover, *, now: dt.datetime, settings: Settings | None) -> None:
    """The effective time moved, so does the deadline. A deadline now in the future starts the reminders anew
    (the handover is not overdue any more); one still past keeps the count, so escalation goes on."""
    opened = h.created_at or now
    deadline = approval_deadline(h.effective_at, opened_at=opened, lead_working_days=lead_working_days(settings))
    h.approval_deadline = deadline
    if deadline > now:
        h.reminders_sent = 0
        h.last_reminded_at = None


# ---- the reminders (the worker's job) --------------------------------------------------------


def _backfill(session: Session, *, settings: Settings | None, limit: int) -> None:
    """Handovers awaiting approval without a deadline (opened before deadlines existed, or by a route that did not
    set one) get it from their opening time, the current setting and their effective time."""
    missing = session.scalars(
        select(Handover)
        .where(Handover.status.in_(AWAITING_APPROVAL), Handover.approval_deadline.is_(None))
        .order_by(Handover.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    lead = lead_working_days(settings)
    for h in missing:
        h.approval_deadline = approval_deadline(h.effective_at, opened_at=h.created_at, lead_working_days=lead)
    if missing:
        session.flush()


def remind_due(
    session: Session, now: dt.datetime, *, settings: Settings | None = None, limit: int = REMINDER_BATCH
) -> int:
    """Sends the reminders due at `now` (see the module's docstring); returns how many handovers were reminded.

    Set-based: one query for the due handovers (SKIP LOCKED, so several workers share them), two for the people,
    one bulk insert each for the notifications, the events and the audit entries (which name the notifications
    by their message ids). At most `limit` per call; the next pass takes
    the rest."""
    _backfill(session, settings=settings, limit=limit)
    h = Handover
    due = session.scalars(
        select(h)
        .where(
            h.status.in_(AWAITING_APPROVAL),
            h.approval_deadline <= now,
            or_(h.last_reminded_at.is_(None), h.last_reminded_at <= now - REMINDER_INTERVAL),
        )
        .order_by(h.approval_deadline, h.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not due:
        return 0
    people = directory.people(session, {x.leaver_id for x in due} | {x.manager_id for x in due if x.manager_id})
    above = {p.manager_id for p in people.values() if p.manager_id and p.manager_id not in people}
    people.update(directory.people(session, above))
    available = notify.available_locales(session)["approval_reminder"]
    default = settings.default_locale if settings is not None else "en"
    events: notify.Events = []
    changes: list[audit.Change] = []
    rows: list[dict[str, Any]] = []
    for x in due:
        number = x.reminders_sent + 1
        approver = people.get(x.manager_id) if x.manager_id else None
        escalate_to = approver.manager_id if approver is not None and number >= 2 else None
        recipients: list[tuple[str | None, str]] = [(x.manager_id, "approver")]
        if escalate_to:
            recipients.append((escalate_to, "escalation"))
        deadline = x.approval_deadline
        assert deadline is not None  # the query asked for it
        leaver = people.get(x.leaver_id)
        sent: list[str] = []
        for person_id, role in recipients:
            person = people.get(person_id) if person_id else None
            row = notify.message_row(
                kind="internal",
                template="approval_reminder",
                locale=notify.pick_locale(person.languages if person else [], available, default),
                channel="email",
                recipient=person.email if person else None,
                endpoint_id=None,
                data=_message(x, role, number, person, person_id, approver, leaver, deadline, now),
                not_before=now,
                now=now,
                handover_id=x.id,
                priority=notify.PRIORITY_INTERNAL,
                # Stored as skipped, visible in the list of notifications, when nobody can be written to.
                skip=None if person and person.email else f"{role} {person_id or '(none)'} has no email address",
                for_bulk=True,
            )
            rows.append(row)
            sent.append(row["message_id"])
        facts = {
            "approval_deadline": deadline.isoformat(),
            "reminder": number,
            "approver": x.manager_id,
            "escalated_to": escalate_to,
        }
        events.append(
            (
                "handover.overdue",
                notify_events.HandoverOverdueEvent(
                    handover_id=x.id,
                    leaver=x.leaver_id,
                    manager=x.manager_id,
                    status=x.status,
                    effective_at=x.effective_at,
                    reason=x.reason,
                    actor=ACTOR,
                    approval_deadline=deadline,
                    reminder=number,
                    approver=x.manager_id,
                    escalated_to=escalate_to,
                ),
            )
        )
        changes.append(
            audit.Change(
                ACTOR,
                "handover.overdue",
                "handover",
                str(x.id),
                {"status": x.status, "leaver": x.leaver_id, **facts, "notifications": sent},
            )
        )
        # Bookkeeping, not a change anyone edits: the version (the ETag) stays, so a reminder never makes the
        # approver's If-Match fail.
        x.reminders_sent = number
        x.last_reminded_at = now
    session.flush()
    notify.insert_messages(session, rows)
    notify.emit_many(session, events, now=now)
    audit.record_many(session, changes, at=now)
    return len(due)


def _message(
    h: Handover,
    role: str,
    number: int,
    person: directory.Person | None,
    person_id: str | None,
    approver: directory.Person | None,
    leaver: directory.Person | None,
    deadline: dt.datetime,
    now: dt.datetime,
) -> dict[str, Any]:
    return {
        "recipient": {"name": person.name if person else (person_id or "")},
        "role": role,
        "leaver": {"name": leaver.name if leaver else h.leaver_id},
        "approver": {"id": h.manager_id, "name": approver.name if approver else (h.manager_id or "")},
        "handover": {
            "id": h.id,
            "status": h.status,
            "effective_date": h.effective_at.astimezone(dt.UTC).date().isoformat(),
            "deadline_date": deadline.astimezone(dt.UTC).date().isoformat(),
        },
        "reminder": {"number": number, "days_overdue": max(0, (now - deadline).days)},
    }
