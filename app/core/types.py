"""Constrained types shared by request schemas."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

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
