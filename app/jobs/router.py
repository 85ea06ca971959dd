from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse

from app.core.auth import HandoversWrite
from app.core.deps import DbSession
from app.core.errors import problem_responses
from app.core.http import RESPOND_ASYNC
from app.core.pagination import Page, Pagination, page_of
from app.jobs import service
from app.jobs.errors import JobNotFound
from app.jobs.models import Job
from app.jobs.schemas import JobFilter, JobKind, JobOut, JobState

router = APIRouter(tags=["jobs"])

JobId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The job id.")]


@router.get(
    "/v1/jobs/{job_id}",
    name="jobs-get",
    summary="Get a job: its state, progress, times, and its result or problem",
    description="A job started by `Prefer: respond-async` on POST /v1/handover-plans or /v1/simulations. Only the "
    "principal who started it (and admins) see it; anyone else gets 404.",
    response_model=JobOut,
    responses=problem_responses(401, 403, 404, 422, errors=[JobNotFound]),
)
def get_job(job_id: JobId, session: DbSession, principal: HandoversWrite) -> JobOut:
    return service.job_out(service.get(session, principal, job_id))


@router.get(
    "/v1/jobs",
    name="jobs-list",
    summary="List your jobs, newest first",
    description="The caller's own jobs (an admin's: everyone's).",
    response_model=Page[JobOut],
    responses=problem_responses(401, 403, 422),
)
def list_jobs(
    session: DbSession,
    principal: HandoversWrite,
    page: Pagination,
    state: Annotated[JobState | None, Query(description="Only jobs in this state.")] = None,
    kind: Annotated[JobKind | None, Query(description="Only jobs of this kind.")] = None,
) -> Page[JobOut]:
    rows = service.list_jobs(
        session, principal, JobFilter(state=state, kind=kind), limit=page.limit + 1, offset=page.offset
    )
    items, nxt = page_of(rows, page)
    return Page[JobOut](
        items=[service.job_out(j) for j in items], limit=page.limit, offset=page.offset, next_offset=nxt
    )


ACCEPTED_RESPONSE: dict[int | str, dict[str, Any]] = {
    202: {
        "model": JobOut,
        "description": "Accepted (`Prefer: respond-async`): a job a worker runs; poll its Location.",
        "headers": {
            "Location": {"description": "The job: /v1/jobs/{id}.", "schema": {"type": "string"}},
            "Preference-Applied": {"description": "respond-async (RFC 7240).", "schema": {"type": "string"}},
        },
    }
}
PREFER_DESCRIPTION = (
    "`respond-async` (RFC 7240) answers 202 with a job at once and runs the request in a worker; without it (or "
    "with any other preference) the request is answered synchronously as before."
)


def accepted(job: Job) -> JSONResponse:
    """The 202 answer to an asynchronous request: the job, where to poll it, and that the preference applied."""
    return JSONResponse(
        service.job_out(job).model_dump(mode="json"),
        status_code=202,
        headers={"Location": service.path_of(job.id), "Preference-Applied": RESPOND_ASYNC},
    )
