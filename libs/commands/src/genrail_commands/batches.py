"""Creating a batch's records on the log from its debit's request: `batch.created`, then
one `job.created` per image. Each append expects an empty subject, so running this twice
(the API, then the ledger's recovery policy after a crash) creates everything once."""

from __future__ import annotations

import asyncio
import mimetypes
from typing import Any

from genrail_events import batches, jobs
from genrail_events.ledger import BatchRequest

from genrail_eventlog.store import EventStore

from .jobs import append_job_created


def batch_request(batch_id: str, prompt: str, image_keys: list[str], cost_per_image: int) -> BatchRequest:
    """What the batch's debit carries: everything needed to create the batch again."""
    return BatchRequest(batch_id=batch_id, prompt=prompt, image_keys=image_keys, cost_per_image=cost_per_image,
                        cost=cost_per_image * len(image_keys))


def image_input(prompt: str, image_key: str, index: int) -> dict[str, Any]:
    return {"image_key": image_key, "prompt": prompt, "index": index,
            "content_type": mimetypes.guess_type(image_key)[0] or "application/octet-stream"}


async def create_batch_records(store: EventStore, user_id: str, request: BatchRequest) -> bool:
    """True when this call created the batch (False: it existed)."""
    batch_id, prompt, keys = request.batch_id, request.prompt, request.image_keys
    created = batches.batch_created(batch_id, user_id, prompt, keys, request.cost_per_image)
    first = await store.append_first(batches.created_subject(batch_id), created, msg_id=f"batch.created:{batch_id}",
                                     expect_filter=f"batch.*.{batch_id}") is not None
    job_events = [jobs.job_created(job_id, user_id, jobs.JobType.image_edit, request.cost_per_image,
                                   image_input(prompt, key, index), batch_id=batch_id)
                  for index, (job_id, key) in enumerate(zip(created.data.job_ids, keys, strict=True))]
    await asyncio.gather(*(append_job_created(store, e) for e in job_events))
    return first
