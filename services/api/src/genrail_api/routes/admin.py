"""Operators' routes: retry failed jobs, correct balances, look at anyone's jobs. Every route
needs `Authorization: Bearer <ADMIN_TOKEN>`; with no ADMIN_TOKEN configured they answer 403."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, Field, StrictInt, field_validator

from genrail_events.jobs import JobStatus, JobType
from genrail_events.ledger import InsufficientCredits

from genrail_commands.jobs import load_job
from genrail_readmodels import jobs as jobs_table

from .. import handlers
from ..deps import AdminDep, DbDep, LogDep, require_admin
from ..errors import ApiError, Conflict, NotFound
from ..schemas import ERRORS, PAYMENT_REQUIRED, ErrorBody, JobPublic, Strict
from .generate import replayed

AUTH_ERRORS: dict[int | str, dict] = {
    401: {"model": ErrorBody, "description": "Missing or wrong admin token"},
    403: {"model": ErrorBody, "description": "The admin API is disabled (no ADMIN_TOKEN configured)"},
}
router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)],
                   responses=AUTH_ERRORS)
JobId = Annotated[uuid.UUID, Path(description="The job's id")]
UserId = Annotated[uuid.UUID, Path(description="The user's id")]


class AdminJob(JobPublic):
    user_id: str


class AdminJobPage(BaseModel):
    items: list[AdminJob]
    next_cursor: str | None = Field(None, description="Pass as `cursor` to get the next page; null at the end")


class AdjustmentCreate(Strict):
    amount: StrictInt = Field(ge=-1_000_000, le=1_000_000, examples=[25],
                              description="Credits to add (positive) or take away (negative); never below zero")
    reason: str = Field(min_length=1, max_length=500, examples=["goodwill: outage on 2024-05-01"])
    idempotency_key: str | None = Field(None, min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$",
                                        description="The same key applies the adjustment once, however often sent")

    @field_validator("amount")
    @classmethod
    def non_zero(cls, amount: int) -> int:
        if amount == 0:
            raise ValueError("must not be zero")
        return amount


class AdjustmentPublic(BaseModel):
    adjustment_id: str
    user_id: str
    amount: int
    reason: str
    balance: int = Field(description="The balance right after this adjustment")


@router.post("/jobs/{job_id}/retry", status_code=202, response_model=AdminJob,
             responses={**PAYMENT_REQUIRED, 404: ERRORS[404], 409: ERRORS[409]},
             summary="Retry a failed or expired job: charges its cost again and re-enqueues it as a new attempt")
async def retry_job(job_id: JobId, admin: AdminDep, log: LogDep) -> AdminJob:
    try:
        job = await handlers.retry_job(log, str(job_id), requested_by=admin)
    except handlers.JobNotFound as exc:
        raise NotFound(str(exc)) from None
    return AdminJob(**jobs_table.job_to_dict(job))


@router.post("/jobs/{job_id}/cancel", response_model=AdminJob, responses={404: ERRORS[404], 409: ERRORS[409]},
             summary="Cancel any user's job that has not finished; its credits are refunded")
async def cancel_job(job_id: JobId, admin: AdminDep, log: LogDep) -> AdminJob:
    job, _ = await load_job(log, str(job_id))
    if job is None:
        raise NotFound(f"job {job_id} not found")
    return AdminJob(**jobs_table.job_to_dict(await handlers.cancel_job(log, job, by="admin")))


async def adjust(log, user_id: str, body: AdjustmentCreate) -> handlers.Adjustment:
    """The adjustment, or the API's answer to why not (the admin routes and the studio's admin page)."""
    try:
        return await handlers.adjust_credits(log, user_id, body.amount, body.reason, body.idempotency_key)
    except handlers.UserNotFound as exc:
        raise NotFound(str(exc)) from None
    except handlers.IdempotencyKeyReused as exc:
        raise Conflict(str(exc)) from None
    except InsufficientCredits as exc:
        raise Conflict(f"an adjustment of {body.amount} would take the balance ({exc.balance}) "
                       "below zero") from None


@router.post("/users/{user_id}/credits", status_code=201, response_model=AdjustmentPublic,
             responses={404: ERRORS[404], 409: ERRORS[409], 422: ERRORS[422]},
             summary="Add or take away a user's credits, with the reason, as an adjustment in the ledger")
async def adjust_credits(user_id: UserId, body: AdjustmentCreate, log: LogDep,
                         response: Response) -> AdjustmentPublic:
    adjustment = await adjust(log, str(user_id), body)
    if adjustment.replayed:
        response.status_code = 200
        replayed(response)
    return AdjustmentPublic(adjustment_id=adjustment.adjustment_id, user_id=adjustment.user_id,
                            amount=adjustment.amount, reason=adjustment.reason, balance=adjustment.balance_after)


@router.get("/jobs", response_model=AdminJobPage, responses={400: ERRORS[400], 422: ERRORS[422]},
            summary="Any user's jobs, newest first, filtered by status, type and user")
async def list_jobs(db: DbDep,
                    status: Annotated[JobStatus | None, Query()] = None,
                    type: Annotated[JobType | None, Query()] = None,
                    user: Annotated[uuid.UUID | None, Query(description="Only this user's jobs")] = None,
                    cursor: Annotated[str | None, Query(max_length=200)] = None,
                    limit: Annotated[int, Query(ge=1, le=200)] = 50) -> AdminJobPage:
    try:
        items, next_cursor = await jobs_table.list_jobs(db, user_id=str(user) if user else None, status=status,
                                                         job_type=type, cursor=cursor, limit=limit)
    except jobs_table.BadCursor as exc:
        raise ApiError(str(exc)) from None
    return AdminJobPage(items=[AdminJob(**i) for i in items], next_cursor=next_cursor)
