"""Grants with validity windows and the access decision.

The decision reads one indexed set of rows; time is a parameter, so the answer changes at the exact
instant a window ends, whether or not any job has run.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, and_, bindparam, exists, insert, literal, or_, select, update
from sqlalchemy.orm import Session

from app.access import cuts
from app.access.errors import (
    AccessCheckNotOwn,
    AccessRecordNotFound,
    GrantAlreadyRevoked,
    GrantInvalid,
    GrantNotFound,
)
from app.access.models import AccessGrant, AccessSuspension
from app.audit import service as audit
from app.book import service as book
from app.core.auth import Principal
from app.core.bulk import chunks
from app.core.db import AnySelect, Database, transaction
from app.directory.models import Client, Employee
from app.notify import events
from app.notify import service as notify

LEVEL_RANK = {"owner": 4, "interim": 3, "shadow": 2, "read": 1}
VIEW_ONLY = frozenset({"shadow", "read"})


@dataclass(frozen=True)
class Decision:
    employee: str
    client: str | None  # None only for a client-less record (decided by its owner)
    action: str
    at: dt.datetime
    allowed: bool
    reason: str
    level: str | None = None
    grant_id: int | None = None
    valid_until: dt.datetime | None = None
    record: tuple[str, str] | None = None  # (kind, external_id) when a record was asked about


def _active(at: Any) -> Any:
    return and_(
        AccessGrant.valid_from <= at,
        or_(AccessGrant.valid_until.is_(None), AccessGrant.valid_until > at),
        or_(AccessGrant.revoked_at.is_(None), AccessGrant.revoked_at > at),
    )


def _away(at: Any) -> Any:
    """The employee's own access is suspended at `at` (a leave): a stored window, read like a grant's."""
    s = AccessSuspension
    return exists().where(
        s.employee_id == Employee.external_id,
        s.valid_from <= at,
        s.valid_until > at,
        or_(s.revoked_at.is_(None), s.revoked_at > at),
    )


def _rule(
    employee: str,
    client: str,
    action: str,
    at: dt.datetime,
    emp: tuple[str, dt.datetime | None, int, bool] | None,
    sensitivity: int | None,
    grants: Sequence[tuple[int, str, dt.datetime | None]],
) -> Decision:
    """The rules, in order; pure so that single and batch checks cannot disagree."""

    def deny(reason: str, g: tuple[int, str, dt.datetime | None] | None = None) -> Decision:
        return Decision(
            employee, client, action, at, False, reason, g[1] if g else None, g[0] if g else None, g[2] if g else None
        )

    if emp is None:
        return deny("unknown_employee")
    if sensitivity is None:
        return deny("unknown_client")
    status, exit_at, clearance, away = emp
    if status == "departed" or (exit_at is not None and exit_at <= at):
        return deny("employee_departed")
    if away:
        return deny("employee_away")
    if not grants:
        return deny("no_grant")
    best = max(grants, key=lambda g: (LEVEL_RANK[g[1]], g[2] is None, g[2] or at, -g[0]))
    if clearance < sensitivity:
        return deny("insufficient_clearance", best)
    if best[1] in VIEW_ONLY and action != "view":
        return deny("view_only", best)
    if action in ("export", "delete") and sensitivity >= 3 and best[1] != "owner":
        return deny("owner_required", best)
    return Decision(employee, client, action, at, True, "granted", best[1], best[0], best[2])


def _decide_statement() -> Any:
    """Built once with bind parameters: constructing the select per call cost ten times the query on SQLite."""
    g = AccessGrant
    at = bindparam("at", type_=g.valid_from.type)
    return (
        select(
            Employee.status,
            Employee.exit_at,
            Employee.clearance,
            Client.sensitivity,
            g.id,
            g.level,
            g.valid_until,
            _away(at).label("away"),
        )
        .select_from(Employee)
        .join(Client, Client.external_id == bindparam("client", type_=Client.external_id.type))
        .outerjoin(g, and_(g.employee_id == Employee.external_id, g.client_id == Client.external_id, _active(at)))
        .where(Employee.external_id == bindparam("employee", type_=Employee.external_id.type))
    )


DECIDE = _decide_statement()
EMPLOYEE_EXISTS = select(Employee.external_id).where(
    Employee.external_id == bindparam("employee", type_=Employee.external_id.type)
)


def decide(session: Session | Connection, employee: str, client: str, action: str, at: dt.datetime) -> Decision:
    """One round trip: the employee, the client and every grant valid at `at`."""
    rows = session.execute(DECIDE, {"employee": employee, "client": client, "at": at}).all()
    if not rows:
        known_emp = session.execute(EMPLOYEE_EXISTS, {"employee": employee}).scalar()
        emp = None if known_emp is None else ("active", None, 0, False)
        return _rule(employee, client, action, at, emp, None, [])
    first = rows[0]
    grants = [(r[4], r[5], r[6]) for r in rows if r[4] is not None]
    return _rule(employee, client, action, at, (first[0], first[1], first[2], bool(first[7])), first[3], grants)


def _audited(d: Decision) -> bool:
    return not d.allowed or d.action in ("export", "delete")


def check(
    db: Database, employee: str, client: str, action: str, at: dt.datetime, *, actor: str, now: dt.datetime
) -> Decision:
    """The hot path: decide in one statement on a plain read connection (no transaction on PostgreSQL, no writer
    lock, no ORM session); only a decision that must be audited opens a write transaction, after the read."""
    with db.single_read.connect() as conn:
        decision = decide(conn, employee, client, action, at)
    if _audited(decision):
        with transaction(db) as session:
            audit_decisions(session, [decision], actor=actor, now=now)
    return decision


def check_batch(
    db: Database, checks: Sequence[tuple[str, str, str, dt.datetime]], *, actor: str, now: dt.datetime
) -> list[Decision]:
    """As `check`, for up to 500 pairs: a read session for the decisions, a writer only if one is audited."""
    with db.session(write=False) as session:
        decisions = decide_batch(session, checks)
        session.rollback()
    if any(_audited(d) for d in decisions):
        with transaction(db) as writer:
            audit_decisions(writer, decisions, actor=actor, now=now)
    return decisions


def decide_batch(session: Session, checks: Sequence[tuple[str, str, str, dt.datetime]]) -> list[Decision]:
    """Three queries whatever the number of pairs: the people and clients together, their suspensions, the grants."""
    emp_ids = {c[0] for c in checks}
    client_ids = {c[1] for c in checks}
    people = select(
        literal("e").label("kind"), Employee.external_id, Employee.status, Employee.exit_at, Employee.clearance
    ).where(Employee.external_id.in_(emp_ids))
    accounts = select(
        literal("c"),
        Client.external_id,
        literal(None, Employee.status.type),
        literal(None, Employee.exit_at.type),
        Client.sensitivity,
    ).where(Client.external_id.in_(client_ids))
    emps: dict[str, tuple[str, dt.datetime | None, int]] = {}
    sens: dict[str, int] = {}
    for kind, ident, status, exit_at, number in session.execute(people.union_all(accounts)):
        if kind == "e":
            emps[ident] = (status, exit_at, number)
        else:
            sens[ident] = number
    earliest = min(c[3] for c in checks)
    s = AccessSuspension
    suspensions: dict[str, list[tuple[dt.datetime, dt.datetime, dt.datetime | None]]] = defaultdict(list)
    for who, start, end, revoked in session.execute(
        select(s.employee_id, s.valid_from, s.valid_until, s.revoked_at).where(
            s.employee_id.in_(emp_ids), s.valid_until > earliest
        )
    ):
        suspensions[who].append((start, end, revoked))

    def person(employee: str, at: dt.datetime) -> tuple[str, dt.datetime | None, int, bool] | None:
        found = emps.get(employee)
        if found is None:
            return None
        away = any(a <= at < b and (r is None or r > at) for a, b, r in suspensions.get(employee, ()))
        return (*found, away)

    g = AccessGrant
    by_pair: dict[tuple[str, str], list[AccessGrant]] = defaultdict(list)
    for grant in session.scalars(
        select(g).where(
            g.employee_id.in_(emp_ids),
            g.client_id.in_(client_ids),
            or_(g.valid_until.is_(None), g.valid_until > earliest),
        )
    ):
        by_pair[(grant.employee_id, grant.client_id)].append(grant)
    out = []
    for employee, client, action, at in checks:
        valid = [
            (x.id, x.level, x.valid_until)
            for x in by_pair.get((employee, client), [])
            if x.valid_from <= at
            and (x.valid_until is None or x.valid_until > at)
            and (x.revoked_at is None or x.revoked_at > at)
        ]
        out.append(_rule(employee, client, action, at, person(employee, at), sens.get(client), valid))
    return out


# ---- records: decided as their client, or (client-less) by their owner ----------------------------------------

Target = str | tuple[str, str]  # a client's external id, or a record's (kind, external_id)

EMPLOYEE_STATE = select(
    Employee.status, Employee.exit_at, Employee.clearance, _away(bindparam("at", type_=AccessGrant.valid_from.type))
).where(Employee.external_id == bindparam("employee", type_=Employee.external_id.type))


def _owned(
    employee: str,
    owner: str,
    record: tuple[str, str],
    action: str,
    at: dt.datetime,
    emp: tuple[str, dt.datetime | None, int, bool] | None,
) -> Decision:
    """A client-less record (the owner's own automation or report): the employee rules of `_rule`, then its owner
    only; there is no client, so no grant and no sensitivity to weigh."""

    def deny(reason: str) -> Decision:
        return Decision(employee, None, action, at, False, reason, record=record)

    if emp is None:
        return deny("unknown_employee")
    status, exit_at, _, away = emp
    if status == "departed" or (exit_at is not None and exit_at <= at):
        return deny("employee_departed")
    if away:
        return deny("employee_away")
    if employee != owner:
        return deny("not_record_owner")
    return Decision(employee, None, action, at, True, "granted", "owner", record=record)


def _state(
    conn: Session | Connection, employee: str, at: dt.datetime
) -> tuple[str, dt.datetime | None, int, bool] | None:
    row = conn.execute(EMPLOYEE_STATE, {"employee": employee, "at": at}).first()
    return None if row is None else (row[0], row[1], row[2], bool(row[3]))


def _holders(conn: Session | Connection, refs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], book.RecordHolder]:
    """Every record named must exist (404 naming the others): a decision about nothing would be a guess."""
    found = book.record_holders(conn, refs)
    missing = list(dict.fromkeys(r for r in refs if r not in found))
    if missing:
        shown = ", ".join(f"{k} {e!r}" for k, e in missing[:20])
        more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
        raise AccessRecordNotFound(f"No such record: {shown}{more}.")
    return found


def decide_record(
    conn: Session | Connection, employee: str, kind: str, external_id: str, action: str, at: dt.datetime
) -> Decision:
    """The record's client decides (`decide`, unchanged); a client-less record is its owner's alone."""
    ref = (kind, external_id)
    holder = _holders(conn, [ref])[ref]
    if holder.client_id is not None:
        return replace(decide(conn, employee, holder.client_id, action, at), record=ref)
    return _owned(employee, holder.owner_id, ref, action, at, _state(conn, employee, at))


def check_record(
    db: Database,
    employee: str,
    kind: str,
    external_id: str,
    action: str,
    at: dt.datetime,
    *,
    actor: str,
    now: dt.datetime,
) -> Decision:
    """`check` for a record: one more indexed read (the record's client and owner) before the client's decision."""
    with db.single_read.connect() as conn:
        decision = decide_record(conn, employee, kind, external_id, action, at)
    if _audited(decision):
        with transaction(db) as session:
            audit_decisions(session, [decision], actor=actor, now=now)
    return decision


def check_targets(
    db: Database, checks: Sequence[tuple[str, Target, str, dt.datetime]], *, actor: str, now: dt.datetime
) -> list[Decision]:
    """`check_batch` where some checks name a record: one query resolves every record to its client, the clients are
    decided together by `decide_batch`; client-less records (rare: the owner's own) read their employee each."""
    with db.session(write=False) as session:
        refs = [t for _, t, _, _ in checks if isinstance(t, tuple)]
        holders = _holders(session, refs)
        as_clients: list[tuple[str, str, str, dt.datetime]] = []
        for employee, target, action, at in checks:
            client = target if isinstance(target, str) else holders[target].client_id
            if client is not None:
                as_clients.append((employee, client, action, at))
        decided = iter(decide_batch(session, as_clients) if as_clients else [])
        decisions: list[Decision] = []
        for employee, target, action, at in checks:
            if isinstance(target, str):
                decisions.append(next(decided))
                continue
            holder = holders[target]
            if holder.client_id is not None:
                decisions.append(replace(next(decided), record=target))
            else:
                emp = _state(session, employee, at)
                decisions.append(_owned(employee, holder.owner_id, target, action, at, emp))
        session.rollback()
    if any(_audited(d) for d in decisions):
        with transaction(db) as writer:
            audit_decisions(writer, decisions, actor=actor, now=now)
    return decisions


def audit_decisions(session: Session, decisions: Sequence[Decision], *, actor: str, now: dt.datetime) -> None:
    """Every deny, and every allowed export or delete, is on the record (a record's decision under the record, with
    the client it was decided for)."""
    changes = [
        audit.Change(
            actor,
            "access.denied" if not d.allowed else f"access.allowed_{d.action}",
            "client" if d.record is None else "record",
            str(d.client) if d.record is None else f"{d.record[0]}/{d.record[1]}",
            {
                "employee": d.employee,
                "action": d.action,
                "at": d.at.isoformat(),
                "reason": d.reason,
                "grant": d.grant_id,
                "level": d.level,
                **({} if d.record is None else {"client": d.client}),
            },
        )
        for d in decisions
        if _audited(d)
    ]
    if changes:
        audit.record_many(session, changes, at=now)


def employee_is_gone(session: Session, employee: str, now: dt.datetime) -> bool:
    row = session.execute(select(Employee.status, Employee.exit_at).where(Employee.external_id == employee)).first()
    if row is None:
        return False
    return row[0] == "departed" or (row[1] is not None and row[1] <= now)


# ---- grants -----------------------------------------------------------------------------------


def create_grant(
    session: Session,
    *,
    employee: str,
    client: str,
    level: str,
    valid_from: dt.datetime,
    valid_until: dt.datetime | None,
    reason: str,
    actor: str,
    now: dt.datetime,
) -> AccessGrant:
    errors = []
    if session.get(Employee, employee) is None:
        errors.append({"loc": ["body", "employee"], "msg": "unknown employee", "type": "unknown_reference"})
    if session.get(Client, client) is None:
        errors.append({"loc": ["body", "client"], "msg": "unknown client", "type": "unknown_reference"})
    if valid_until is not None and valid_until <= valid_from:
        errors.append({"loc": ["body", "valid_until"], "msg": "must be after valid_from", "type": "value_error"})
    if errors:
        raise GrantInvalid("The grant is not valid.", errors=errors)
    grant = AccessGrant(
        employee_id=employee,
        client_id=client,
        level=level,
        valid_from=valid_from,
        valid_until=valid_until,
        reason=reason,
        created_by=actor,
        created_at=now,
    )
    session.add(grant)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="access.granted",
        entity_type="access_grant",
        entity_id=str(grant.id),
        data={
            "employee": employee,
            "client": client,
            "level": level,
            "valid_from": valid_from.isoformat(),
            "valid_until": valid_until.isoformat() if valid_until else None,
            "reason": reason,
        },
        at=now,
    )
    return grant


def grant_visibility(principal: Principal) -> Any:
    if principal.unrestricted or "access:admin" in principal.scopes:
        return literal(True)
    if principal.employee is None:
        return literal(False)
    return AccessGrant.employee_id == principal.employee


def get_grant(session: Session, principal: Principal, grant_id: int) -> AccessGrant:
    grant = session.scalar(select(AccessGrant).where(AccessGrant.id == grant_id, grant_visibility(principal)))
    if grant is None:
        raise GrantNotFound(f"No grant {grant_id}.")
    return grant


@dataclass(frozen=True)
class GrantFilter:
    employee: str | None = None
    client: str | None = None
    level: str | None = None
    valid_at: dt.datetime | None = None
    handover: int | None = None


def list_grants(
    session: Session, principal: Principal, flt: GrantFilter, *, limit: int, offset: int
) -> list[AccessGrant]:
    stmt = select(AccessGrant).where(grant_visibility(principal))
    if flt.employee:
        stmt = stmt.where(AccessGrant.employee_id == flt.employee)
    if flt.client:
        stmt = stmt.where(AccessGrant.client_id == flt.client)
    if flt.level:
        stmt = stmt.where(AccessGrant.level == flt.level)
    if flt.valid_at:
        stmt = stmt.where(_active(flt.valid_at))
    if flt.handover:
        stmt = stmt.where(AccessGrant.handover_id == flt.handover)
    return list(session.scalars(stmt.order_by(AccessGrant.id).limit(limit).offset(offset)))


def revoke(session: Session, grant: AccessGrant, *, actor: str, now: dt.datetime) -> AccessGrant:
    if grant.revoked_at is not None:
        raise GrantAlreadyRevoked(f"Grant {grant.id} was already revoked at {grant.revoked_at.isoformat()}.")
    grant.revoked_at = now
    grant.revoked_by = actor
    notify.emit(
        session,
        "access.revoked",
        events.AccessRevokedEvent(
            grant_id=grant.id,
            employee=grant.employee_id,
            client=grant.client_id,
            level=grant.level,
            revoked_at=now,
            handover_id=grant.handover_id,
        ),
        now=now,
    )
    audit.record(
        session,
        actor=actor,
        action="access.revoked",
        entity_type="access_grant",
        entity_id=str(grant.id),
        data={"employee": grant.employee_id, "client": grant.client_id, "level": grant.level},
        at=now,
    )
    session.flush()
    return grant


def require_own_or_admin(principal: Principal, employee: str) -> None:
    """An account manager may only ask about themselves; admins, integrations and hr ask about anyone."""
    if principal.unrestricted or "access:admin" in principal.scopes:
        return
    if principal.employee is None or principal.employee != employee:
        raise AccessCheckNotOwn("You may only check your own access.")


# ---- ownership in step with the directory ----------------------------------------------------


def sync_owner_grants(
    session: Session, changes: Sequence[tuple[str, str | None, str]], *, actor: str, now: dt.datetime
) -> None:
    """Owner changes from the directory: the old owner's open owner grant ends, the new owner gets one."""
    moved = [(c, old, new) for c, old, new in changes if old != new]
    if not moved:
        return
    g = AccessGrant
    for part in chunks(moved, 2000):
        olds = [(c, old) for c, old, _ in part if old is not None]
        if olds:
            clients = [c for c, _ in olds]
            session.execute(
                update(g)
                .where(
                    g.client_id.in_(clients),
                    g.level == "owner",
                    g.handover_id.is_(None),
                    cuts.outlives(now),
                    g.revoked_at.is_(None),
                    g.employee_id != select(Client.owner_id).where(Client.external_id == g.client_id).scalar_subquery(),
                )
                .values(**cuts.end_values(now))
                .execution_options(synchronize_session=False)
            )
        session.execute(
            insert(g),
            [
                {
                    "employee_id": new,
                    "client_id": c,
                    "level": "owner",
                    "valid_from": now,
                    "valid_until": None,
                    "reason": "directory owner",
                    "created_by": actor,
                    "created_at": now,
                }
                for c, _, new in part
            ],
        )


# ---- windows the workflow hands over (its key: handover_id; access reads no handover) ---------------------


GRANT_COLUMNS = ("employee_id", "client_id", "level", "valid_from", "valid_until", "reason", "handover_id")


def insert_grants(session: Session, rows: AnySelect, *, actor: str, now: dt.datetime) -> None:
    """Grants from a statement yielding `GRANT_COLUMNS` in that order (the workflow builds it from its approved
    items): one INSERT … SELECT whatever their number."""
    source = rows.subquery()
    session.execute(
        insert(AccessGrant).from_select(
            [*GRANT_COLUMNS, "created_by", "created_at"],
            select(*source.c, literal(actor), literal(now, AccessGrant.created_at.type)),
        )
    )


def cut_leaver(session: Session, handover_id: int, leaver: str, effective_at: dt.datetime) -> None:
    """Every grant the leaver holds ends at the effective time at the latest, cut by this handover (`cuts`: a grant
    another handover cut too ends at the earlier cut; lifting either gives back what the other allows)."""
    cuts.cut(
        session,
        select(
            literal(handover_id).label("handover_id"),
            literal(leaver).label("employee_id"),
            literal(effective_at, AccessGrant.valid_until.type).label("effective_at"),
        ).subquery(),
    )


def cut_leavers(session: Session, leavers: AnySelect) -> None:
    """`cut_leaver` for every (handover_id, employee_id, effective_at) the statement yields, set-based: each
    leaver's grants end at their own effective time, cut by their own handover."""
    cuts.cut(session, leavers.subquery())


def cut_clients(session: Session, rows: AnySelect) -> None:
    """As `cut_leavers`, on given clients only: every (handover_id, employee_id, effective_at, client_id) the
    statement yields ends that employee's grants on that client at the effective time (a role change: the person
    stays, only the clients that move are cut)."""
    cuts.cut(session, rows.subquery(), by_client=True)


def suspend(
    session: Session,
    *,
    employee: str,
    valid_from: dt.datetime,
    valid_until: dt.datetime,
    handover_id: int,
    reason: str,
    actor: str,
    now: dt.datetime,
) -> AccessSuspension:
    """The employee's own access is off for [valid_from, valid_until) (a leave; the handover's audit records it)."""
    row = AccessSuspension(
        employee_id=employee,
        valid_from=valid_from,
        valid_until=valid_until,
        handover_id=handover_id,
        reason=reason,
        created_by=actor,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row


def move_windows(session: Session, *, handover_id: int, valid_from: dt.datetime, valid_until: dt.datetime) -> None:
    """A leave moved: its delegation grants and its suspension get the new window (a delegate's grant cut at their
    own exit stays cut)."""
    g, s = AccessGrant, AccessSuspension
    session.execute(
        update(g)
        .where(g.handover_id == handover_id, g.revoked_at.is_(None))
        .values(valid_from=valid_from, **cuts.own_end_values(valid_until))
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(s)
        .where(s.handover_id == handover_id, s.revoked_at.is_(None))
        .values(valid_from=valid_from, valid_until=valid_until)
        .execution_options(synchronize_session=False)
    )


def end_windows(session: Session, *, handover_id: int, at: dt.datetime) -> None:
    """A leave ends early at `at`: its grants and suspension that would run past it end there."""
    g, s = AccessGrant, AccessSuspension
    session.execute(
        update(g)
        .where(g.handover_id == handover_id, g.revoked_at.is_(None), cuts.outlives(at))
        .values(**cuts.end_values(at))
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(s)
        .where(s.handover_id == handover_id, s.revoked_at.is_(None), s.valid_until > at)
        .values(valid_until=at)
        .execution_options(synchronize_session=False)
    )


def restore_leaver(session: Session, handover_id: int, *, except_clients: Any = None) -> None:
    """This handover's cuts are lifted (except on `except_clients`, a select of client ids): the grants get back
    the earlier of their own end and the cuts other handovers still hold on them."""
    cuts.lift(session, handover_id, except_clients=except_clients)


def on_reschedule(
    session: Session,
    *,
    handover_id: int,
    leaver: str,
    effective_at: dt.datetime,
    now: dt.datetime,
    clients: AnySelect | None = None,
) -> None:
    """The effective time moved: every window that hangs on it moves with it. With `clients` (a statement of
    (handover_id, employee_id, effective_at, client_id) rows, see `cut_clients`), only those are cut again."""
    g = AccessGrant
    restore_leaver(session, handover_id)
    if clients is None:
        cut_leaver(session, handover_id, leaver, effective_at)
    else:
        cut_clients(session, clients)
    # Shadow windows end at the new time. One another handover cut at its holder's own exit keeps that cut:
    # only its own end (cut_from) moves, and it never outlives either.
    session.execute(
        update(g)
        .where(g.handover_id == handover_id, g.level == "shadow", g.revoked_at.is_(None))
        .values(**cuts.own_end_values(effective_at))
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(g)
        .where(g.handover_id == handover_id, g.level.in_(("owner", "interim")), g.revoked_at.is_(None))
        .values(valid_from=effective_at)
        .execution_options(synchronize_session=False)
    )


def on_cancel(session: Session, *, handover_id: int, actor: str, now: dt.datetime, keep_cuts: bool = False) -> None:
    """Grants (and, a leave, the suspension) the handover gave are revoked now; cut ones get their end back (not
    with `keep_cuts`: the exit the cuts stand for stays)."""
    if not keep_cuts:
        restore_leaver(session, handover_id)
    for model in (AccessGrant, AccessSuspension):
        session.execute(
            update(model)
            .where(model.handover_id == handover_id, model.revoked_at.is_(None))
            .values(revoked_at=now, revoked_by=actor)
            .execution_options(synchronize_session=False)
        )


def on_undo(session: Session, *, handover_id: int, actor: str, now: dt.datetime, staying: Any = None) -> None:
    """Grants the handover gave end now (they stay in history); the leaver's grants come back, except on the
    clients that stay with their new owner (`staying`, a select of client ids)."""
    g = AccessGrant
    restore_leaver(session, handover_id, except_clients=staying)
    session.execute(
        update(g)
        .where(
            g.handover_id == handover_id,
            g.revoked_at.is_(None),
            g.valid_from <= now,
            cuts.outlives(now),
        )
        .values(**cuts.end_values(now))
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(g)
        .where(g.handover_id == handover_id, g.revoked_at.is_(None), g.valid_from > now)
        .values(revoked_at=now, revoked_by=actor)
        .execution_options(synchronize_session=False)
    )


def end_handover_grants_for_clients(
    session: Session, *, handover_id: int, clients: Sequence[str], now: dt.datetime
) -> None:
    """Clients the CRM moved elsewhere before execution: the grants the handover planned for them end now."""
    if not clients:
        return
    g = AccessGrant
    for part in chunks(clients, 5000):
        session.execute(
            update(g)
            .where(
                g.handover_id == handover_id,
                g.client_id.in_(part),
                cuts.outlives(now),
            )
            .values(**cuts.end_values(now))
            .execution_options(synchronize_session=False)
        )
