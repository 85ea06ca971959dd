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


class AuditVerification(BaseModel):
    ok: bool = Field(description="True when every entry verifies.")
    count: int = Field(description="How many entries were checked before stopping.")
    total: int = Field(description="How many entries the log holds.")
    head_hash: str | None = Field(description="The newest entry's hash; anchor it elsewhere to detect truncation.")
    first_broken: ChainBreak | None = Field(description="The first broken entry, or null.")
