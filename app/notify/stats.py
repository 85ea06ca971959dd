"""Read-only figures about the outbox, for the metrics scrape (app/ops/metrics.py)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.notify.models import CATEGORIES, DUE_STATUSES, OutboxMessage


def outbox_depth(session: Session) -> dict[tuple[str, str], int]:
    """Messages by (category, status): event or notification; pending, failed, sent, dead, withdrawn, … The due
    states of each category are always there (0 included), so that an alert on them has a series to read."""
    m = OutboxMessage
    rows = session.execute(select(m.category, m.status, func.count()).group_by(m.category, m.status))
    depth = {(category, status): 0 for category in CATEGORIES for status in DUE_STATUSES}
    depth.update({(category, status): int(n) for category, status, n in rows})
    return depth


def oldest_due_age(session: Session, now: dt.datetime) -> float:
    """Seconds the longest-waiting due message (pending or failed, its next attempt reached) has waited past its
    time; 0 when none is due. A message scheduled for later (a client intro days before) is not waiting."""
    m = OutboxMessage
    due = (m.status.in_(DUE_STATUSES), m.next_attempt_at <= now)
    oldest = session.scalar(select(func.min(m.next_attempt_at)).where(*due))
    if oldest is None:
        return 0.0
    if oldest.tzinfo is None:  # SQLite's aggregate comes back without the column type's zone
        oldest = oldest.replace(tzinfo=dt.UTC)
    return max(0.0, (now - oldest).total_seconds())
