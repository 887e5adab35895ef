"""/ (balance and recent jobs, live) and /history (every job, filtered and paged)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from fastapi import APIRouter, Request
from genrail_commands.accounts import load_account
from genrail_events.jobs import FINAL_STATUSES, JobStatus, JobType
from genrail_readmodels import jobs as jobs_table

from ..deps import DbDep, LogDep
from ..errors import ApiError, Unprocessable
from .auth import PageUser
from .problems import shows_errors
from .templating import render

router = APIRouter()
RECENT = 10
HISTORY_PAGE = 25


async def _recent(db, user_id: str) -> dict:
    items, _ = await jobs_table.list_jobs(db, user_id=user_id, status=None, job_type=None, cursor=None, limit=RECENT)
    return {"jobs": items, "live": any(JobStatus(j["status"]) not in FINAL_STATUSES for j in items)}


@router.get("/")
async def dashboard(request: Request, user_id: PageUser, db: DbDep, log: LogDep):
    account, _ = await load_account(log, user_id)
    return await render(request, "dashboard.html", {"balance": account.balance, **await _recent(db, user_id)})


@router.get("/fragments/recent-jobs")
async def recent_jobs(request: Request, user_id: PageUser, db: DbDep):
    return await render(request, "_recent_jobs.html", await _recent(db, user_id))


def _day(value: str, name: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise Unprocessable(f"{name}: {value!r} is not a date (YYYY-MM-DD)") from None


@router.get("/history")
@shows_errors
async def history(request: Request, user_id: PageUser, db: DbDep, type: str = "", status: str = "",
                  created_after: str = "", created_before: str = "", cursor: str = ""):
    if type and type not in JobType.__members__:
        raise Unprocessable(f"type: {type!r} is not a job type")
    if status and status not in JobStatus.__members__:
        raise Unprocessable(f"status: {status!r} is not a job status")
    after, before = _day(created_after, "created_after"), _day(created_before, "created_before")
    try:
        items, next_cursor = await jobs_table.list_jobs(
            db, user_id=user_id, status=status or None, job_type=type or None, cursor=cursor or None,
            limit=HISTORY_PAGE,
            # Whole days, in UTC: "after" the start of that day, "before" the end of that day.
            created_after=datetime.combine(after, time.min, UTC) if after else None,
            created_before=datetime.combine(before + timedelta(days=1), time.min, UTC) if before else None)
    except jobs_table.BadCursor as exc:
        raise ApiError(str(exc)) from None
    filters = {"type": type, "status": status, "created_after": created_after, "created_before": created_before}
    return await render(request, "history.html", {"jobs": items, "next_cursor": next_cursor, "filters": filters,
                                                  "types": list(JobType), "statuses": list(JobStatus)})
