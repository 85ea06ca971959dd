"""Limit/offset pagination with a hard maximum taken from settings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Generic, TypeVar

from fastapi import Depends, Query, Request
from pydantic import BaseModel, Field

from app.core.config import Settings
from app.core.errors import Unprocessable

T = TypeVar("T")

HARD_MAX_PAGE_SIZE = 1000
# The contract states the built-in defaults (HANDOVER_DEFAULT_PAGE_SIZE, HANDOVER_MAX_PAGE_SIZE); app/main.py puts
# the configured maximum into the schema's `maximum`.
LIMIT_DESCRIPTION = (
    f"Page size: {Settings.model_fields['default_page_size'].default} unless the service is configured otherwise;"
    f" at most {Settings.model_fields['max_page_size'].default} (the configured maximum)."
)
MAX_OFFSET = 10_000_000


@dataclass(frozen=True)
class PageParams:
    limit: int
    offset: int


def page_params(
    request: Request,
    limit: Annotated[
        int | None,
        Query(
            ge=1,
            le=HARD_MAX_PAGE_SIZE,
            description=LIMIT_DESCRIPTION,
        ),
    ] = None,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="How many items to skip.")] = 0,
) -> PageParams:
    settings = request.app.state.settings
    if limit is None:
        limit = settings.default_page_size
    if limit > settings.max_page_size:
        raise Unprocessable(
            f"limit must be at most {settings.max_page_size}.",
            errors=[
                {
                    "loc": ["query", "limit"],
                    "msg": f"at most {settings.max_page_size}",
                    "type": "less_than_equal",
                }
            ],
        )
    return PageParams(limit=limit, offset=offset)


Pagination = Annotated[PageParams, Depends(page_params)]


class Page(BaseModel, Generic[T]):
    """One page of a list; follow next_offset until it is null."""

    items: list[T] = Field(description="The items of this page.")
    limit: int = Field(description="The page size used.")
    offset: int = Field(description="The offset of the first item.")
    next_offset: int | None = Field(description="The offset of the next page, or null on the last page.")


def page_of(rows: Sequence[T], params: PageParams) -> tuple[list[T], int | None]:
    """Rows were fetched with limit+1: the extra row only says whether another page exists."""
    items = list(rows[: params.limit])
    nxt = params.offset + params.limit if len(rows) > params.limit else None
    return items, nxt
