"""Constrained types shared by request schemas."""

from __future__ import annotations

import datetime as dt
import functools
import re
from typing import Annotated, Any, get_args

from email_validator import SPECIAL_USE_DOMAIN_NAMES
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.networks import validate_email

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
# RFC 3339 date-times in the years 1900 to 2199: the contract states exactly what is accepted, so every time it
# allows is taken and every other one refused (pydantic alone would also take 0.5 or "1700000000" as Unix seconds).
TIME_PATTERN = (
    r"^(19[0-9]{2}|2[01][0-9]{2})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]"
    r":[0-5][0-9](\.[0-9]{1,6})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
TIME_RE = re.compile(TIME_PATTERN)


def _in_range(value: dt.datetime) -> dt.datetime:
    """Far-off times overflow when converted to UTC for storage; refuse them like far-off dates.

    The years 1900 to 2199 as written (before the offset is applied), which is what TIME_PATTERN says."""
    if not (EARLIEST <= value.replace(tzinfo=dt.UTC) < LATEST):
        raise ValueError("times must lie between 1900 and 2200")
    return value


def _iso_only(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value
    if not isinstance(value, str) or not TIME_RE.match(value):
        raise ValueError(
            "times must be RFC 3339 date-times with an offset, e.g. 2026-11-02T09:00:00Z (years 1900-2199)"
        )
    return value


UtcTime = Annotated[
    AwareDatetime,
    BeforeValidator(_iso_only),
    AfterValidator(_in_range),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": TIME_PATTERN}),
]

# Calendar dates, likewise: RFC 3339 full-date in the years 1900 to 2199 (pydantic would take 0 as 1970-01-01).
DATE_PATTERN = r"^(19[0-9]{2}|2[01][0-9]{2})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"
DATE_RE = re.compile(DATE_PATTERN)


def _iso_date_only(value: Any) -> Any:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if not isinstance(value, str) or not DATE_RE.match(value):
        raise ValueError("dates must be RFC 3339 full-dates, e.g. 2026-11-02 (years 1900-2199)")
    return value


CalendarDate = Annotated[
    dt.date,
    BeforeValidator(_iso_date_only),
    WithJsonSchema({"type": "string", "format": "date", "pattern": DATE_PATTERN}),
]

# Email addresses: exactly what pydantic's EmailStr accepts, with the same normalised value and the same errors,
# but the plain ASCII address (nearly every one) is checked by one regular expression instead of email_validator
# (which took three quarters of a client batch's validation). The fast path takes only addresses email_validator
# takes unchanged but for the domain's case: a dot-atom local part that RFC 2142 does not make case-insensitive,
# and a domain of LDH labels (no "--", so no Punycode) with a dot, a last label ending in a letter and no
# special-use name, 254 characters at most. Anything else goes to EmailStr's own validation.
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PLAIN_EMAIL_RE = re.compile(
    rf"[{_ATEXT}]+(?:\.[{_ATEXT}]+)*@(?:{_LABEL}\.)+(?:[A-Za-z0-9][A-Za-z0-9-]{{0,61}})?[A-Za-z]"
)
_EMAIL_MAX_LENGTH = 254
_CASE_INSENSITIVE_MAILBOXES = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)
_SPECIAL_USE_DOMAINS = tuple(SPECIAL_USE_DOMAIN_NAMES)


def _email(value: str) -> str:
    if len(value) <= _EMAIL_MAX_LENGTH and _PLAIN_EMAIL_RE.fullmatch(value):
        local, _, domain = value.partition("@")
        domain = domain.lower()
        if (
            "--" not in domain
            and local.lower() not in _CASE_INSENSITIVE_MAILBOXES
            and not any(domain == d or domain.endswith("." + d) for d in _SPECIAL_USE_DOMAINS)
        ):
            return f"{local}@{domain}"
    return validate_email(value)[1]


Email = Annotated[str, AfterValidator(_email), WithJsonSchema({"type": "string", "format": "email"})]


def _admits(annotation: Any, kinds: tuple[type, ...]) -> bool:
    return annotation in kinds or any(_admits(arg, kinds) for arg in get_args(annotation))


@functools.cache
def _numeric_keys(model: type[BaseModel]) -> tuple[str, ...]:
    """The input keys of fields that take numbers but not booleans."""
    return tuple(
        field.alias or name
        for name, field in model.model_fields.items()
        if _admits(field.annotation, (int, float)) and not _admits(field.annotation, (bool,))
    )


NO_NUL_PATTERN = "^[^\\x00]*$"


def _declare_no_nul(schema: dict[str, Any]) -> None:
    """Puts the NUL rule into the contract: texts without a pattern of their own get one that excludes U+0000."""
    if schema.get("type") == "string" and not {"pattern", "enum", "const"} & schema.keys():
        schema["pattern"] = NO_NUL_PATTERN
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in schema.get(key, []):
            _declare_no_nul(sub)
    if isinstance(schema.get("items"), dict):
        _declare_no_nul(schema["items"])


def _input_json_schema(schema: dict[str, Any], model: type[BaseModel]) -> None:
    for prop in schema.get("properties", {}).values():
        _declare_no_nul(prop)


class InputModel(BaseModel):
    """Base of request bodies: unknown fields are refused, and so is NUL, which PostgreSQL cannot store."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_input_json_schema)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_as_number(cls, data: Any) -> Any:
        """JSON true/false is not a number: pydantic would read it as 1/0 where the contract says integer."""
        if isinstance(data, dict):
            for key in _numeric_keys(cls):
                value = data.get(key)
                members = value.values() if isinstance(value, dict) else value if isinstance(value, list) else (value,)
                if any(m is True or m is False for m in members):
                    raise ValueError(f"{key}: true/false is not allowed here")
        return data

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # Runs for every field of every row: no list or generator built for the common case of one value.
        if isinstance(value, str):
            if "\x00" in value:
                raise ValueError("text must not contain NUL (U+0000) characters")
        elif isinstance(value, list):
            for text in value:
                if isinstance(text, str) and "\x00" in text:
                    raise ValueError("text must not contain NUL (U+0000) characters")
        return value
