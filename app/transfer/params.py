"""The path parameters every handover route shares (the workflow's router and its sub-packages' routers)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

HandoverId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The handover id.")]
ItemId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The item id.")]
