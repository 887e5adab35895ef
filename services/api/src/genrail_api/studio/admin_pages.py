"""/admin, for ADMIN_EMAILS users: failed and expired jobs with retry, credit adjustments, and
the dead letters waiting for a decision, with redrive and discard (as `genrail dlq` does)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Literal

import nats.errors
import nats.js.errors

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse
from genrail_events.jobs import JobStatus
from genrail_commands import dead_letters
from genrail_eventlog.store import EventStore, connect
from genrail_readmodels import jobs as jobs_table

from .. import handlers
from ..deps import DbDep, LogDep
from ..errors import ApiError, NotFound
from ..routes.admin import AdjustmentCreate
from ..routes.admin import adjust as adjust_credits
from .auth import AdminUser, Csrf
from .problems import SHOWN, in_words, shows_errors, status_of
from .templating import render

router = APIRouter()
LISTED = 50


async def _admin_page(request, db, *, notice: str | None = None, error: str | None = None,
                      values: dict | None = None, status_code: int = 200):
    failed, _ = await jobs_table.list_jobs(db, user_id=None, status=JobStatus.failed, job_type=None, cursor=None,
                                           limit=LISTED)
    expired, _ = await jobs_table.list_jobs(db, user_id=None, status=JobStatus.expired, job_type=None, cursor=None,
                                            limit=LISTED)
    jobs = sorted(failed + expired, key=lambda j: j["updated_at"], reverse=True)[:LISTED]
    letters = await dead_letters.undecided(request.app.state.resources.store)
    return await render(request, "admin.html", {"jobs": jobs, "dead_letters": letters[-LISTED:][::-1],
                                                "notice": notice, "error": error, "values": values or {}},
                        status_code)


class NotAdmin(ApiError):
    status_code = 403


def _only_admins(admin_id: str | None) -> str:
    if admin_id is None:
        raise NotAdmin("only administrators can open the admin pages (ADMIN_EMAILS)")
    return admin_id


@router.get("/admin")
@shows_errors
async def admin(request: Request, admin_id: AdminUser, db: DbDep, notice: str = ""):
    _only_admins(admin_id)
    return await _admin_page(request, db, notice=notice or None)


@router.post("/admin/jobs/{job_id}/retry", dependencies=[Csrf])
@shows_errors
async def retry(job_id: str, request: Request, admin_id: AdminUser, db: DbDep, log: LogDep):
    admin_id = _only_admins(admin_id)
    try:
        job = await handlers.retry_job(log, job_id, requested_by=f"admin:{admin_id}")
    except handlers.JobNotFound as exc:
        raise NotFound(str(exc)) from None
    except SHOWN as exc:
        return await _admin_page(request, db, error=f"job {job_id}: {in_words(exc)}", status_code=status_of(exc))
    return RedirectResponse(f"/admin?notice=Job+{job.id}+retried+as+attempt+{job.attempt}", status_code=303)


@router.post("/admin/credits", dependencies=[Csrf])
@shows_errors
async def adjust(request: Request, admin_id: AdminUser, db: DbDep, log: LogDep,
                 user_id: Annotated[str, Form()] = "", amount: Annotated[str, Form()] = "",
                 reason: Annotated[str, Form()] = "", idempotency_key: Annotated[str, Form()] = ""):
    _only_admins(admin_id)
    values = {"user_id": user_id, "amount": amount, "reason": reason, "idempotency_key": idempotency_key}
    try:
        body = AdjustmentCreate(amount=_integer(amount), reason=reason, idempotency_key=idempotency_key or None)
        adjustment = await adjust_credits(log, user_id.strip(), body)
    except SHOWN as exc:
        return await _admin_page(request, db, error=in_words(exc), values=values, status_code=status_of(exc))
    return await _admin_page(request, db, notice=f"Adjusted {adjustment.user_id} by {adjustment.amount:+d}: "
                                                 f"balance now {adjustment.balance_after}.")


@router.post("/admin/dead-letters/{dlq_id}/{action}", dependencies=[Csrf])
@shows_errors
async def decide_dead_letter(dlq_id: int, action: Literal["redrive", "discard"], request: Request,
                             admin_id: AdminUser, db: DbDep):
    admin_id = _only_admins(admin_id)
    by = f"admin:{admin_id}"
    try:
        async with operator_store(request) as store:
            decided = await (dead_letters.redrive if action == "redrive" else dead_letters.discard)(
                store, dlq_id, by=by)
    except dead_letters.Refused as exc:
        return await _admin_page(request, db, error=f"refused: {exc}", status_code=409)
    except (nats.errors.Error, nats.js.errors.Error) as exc:
        return await _admin_page(request, db, status_code=503, error=(
            f"the event log refused the {action} ({exc}): where each service has its own NATS user, set "
            "ADMIN_NATS_URL to the operator user's URL, or use `genrail dlq` on a machine that has it"))
    return await _admin_page(request, db, notice=decided)


@asynccontextmanager
async def operator_store(request: Request) -> AsyncIterator[EventStore]:
    """The log as an admin's redrive writes to it: ADMIN_NATS_URL's connection when set (a redrive
    republishes to subjects other services own), else the API's own."""
    settings = request.app.state.settings
    if not settings.admin_nats_url:
        yield request.app.state.resources.store
        return
    nc = await connect(settings.admin_nats_url.get_secret_value(), "genrail-api-admin")
    try:
        yield EventStore(nc)
    finally:
        await nc.close()


def _integer(text: str) -> int | str:
    try:
        return int(text.strip())
    except ValueError:
        return text  # AdjustmentCreate says what is wrong with it
