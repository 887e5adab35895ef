"""Loading a job from the log and appending its transitions with optimistic concurrency."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from opentelemetry.trace import Span

from genrail_events import jobs, subjects
from genrail_events.envelope import Event

from genrail_eventlog import tracing
from genrail_eventlog.log import Stored
from genrail_eventlog.store import Appended, EventStore, retry_on_conflict

log = logging.getLogger("genrail.jobs")


async def load_job(store: EventStore, job_id: str) -> tuple[jobs.Job | None, int]:
    """The job and the last sequence its next append expects on `subjects.job_events`.

    A job created before routing tokens has its first events on three-token subjects: they
    are read too (only when the routed history does not start with the creation), and the
    sequence stays the routed one's (0 if none), which is what the append's filter sees."""
    history = await store.read(subjects.job_events(job_id))
    seq = history[-1].seq if history else 0
    if not history or not isinstance(history[0].event, jobs.JobCreated):
        history = sorted([*await store.read(subjects.legacy_job_events(job_id)), *history], key=lambda s: s.seq)
    if not history:
        return None, 0
    return jobs.fold([s.event for s in history]), seq


async def last_job_event(store: EventStore, kind: str, job_id: str) -> Stored | None:
    """The job's last event of one kind ("*": any), on a routed or a three-token subject."""
    routed = subjects.job_events(job_id) if kind == "*" else subjects.job_kind(kind, job_id)
    legacy = subjects.legacy_job_events(job_id) if kind == "*" else subjects.legacy_job_kind(kind, job_id)
    return await store.last(routed) or await store.last(legacy)


async def job_exists(store: EventStore, job_id: str) -> bool:
    return await last_job_event(store, "created", job_id) is not None


async def append_job_created(store: EventStore, created: Event) -> bool:
    """Create the job, once ever: False when it exists (created by a concurrent request with
    the same idempotency key, by the API, or by the ledger's recovery from the debit)."""
    job_id = created.aggregate_id
    return await store.append_first(jobs.subject_for(created), created, msg_id=f"job.created:{job_id}",
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
    last = await last_job_event(store, "*", job_id)
    with tracing.continue_from(last.headers if last else None, name, {"genrail.job_id": job_id}) as span:
        yield span
