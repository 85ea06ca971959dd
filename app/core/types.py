"""Constrained types shared by request schemas."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator

EXTERNAL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,99}$"
LOCALE_PATTERN = r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$"

ExternalId = Annotated[
    str,
    StringConstraints(pattern=EXTERNAL_ID_PATTERN),
    Field(description="The id of the record in the CRM/HR system: letters, digits and . _ : @ -, at most 100."),
]
Locale = Annotated[
    str,
    StringConstraints(pattern=LOCALE_PATTERN),
    Field(description="A BCP 47 language tag, e.g. en, zh-CN.", examples=["zh-CN"]),
]
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]

EARLIEST = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(2200, 1, 1, tzinfo=dt.UTC)


def _in_range(value: dt.datetime) -> dt.datetime:
    """Far-off times overflow when converted to UTC for storage; refuse them like far-off dates."""
    if not (EARLIEST <= value <= LATEST):
        raise ValueError("times must lie between 1900 and 2200")
    return value


UtcTime = Annotated[AwareDatetime, AfterValidator(_in_range)]


class InputModel(BaseModel):
    """Base of request bodies: unknown fields are refused, and so is NUL, which PostgreSQL cannot store."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        texts = value if isinstance(value, list) else [value]
        if any(isinstance(t, str) and "\x00" in t for t in texts):
            raise ValueError("text must not contain NUL (U+0000) characters")
        return value
