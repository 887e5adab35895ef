"""What GET /api/batches/{id} shows: the batch with every image's job, counts by status,
progress and output URLs. Read from the projections, or from the log right after creation."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from genrail_events import batches, jobs
from genrail_readmodels import batches as batches_table
from genrail_readmodels import jobs as jobs_table
from genrail_eventlog.store import EventStore
from genrail_storage.store import Storage

from .media import present_job
from .settings import ApiSettings


async def _batch_row(db: AsyncConnection, log: EventStore, batch_id: str) -> dict[str, Any] | None:
    if (row := await batches_table.get(db, batch_id)) is not None:
        return row
    stored = await log.last(batches.created_subject(batch_id))
    if stored is None:
        return None
    d = stored.event.data
    return {"id": d.batch_id, "user_id": d.user_id, "prompt": d.prompt, "image_keys": d.image_keys,
            "job_ids": d.job_ids, "cost_per_image": d.cost_per_image, "created_at": stored.event.occurred_at}


async def batch_view(db: AsyncConnection, log: EventStore, storage: Storage, settings: ApiSettings,
                     batch_id: str, user_id: str, *, with_urls: bool = True) -> dict[str, Any] | None:
    batch = await _batch_row(db, log, batch_id)
    if batch is None or batch["user_id"] != user_id:
        return None
    by_id = {job["id"]: job for job in await jobs_table.of_batch(db, batch_id)}
    images = []
    for index, (job_id, key) in enumerate(zip(batch["job_ids"], batch["image_keys"], strict=True)):
        job = by_id.get(job_id)
        if job is not None and with_urls:
            job = await present_job(job, storage, settings)
        edited = (((job or {}).get("output") or {}).get("files") or [None])[0]
        images.append({"index": index, "job_id": job_id, "image_key": key,
                       "status": job["status"] if job else str(jobs.JobStatus.pending),
                       "error": job["error"] if job else None,
                       "output_url": edited.get("url") if edited else None,
                       "output_key": edited["key"] if edited else None,
                       "updated_at": job["updated_at"] if job else batch["created_at"]})
    counts = Counter(image["status"] for image in images)
    total, updated_at = len(images), max(image["updated_at"] for image in images)
    status = batches.status(counts, total)
    return {"id": batch["id"], "prompt": batch["prompt"], "status": str(status), "total": total,
            "counts": dict(counts), "progress": batches.progress(counts, total),
            "cost": batch["cost_per_image"] * total, "created_at": batch["created_at"], "updated_at": updated_at,
            "finished_at": updated_at if status is not batches.BatchStatus.processing else None,
            "images": images}
