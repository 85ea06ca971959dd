"""Access events reported by the CRM, and the exfiltration alerts raised when a leaver's exports spike.

Service functions: they take a Session, flush at most, and never commit (the request does).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Integer, cast, func, literal_column, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.access import anomaly
from app.access.errors import AccessEventsInvalid, AlertAlreadyResolved, AlertNotFound
from app.access.models import AccessEvent, Alert
from app.access.schemas import AccessEventIn
from app.audit import service as audit
from app.core.auth import Principal
from app.core.bulk import chunks
from app.directory import service as directory
from app.directory.models import Client, Employee
from app.notify import events as notify_events
from app.notify import service as notify

ALERT_KIND = "exfiltration"
EXFIL_ACTIONS = ("export", "download")
MAX_FUTURE = dt.timedelta(minutes=5)
EXIT_HORIZON = dt.timedelta(days=30)
# alert.score is NUMERIC(10, 2).
MAX_STORED_SCORE = 99_999_999.99
_IN_CHUNK = 5000
_DAY_SECONDS = 86_400


@dataclass(frozen=True)
class IngestResult:
    received: int
    stored: int
    duplicates: int
    alerts: list[int] = field(default_factory=list)
    batch_id: str | None = None


# ---- ingest -----------------------------------------------------------------------------------


def _existing(session: Session, column: Any, values: Sequence[str]) -> set[str]:
    found: set[str] = set()
    unique = list(dict.fromkeys(values))
    for part in chunks(unique, _IN_CHUNK):
        found.update(session.scalars(select(column).where(column.in_(part))))
    return found


def _validate(session: Session, events: Sequence[AccessEventIn], now: dt.datetime) -> None:
    """All rows are checked before anything is written; every bad row is named."""
    employees = _existing(session, Employee.external_id, [e.employee for e in events])
    clients = _existing(session, Client.external_id, [e.client for e in events])
    latest = now + MAX_FUTURE
    errors: list[dict[str, Any]] = []
    for i, e in enumerate(events):
        loc: list[str | int] = ["body", "events", i]
        if e.employee not in employees:
            errors.append(
                {"loc": [*loc, "employee"], "msg": f"no employee {e.employee!r}", "type": "unknown_reference"}
            )
        if e.client not in clients:
            errors.append({"loc": [*loc, "client"], "msg": f"no client {e.client!r}", "type": "unknown_reference"})
        if e.occurred_at > latest:
            errors.append(
                {"loc": [*loc, "occurred_at"], "msg": "more than 5 minutes in the future", "type": "future_time"}
            )
    if errors:
        raise AccessEventsInvalid("Some events are not valid; nothing was written.", errors=errors)


def _insert_events(session: Session, rows: list[dict[str, Any]]) -> int:
    """ON CONFLICT DO NOTHING: a concurrent batch with the same event ids loses quietly; RETURNING counts the rows
    really inserted. One statement, sent as multi-row batches by SQLAlchemy (insertmanyvalues), compiled once.
    """
    if not rows:
        return 0
    ins = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    table = AccessEvent.metadata.tables[AccessEvent.__tablename__]
    stmt = ins(table).on_conflict_do_nothing(index_elements=["event_id"]).returning(table.c.id)
    return len(session.execute(stmt, rows).all())


def ingest_events(
    session: Session,
    events: Sequence[AccessEventIn],
    *,
    actor: str,
    now: dt.datetime,
    config: anomaly.SpikeConfig = anomaly.DEFAULT_CONFIG,
) -> IngestResult:
    """Stores a batch (all or nothing), skips repeated event ids, then checks leavers for an export spike."""
    _validate(session, events, now)
    given = [e.event_id for e in events if e.event_id is not None]
    seen = _existing(session, AccessEvent.event_id, given) if given else set()
    rows: list[dict[str, Any]] = []
    for e in events:
        if e.event_id is not None:
            if e.event_id in seen:
                continue
            seen.add(e.event_id)
        rows.append(
            {
                "event_id": e.event_id,
                "employee_id": e.employee,
                "client_id": e.client,
                "action": e.action,
                "count": e.count,
                "occurred_at": e.occurred_at,
                "received_at": now,
            }
        )
    stored = _insert_events(session, rows)
    result = IngestResult(received=len(events), stored=stored, duplicates=len(events) - stored)
    if not stored:
        return result  # a replay changes nothing, so it leaves no trace either

    batch_id = uuid.uuid4().hex
    changes = [
        audit.Change(
            actor,
            "access.events.ingested",
            "access_event_batch",
            batch_id,
            {
                "received": result.received,
                "stored": stored,
                "duplicates": result.duplicates,
                "employees": len({r["employee_id"] for r in rows}),
                "clients": len({r["client_id"] for r in rows}),
                "actions": _sum_by(rows, "action"),
                "occurred_from": min(r["occurred_at"] for r in rows),
                "occurred_to": max(r["occurred_at"] for r in rows),
            },
        )
    ]
    alert_ids, alert_changes = _evaluate(
        session, sorted({r["employee_id"] for r in rows}), actor=actor, now=now, config=config
    )
    # Audit last: like the directory, take employee row locks before the audit chain lock, so neither waits in a cycle.
    audit.record_many(session, changes + alert_changes, at=now)
    return IngestResult(result.received, stored, result.duplicates, alert_ids, batch_id)


def _sum_by(rows: list[dict[str, Any]], key: str) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for r in rows:
        totals[r[key]] += r["count"]
    return dict(sorted(totals.items()))


# ---- anomaly evaluation -----------------------------------------------------------------------


@dataclass(frozen=True)
class Windows:
    """The baseline [baseline_start, recent_start) and the recent window [recent_start, now], whole seconds."""

    baseline_start: dt.datetime
    recent_start: dt.datetime
    end: dt.datetime

    @classmethod
    def at(cls, now: dt.datetime, config: anomaly.SpikeConfig) -> Windows:
        end = now.replace(microsecond=0)
        recent_start = end - dt.timedelta(days=config.recent_days)
        return cls(recent_start - dt.timedelta(days=config.baseline_days), recent_start, end)


def _epoch_seconds(session: Session) -> ColumnElement[int]:
    """Whole seconds since 1970 of occurred_at, exact integers on both databases."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.floor(func.extract("epoch", AccessEvent.occurred_at)), BigInteger)
    return cast(func.strftime("%s", AccessEvent.occurred_at), Integer)


def _leaving(session: Session, employee_ids: Sequence[str], now: dt.datetime) -> list[str]:
    """Batch employees who are leaving or whose exit is within 30 days; locked, so one open alert per employee."""
    found: list[str] = []
    for part in chunks(employee_ids, _IN_CHUNK):
        stmt = (
            select(Employee.external_id)
            .where(
                Employee.external_id.in_(part),
                or_(
                    Employee.status == "leaving",
                    Employee.exit_at.between(now - EXIT_HORIZON, now + EXIT_HORIZON),
                ),
            )
            .order_by(Employee.external_id)
            # FOR NO KEY UPDATE: does not wait for the FK share locks other batches' inserts hold.
            .with_for_update(key_share=True)
        )
        found.extend(session.scalars(stmt))
    return found


def daily_totals(
    session: Session, employee_ids: Sequence[str], windows: Windows, days: int
) -> dict[str, tuple[list[int], int]]:
    """Per employee: export+download totals per baseline day (oldest first, 0 for quiet days) and the recent total.

    One grouped query; days are counted in whole 24-hour steps from the baseline start, identically on SQLite
    and PostgreSQL (integer epoch seconds, integer division).
    """
    # Constants inlined, so SELECT and GROUP BY are the same expression to PostgreSQL. Integer division
    # truncates, which is the floor here: only events at or after the start are read.
    start = literal_column(str(int(windows.baseline_start.timestamp())), Integer)
    bucket = ((_epoch_seconds(session) - start) // literal_column(str(_DAY_SECONDS), Integer)).label("day")
    stmt = (
        select(AccessEvent.employee_id, bucket, func.sum(AccessEvent.count))
        .where(
            AccessEvent.employee_id.in_(employee_ids),
            AccessEvent.action.in_(EXFIL_ACTIONS),
            AccessEvent.occurred_at >= windows.baseline_start,
        )
        .group_by(AccessEvent.employee_id, bucket)
    )
    out: dict[str, tuple[list[int], int]] = {e: ([0] * days, 0) for e in employee_ids}
    recent: dict[str, int] = defaultdict(int)
    for employee_id, raw_index, total in session.execute(stmt):
        index = int(raw_index)
        if index < days:
            out[employee_id][0][index] += int(total)
        else:
            recent[employee_id] += int(total)
    return {e: (series, recent[e]) for e, (series, _) in out.items()}


def _history_days(session: Session, employee_ids: Sequence[str], windows: Windows, days: int) -> dict[str, int]:
    """Days seen before the recent window, from each employee's first event of any kind (capped at the baseline).

    A correlated MIN per employee, which the (employee_id, occurred_at) index answers with one probe each.
    """
    first = (
        select(func.min(AccessEvent.occurred_at))
        .where(AccessEvent.employee_id == Employee.external_id)
        .correlate(Employee)
        .scalar_subquery()
    )
    stmt = select(Employee.external_id, first).where(Employee.external_id.in_(employee_ids))
    out = dict.fromkeys(employee_ids, 0)
    for employee_id, seen in session.execute(stmt):
        if seen is not None:
            out[employee_id] = max(0, min(days, (windows.recent_start - seen) // dt.timedelta(days=1)))
    return out


def _recent_clients(session: Session, employee_ids: Sequence[str], windows: Windows) -> dict[str, set[str]]:
    stmt = (
        select(AccessEvent.employee_id, AccessEvent.client_id)
        .where(
            AccessEvent.employee_id.in_(employee_ids),
            AccessEvent.action.in_(EXFIL_ACTIONS),
            AccessEvent.occurred_at >= windows.recent_start,
        )
        .distinct()
    )
    out: dict[str, set[str]] = defaultdict(set)
    for employee_id, client_id in session.execute(stmt):
        out[employee_id].add(client_id)
    return out


def _evaluate(
    session: Session, employee_ids: Sequence[str], *, actor: str, now: dt.datetime, config: anomaly.SpikeConfig
) -> tuple[list[int], list[audit.Change]]:
    candidates = _leaving(session, employee_ids, now)
    if not candidates:
        return [], []
    windows = Windows.at(now, config)
    totals = daily_totals(session, candidates, windows, config.baseline_days)
    history = _history_days(session, candidates, windows, config.baseline_days)
    results = {
        e: anomaly.detect(series, recent, history_days=history[e], config=config)
        for e, (series, recent) in totals.items()
    }
    spiking = sorted(e for e, r in results.items() if r.is_spike)
    if not spiking:
        return [], []
    clients = _recent_clients(session, spiking, windows)
    open_alerts: dict[str, Alert] = {}
    for a in session.scalars(
        select(Alert)
        .where(Alert.employee_id.in_(spiking), Alert.kind == ALERT_KIND, Alert.status == "open")
        .order_by(Alert.id)
        .with_for_update()
    ):
        open_alerts.setdefault(a.employee_id, a)

    alerts: list[Alert] = []
    updated: set[str] = set()
    for employee_id in spiking:
        r = results[employee_id]
        score = round(min(r.score, MAX_STORED_SCORE), 2)
        evidence = _details(r, config, now)
        alert = open_alerts.get(employee_id)
        if alert is None:
            alert = Alert(
                employee_id=employee_id,
                kind=ALERT_KIND,
                status="open",
                score=score,
                window_start=windows.recent_start,
                window_end=windows.end,
                clients=sorted(clients[employee_id]),
                details={**evidence, "evaluations": 1, "peak_recent": r.recent},
                created_at=now,
                updated_at=now,
            )
            session.add(alert)
        else:
            previous = dict(alert.details or {})
            alert.score = max(float(alert.score), score)
            alert.window_start = min(alert.window_start, windows.recent_start)
            alert.window_end = max(alert.window_end, windows.end)
            alert.clients = sorted(set(alert.clients or []) | clients[employee_id])
            alert.details = {
                **evidence,
                "evaluations": int(previous.get("evaluations", 1)) + 1,
                "peak_recent": max(float(previous.get("peak_recent", 0)), r.recent),
            }
            alert.updated_at = now
            updated.add(employee_id)
        alerts.append(alert)
    session.flush()
    changes = [
        audit.Change(
            actor,
            "alert.updated" if a.employee_id in updated else "alert.raised",
            "alert",
            str(a.id),
            {
                "employee": a.employee_id,
                "kind": a.kind,
                "score": float(a.score),
                "window_start": a.window_start,
                "window_end": a.window_end,
                "clients": a.clients,
                **{k: a.details[k] for k in ("median", "mad", "recent", "reason")},
            },
        )
        for a in alerts
    ]
    for a in alerts:
        # The CRM hears of every new or grown alert (e.g. to freeze the leaver's exports).
        notify.emit(
            session,
            "alert.raised",
            notify_events.AlertRaisedEvent(
                alert_id=a.id,
                employee=a.employee_id,
                kind=a.kind,
                score=float(a.score),
                clients=a.clients,
                window_start=a.window_start,
                window_end=a.window_end,
                updated=a.employee_id in updated,
            ),
            now=now,
        )
    return [a.id for a in alerts], changes


def _details(r: anomaly.SpikeResult, config: anomaly.SpikeConfig, now: dt.datetime) -> dict[str, Any]:
    return {
        "median": r.median,
        "mad": r.mad,
        "recent": r.recent,
        "score": r.score,
        "rule": r.rule,
        "reason": r.reason,
        "history_days": r.history_days,
        "baseline_days": config.baseline_days,
        "recent_days": config.recent_days,
        "threshold": config.threshold,
        "evaluated_at": now.isoformat(),
    }


# ---- alerts -----------------------------------------------------------------------------------


def _visible(principal: Principal) -> ColumnElement[bool]:
    return Alert.employee_id.in_(select(Employee.external_id).where(directory.employee_visibility(principal)))


def list_alerts(
    session: Session,
    principal: Principal,
    *,
    status: str | None = None,
    employee: str | None = None,
    limit: int,
    offset: int,
) -> list[Alert]:
    """Newest first."""
    stmt = select(Alert)
    if not principal.unrestricted:
        stmt = stmt.where(_visible(principal))
    if status:
        stmt = stmt.where(Alert.status == status)
    if employee:
        stmt = stmt.where(Alert.employee_id == employee)
    return list(session.scalars(stmt.order_by(Alert.id.desc()).limit(limit).offset(offset)))


def get_alert(session: Session, principal: Principal, alert_id: int) -> Alert:
    stmt = select(Alert).where(Alert.id == alert_id)
    if not principal.unrestricted:
        stmt = stmt.where(_visible(principal))
    alert = session.scalar(stmt)
    if alert is None:
        raise AlertNotFound(f"No alert {alert_id}.")
    return alert


def resolve_alert(session: Session, alert: Alert, *, resolution: str, actor: str, now: dt.datetime) -> Alert:
    """open → resolved, once: a conditional UPDATE, so two concurrent resolutions cannot both win."""
    done = session.execute(
        update(Alert)
        .where(Alert.id == alert.id, Alert.status == "open")
        .values(status="resolved", resolved_at=now, resolved_by=actor, resolution=resolution, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if not done.rowcount:  # type: ignore[attr-defined]
        raise AlertAlreadyResolved(f"Alert {alert.id} is already resolved.", extra={"allowed": []})
    session.refresh(alert)
    audit.record(
        session,
        actor=actor,
        action="alert.resolved",
        entity_type="alert",
        entity_id=str(alert.id),
        data={"employee": alert.employee_id, "resolution": resolution},
        at=now,
    )
    return alert


def open_alert_clients(session: Session, employee_ids: Sequence[str]) -> dict[str, set[str]]:
    """Clients named in each employee's open alerts (employees without one are absent)."""
    out: dict[str, set[str]] = defaultdict(set)
    unique = list(dict.fromkeys(employee_ids))
    for part in chunks(unique, _IN_CHUNK):
        stmt = select(Alert.employee_id, Alert.clients).where(Alert.employee_id.in_(part), Alert.status == "open")
        for employee_id, clients in session.execute(stmt):
            out[employee_id].update(clients or [])
    return dict(out)
