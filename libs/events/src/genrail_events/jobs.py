"""Jobs: types, the state machine, and the job aggregate's decide/evolve functions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from . import subjects
from .envelope import Event, utcnow


class JobType(StrEnum):
    copy = "copy"
    scrape = "scrape"
    static_ad = "static_ad"
    ugc_video = "ugc_video"
    tts = "tts"
    image_edit = "image_edit"


ASYNC_TYPES = frozenset({JobType.static_ad, JobType.ugc_video, JobType.tts})


class JobStatus(StrEnum):
    pending = "pending"
    queued = "queued"
    processing = "processing"
    completed = "completed"
    failed = "failed"
    canceled = "canceled"
    expired = "expired"


S = JobStatus
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    S.pending: frozenset({S.queued, S.processing, S.failed, S.canceled}),
    S.queued: frozenset({S.processing, S.failed, S.canceled}),
    S.processing: frozenset({S.completed, S.failed, S.canceled, S.expired}),
    S.completed: frozenset(),
    S.failed: frozenset({S.pending}),
    S.canceled: frozenset(),
    S.expired: frozenset({S.pending}),
}
REFUNDED_STATUSES = frozenset({S.failed, S.canceled, S.expired})
FINAL_STATUSES = frozenset({S.completed, S.failed, S.canceled, S.expired})
RETRYABLE_STATUSES = frozenset({S.failed, S.expired})


class InvalidTransition(Exception):
    def __init__(self, job_id: str, from_status: JobStatus, to_status: JobStatus):
        self.job_id, self.from_status, self.to_status = job_id, from_status, to_status
        super().__init__(f"job {job_id}: cannot go from {from_status} to {to_status}")


def can_transition(from_status: JobStatus, to_status: JobStatus) -> bool:
    return to_status in TRANSITIONS[from_status]


JOB_ID_NAMESPACE = uuid.UUID("6b0f7a52-51a9-4a53-9a0e-2f6d8f5c1e11")


def job_id_for(user_id: str, idempotency_key: str | None) -> str:
    """The same (user, key) always names the same job, however far apart the requests."""
    if idempotency_key is None:
        return str(uuid.uuid4())
    return str(uuid.uuid5(JOB_ID_NAMESPACE, f"{user_id}:{idempotency_key}"))


@dataclass(frozen=True)
class Job:
    id: str
    user_id: str
    type: JobType
    status: JobStatus
    cost: int
    input: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    attempt: int = 1
    output: dict[str, Any] | None = None
    error: str | None = None
    prediction_id: str | None = None
    batch_id: str | None = None
    failures: int = 0  # transient provider failures of the current attempt
    history: tuple[str, ...] = field(default=(), compare=False)


# --- events -------------------------------------------------------------------------

def job_created(job_id: str, user_id: str, job_type: JobType, cost: int, input: dict[str, Any],
                *, batch_id: str | None = None, now: datetime | None = None) -> Event:
    return Event(
        type="job.created", aggregate_id=job_id, occurred_at=now or utcnow(),
        data={"job_id": job_id, "user_id": user_id, "type": str(job_type), "cost": cost,
              "input": input, "batch_id": batch_id, "attempt": 1},
    )


def created_subject(job_id: str) -> str:
    return subjects.job("created", job_id)


# --- decide -------------------------------------------------------------------------

def decide_transition(job: Job, to_status: JobStatus, *, output: dict[str, Any] | None = None,
                      error: str | None = None, prediction_id: str | None = None,
                      reason: str | None = None, now: datetime | None = None) -> Event:
    """The transition event, or InvalidTransition naming both states."""
    if not can_transition(job.status, to_status):
        raise InvalidTransition(job.id, job.status, to_status)
    if to_status is JobStatus.pending:
        raise InvalidTransition(job.id, job.status, to_status)  # only decide_retry goes back
    return Event(
        type="job.transitioned", aggregate_id=job.id, occurred_at=now or utcnow(),
        data={"job_id": job.id, "user_id": job.user_id, "type": str(job.type), "cost": job.cost,
              "attempt": job.attempt, "batch_id": job.batch_id,
              "from": str(job.status), "to": str(to_status), "output": output, "error": error,
              "prediction_id": prediction_id, "reason": reason},
    )


def decide_retry(job: Job, *, requested_by: str, now: datetime | None = None) -> Event:
    """A failed or expired job goes back to pending as a new attempt (charged again)."""
    if job.status not in RETRYABLE_STATUSES:
        raise InvalidTransition(job.id, job.status, JobStatus.pending)
    return Event(
        type="job.retried", aggregate_id=job.id, occurred_at=now or utcnow(),
        data={"job_id": job.id, "user_id": job.user_id, "type": str(job.type), "cost": job.cost,
              "attempt": job.attempt + 1, "batch_id": job.batch_id, "from": str(job.status),
              "to": str(JobStatus.pending), "requested_by": requested_by},
    )


def provider_failed(job: Job, error: str, *, now: datetime | None = None) -> Event:
    """A transient provider failure, recorded so that retries count failures, not deliveries."""
    return Event(type="job.provider_failed", aggregate_id=job.id, occurred_at=now or utcnow(),
                 data={"job_id": job.id, "user_id": job.user_id, "attempt": job.attempt, "error": error,
                       "failures": job.failures + 1})


def subject_for(event: Event) -> str:
    kind = event.type.split(".", 1)[1]
    return subjects.job(kind, event.aggregate_id)


# --- evolve -------------------------------------------------------------------------

def evolve(job: Job | None, event: Event) -> Job:
    d = event.data
    if event.type == "job.created" and job is not None:
        return job  # a job is created once; a copy (a redriven dead letter) changes nothing
    if event.type == "job.created":
        return Job(id=d["job_id"], user_id=d["user_id"], type=JobType(d["type"]),
                   status=JobStatus.pending, cost=d["cost"], input=d["input"],
                   created_at=event.occurred_at, updated_at=event.occurred_at,
                   attempt=d.get("attempt", 1), batch_id=d.get("batch_id"),
                   history=(str(JobStatus.pending),))
    if job is None:
        raise ValueError(f"{event.type} for job {event.aggregate_id} before job.created")
    if event.type == "job.transitioned":
        return replace(
            job, status=JobStatus(d["to"]), updated_at=event.occurred_at,
            output=d.get("output") if d.get("output") is not None else job.output,
            error=d.get("error") if d["to"] in (S.failed, S.expired, S.canceled) else job.error,
            prediction_id=d.get("prediction_id") or job.prediction_id,
            history=(*job.history, d["to"]),
        )
    if event.type == "job.provider_failed":
        return replace(job, failures=d["failures"]) if d["attempt"] == job.attempt else job
    if event.type == "job.retried":
        return replace(job, status=JobStatus.pending, attempt=d["attempt"], output=None, error=None,
                       prediction_id=None, failures=0, updated_at=event.occurred_at,
                       history=(*job.history, str(JobStatus.pending)))
    return job  # unknown job events (newer producers) do not change what we know


def fold(events: list[Event]) -> Job | None:
    job: Job | None = None
    for event in events:
        job = evolve(job, event)
    return job
