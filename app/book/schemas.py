"""Records as the CRM sends and reads them."""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator

from app.core.types import ExternalId, InputModel, UtcTime

RecordKind = Literal["deal", "task", "case", "meeting", "contract", "invoice", "project", "automation", "other"]
RecordStatus = Literal["open", "closed"]

BATCH_MAX = 1000
ATTRIBUTES_MAX_BYTES = 8192
ATTRIBUTES_MAX_DEPTH = 4
ATTRIBUTES_MAX_KEYS = 100
URL_MAX = 2000
# http(s) only, a host, then RFC 3986 characters: a link for people to follow, never fetched by the service.
URL_PATTERN = r"^https?://[A-Za-z0-9]([A-Za-z0-9.-]{0,252})(:[0-9]{1,5})?([/?#][A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]*)?$"

Url = Annotated[
    str,
    StringConstraints(max_length=URL_MAX, pattern=URL_PATTERN),
    Field(description="A link into the CRM or document store: http or https only (never fetched)."),
]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]

STATUS_DESCRIPTION = (
    "open or closed. Per kind, closed means: a deal won or lost, a task done, a case resolved or closed, a meeting "
    "held or cancelled, a contract ended, an invoice paid or void, a project finished, an automation switched off; "
    "`stage` says which (won, lost, done, …). Only open records follow a client to its new owner."
)


def _check_attributes(value: Any, depth: int, where: str) -> None:
    if isinstance(value, dict):
        if depth >= ATTRIBUTES_MAX_DEPTH:
            raise ValueError(f"attributes nest at most {ATTRIBUTES_MAX_DEPTH} levels deep ({where})")
        if len(value) > ATTRIBUTES_MAX_KEYS:
            raise ValueError(f"at most {ATTRIBUTES_MAX_KEYS} keys per object ({where})")
        for key, item in value.items():
            if "\x00" in key:
                raise ValueError("text must not contain NUL (U+0000) characters")
            _check_attributes(item, depth + 1, f"{where}.{key}"[:200])
    elif isinstance(value, list):
        if depth >= ATTRIBUTES_MAX_DEPTH:
            raise ValueError(f"attributes nest at most {ATTRIBUTES_MAX_DEPTH} levels deep ({where})")
        for i, item in enumerate(value):
            _check_attributes(item, depth + 1, f"{where}[{i}]"[:200])
    elif isinstance(value, str):
        if "\x00" in value:
            raise ValueError("text must not contain NUL (U+0000) characters")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite")


class RecordIn(InputModel):
    """A record as the CRM knows it; PUT replaces the whole record."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=300, description="What the record is called in the CRM.")
    owner: ExternalId = Field(description="The owning employee's external id; must exist.")
    client: ExternalId | None = Field(
        None, description="The client it belongs to (must exist); none for the owner's own records (an automation)."
    )
    status: RecordStatus = Field("open", description=STATUS_DESCRIPTION)
    stage: str | None = Field(None, min_length=1, max_length=100, description="The CRM's stage or outcome text.")
    due_at: UtcTime | None = Field(None, description="When it is due, closes or takes place (UTC).")
    amount: float | None = Field(None, ge=-1e13, le=1e13, description="Value (deals, contracts, invoices).")
    currency: Currency | None = Field(
        None, validate_default=True, description="ISO 4217 code, e.g. EUR; required with `amount`."
    )
    progress: int | None = Field(None, ge=0, le=100, description="Percent done, 0–100 (tasks, projects).")
    url: Url | None = None
    attributes: dict[str, Any] = Field(
        default_factory=dict,
        max_length=ATTRIBUTES_MAX_KEYS,
        description=f"Further CRM fields, as JSON: at most {ATTRIBUTES_MAX_BYTES} bytes, "
        f"{ATTRIBUTES_MAX_DEPTH} levels deep and {ATTRIBUTES_MAX_KEYS} keys per object.",
    )

    @field_validator("currency")
    @classmethod
    def _currency_with_amount(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("amount") is not None:
            raise ValueError("a currency is required with an amount")
        return value

    @field_validator("attributes")
    @classmethod
    def _bounded(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_attributes(value, 0, "attributes")
        size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
        if size > ATTRIBUTES_MAX_BYTES:
            raise ValueError(f"attributes take at most {ATTRIBUTES_MAX_BYTES} bytes as JSON ({size} given)")
        return value


class RecordBatchItem(RecordIn):
    kind: RecordKind = Field(description="deal, task, case, meeting, contract, invoice, project, automation, other.")
    external_id: ExternalId


class RecordBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[RecordBatchItem] = Field(min_length=1, max_length=BATCH_MAX, description="At most 1,000 rows.")


class RecordKey(BaseModel):
    kind: RecordKind
    external_id: str


class RecordBatchResult(BaseModel):
    created: int = Field(description="Rows that did not exist before.")
    updated: int = Field(description="Rows that existed and were replaced.")
    records: list[RecordKey] = Field(description="The records written, in request order.")


class RecordOut(BaseModel):
    kind: RecordKind
    external_id: str
    title: str
    owner: str
    client: str | None
    status: RecordStatus
    stage: str | None
    due_at: dt.datetime | None
    amount: float | None
    currency: str | None
    progress: int | None
    url: str | None
    attributes: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime
