"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.core.auth import OpsRead
from app.core.db import Database
from app.core.errors import problem_responses
from app.core.metrics import mark_dead_processes
from app.ops.errors import NotReady

router = APIRouter(tags=["ops"])


class Health(BaseModel):
    status: str = Field(description="ok when the process (or the database, for readiness) answers.")


@router.get("/healthz", name="ops-healthz", summary="Liveness: the process answers", response_model=Health)
async def healthz() -> Health:
    return Health(status="ok")


def _ping(db: Database) -> None:
    with db.engine.connect() as conn:
        conn.execute(text("SELECT 1"))


@router.get(
    "/readyz",
    name="ops-readyz",
    summary="Readiness: the database is reachable",
    response_model=Health,
    responses=problem_responses(503, errors=[NotReady]),
)
def readyz(request: Request) -> Health:
    try:
        _ping(request.app.state.db)
    except SQLAlchemyError as exc:
        raise NotReady("The database is unreachable.", headers={"Retry-After": "5"}) from exc
    return Health(status="ok")


@router.get(
    "/metrics",
    name="ops-metrics",
    summary="Prometheus metrics: requests, latency, database pool",
    response_class=Response,
    responses={
        200: {
            "content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}},
            "description": "Prometheus text format.",
        },
        **problem_responses(401, 403),
    },
)
def metrics(request: Request, principal: OpsRead) -> Response:
    # Not async: the queue gauges query the database, and in multiprocess mode every worker's files are read.
    mark_dead_processes()
    return Response(generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST)
