"""Jobs: types, the state machine, and the job aggregate's decide/evolve functions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

import msgspec

from . import subjects, text
from .envelope import Event, Payload, UnknownEvent, utcnow


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
    webhook: WebhookTarget | None = None
    history: tuple[str, ...] = field(default=(), compare=False)


# --- events -------------------------------------------------------------------------

WEBHOOK_EVENTS = ("start", "output", "completed")


class WebhookTarget(msgspec.Struct, frozen=True, kw_only=True):
    """Where the job's owner wants to hear of it: `events` of start (work began), output (a
    result is there) and completed (final, whatever the outcome)."""

    url: str
    events: tuple[str, ...] = ("completed",)


class JobCreatedData(Payload, frozen=True, kw_only=True):
    job_id: str
    user_id: str
    type: JobType
    cost: int
    input: dict[str, Any]
    batch_id: str | None = None
    attempt: int = 1
    webhook: WebhookTarget | None = None


class JobCreated(Event, tag="job.created", frozen=True, kw_only=True):
    data: JobCreatedData


class JobMovedData(Payload, frozen=True, kw_only=True):
    """What every change of a job's state carries: enough for the ledger to refund it and for
    the pipeline to cancel it, without reading the job."""

    job_id: str
    user_id: str
    type: JobType
    cost: int
    attempt: int
    batch_id: str | None = None
    from_status: JobStatus = msgspec.field(name="from")
    to: JobStatus


class JobTransitionedData(JobMovedData, frozen=True, kw_only=True):
    output: dict[str, Any] | None = None
    error: str | None = None
    prediction_id: str | None = None
    reason: str | None = None
    # The job's webhook, carried along so that the sender skips every other job's transitions
    # without reading the job.
    webhook: WebhookTarget | None = None


class JobTransitioned(Event, tag="job.transitioned", frozen=True, kw_only=True):
    data: JobTransitionedData


class JobRetriedData(JobMovedData, frozen=True, kw_only=True):
    to: JobStatus = JobStatus.pending
    requested_by: str


class JobRetried(Event, tag="job.retried", frozen=True, kw_only=True):
    data: JobRetriedData


class JobProviderFailedData(Payload, frozen=True, kw_only=True):
    job_id: str
    user_id: str
    attempt: int
    error: str
    failures: int


class JobProviderFailed(Event, tag="job.provider_failed", frozen=True, kw_only=True):
    """A transient provider failure, recorded so that retries count failures, not deliveries."""

    data: JobProviderFailedData


JobEvent = JobCreated | JobTransitioned | JobRetried | JobProviderFailed
JOB_EVENTS: tuple[type[Event], ...] = (JobCreated, JobTransitioned, JobRetried, JobProviderFailed)


def job_created(job_id: str, user_id: str, job_type: JobType, cost: int, input: dict[str, Any],
                *, batch_id: str | None = None, webhook: WebhookTarget | None = None,
                now: datetime | None = None) -> JobCreated:
    return JobCreated(aggregate_id=job_id, occurred_at=now or utcnow(),
                      data=JobCreatedData(job_id=job_id, user_id=user_id, type=JobType(job_type), cost=cost,
                                          input=input, batch_id=batch_id, attempt=1, webhook=webhook))


def told_on(to_status: JobStatus) -> list[str]:
    """What a job moving to `to_status` tells a webhook, in order: `start` when work begins,
    `output` then `completed` when it completes, `completed` when it ends otherwise."""
    if to_status is JobStatus.processing:
        return ["start"]
    if to_status is JobStatus.completed:
        return ["output", "completed"]
    if to_status in REFUNDED_STATUSES:
        return ["completed"]
    return []


def webhook_events(job: Job, to_status: JobStatus) -> list[str]:
    """What the job's own webhook hears of a move to `to_status`: the events its owner asked for."""
    if job.webhook is None:
        return []
    return [event for event in told_on(to_status) if event in job.webhook.events]


def created_subject(job_id: str) -> str:
    """The filter of a job's creation, whatever its type (a wildcard: for reads, not appends)."""
    return subjects.job_kind("created", job_id)


# --- decide -------------------------------------------------------------------------

def decide_transition(job: Job, to_status: JobStatus, *, output: dict[str, Any] | None = None,
                      error: str | None = None, prediction_id: str | None = None,
                      reason: str | None = None, now: datetime | None = None) -> JobTransitioned:
    """The transition event, or InvalidTransition naming both states. Output and error are
    third-party text (a scraped page, a provider's answer): cleaned to what every store takes."""
    if not can_transition(job.status, to_status):
        raise InvalidTransition(job.id, job.status, to_status)
    if to_status is JobStatus.pending:
        raise InvalidTransition(job.id, job.status, to_status)  # only decide_retry goes back
    return JobTransitioned(
        aggregate_id=job.id, occurred_at=now or utcnow(),
        data=JobTransitionedData(job_id=job.id, user_id=job.user_id, type=job.type, cost=job.cost,
                                 attempt=job.attempt, batch_id=job.batch_id, from_status=job.status,
                                 to=JobStatus(to_status), output=text.clean(output), error=text.clean(error),
                                 prediction_id=prediction_id, reason=text.clean(reason), webhook=job.webhook),
    )


def decide_retry(job: Job, *, requested_by: str, now: datetime | None = None) -> JobRetried:
    """A failed or expired job goes back to pending as a new attempt (charged again)."""
    if job.status not in RETRYABLE_STATUSES:
        raise InvalidTransition(job.id, job.status, JobStatus.pending)
    return JobRetried(
        aggregate_id=job.id, occurred_at=now or utcnow(),
        data=JobRetriedData(job_id=job.id, user_id=job.user_id, type=job.type, cost=job.cost,
                            attempt=job.attempt + 1, batch_id=job.batch_id, from_status=job.status,
                            requested_by=requested_by),
    )


def same_request(job: Job, job_type: JobType, job_input: dict[str, Any]) -> bool:
    """Does a request for `job_type` with `job_input` ask for what `job` was created for? (An
    idempotency key names one request: the same key with another request is refused.)"""
    return job.type == job_type and job.input == job_input


@dataclass(frozen=True)
class Overdue:
    """What a job past its deadline comes to: `ask_provider` first when a provider may still
    hold its result, else straight to `to` (a refunded status) with `error`."""

    to: JobStatus
    error: str
    ask_provider: bool = False


def decide_overdue(job: Job, now: datetime, *, processing_s: float, unstarted_s: float) -> Overdue | None:
    """None while the job is within its deadline (or final). A job that never started (still
    pending or queued `unstarted_s` after its last change) fails; one processing for longer
    than `processing_s` expires, after its provider is asked when it has a prediction."""
    waited = (now - job.updated_at).total_seconds()
    if job.status in (JobStatus.pending, JobStatus.queued) and waited >= unstarted_s:
        return Overdue(JobStatus.failed, f"not started within {unstarted_s:g}s")
    if job.status is JobStatus.processing and waited >= processing_s:
        error = (f"no result from the provider within {processing_s:g}s" if job.prediction_id
                 else f"no result within {processing_s:g}s")
        return Overdue(JobStatus.expired, error, ask_provider=job.prediction_id is not None)
    return None


def provider_failed(job: Job, error: str, *, now: datetime | None = None) -> JobProviderFailed:
    return JobProviderFailed(aggregate_id=job.id, occurred_at=now or utcnow(),
                             data=JobProviderFailedData(job_id=job.id, user_id=job.user_id, attempt=job.attempt,
                                                        error=error, failures=job.failures + 1))


def subject_for(event: Event) -> str:
    """`job.<kind>.<route>.<job id>`: the route is what consumers filter on."""
    kind = event.type.split(".", 1)[1]
    return subjects.job(kind, _route(event), event.aggregate_id)


def _route(event: Event) -> str:
    if isinstance(event, JobTransitioned):
        return str(event.data.to)
    if isinstance(event, JobCreated | JobRetried):
        return str(event.data.type)
    if isinstance(event, JobProviderFailed):
        return str(event.data.attempt)
    raise ValueError(f"not a job event: {event.type}")


# --- evolve -------------------------------------------------------------------------

def evolve(job: Job | None, event: Event | UnknownEvent) -> Job:
    if isinstance(event, JobCreated):
        return job if job is not None else _created(event)  # a copy (a redriven dead letter) changes nothing
    if job is None:
        raise ValueError(f"{event.type} for job {event.aggregate_id} before job.created")
    if isinstance(event, JobTransitioned):
        d = event.data
        return replace(
            job, status=d.to, updated_at=event.occurred_at,
            output=d.output if d.output is not None else job.output,
            error=d.error if d.to in (S.failed, S.expired, S.canceled) else job.error,
            prediction_id=d.prediction_id or job.prediction_id,
            history=(*job.history, str(d.to)),
        )
    if isinstance(event, JobProviderFailed):
        return replace(job, failures=event.data.failures) if event.data.attempt == job.attempt else job
    if isinstance(event, JobRetried):
        return replace(job, status=JobStatus.pending, attempt=event.data.attempt, output=None, error=None,
                       prediction_id=None, failures=0, updated_at=event.occurred_at,
                       history=(*job.history, str(JobStatus.pending)))
    return job  # unknown job events (newer producers) do not change what we know


def _created(event: JobCreated) -> Job:
    d = event.data
    return Job(id=d.job_id, user_id=d.user_id, type=d.type, status=JobStatus.pending, cost=d.cost, input=d.input,
               created_at=event.occurred_at, updated_at=event.occurred_at, attempt=d.attempt, batch_id=d.batch_id,
               webhook=d.webhook, history=(str(JobStatus.pending),))


def fold(events: list[Event | UnknownEvent]) -> Job | None:
    job: Job | None = None
    for event in events:
        job = evolve(job, event)
    return job
