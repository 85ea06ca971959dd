"""The hash chain, pure: each entry's hash covers the previous hash and the entry's canonical JSON."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

GENESIS_HASH = "0" * 64


def _default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return format_time(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"not JSON-serialisable in an audit entry: {type(value).__name__}")


def format_time(value: dt.datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("audit times must be timezone-aware")
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_default)


def normalise(data: Mapping[str, Any]) -> dict[str, Any]:
    """What the database will give back: JSON round-tripped, so the hash is stable after storage."""
    result: dict[str, Any] = json.loads(canonical_json(dict(data)))
    return result


@dataclass(frozen=True)
class EntryContent:
    seq: int
    occurred_at: dt.datetime
    actor: str
    action: str
    entity_type: str
    entity_id: str
    data: Mapping[str, Any]


def entry_hash(prev_hash: str, entry: EntryContent) -> str:
    body = canonical_json(
        {
            "seq": entry.seq,
            "occurred_at": format_time(entry.occurred_at),
            "actor": entry.actor,
            "action": entry.action,
            "entity_type": entry.entity_type,
            "entity_id": entry.entity_id,
            "data": entry.data,
        }
    )
    return hashlib.sha256((prev_hash + "\n" + body).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class StoredEntry:
    content: EntryContent
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class Break:
    seq: int
    reason: str


def verify(
    entries: Iterable[StoredEntry], *, expected_prev: str = GENESIS_HASH, expected_seq: int = 1
) -> tuple[int, Break | None]:
    """Walks entries in seq order; returns how many were checked and the first break, if any."""
    count = 0
    prev = expected_prev
    seq = expected_seq
    for stored in entries:
        count += 1
        c = stored.content
        if c.seq != seq:
            return count, Break(
                seq=c.seq,
                reason=f"sequence gap: expected {seq}, found {c.seq} (an entry was deleted)",
            )
        if stored.prev_hash != prev:
            return count, Break(seq=c.seq, reason="prev_hash does not match the previous entry's hash")
        if entry_hash(prev, c) != stored.hash:
            return count, Break(seq=c.seq, reason="hash does not match the entry's content (the entry was edited)")
        prev = stored.hash
        seq += 1
    return count, None
