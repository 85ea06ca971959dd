"""The audit log: every change in every module is recorded here, in the caller's transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session, aliased

from app.audit import anchor, chain
from app.audit.models import AuditCheckpoint, AuditEntry
from app.core.config import Settings
from app.core.keys import load_private_key, load_public_keys

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


def _stored(session: Session, *, after: int = 0, batch: int = 5000) -> Iterator[chain.StoredEntry]:
    last = after
    while True:
        rows = session.execute(
            select(
                AuditEntry.seq,
                AuditEntry.occurred_at,
                AuditEntry.actor,
                AuditEntry.action,
                AuditEntry.entity_type,
                AuditEntry.entity_id,
                AuditEntry.data,
                AuditEntry.prev_hash,
                AuditEntry.hash,
            )
            .where(AuditEntry.seq > last)
            .order_by(AuditEntry.seq)
            .limit(batch)
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


# ---- checkpoints --------------------------------------------------------------------------------


def keyring(settings: Settings | None) -> anchor.Keyring:
    """The signing key and the trusted public keys from settings (validated when the settings were read)."""
    if settings is None:
        return anchor.keyring(None, [])
    private = settings.audit_private_key_text
    signer = load_private_key(private) if private is not None else None
    return anchor.keyring(signer, load_public_keys(settings.audit_trusted_public_keys or ""))


@dataclass(frozen=True)
class Checkpoint:
    id: int
    claims: anchor.Claims
    signature: str

    def event(self) -> dict[str, Any]:
        """The `audit.checkpoint` payload: the claims, the signature and the exact text signed, so that a receiver
        can keep and check it without this service (and without its database)."""
        c = self.claims
        return {
            "checkpoint_id": self.id,
            "seq": c.seq,
            "head_hash": c.head_hash,
            "count": c.count,
            "taken_at": chain.format_time(c.at),
            "key_id": c.key_id,
            "verified": c.verified,
            "reason": c.reason,
            "signature": self.signature,
            "signed": anchor.message(c),
        }


def _checkpoint_of(row: AuditCheckpoint) -> Checkpoint:
    claims = anchor.Claims(
        seq=row.seq,
        head_hash=row.head_hash,
        count=row.entry_count,
        at=row.taken_at,
        key_id=row.key_id,
        verified=row.verified,
        reason=row.reason,
    )
    return Checkpoint(id=row.id, claims=claims, signature=row.signature)


def checkpoint(
    session: Session,
    settings: Settings,
    *,
    now: dt.datetime,
    reason: str,
    head: tuple[int, str] | None = None,
    verified: bool = False,
) -> Checkpoint | None:
    """Signs the chain head and stores the checkpoint; None without a signing key or without entries.

    Without `head`, the head is read under the chain lock (after `record_many` in this transaction: the head it
    wrote). `head` with `verified` is the last entry a verification walk reached: the signer vouches for the walk.
    """
    ring = keyring(settings)
    signer_id = ring.signer_id
    if signer_id is None:
        return None
    seq, digest = head if head is not None else _tail(session)
    if seq == 0:
        return None
    # Seqs are dense from 1 (the chain's own check), so the head's seq is the number of entries it covers.
    claims = anchor.Claims(
        seq=seq, head_hash=digest, count=seq, at=now, key_id=signer_id, verified=verified, reason=reason
    )
    row = AuditCheckpoint(
        seq=seq,
        head_hash=digest,
        entry_count=seq,
        taken_at=now,
        key_id=signer_id,
        verified=verified,
        reason=reason,
        signature=ring.sign(claims),
    )
    session.add(row)
    session.flush()
    return Checkpoint(id=row.id, claims=claims, signature=row.signature)


def _latest(session: Session, *, verified: bool = False) -> AuditCheckpoint | None:
    stmt = select(AuditCheckpoint)
    if verified:
        stmt = stmt.where(AuditCheckpoint.verified.is_(True))
    return session.scalars(stmt.order_by(AuditCheckpoint.seq.desc(), AuditCheckpoint.id.desc()).limit(1)).first()


def _head_seq(session: Session) -> int:
    return int(session.scalar(select(func.max(AuditEntry.seq))) or 0)


def checkpoint_due(session: Session, settings: Settings, *, now: dt.datetime) -> bool:
    """The worker's rule: the head moved since the last verified checkpoint, and either the interval has passed
    or enough entries were added."""
    if settings.audit_private_key_text is None:
        return False
    head = _head_seq(session)
    last = _latest(session, verified=True)
    if head == 0 or (last is not None and head <= last.seq):
        return False
    if last is None or head - last.seq >= settings.audit_checkpoint_every_entries:
        return True
    return now - last.taken_at >= dt.timedelta(seconds=settings.audit_checkpoint_interval_seconds)


# ---- verification -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointProblem:
    checkpoint: int
    seq: int
    reason: str


@dataclass(frozen=True)
class Verification:
    ok: bool
    count: int
    total: int
    head_hash: str | None
    first_broken: chain.Break | None
    anchored: bool = False
    checkpoint: Checkpoint | None = None
    verified_from: int = 0
    verified_entries: int = 0
    unanchored: int = 0
    checkpoints_checked: int = 0
    checkpoint_errors: list[CheckpointProblem] = field(default_factory=list)
    full: bool = True
    last_seq: int = 0
    last_hash: str = chain.GENESIS_HASH


def _hashes_at(session: Session, seqs: Sequence[int]) -> dict[int, str]:
    out: dict[int, str] = {}
    wanted = sorted(set(seqs))
    for i in range(0, len(wanted), 1000):
        for seq, digest in session.execute(
            select(AuditEntry.seq, AuditEntry.hash).where(AuditEntry.seq.in_(wanted[i : i + 1000]))
        ):
            out[seq] = digest
    return out


def _first_gap(session: Session, head: int) -> int | None:
    """The first missing seq below the head (an index scan, no hashing): entries deleted before where the walk
    started."""
    first = session.scalar(select(func.min(AuditEntry.seq)))
    if first is not None and first > 1:
        return 1
    a, b = aliased(AuditEntry), aliased(AuditEntry)
    gap = session.scalar(select(func.min(a.seq)).where(a.seq < head, ~select(b.seq).where(b.seq == a.seq + 1).exists()))
    return None if gap is None else int(gap) + 1


class _Walk:
    """The entries a verification reads, remembering the last one."""

    def __init__(self, entries: Iterator[chain.StoredEntry], seq: int, digest: str) -> None:
        self.entries = entries
        self.last = (seq, digest)

    def __iter__(self) -> Iterator[chain.StoredEntry]:
        for entry in self.entries:
            yield entry
            self.last = (entry.content.seq, entry.hash)


def verify(session: Session, settings: Settings | None = None, *, full: bool = False) -> Verification:
    """Checks the chain against its signed checkpoints, walking only the entries after the last verified one.

    Without trusted keys it walks the whole chain and checks no checkpoint (nothing could vouch for one). With
    them: the start must be a verified checkpoint whose signature holds and whose entry still has its hash (else
    the walk starts at the first entry and every checkpoint is checked); every later checkpoint must be signed by
    a trusted key, its entry must still have its hash (hashes recomputed after an edit) and exist (truncation);
    and the log must hold as many entries as its head's seq (deletions before the start). `full` walks
    everything: an entry edited in place before the last verified checkpoint (its stored hash left alone) is only
    found by a walk over it.
    """
    ring = keyring(settings)
    checked = bool(ring.trusted)
    start = None if full or not checked else _latest(session, verified=True)
    if start is not None and (
        ring.problem(_checkpoint_of(start).claims, start.signature) is not None
        or _hashes_at(session, [start.seq]).get(start.seq) != start.head_hash
    ):
        start = None  # the marker itself does not hold: trust nothing, walk and check everything
    considered: list[Checkpoint] = []
    if checked:
        stmt = select(AuditCheckpoint).order_by(AuditCheckpoint.seq, AuditCheckpoint.id)
        if start is not None:
            stmt = stmt.where(AuditCheckpoint.seq >= start.seq)
        considered = [_checkpoint_of(r) for r in session.scalars(stmt)]
    # One statement, one snapshot: entries committed meanwhile must not look like a gap.
    total, head_seq = map(int, session.execute(select(func.count(), func.coalesce(func.max(AuditEntry.seq), 0))).one())
    from_seq, from_hash = (start.seq, start.head_hash) if start is not None else (0, chain.GENESIS_HASH)
    walk = _Walk(_stored(session, after=from_seq), from_seq, from_hash)
    walked, broken = chain.verify(walk, expected_prev=from_hash, expected_seq=from_seq + 1)
    breaks = [broken] if broken is not None else []
    errors: list[CheckpointProblem] = []
    at = _hashes_at(session, [c.claims.seq for c in considered])
    matched = from_seq
    latest_good: Checkpoint | None = None
    for cp in considered:
        c = cp.claims
        problem = ring.problem(c, cp.signature)
        if problem is None and c.seq > head_seq:
            problem = f"the log ends at seq {head_seq} but this checkpoint signed seq {c.seq}: entries were deleted"
            breaks.append(
                chain.Break(
                    seq=head_seq + 1,
                    reason=f"entries {head_seq + 1}..{c.seq} are missing: checkpoint {cp.id} signed seq {c.seq}"
                    " (the log was truncated)",
                )
            )
        elif problem is None and c.seq not in at:
            problem = f"the entry at seq {c.seq} that this checkpoint signed is missing"
            breaks.append(chain.Break(seq=c.seq, reason=f"entry {c.seq}, signed by checkpoint {cp.id}, is missing"))
        elif problem is None and at[c.seq] != c.head_hash:
            problem = f"the entry at seq {c.seq} no longer has the hash this checkpoint signed"
            breaks.append(
                chain.Break(
                    seq=matched + 1,
                    reason=f"entries {matched + 1}..{c.seq} were rewritten: entry {c.seq} no longer has the hash "
                    f"checkpoint {cp.id} signed (an entry was changed and the later hashes recomputed)",
                )
            )
        if problem is not None:
            errors.append(CheckpointProblem(checkpoint=cp.id, seq=c.seq, reason=problem))
        else:
            matched = max(matched, c.seq)
            latest_good = cp
    if not breaks and total != head_seq:
        gap = _first_gap(session, head_seq)
        breaks.append(
            chain.Break(
                seq=gap or 1,
                reason=f"sequence gap: entry {gap} is missing (an entry was deleted)"
                if gap
                else f"the log holds {total} entries up to seq {head_seq}",
            )
        )
    first = min(breaks, key=lambda b: b.seq) if breaks else None
    latest = considered[-1] if considered else None
    head = session.scalar(select(AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1))
    return Verification(
        ok=first is None and not errors,
        count=from_seq + walked,
        total=total,
        head_hash=head,
        first_broken=first,
        anchored=latest is not None and latest is latest_good,
        checkpoint=latest,
        verified_from=from_seq,
        verified_entries=walked,
        unanchored=max(0, head_seq - (latest_good.claims.seq if latest_good is not None else 0)),
        checkpoints_checked=len(considered),
        checkpoint_errors=errors,
        full=start is None,
        last_seq=walk.last[0],
        last_hash=walk.last[1],
    )
