from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import AwareDatetime

from fastapi import APIRouter, Path, Query

from genrail_events.jobs import JobStatus, JobType
from genrail_commands.jobs import load_job

from genrail_readmodels import jobs as jobs_table

from .. import handlers
from ..deps import CurrentUser, DbDep, LogDep, SettingsDep, StorageDep
from ..errors import ApiError, NotFound
from ..media import present_job
from ..schemas import ERRORS, JobPage, JobPublic

router = APIRouter(prefix="/jobs", tags=["jobs"])
JobId = Annotated[uuid.UUID, Path(description="The job's id")]


async def find_job(db, log, job_id: str) -> dict | None:
    """The projection, or the log when the projection has not caught up (read-your-writes)."""
    if (row := await jobs_table.get_job(db, job_id)) is not None:
        return row
    job, _ = await load_job(log, job_id)
    return jobs_table.job_to_dict(job) if job else None


async def owned_job(db, log, job_id: str, user_id: str) -> dict:
    """The user's job; NotFound when there is none or it is another user's (the same answer)."""
    job = await find_job(db, log, job_id)
    if job is None or job["user_id"] != user_id:
        raise NotFound(f"job {job_id} not found")
    return job


@router.get("/{job_id}", response_model=JobPublic, responses={401: ERRORS[401], 404: ERRORS[404]},
            summary="One of your jobs")
async def get_job(job_id: JobId, user_id: CurrentUser, db: DbDep, log: LogDep, storage: StorageDep,
                  settings: SettingsDep) -> JobPublic:
    job = await owned_job(db, log, str(job_id), user_id)
    return JobPublic(**await present_job(job, storage, settings))


@router.get("", response_model=JobPage, responses={400: ERRORS[400], 401: ERRORS[401], 422: ERRORS[422]},
            summary="Your jobs, newest first")
async def list_jobs(user_id: CurrentUser, db: DbDep, storage: StorageDep, settings: SettingsDep,
                    status: Annotated[JobStatus | None, Query()] = None,
                    type: Annotated[JobType | None, Query()] = None,
                    created_after: Annotated[AwareDatetime | None, Query(
                        description="Only jobs created after this moment (ISO 8601 with a time zone)",
                        examples=["2026-11-30T00:00:00Z"])] = None,
                    created_before: Annotated[AwareDatetime | None, Query(
                        description="Only jobs created before this moment (ISO 8601 with a time zone)")] = None,
                    cursor: Annotated[str | None, Query(max_length=200)] = None,
                    limit: Annotated[int, Query(ge=1, le=200)] = 50) -> JobPage:
    try:
        items, next_cursor = await jobs_table.list_jobs(db, user_id=user_id, status=status, job_type=type,
                                                         cursor=cursor, limit=limit, created_after=created_after,
                                                         created_before=created_before)
    except jobs_table.BadCursor as exc:
        raise ApiError(str(exc)) from None
    return JobPage(items=[JobPublic(**await present_job(i, storage, settings)) for i in items],
                   next_cursor=next_cursor)


@router.post("/{job_id}/cancel", response_model=JobPublic,
             responses={401: ERRORS[401], 404: ERRORS[404], 409: ERRORS[409]},
             summary="Cancel a job that has not finished; its credits are refunded")
async def cancel_job(job_id: JobId, user_id: CurrentUser, log: LogDep) -> JobPublic:
    job, _ = await load_job(log, str(job_id))
    if job is None or job.user_id != user_id:
        raise NotFound(f"job {job_id} not found")
    canceled = await handlers.cancel_job(log, job)
    return JobPublic(**jobs_table.job_to_dict(canceled))
