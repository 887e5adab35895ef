"""/batches: the batch editor (upload images, one prompt), each batch's live progress, its ZIP."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response, UploadFile
from fastapi.responses import JSONResponse, RedirectResponse
from genrail_commands.accounts import load_account
from genrail_events import batches
from genrail_readmodels import batches as batches_table
from genrail_readmodels import jobs as jobs_table

from ..batch_views import batch_view
from ..deps import DbDep, EngineDep, LogDep, SettingsDep, StorageDep
from ..errors import NotFound
from ..progress_events import progress_events
from ..routes import batches as batch_routes
from ..routes.uploads import upload
from ..schemas import BatchCreate
from .auth import Csrf, PageUser
from .problems import SHOWN, in_words, shows_errors, status_of
from .queries import ledger_entries_of
from .templating import render

router = APIRouter()


@router.get("/batches")
@shows_errors
async def batch_list(request: Request, user_id: PageUser, db: DbDep, cursor: str = ""):
    before = str(uuid.UUID(cursor)) if cursor else None
    rows = await batches_table.list_for_user(db, user_id, before=before, limit=21)
    counts = await jobs_table.status_counts_of_batches(db, [str(r["id"]) for r in rows])
    items = [{**r, "id": str(r["id"]), "counts": counts[str(r["id"])],
              "status": str(batches.status(counts[str(r["id"])], r["total"]))} for r in rows[:20]]
    return await render(request, "batches.html", {"batches": items,
                                                  "next_cursor": items[-1]["id"] if len(rows) > 20 else None})


@router.get("/batches/new")
async def new_batch(request: Request, user_id: PageUser, log: LogDep, settings: SettingsDep):
    return await _editor(request, user_id, log, settings)


async def _editor(request, user_id, log, settings, *, error: str | None = None, prompt: str = "",
                  status_code: int = 200):
    account, _ = await load_account(log, user_id)
    return await render(request, "batch_new.html", {
        "balance": account.balance, "cost_per_image": settings.cost_image_edit, "error": error, "prompt": prompt,
        "max_images": settings.batch_max_images, "max_bytes": settings.upload_max_bytes}, status_code)


@router.post("/batches/uploads", dependencies=[Csrf])
async def upload_image(request: Request, user_id: PageUser, storage: StorageDep, settings: SettingsDep,
                       file: UploadFile):
    """One image of the editor, checked and stored as POST /v1/uploads does; JSON for its script."""
    try:
        uploaded = await upload(file, user_id, storage, settings)
    except SHOWN as exc:
        return JSONResponse({"error": f"{file.filename}: {in_words(exc)}"}, status_code=status_of(exc))
    return JSONResponse({"key": uploaded.key, "width": uploaded.width, "height": uploaded.height}, status_code=201)


@router.post("/batches", dependencies=[Csrf])
async def create(request: Request, user_id: PageUser, log: LogDep, db: DbDep, storage: StorageDep,
                 settings: SettingsDep, engine: EngineDep, prompt: Annotated[str, Form()] = "",
                 image_key: Annotated[list[str] | None, Form()] = None):
    try:
        body = BatchCreate(prompt=prompt, image_keys=image_key or [])
        created = await batch_routes.create_batch(body, user_id, log, db, storage, settings, Response(), engine, None)
    except SHOWN as exc:
        return await _editor(request, user_id, log, settings, error=in_words(exc), prompt=prompt,
                             status_code=status_of(exc))
    return RedirectResponse(f"/batches/{created.id}", status_code=303)


async def _batch_context(db, log, storage, settings, batch_id: str, user_id: str) -> dict:
    try:
        uuid.UUID(batch_id)
    except ValueError:
        raise NotFound(f"batch {batch_id} not found") from None
    view = await batch_view(db, log, storage, settings, batch_id, user_id)
    if view is None:
        raise NotFound(f"batch {batch_id} not found")
    live = view["status"] == batches.BatchStatus.processing
    refunds = {}
    if not live and any(i["status"] != "completed" for i in view["images"]):
        for image in view["images"]:
            if image["status"] != "completed":
                entries = await ledger_entries_of(db, user_id, image["job_id"])
                refunds[image["job_id"]] = sum(e["amount"] for e in entries if e["kind"] == "refunded")
    return {"batch": view, "live": live, "refunds": refunds,
            "done": sum(1 for i in view["images"] if i["status"] == "completed")}


@router.get("/batches/{batch_id}")
@shows_errors
async def batch_page(batch_id: str, request: Request, user_id: PageUser, db: DbDep, log: LogDep,
                     storage: StorageDep, settings: SettingsDep):
    return await render(request, "batch.html", await _batch_context(db, log, storage, settings, batch_id, user_id))


@router.get("/batches/{batch_id}/events")
@shows_errors
async def batch_events(batch_id: str, request: Request, user_id: PageUser, engine: EngineDep, log: LogDep,
                       storage: StorageDep, settings: SettingsDep):
    """The batch page's live progress: the rendered images whenever they change, until the
    batch is final (then with the ZIP link)."""
    async def context() -> dict:
        async with engine.connect() as db:
            return await _batch_context(db, log, storage, settings, batch_id, user_id)

    async def shown(current: dict) -> str:
        return (await render(request, "_batch_progress.html", current)).body.decode()

    return progress_events(request, user_id, settings.max_event_streams_per_user, await context(), fetch=context,
                           shown=shown, final=lambda current: not current["live"], every_s=0.5,
                           what="live views")


@router.get("/batches/{batch_id}/download")
@shows_errors
async def download(batch_id: str, request: Request, user_id: PageUser, engine: EngineDep, log: LogDep,
                   storage: StorageDep, settings: SettingsDep):
    """The same ZIP as GET /v1/batches/{id}/download, for the signed-in user."""
    try:
        parsed = uuid.UUID(batch_id)
    except ValueError:
        raise NotFound(f"batch {batch_id} not found") from None
    return await batch_routes.download(parsed, user_id, engine, log, storage, settings)
