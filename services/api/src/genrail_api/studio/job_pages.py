"""/studio: a form for every job type, and each job's page with its result as it is."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from genrail_commands.accounts import load_account
from genrail_events.jobs import FINAL_STATUSES, JobStatus

from ..deps import DbDep, EngineDep, LogDep, SettingsDep, StorageDep
from ..errors import NotFound
from ..media import present_job
from ..routes.generate import create_job
from ..routes.jobs import owned_job
from .auth import Csrf, PageUser
from .forms import BY_SLUG, FORMS, request_body
from .problems import SHOWN, in_words, shows_errors, status_of
from .queries import ledger_entries_of
from .templating import render

router = APIRouter()


@router.get("/studio")
async def studio(request: Request, user_id: PageUser, log: LogDep, settings: SettingsDep):
    return await _studio_page(request, user_id, log, settings)


async def _studio_page(request, user_id, log, settings, *, error: str | None = None, slug: str | None = None,
                       values: dict | None = None, status_code: int = 200):
    account, _ = await load_account(log, user_id)
    costs = {form.slug: settings.cost(form.type) for form in FORMS}
    return await render(request, "studio.html", {"forms": FORMS, "costs": costs, "balance": account.balance,
                                                 "error": error, "error_slug": slug, "values": values or {}},
                        status_code)


@router.post("/studio/{slug}", dependencies=[Csrf])
@shows_errors
async def create(slug: str, request: Request, user_id: PageUser, log: LogDep, settings: SettingsDep,
                 engine: EngineDep):
    form = BY_SLUG.get(slug)
    if form is None:
        raise NotFound(f"no job type {slug!r}")
    values = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    body = {**request_body(form, values), "idempotency_key": values.get("idempotency_key") or None}
    try:
        job = await create_job(log, settings, user_id, form.type, form.request(**body), Response(), engine, None)
    except SHOWN as exc:
        return await _studio_page(request, user_id, log, settings, error=in_words(exc), slug=slug, values=values,
                                  status_code=status_of(exc))
    return RedirectResponse(f"/studio/jobs/{job.id}", status_code=303)


async def _job_for(user_id: str, job_id: str, db, log, storage, settings) -> dict:
    try:
        uuid.UUID(job_id)
    except ValueError:
        raise NotFound(f"job {job_id} not found") from None
    return await present_job(await owned_job(db, log, job_id, user_id), storage, settings)


async def _job_context(user_id, job_id, db, log, storage, settings) -> dict:
    job = await _job_for(user_id, job_id, db, log, storage, settings)
    final = JobStatus(job["status"]) in FINAL_STATUSES
    entries = await ledger_entries_of(db, user_id, job_id) if final else []
    return {"job": job, "final": final, "entries": entries,
            "refunded": sum(e["amount"] for e in entries if e["kind"] == "refunded")}


@router.get("/studio/jobs/{job_id}")
@shows_errors
async def job_page(job_id: str, request: Request, user_id: PageUser, db: DbDep, log: LogDep,
                   storage: StorageDep, settings: SettingsDep):
    return await render(request, "job.html", await _job_context(user_id, job_id, db, log, storage, settings))


@router.get("/studio/jobs/{job_id}/status")
@shows_errors
async def job_fragment(job_id: str, request: Request, user_id: PageUser, db: DbDep, log: LogDep,
                       storage: StorageDep, settings: SettingsDep):
    """The job's status and result, polled by the job page until final."""
    return await render(request, "_job_result.html",
                        await _job_context(user_id, job_id, db, log, storage, settings))
