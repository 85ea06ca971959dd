from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.core.errors import Problem

JobState = Literal["queued", "running", "succeeded", "failed"]
JobKind = Literal["handover-plans", "simulations"]


class JobProblem(Problem):
    """Why the job failed: the problem document the synchronous request would have answered."""

    model_config = ConfigDict(extra="allow")


class JobOut(BaseModel):
    """A long request run by a worker (`Prefer: respond-async`). Poll `GET /v1/jobs/{id}` until `state` is
    `succeeded` (read `result`) or `failed` (read `problem`)."""

    id: int = Field(description="The job id.")
    kind: JobKind = Field(description="The operation: `handover-plans` (POST /v1/handover-plans) or `simulations`.")
    state: JobState = Field(description="queued → running → succeeded or failed.")
    progress: float = Field(
        ge=0,
        le=1,
        description="0 until the job ends, 1 when it has (the solver reports no partial progress).",
    )
    attempts: int = Field(description="Runs started: more than 1 when a worker died and its lease expired.")
    created_by: str = Field(description="Who asked (role:sub).")
    created_at: dt.datetime = Field(description="When it was asked for (UTC).")
    started_at: dt.datetime | None = Field(description="When a worker first started it (UTC).")
    finished_at: dt.datetime | None = Field(description="When it succeeded or failed (UTC).")
    location: str = Field(description="This resource's path.")
    result: dict[str, Any] | None = Field(
        description="The body the synchronous request would have answered (PlanBatchOut for handover-plans, "
        "SimulationOut for simulations), once succeeded."
    )
    problem: JobProblem | None = Field(
        description="The problem the synchronous request would have answered, once failed."
    )


class JobFilter(BaseModel):
    state: JobState | None = None
    kind: JobKind | None = None
