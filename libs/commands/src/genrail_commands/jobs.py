"""Loading a job from the log and appending its transitions with optimistic concurrency."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from opentelemetry.trace import Span

from genrail_events import jobs, subjects
from genrail_events.envelope import Event

from genrail_eventlog import tracing
from genrail_eventlog.store import Appended, EventStore, retry_on_conflict

log = logging.getLogger("genrail.jobs")


async def load_job(store: EventStore, job_id: str) -> tuple[jobs.Job | None, int]:
    history = await store.read(subjects.job_events(job_id))
    if not history:
        return None, 0
    return jobs.fold([s.event for s in history]), history[-1].seq


async def append_job_created(store: EventStore, created: Event) -> bool:
    """Create the job, once ever: False when it exists (created by a concurrent request with
    the same idempotency key, by the API, or by the ledger's recovery from the debit)."""
    job_id = created.aggregate_id
    return await store.append_first(jobs.created_subject(job_id), created, msg_id=f"job.created:{job_id}",
                                    expect_filter=subjects.job_events(job_id)) is not None


async def append_job_event(store: EventStore, job: jobs.Job, seq: int, event: Event) -> Appended:
    """The message id names the position the append expects: a republish of the same append
    (after a lost ack) is deduplicated, and no two different appends can share an id."""
    return await store.append(jobs.subject_for(event), event, expect_last_seq=seq,
                              expect_filter=subjects.job_events(job.id), msg_id=f"{event.type}:{job.id}@{seq}")


async def transition(store: EventStore, job_id: str, decide: Callable[[jobs.Job], Event | None], *,
                     known: tuple[jobs.Job, int] | None = None) -> tuple[jobs.Job, Event | None, int]:
    """Decide the transition on the job (as `known`, or loaded), append it; on conflict load
    again and re-decide. `decide` may return None: nothing to append. InvalidTransition
    propagates (after logging `job.transition_denied`). Returns the new state, the event
    and the job's last sequence."""
    first_try = {"known": known}

    async def attempt() -> tuple[jobs.Job, Event, int]:
        given, first_try["known"] = first_try["known"], None  # only the first try trusts `known`
        job, seq = given if given is not None else await load_job(store, job_id)
        if job is None:
            raise LookupError(f"job {job_id} not found")
        try:
            event = decide(job)
        except jobs.InvalidTransition as exc:
            log.warning("job.transition_denied", extra={"job_id": job_id, "from": str(exc.from_status),
                                                         "to": str(exc.to_status), "user_id": job.user_id})
            raise
        if event is None:
            return job, None, seq
        appended = await append_job_event(store, job, seq, event)
        return jobs.evolve(job, event), event, appended.seq

    return await retry_on_conflict(attempt)


@asynccontextmanager
async def in_job_trace(store: EventStore, job_id: str, name: str) -> AsyncIterator[Span]:
    """A span in the job's trace, for work on the job that did not start there (a provider's
    callback, a deadline): its parent is the append of the job's last event, read from the
    log, so what it appends (and the refund that may follow) stays in the job's trace."""
    last = await store.last(subjects.job_events(job_id))
    with tracing.continue_from(last.headers if last else None, name, {"genrail.job_id": job_id}) as span:
        yield span
