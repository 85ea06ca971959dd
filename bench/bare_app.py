"""The HTTP baselines: a bare FastAPI endpoint, and a bare FastAPI primary-key read on the bench's database.

Same body as `POST /v1/access/check`, same engine settings (`app.core.db.make_engine`), no auth, no service:
what FastAPI + SQLAlchemy cost at the least for one request and one indexed read.
Run: `uvicorn bench.bare_app:create_app --factory` with HANDOVER_DATABASE_URL set.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy import text

from app.core.config import Settings
from app.core.db import make_engine


class Body(BaseModel):
    employee: str
    client: str
    action: str


def create_app() -> FastAPI:
    settings = Settings()
    engine = make_engine(settings)
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    read = text("SELECT external_id, sensitivity, owner_id FROM client WHERE external_id = :id")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/bare")
    async def bare(body: Body) -> dict[str, Any]:
        return {"employee": body.employee, "client": body.client, "allowed": True}

    @app.post("/pk")
    def pk(body: Body) -> dict[str, Any]:
        with engine.connect() as conn:
            row = conn.execute(read, {"id": body.client}).first()
        return {"client": body.client, "found": row is not None, "owner": row[2] if row else None}

    return app
