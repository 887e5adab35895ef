"""Batches of image edits: one prompt, many images, one job per image, one debit for all."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum

from . import subjects
from .envelope import Event, Payload, utcnow
from .jobs import FINAL_STATUSES, JobStatus


class BatchStatus(StrEnum):
    processing = "processing"
    completed = "completed"
    completed_with_errors = "completed_with_errors"
    failed = "failed"


BATCH_ID_NAMESPACE = uuid.UUID("3f3c0c8e-2b7d-4a64-9d7b-6a1e0f9b5c43")


def batch_id_for(user_id: str, idempotency_key: str | None) -> str:
    if idempotency_key is None:
        return str(uuid.uuid4())
    return str(uuid.uuid5(BATCH_ID_NAMESPACE, f"{user_id}:{idempotency_key}"))


def image_job_id(batch_id: str, index: int) -> str:
    return str(uuid.uuid5(uuid.UUID(batch_id), f"image:{index}"))


class BatchCreatedData(Payload, frozen=True, kw_only=True):
    batch_id: str
    user_id: str
    prompt: str
    image_keys: list[str]
    job_ids: list[str]
    cost_per_image: int


class BatchCreated(Event, tag="batch.created", frozen=True, kw_only=True):
    data: BatchCreatedData


def batch_created(batch_id: str, user_id: str, prompt: str, image_keys: list[str], cost_per_image: int,
                  now: datetime | None = None) -> BatchCreated:
    return BatchCreated(aggregate_id=batch_id, occurred_at=now or utcnow(),
                        data=BatchCreatedData(batch_id=batch_id, user_id=user_id, prompt=prompt, image_keys=image_keys,
                                              job_ids=[image_job_id(batch_id, i) for i in range(len(image_keys))],
                                              cost_per_image=cost_per_image))


def created_subject(batch_id: str) -> str:
    return subjects.batch("created", batch_id)


def finished(counts: Mapping[str, int]) -> int:
    """How many images are final (completed, failed, canceled or expired)."""
    return sum(n for s, n in counts.items() if JobStatus(s) in FINAL_STATUSES)


def progress(counts: Mapping[str, int], total: int) -> float:
    return round(finished(counts) / total, 4) if total else 1.0


def status(counts: Mapping[str, int], total: int) -> BatchStatus:
    """A batch is done when every image is final: all completed, some, or none."""
    if finished(counts) < total:
        return BatchStatus.processing
    completed = counts.get(JobStatus.completed, 0)
    if completed == total:
        return BatchStatus.completed
    return BatchStatus.completed_with_errors if completed else BatchStatus.failed
