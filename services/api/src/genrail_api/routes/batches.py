from __future__ import annotations

import io
import json
import uuid
import zipfile
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from sse_starlette.sse import EventSourceResponse

from genrail_events import batches
from genrail_readmodels import batches as batches_table
from genrail_readmodels import jobs as jobs_table

from .. import handlers, rate_limits
from ..batch_views import batch_view
from ..deps import CurrentUser, DbDep, EngineDep, IdempotencyKeyHeader, LogDep, SettingsDep, StorageDep
from ..errors import Conflict, NotFound, TooManyOpen, Unprocessable, one_idempotency_key
from ..open_streams import DOWNLOADS
from ..progress_events import progress_events
from ..schemas import ERRORS, PAYMENT_REQUIRED, BatchCreate, BatchPage, BatchPublic, BatchSummary
from .generate import replayed
from .uploads import DIRECT_PREFIX, check_direct_upload, upload_prefix

router = APIRouter(prefix="/batches", tags=["batches"])
BatchId = Annotated[uuid.UUID, Path(description="The batch's id")]


@router.post("", status_code=202, response_model=BatchPublic,
             responses={**PAYMENT_REQUIRED, 401: ERRORS[401], 413: ERRORS[413], 422: ERRORS[422], 429: ERRORS[429],
                        503: ERRORS[503]},
             summary="Edit many images with one prompt: one credit per image, charged at once, all or nothing")
async def create_batch(body: BatchCreate, user_id: CurrentUser, log: LogDep, db: DbDep, storage: StorageDep,
                       settings: SettingsDep, response: Response, engine: EngineDep,
                       key: IdempotencyKeyHeader) -> BatchPublic:
    key = one_idempotency_key(key, body.idempotency_key)
    await rate_limits.job_created(engine, user_id, settings.jobs_per_minute_per_user)
    if len(body.image_keys) > settings.batch_max_images:
        raise Unprocessable(f"image_keys: at most {settings.batch_max_images} images per batch")
    if len(set(body.image_keys)) != len(body.image_keys):
        raise Unprocessable("image_keys: the same image is listed twice")
    for key in body.image_keys:
        if not key.startswith(upload_prefix(user_id)):
            raise Unprocessable(f"image_keys: {key!r} is not one of your uploads")
        if key.startswith(upload_prefix(user_id) + DIRECT_PREFIX):
            await check_direct_upload(storage, key, settings)  # checked on the way in, like the others
        elif not await storage.exists(key):
            raise Unprocessable(f"image_keys: {key!r} is not one of your uploads")
    batch_id, created = await handlers.create_batch(log, user_id, body.prompt, body.image_keys,
                                                    settings.cost_image_edit, key)
    if not created:
        replayed(response)
    view = await batch_view(db, log, storage, settings, batch_id, user_id)
    assert view is not None
    return BatchPublic(**view)


@router.get("", response_model=BatchPage, responses={401: ERRORS[401], 422: ERRORS[422]},
            summary="Your batches, newest first")
async def get_batches(user_id: CurrentUser, db: DbDep,
                      cursor: Annotated[uuid.UUID | None, Query(description="next_cursor of the previous page")] = None,
                      limit: Annotated[int, Query(ge=1, le=100)] = 20) -> BatchPage:
    rows = await batches_table.list_for_user(db, user_id, before=str(cursor) if cursor else None, limit=limit + 1)
    counts = await jobs_table.status_counts_of_batches(db, [str(r["id"]) for r in rows])
    items = [BatchSummary(id=str(r["id"]), prompt=r["prompt"], total=r["total"], created_at=r["created_at"],
                          counts=counts[str(r["id"])],
                          status=batches.status(counts[str(r["id"])], r["total"]).value)
             for r in rows[:limit]]
    return BatchPage(items=items, next_cursor=str(rows[limit - 1]["id"]) if len(rows) > limit else None)


@router.get("/{batch_id}", response_model=BatchPublic, responses={401: ERRORS[401], 404: ERRORS[404]},
            summary="A batch: every image's status and result, counts and progress")
async def get_batch(batch_id: BatchId, user_id: CurrentUser, db: DbDep, log: LogDep, storage: StorageDep,
                    settings: SettingsDep) -> BatchPublic:
    view = await batch_view(db, log, storage, settings, str(batch_id), user_id)
    if view is None:
        raise NotFound(f"batch {batch_id} not found")
    return BatchPublic(**view)


@router.get("/{batch_id}/events", responses={200: {"description": "text/event-stream of `progress` events, "
                                                                   "then one `done`", "content": {"text/event-stream": {}}},
                                              401: ERRORS[401], 404: ERRORS[404], 429: ERRORS[429]},
            summary="Live progress as Server-Sent Events, until every image is final")
async def batch_events(batch_id: BatchId, request: Request, user_id: CurrentUser, engine: EngineDep, log: LogDep,
                       storage: StorageDep, settings: SettingsDep) -> EventSourceResponse:
    async def view() -> dict | None:
        async with engine.connect() as db:
            return await batch_view(db, log, storage, settings, str(batch_id), user_id, with_urls=False)

    first = await view()
    if first is None:
        raise NotFound(f"batch {batch_id} not found")

    async def shown(current: dict) -> str:
        return json.dumps(_progress(current), default=str)

    return progress_events(request, user_id, settings.max_event_streams_per_user, first, fetch=view, shown=shown,
                           final=lambda current: current["status"] != batches.BatchStatus.processing, every_s=0.25)


def _progress(view: dict) -> dict:
    return {"id": view["id"], "status": view["status"], "total": view["total"], "counts": view["counts"],
            "progress": view["progress"],
            "images": [{"index": i["index"], "status": i["status"], "error": i["error"]} for i in view["images"]]}


@router.get("/{batch_id}/download", response_class=StreamingResponse,
            responses={200: {"description": "A ZIP of the finished images", "content": {"application/zip": {}}},
                       401: ERRORS[401], 404: ERRORS[404], 409: ERRORS[409], 429: ERRORS[429]},
            summary="Download the edited images as one ZIP, streamed")
async def download(batch_id: BatchId, user_id: CurrentUser, engine: EngineDep, log: LogDep, storage: StorageDep,
                   settings: SettingsDep) -> StreamingResponse:
    async with engine.connect() as db:  # released before the ZIP streams, however slowly it is read
        view = await batch_view(db, log, storage, settings, str(batch_id), user_id, with_urls=False)
    if view is None:
        raise NotFound(f"batch {batch_id} not found")
    done = [i for i in view["images"] if i["status"] == "completed" and i["output_key"]]
    if not done:
        raise Conflict(f"batch {batch_id} has no finished images yet ({view['status']})")
    if not DOWNLOADS.claim(user_id, settings.max_downloads_per_user):
        raise TooManyOpen(f"{settings.max_downloads_per_user} downloads are in progress for this user already")
    return StreamingResponse(DOWNLOADS.held(user_id, _zip(storage, done)), media_type="application/zip",
                             headers={"Content-Disposition": f'attachment; filename="batch-{batch_id}.zip"'})


class _Chunks(io.RawIOBase):
    """A write-only file whose writes are collected, so the ZIP is sent as it is built."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


async def _zip(storage, images: list[dict]) -> AsyncIterator[bytes]:
    sink = _Chunks()
    with zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_STORED) as archive:
        for image in images:
            name = f"{image['index'] + 1:03d}-{image['image_key'].rsplit('/', 1)[-1].rsplit('.', 1)[0]}.png"
            with archive.open(name, mode="w", force_zip64=False) as entry:
                async for chunk in storage.iter(image["output_key"]):
                    entry.write(chunk)
                    yield sink.take()
            yield sink.take()
    yield sink.take()
