"""Book logic: set-based upserts of records, who may see which, and records following their client's owner."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Float,
    String,
    Table,
    and_,
    any_,
    bindparam,
    case,
    exists,
    false,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    true,
    tuple_,
    union_all,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from app.audit import service as audit
from app.book import schemas
from app.book.errors import RecordNotFound, RecordRowsInvalid
from app.book.models import Record, RecordMove
from app.core.auth import Principal
from app.core.bulk import among, chunks
from app.core.db import AnySelect, UTCDateTime
from app.directory import service as directory
from app.directory.models import Client, Employee

RecordRow = tuple[str, str, schemas.RecordIn]  # (kind, external_id, body)


def _on_pg(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _existing(session: Session, column: Any, ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for part in chunks(sorted(set(ids)), 5000):
        found.update(session.scalars(select(column).where(among(session, column, part))))
    return found


# ---- visibility -------------------------------------------------------------------------------


def record_visibility(principal: Principal) -> ColumnElement[bool]:
    """As for clients: admins (and the other unrestricted roles) see all; a manager the records their team owns or
    whose client they see; an account manager their own records and those of the clients they own or serve."""
    if principal.unrestricted:
        return true()
    if principal.employee is None:
        return false()
    seen_clients = select(Client.external_id).where(directory.client_visibility(principal))
    owned: ColumnElement[bool]
    if principal.role == "manager":
        owned = Record.owner_id.in_(directory.subtree(principal.employee, name="record_owners"))
    else:
        owned = Record.owner_id == principal.employee
    return or_(owned, Record.client_id.in_(seen_clients))


# ---- writes -----------------------------------------------------------------------------------


def _loc(loc_prefix: Sequence[str | int], i: int, row_index: bool, field: str) -> list[str | int]:
    return [*loc_prefix, i, field] if row_index else [*loc_prefix, field]


class RecordsWritten(NamedTuple):
    created: int
    updated: int


def upsert_records(
    session: Session,
    rows: Sequence[RecordRow],
    *,
    actor: str,
    now: dt.datetime,
    loc_prefix: Sequence[str | int] = ("body", "items"),
    row_index: bool = True,
) -> RecordsWritten:
    """Creates or replaces records, all or nothing: every row is checked (no pair twice, owners and clients exist)
    before one INSERT … ON CONFLICT DO UPDATE writes them all (one executemany)."""
    errors: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for i, (kind, external_id, _) in enumerate(rows):
        if (kind, external_id) in seen:
            errors.append(
                {
                    "loc": _loc(loc_prefix, i, row_index, "external_id"),
                    "msg": f"duplicate {kind} {external_id!r} in batch",
                    "type": "duplicate",
                }
            )
        seen.add((kind, external_id))
    owners = _existing(session, Employee.external_id, [r.owner for _, _, r in rows])
    clients = _existing(session, Client.external_id, [r.client for _, _, r in rows if r.client is not None])
    for i, (_, _, row) in enumerate(rows):
        if row.owner not in owners:
            errors.append(
                {
                    "loc": _loc(loc_prefix, i, row_index, "owner"),
                    "msg": f"no employee {row.owner!r}",
                    "type": "unknown_reference",
                }
            )
        if row.client is not None and row.client not in clients:
            errors.append(
                {
                    "loc": _loc(loc_prefix, i, row_index, "client"),
                    "msg": f"no client {row.client!r}",
                    "type": "unknown_reference",
                }
            )
    if errors:
        raise RecordRowsInvalid("Some rows are not valid; nothing was written.", errors=errors)

    stored: set[tuple[str, str]] = set()
    for part in chunks(sorted({eid for _, eid, _ in rows}), 5000):
        stmt = select(Record.kind, Record.external_id).where(among(session, Record.external_id, part))
        stored.update((k, e) for k, e in session.execute(stmt) if (k, e) in seen)
    values = [
        {
            "kind": kind,
            "external_id": eid,
            "title": r.title,
            "client_id": r.client,
            "owner_id": r.owner,
            "status": r.status,
            "stage": r.stage,
            "due_at": r.due_at,
            "amount": r.amount,
            "currency": r.currency,
            "progress": r.progress,
            "url": r.url,
            "attributes": r.attributes,
            "created_at": now,
            "updated_at": now,
        }
        for kind, eid, r in rows
    ]
    table = cast(Table, Record.__table__)
    dialect_insert = postgresql.insert if _on_pg(session) else sqlite.insert
    key = ["kind", "external_id"]
    ordered = sorted(values, key=lambda v: (v["kind"], v["external_id"]))
    # The rows nobody had are inserted ON CONFLICT DO NOTHING: of concurrent creators of one record exactly one
    # creates it (RETURNING says which); the others, and the rows that existed, replace it below. Locks are taken in
    # key order, so two batches of the same records in different orders cannot deadlock.
    created: set[tuple[str, str]] = set()
    new = [v for v in ordered if (v["kind"], v["external_id"]) not in stored]
    if new:
        claim: Any = dialect_insert(table).on_conflict_do_nothing(index_elements=key)
        created = {(k, e) for k, e in session.execute(claim.returning(table.c.kind, table.c.external_id), new)}
    rest = [v for v in ordered if (v["kind"], v["external_id"]) not in created]
    if rest:
        upsert_into: Any = dialect_insert(table)
        keep = {"kind", "external_id", "created_at"}
        upsert = upsert_into.on_conflict_do_update(
            index_elements=key,
            set_={c.name: upsert_into.excluded[c.name] for c in table.columns if c.name not in keep},
        )
        session.execute(upsert, rest)
    audit.record_many(
        session,
        [
            audit.Change(
                actor,
                "record.created" if (kind, eid) in created else "record.updated",
                "record",
                f"{kind}/{eid}",
                {"kind": kind, "external_id": eid, **r.model_dump(mode="json")},
            )
            for kind, eid, r in rows
        ],
        at=now,
    )
    return RecordsWritten(len(created), len(rows) - len(created))


# ---- reads ------------------------------------------------------------------------------------


def record_out(r: Record) -> schemas.RecordOut:
    return schemas.RecordOut(
        kind=r.kind,
        external_id=r.external_id,
        title=r.title,
        owner=r.owner_id,
        client=r.client_id,
        status=r.status,
        stage=r.stage,
        due_at=r.due_at,
        amount=float(r.amount) if r.amount is not None else None,
        currency=r.currency,
        progress=r.progress,
        url=r.url,
        attributes=dict(r.attributes or {}),
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


def get_record(session: Session, principal: Principal, kind: str, external_id: str) -> Record:
    row = session.scalar(
        select(Record).where(Record.kind == kind, Record.external_id == external_id, record_visibility(principal))
    )
    if row is None:
        raise RecordNotFound(f"No {kind} {external_id!r}.")
    return row


@dataclass(frozen=True)
class RecordFilter:
    kind: str | None = None
    owner: str | None = None
    client: str | None = None
    status: str | None = None


def list_records(session: Session, principal: Principal, flt: RecordFilter, *, limit: int, offset: int) -> list[Record]:
    stmt = select(Record).where(record_visibility(principal))
    if flt.kind:
        stmt = stmt.where(Record.kind == flt.kind)
    if flt.owner:
        stmt = stmt.where(Record.owner_id == flt.owner)
    if flt.client:
        stmt = stmt.where(Record.client_id == flt.client)
    if flt.status:
        stmt = stmt.where(Record.status == flt.status)
    return list(session.scalars(stmt.order_by(Record.kind, Record.external_id).limit(limit).offset(offset)))


# ---- what a handover does with the leaver's records (rules, overrides), its execution and undo -----------------

PLAN_RULES = ("follow", "keep", "manager", "override", "meeting_stays")


def plan_statement(leavers: AnySelect, clients: AnySelect, overrides: AnySelect) -> AnySelect:
    """What each record of a leaver will do, one statement for a batch of handovers. The inputs (the workflow's
    facts, handed in):

    - `leavers`: (handover_id, leaver, clientless_to, meeting_from, meeting_until): whose records, where client-less
      open ones go (null: they stay), the transition period in which meetings stay;
    - `clients`: (handover_id, client_id, to_owner): where each client of the handover goes;
    - `overrides`: (handover_id, kind, external_id, to_owner, version): one record's fate set by hand (null keeps).

    A handover's records are the ones the leaver owns and the ones this handover moved before that are still with
    whom it gave them (taken over by the interim owner, moved on at a late approval). The rules, in order: an
    override; a closed record keeps its owner; an open one of a client in the handover follows the client's receiver,
    but a meeting due in the transition period stays and the receiver is its attendee; a client-less one goes to
    `clientless_to` (the same for a meeting in the period: it stays, `clientless_to` attends); anything else keeps.

    Columns: handover_id, kind, external_id, client_id, status, title, due_at, amount, currency, owner, rule,
    to_owner (null: stays), attendee, override_version (null: none)."""
    lv = leavers.subquery("lv")
    cm = clients.subquery("cm")
    ov = overrides.subquery("ov")
    r, rm = Record, RecordMove
    moved_here = exists().where(
        rm.handover_id == lv.c.handover_id,
        rm.kind == r.kind,
        rm.external_id == r.external_id,
        rm.restored_at.is_(None),
        rm.to_owner_id == r.owner_id,
        rm.from_owner_id != rm.to_owner_id,
    )
    base = [lv.c.handover_id, lv.c.clientless_to, lv.c.meeting_from, lv.c.meeting_until, r.kind, r.external_id]
    cand = union_all(
        select(*base).join(r, r.owner_id == lv.c.leaver),
        select(*base).join(r, r.owner_id != lv.c.leaver).where(moved_here),
    ).subquery("cand")
    in_period = and_(
        r.kind == "meeting",
        r.due_at.is_not(None),
        r.due_at >= cand.c.meeting_from,
        r.due_at < cand.c.meeting_until,
    )
    has_override = ov.c.handover_id.is_not(None)
    has_client = cm.c.handover_id.is_not(None)
    is_open = r.status == "open"
    rule = case(
        (has_override, literal("override")),
        (~is_open, literal("keep")),
        (and_(has_client, in_period), literal("meeting_stays")),
        (has_client, literal("follow")),
        (r.client_id.is_not(None), literal("keep")),
        (and_(cand.c.clientless_to.is_not(None), in_period), literal("meeting_stays")),
        (cand.c.clientless_to.is_not(None), literal("manager")),
        else_=literal("keep"),
    )
    to_owner = case(
        (has_override, ov.c.to_owner),
        (~is_open, null()),
        (and_(has_client, in_period), null()),
        (has_client, cm.c.to_owner),
        (r.client_id.is_not(None), null()),
        (in_period, null()),
        else_=cand.c.clientless_to,
    )
    attendee = case(
        (has_override, null()),
        (~is_open, null()),
        (and_(has_client, in_period), cm.c.to_owner),
        (has_client, null()),
        (and_(r.client_id.is_(None), in_period), cand.c.clientless_to),
        else_=null(),
    )
    return (
        select(
            cand.c.handover_id.label("handover_id"),
            r.kind.label("kind"),
            r.external_id.label("external_id"),
            r.client_id.label("client_id"),
            r.status.label("status"),
            r.title.label("title"),
            r.due_at.label("due_at"),
            r.amount.label("amount"),
            r.currency.label("currency"),
            r.owner_id.label("owner"),
            rule.label("rule"),
            to_owner.label("to_owner"),
            attendee.label("attendee"),
            ov.c.version.label("override_version"),
        )
        .select_from(cand)
        .join(r, and_(r.kind == cand.c.kind, r.external_id == cand.c.external_id))
        .outerjoin(cm, and_(cm.c.handover_id == cand.c.handover_id, cm.c.client_id == r.client_id))
        .outerjoin(
            ov,
            and_(ov.c.handover_id == cand.c.handover_id, ov.c.kind == r.kind, ov.c.external_id == r.external_id),
        )
    )


def plan_rows(session: Session, plan: AnySelect, *, limit: int, offset: int) -> list[Any]:
    """A page of `plan_statement`'s rows, in record order (the plan preview)."""
    p = plan.subquery()
    stmt = select(p).order_by(p.c.handover_id, p.c.kind, p.c.external_id).limit(limit).offset(offset)
    return list(session.execute(stmt).all())


def plan_row(session: Session, plan: AnySelect, kind: str, external_id: str) -> Any | None:
    p = plan.subquery()
    return session.execute(select(p).where(p.c.kind == kind, p.c.external_id == external_id)).first()


def apply_plan(session: Session, plan: AnySelect, *, handovers: Sequence[int], now: dt.datetime) -> None:
    """Execution (or the interim take-over): every planned owner change and every meeting kept with an attendee is
    kept in record_move as the next step of that record in that handover (one INSERT … SELECT), then the records
    change owner (one UPDATE). `handovers` names the handovers of `plan`; a record is in at most one of them."""
    p = plan.subquery()
    rm, r = RecordMove, Record
    prior = (
        select(func.max(rm.step))
        .where(rm.handover_id == p.c.handover_id, rm.kind == p.c.kind, rm.external_id == p.c.external_id)
        .scalar_subquery()
    )
    moves = and_(p.c.to_owner.is_not(None), p.c.to_owner != p.c.owner)
    # An attendee this handover already added (at the take-over) is not added again at the execution.
    attends = and_(
        p.c.attendee.is_not(None),
        ~exists().where(
            rm.handover_id == p.c.handover_id,
            rm.kind == p.c.kind,
            rm.external_id == p.c.external_id,
            rm.attendee_id == p.c.attendee,
            rm.restored_at.is_(None),
        ),
    )
    rows = select(
        p.c.handover_id,
        p.c.kind,
        p.c.external_id,
        func.coalesce(prior, 0) + 1,
        p.c.owner,
        case((moves, p.c.to_owner), else_=p.c.owner),
        case((attends, p.c.attendee), else_=null()),
        literal(now, UTCDateTime),
    ).where(or_(moves, attends))
    columns = ["handover_id", "kind", "external_id", "step", "from_owner_id", "to_owner_id", "attendee_id", "moved_at"]
    session.execute(insert(RecordMove).from_select(columns, rows))
    mine = and_(
        rm.handover_id.in_(list(handovers)),
        rm.moved_at == now,
        rm.restored_at.is_(None),
        rm.from_owner_id != rm.to_owner_id,
    )
    later = aliased(RecordMove)
    last = ~exists().where(
        later.handover_id == rm.handover_id,
        later.kind == rm.kind,
        later.external_id == rm.external_id,
        later.step > rm.step,
        later.moved_at == now,
    )
    match = and_(mine, last, rm.kind == r.kind, rm.external_id == r.external_id, rm.from_owner_id == r.owner_id)
    # UPDATE … FROM record_move (a join): a correlated SET subquery scanned record_move once per moved record on
    # PostgreSQL (6 s for 5,000 records in the bench, past the statement timeout beyond).
    session.execute(
        update(r)
        .where(match)
        .values(owner_id=rm.to_owner_id, updated_at=now)
        .execution_options(synchronize_session=False)
    )


def follow_clients(session: Session, moves: AnySelect, *, now: dt.datetime) -> list[dict[str, Any]]:
    """Outside any handover (the ownership sweeper's repair): the open records `from_owner` holds on each moved
    client follow it, from a statement of (client_id, from_owner, to_owner); nothing to undo, so no record_move.
    Returns the moves, in record order, for the event."""
    m = moves.subquery()
    r = Record
    stmt = (
        select(r.kind, r.external_id, r.client_id, m.c.from_owner, m.c.to_owner)
        .join(m, and_(r.client_id == m.c.client_id, r.owner_id == m.c.from_owner))
        .where(r.status == "open", m.c.to_owner != m.c.from_owner)
        .order_by(r.kind, r.external_id)
    )
    out = [{"kind": k, "record": e, "client": c, "from": f, "to": t} for k, e, c, f, t in session.execute(stmt)]
    if out:
        match = and_(r.client_id == m.c.client_id, r.owner_id == m.c.from_owner, m.c.to_owner != m.c.from_owner)
        session.execute(
            update(r)
            .where(r.status == "open", match)
            .values(owner_id=m.c.to_owner, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    return out


def restore_owners(session: Session, handover_id: int, *, now: dt.datetime) -> None:
    """Undo (or a cancellation after the take-over): the handover's moves go back step by step, last first, each
    while the record is still with the owner that step gave it (one the CRM moved since stays put, and so do its
    earlier steps); record_move says which came back (`restored_at`). One pair of statements per step (at most the
    take-over and the execution)."""
    rm, r = RecordMove, Record
    steps = session.scalars(
        select(rm.step)
        .where(rm.handover_id == handover_id, rm.restored_at.is_(None))
        .distinct()
        .order_by(rm.step.desc())
    ).all()
    for step in steps:
        still = exists().where(r.kind == rm.kind, r.external_id == rm.external_id, r.owner_id == rm.to_owner_id)
        session.execute(
            update(rm)
            .where(rm.handover_id == handover_id, rm.step == step, rm.restored_at.is_(None), still)
            .values(restored_at=now)
            .execution_options(synchronize_session=False)
        )
        back = and_(
            rm.handover_id == handover_id,
            rm.step == step,
            rm.restored_at == now,
            rm.from_owner_id != rm.to_owner_id,
            rm.kind == r.kind,
            rm.external_id == r.external_id,
        )
        session.execute(
            update(r)
            .where(back)
            .values(owner_id=rm.from_owner_id, updated_at=now)
            .execution_options(synchronize_session=False)
        )


def moves_of(
    session: Session, handover_ids: Sequence[int], *, back: bool, at: dt.datetime
) -> dict[int, list[dict[str, Any]]]:
    """Each handover's record changes made at `at`, in record order, for the events: forward, the moves (and the
    meetings kept with an attendee) made then; `back`, the ones restored then, one entry per record from the owner
    it had to the owner it got back (its chain of steps folded), and each attendee to take off."""
    rm, r = RecordMove, Record
    when = rm.restored_at == at if back else rm.moved_at == at
    stmt = (
        select(rm.handover_id, rm.kind, rm.external_id, r.client_id, rm.from_owner_id, rm.to_owner_id, rm.attendee_id)
        .join(r, and_(r.kind == rm.kind, r.external_id == rm.external_id))
        .where(rm.handover_id.in_(list(handover_ids)), when)
        .order_by(rm.handover_id, rm.kind, rm.external_id, rm.step.desc() if back else rm.step)
    )
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    folded: dict[tuple[int, str, str], dict[str, Any]] = {}
    for hid, kind, eid, client, before, after, attendee in session.execute(stmt):
        entry = {"kind": kind, "record": eid, "client": client}
        if attendee is not None:
            out[hid].append({**entry, "from": before, "to": after, "attendee_added": attendee})
        if before == after:
            continue
        if not back:
            out[hid].append({**entry, "from": before, "to": after})
        elif (hid, kind, eid) in folded:
            folded[(hid, kind, eid)]["to"] = before  # an earlier step: the owner before it
        else:
            folded[(hid, kind, eid)] = {**entry, "from": after, "to": before}
            out[hid].append(folded[(hid, kind, eid)])
    return out


# ---- reads for the handover document, the plan's counts and load points (issue 16 points 2, 4, 5) -----------------
# Read-only and set-based: one statement for all the clients (or owners) asked about, whatever their number. The
# workflow (app/transfer) hands in its clients as a statement; the book never reads the workflow's tables itself.

RENEWAL_WINDOW = dt.timedelta(days=90)
DOCUMENT_SECTIONS = ("deal", "renewal", "overdue_invoice", "case", "meeting", "project")


@dataclass(frozen=True)
class DocumentRecord:
    """One record as the handover document lists it, under one `section` of its client."""

    section: str
    record: Record


def document_records(session: Session, clients: AnySelect, *, at: dt.datetime) -> dict[str, list[DocumentRecord]]:
    """What a successor must know about each client at `at`, from one query over every client `clients` names (a
    statement of client ids): open deals; open contracts renewing within 90 days of `at`; open invoices whose due
    time passed (overdue); open cases; open meetings still to come; open projects with their progress. Per client,
    by section (as DOCUMENT_SECTIONS), then due time and id. Whoever owns them: this is the client's book."""
    r = Record
    wanted = or_(
        r.kind.in_(("deal", "case", "project")),
        and_(r.kind == "contract", r.due_at >= at, r.due_at < at + RENEWAL_WINDOW),
        and_(r.kind == "invoice", r.due_at < at),
        and_(r.kind == "meeting", r.due_at >= at),
    )
    stmt = select(r).where(r.client_id.in_(clients), r.status == "open", wanted)
    section = {"contract": "renewal", "invoice": "overdue_invoice"}
    out: dict[str, list[DocumentRecord]] = defaultdict(list)
    for rec in session.scalars(stmt):
        assert rec.client_id is not None
        out[rec.client_id].append(DocumentRecord(section.get(rec.kind, rec.kind), rec))
    order = {s: i for i, s in enumerate(DOCUMENT_SECTIONS)}
    far = dt.datetime.max.replace(tzinfo=dt.UTC)
    for rows in out.values():
        rows.sort(key=lambda d: (order[d.section], d.record.due_at or far, d.record.external_id))
    return out


@dataclass
class KindTotal:
    """Records of one kind: how many, and the sum of their amounts per currency (records without one add nothing)."""

    count: int = 0
    value: dict[str, float] = field(default_factory=dict)


def open_totals(session: Session, pairs: AnySelect) -> dict[Any, dict[str, KindTotal]]:
    """Open records by key and kind, from a statement of (key, client_id, owner_id) rows: a record counts for a key
    when it belongs to that client and that owner holds it (what moves with the client). One grouped query."""
    p = pairs.subquery()
    key, client, owner = list(p.c)[:3]
    r = Record
    stmt = (
        select(key, r.kind, r.currency, func.count(), func.sum(r.amount))
        .join(r, and_(r.client_id == client, r.owner_id == owner))
        .where(r.status == "open")
        .group_by(key, r.kind, r.currency)
    )
    out: dict[Any, dict[str, KindTotal]] = defaultdict(dict)
    for k, kind, currency, n, amount in session.execute(stmt):
        total = out[k].setdefault(kind, KindTotal())
        total.count += int(n)
        if currency is not None and amount is not None:
            total.value[currency] = round(total.value.get(currency, 0.0) + float(amount), 2)
    return out


def owner_load(
    session: Session, owners: Sequence[str], *, amount_per_point: float, points_per_case: float
) -> dict[str, float]:
    """Load points the open records an owner holds add when the company counts them (both off, 0, by default): one
    point per `amount_per_point` of open deal amount (amounts as recorded, whatever their currency: no conversion),
    `points_per_case` per open case. No query while both are off."""
    kinds = [k for k, on in (("deal", amount_per_point > 0), ("case", points_per_case > 0)) if on]
    loads: dict[str, float] = defaultdict(float)
    if not kinds or not owners:
        return loads
    r = Record
    for part in chunks(sorted(set(owners)), 5000):
        stmt = (
            select(r.owner_id, r.kind, func.count(), func.sum(r.amount))
            .where(r.owner_id.in_(part), r.status == "open", r.kind.in_(kinds))
            .group_by(r.owner_id, r.kind)
        )
        for owner, kind, n, amount in session.execute(stmt):
            if kind == "deal":
                loads[owner] += max(float(amount or 0), 0.0) / amount_per_point
            else:
                loads[owner] += points_per_case * int(n)
    return loads


# ---- risk features ----------------------------------------------------------------------------
# What risk (app/risk, a higher layer) reads of the book, one grouped query per batch of clients, and what the access
# decision reads to resolve a record to its client (or, client-less, its owner).


@dataclass(frozen=True, slots=True)
class ClientBook:
    """One client's records as risk factors. Amounts are summed in `base_currency` only (mixing currencies without
    rates would be wrong); records with an amount in another currency are counted in `*_other_currency` instead.
    `cases` / `contracts` count records of that kind in any status: whether the book, not the client's own field,
    knows the client's cases and renewals."""

    open_deals: int = 0
    open_deal_amount: float = 0.0
    open_deals_other_currency: int = 0
    cases: int = 0
    open_cases: int = 0
    overdue_invoices: int = 0
    overdue_amount: float = 0.0
    overdue_other_currency: int = 0
    contracts: int = 0
    next_renewal_at: dt.datetime | None = None


def client_books(
    session: Session, clients: Sequence[str] | AnySelect, *, now: dt.datetime, base_currency: str
) -> dict[str, ClientBook]:
    """Per client (a list of ids, or a statement of them) with at least one record: open deals and their amount,
    open and all cases, overdue invoices (open, due before `now`) and their amount, and the nearest renewal (the
    earliest due time, from `now` on, of an open contract). One GROUP BY query, whatever the number of clients."""
    r = Record
    is_open = r.status == "open"
    base = r.currency == base_currency
    deal = and_(r.kind == "deal", is_open)
    overdue = and_(r.kind == "invoice", is_open, r.due_at < literal(now, UTCDateTime))
    renewal = and_(r.kind == "contract", is_open, r.due_at >= literal(now, UTCDateTime))

    def count(cond: ColumnElement[bool]) -> Any:
        return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)

    def amount(cond: ColumnElement[bool]) -> Any:
        # As a float: risk takes a logarithm of it, and a float's aggregate state is a fraction of a numeric's (the
        # grouping of 100k clients stays in memory).
        return func.coalesce(func.sum(case((and_(cond, base), sql_cast(r.amount, Float)), else_=None)), 0.0)

    elsewhere = and_(r.amount.is_not(None), r.currency != base_currency)
    where: ColumnElement[bool]
    if not isinstance(clients, Sequence):
        where = r.client_id.in_(clients)
    elif _on_pg(session):
        # = ANY(array) at any size: the planner then knows how many ids there are. A JSON list (`among` from 5,000)
        # is estimated at 100 rows, which made 100k ids 100k index probes (measured on 100k clients with 500k
        # records: 5.2 s for the whole call this way, 7.1 s with `among`; 10k: 0.43 s against 0.64 s).
        where = r.client_id == any_(bindparam(None, list(clients), type_=postgresql.ARRAY(String)))
    else:
        where = among(session, r.client_id, clients)
    # Only the rows any aggregate reads: tasks, meetings, projects, … and closed deals and invoices never count.
    wanted = or_(r.kind.in_(("case", "contract")), and_(r.kind.in_(("deal", "invoice")), is_open))
    stmt = (
        select(
            r.client_id,
            count(deal),
            amount(deal),
            count(and_(deal, elsewhere)),
            count(r.kind == "case"),
            count(and_(r.kind == "case", is_open)),
            count(overdue),
            amount(overdue),
            count(and_(overdue, elsewhere)),
            count(r.kind == "contract"),
            func.min(case((renewal, r.due_at), else_=None), type_=UTCDateTime),
        )
        .where(where, wanted)
        .group_by(r.client_id)
    )
    # all(): one fetch of every row (iterating the result fetches them one by one).
    return {row[0]: ClientBook(*row[1:]) for row in session.connection().execute(stmt).all()}


class RecordHolder(NamedTuple):
    client_id: str | None
    owner_id: str


def record_holders(conn: Session | Connection, refs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], RecordHolder]:
    """(kind, external_id) → the record's client and owner, for the records that exist (one query); what the access
    decision needs to decide a record as its client (or, client-less, as its owner's)."""
    if not refs:
        return {}
    r = Record
    if len(refs) == 1:
        where = and_(r.kind == refs[0][0], r.external_id == refs[0][1])
    else:
        where = tuple_(r.kind, r.external_id).in_(list(dict.fromkeys(refs)))
    stmt = select(r.kind, r.external_id, r.client_id, r.owner_id).where(where)
    return {(k, e): RecordHolder(c, o) for k, e, c, o in conn.execute(stmt)}
