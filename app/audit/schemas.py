from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class AuditEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int = Field(description="Position in the chain, starting at 1.")
    occurred_at: dt.datetime = Field(description="When the change happened (UTC).")
    actor: str = Field(description="Who made the change: role and token subject, or a system process.")
    action: str = Field(description="What was done, e.g. employee.upserted.")
    entity_type: str = Field(description="The kind of object changed.")
    entity_id: str = Field(description="The id of the object changed.")
    data: dict[str, Any] = Field(description="The change's details.")
    prev_hash: str = Field(description="The previous entry's hash (64 zeros for the first).")
    hash: str = Field(description="SHA-256 over prev_hash and this entry's canonical JSON.")


class ChainBreak(BaseModel):
    seq: int = Field(description="The first entry whose link does not verify.")
    reason: str = Field(description="Why it does not verify.")


class CheckpointOut(BaseModel):
    id: int = Field(description="The checkpoint's id (also in its `audit.checkpoint` event).")
    seq: int = Field(description="The head entry it signed.")
    head_hash: str = Field(description="That entry's hash, as signed.")
    count: int = Field(description="How many entries the log held up to that head.")
    taken_at: dt.datetime = Field(description="When it was signed.")
    key_id: str = Field(description="The Ed25519 key that signed it.")
    verified: bool = Field(description="The signer walked the chain up to this head before signing.")
    reason: str = Field(description="What took it: the worker, or a batch of handovers (joint plan, approval).")


class CheckpointError(BaseModel):
    checkpoint: int = Field(description="The checkpoint's id.")
    seq: int = Field(description="The head entry it signed.")
    reason: str = Field(description="Why it does not hold: a bad signature or key, or a log that disagrees.")


class AuditVerification(BaseModel):
    ok: bool = Field(description="True when every entry checked verifies and every checkpoint checked holds.")
    count: int = Field(
        description="How many entries verify: those up to the verified checkpoint the walk started from, plus "
        "those walked, up to the first break."
    )
    total: int = Field(description="How many entries the log holds.")
    head_hash: str | None = Field(description="The newest entry's hash; anchor it elsewhere to detect truncation.")
    first_broken: ChainBreak | None = Field(
        description="The first broken entry, or null: edited, deleted or reordered entries, entries missing after "
        "a checkpoint's head (truncation), or hashes recomputed before a checkpoint."
    )
    anchored: bool = Field(
        description="True when the latest checkpoint is signed by a trusted key and the log still holds its head: "
        "everything up to it is anchored. False without a signing key or checkpoint."
    )
    checkpoint: CheckpointOut | None = Field(description="The latest checkpoint, or null.")
    verified_from: int = Field(
        description="The walk started after this seq, the head of the last verified checkpoint (0: from the first "
        "entry)."
    )
    verified_entries: int = Field(description="How many entries this call read and hashed.")
    unanchored: int = Field(
        description="Entries after the latest checkpoint that holds: no signature covers them yet, so an entry "
        "appended or rewritten there by a database writer cannot be told apart until the next checkpoint."
    )
    checkpoints_checked: int = Field(description="How many checkpoints' signatures and heads were checked.")
    checkpoint_errors: list[CheckpointError] = Field(description="Every checkpoint checked that does not hold.")
    full: bool = Field(description="True when the walk started from the first entry.")
