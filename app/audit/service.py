"""The audit log: every change in every module is recorded here, in the caller's transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session

from app.audit import chain
from app.audit.models import AuditEntry

# Any constant works; it only has to be the same for every writer of the chain.
CHAIN_LOCK_KEY = 0x48414E44  # "HAND"
_TAIL_KEY = "audit_tail"


@dataclass(frozen=True)
class Change:
    actor: str
    action: str
    entity_type: str
    entity_id: str
    data: Mapping[str, Any]


def _tail(session: Session) -> tuple[int, str]:
    """The chain head, locked for this transaction; cached so a transaction locks once."""
    txn = session.get_transaction()
    cached = session.info.get(_TAIL_KEY)
    if cached is not None and cached[0] is txn:
        return cached[1], cached[2]
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": CHAIN_LOCK_KEY})
    # SQLite: writer sessions begin IMMEDIATE, which already serialises writers.
    row = session.execute(select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)).first()
    return (row[0], row[1]) if row else (0, chain.GENESIS_HASH)


def record_many(session: Session, changes: Sequence[Change], *, at: dt.datetime) -> int:
    """Appends entries in one INSERT; returns the last seq."""
    if not changes:
        return _tail(session)[0]
    seq, prev = _tail(session)
    rows = []
    for change in changes:
        seq += 1
        content = chain.EntryContent(
            seq=seq,
            occurred_at=at,
            actor=change.actor,
            action=change.action,
            entity_type=change.entity_type,
            entity_id=change.entity_id,
            data=chain.normalise(change.data),
        )
        digest = chain.entry_hash(prev, content)
        rows.append(
            {
                "seq": seq,
                "occurred_at": at,
                "actor": content.actor,
                "action": content.action,
                "entity_type": content.entity_type,
                "entity_id": content.entity_id,
                "data": content.data,
                "prev_hash": prev,
                "hash": digest,
            }
        )
        prev = digest
    session.execute(insert(AuditEntry), rows)
    session.info[_TAIL_KEY] = (session.get_transaction(), seq, prev)
    return seq


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    entity_type: str,
    entity_id: str,
    data: Mapping[str, Any],
    at: dt.datetime,
) -> int:
    return record_many(session, [Change(actor, action, entity_type, entity_id, data)], at=at)


@dataclass(frozen=True)
class AuditFilter:
    entity_type: str | None = None
    entity_id: str | None = None
    actor: str | None = None
    action: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None


def list_entries(session: Session, flt: AuditFilter, *, limit: int, offset: int) -> list[AuditEntry]:
    stmt = select(AuditEntry)
    if flt.entity_type:
        stmt = stmt.where(AuditEntry.entity_type == flt.entity_type)
    if flt.entity_id:
        stmt = stmt.where(AuditEntry.entity_id == flt.entity_id)
    if flt.actor:
        stmt = stmt.where(AuditEntry.actor == flt.actor)
    if flt.action:
        stmt = stmt.where(AuditEntry.action == flt.action)
    if flt.since:
        stmt = stmt.where(AuditEntry.occurred_at >= flt.since)
    if flt.until:
        stmt = stmt.where(AuditEntry.occurred_at < flt.until)
    stmt = stmt.order_by(AuditEntry.seq.desc()).limit(limit).offset(offset)
    return list(session.scalars(stmt))


def _stored(session: Session, batch: int = 5000) -> Iterator[chain.StoredEntry]:
    last = 0
    while True:
        rows = session.scalars(
            select(AuditEntry).where(AuditEntry.seq > last).order_by(AuditEntry.seq).limit(batch)
        ).all()
        if not rows:
            return
        for r in rows:
            yield chain.StoredEntry(
                content=chain.EntryContent(
                    seq=r.seq,
                    occurred_at=r.occurred_at,
                    actor=r.actor,
                    action=r.action,
                    entity_type=r.entity_type,
                    entity_id=r.entity_id,
                    data=r.data,
                ),
                prev_hash=r.prev_hash,
                hash=r.hash,
            )
        last = rows[-1].seq
        session.expunge_all()


@dataclass(frozen=True)
class Verification:
    ok: bool
    count: int
    total: int
    head_hash: str | None
    first_broken: chain.Break | None


def verify(session: Session) -> Verification:
    total = session.scalar(select(func.count()).select_from(AuditEntry)) or 0
    count, broken = chain.verify(_stored(session))
    head = session.scalar(select(AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1))
    return Verification(ok=broken is None, count=count, total=total, head_hash=head, first_broken=broken)
