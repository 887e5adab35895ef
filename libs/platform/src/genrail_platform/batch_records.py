"""Creating a batch's records on the log from its debit's request: `batch.created`, then
one `job.created` per image. Each append expects an empty subject, so running this twice
(the API, then the ledger's recovery policy after a crash) creates everything once."""

from __future__ import annotations

import asyncio
import mimetypes
from typing import Any

from genrail_events import batches, jobs, subjects

from .eventstore import ConcurrencyConflict, EventStore


def batch_request(batch_id: str, prompt: str, image_keys: list[str], cost_per_image: int) -> dict[str, Any]:
    """What the batch's debit carries: everything needed to create the batch again."""
    return {"type": "image_edit", "batch_id": batch_id, "prompt": prompt, "image_keys": image_keys,
            "cost_per_image": cost_per_image, "cost": cost_per_image * len(image_keys)}


def image_input(prompt: str, image_key: str, index: int) -> dict[str, Any]:
    return {"image_key": image_key, "prompt": prompt, "index": index,
            "content_type": mimetypes.guess_type(image_key)[0] or "application/octet-stream"}


async def _append_once(store: EventStore, subject: str, event, filter_subject: str) -> bool:
    try:
        await store.append(subject, event, msg_id=f"{event.type}:{event.aggregate_id}", expect_last_seq=0,
                           expect_filter=filter_subject)
    except ConcurrencyConflict:
        return False
    return True


async def create_batch_records(store: EventStore, user_id: str, request: dict[str, Any]) -> bool:
    """True when this call created the batch (False: it existed)."""
    batch_id, prompt, keys = request["batch_id"], request["prompt"], request["image_keys"]
    created = batches.batch_created(batch_id, user_id, prompt, keys, request["cost_per_image"])
    first = await _append_once(store, batches.created_subject(batch_id), created, f"batch.*.{batch_id}")
    job_events = [jobs.job_created(job_id, user_id, jobs.JobType.image_edit, request["cost_per_image"],
                                   image_input(prompt, key, index), batch_id=batch_id)
                  for index, (job_id, key) in enumerate(zip(created.data["job_ids"], keys, strict=True))]
    await asyncio.gather(*(_append_once(store, jobs.created_subject(e.aggregate_id), e,
                                        subjects.job_events(e.aggregate_id)) for e in job_events))
    return first
