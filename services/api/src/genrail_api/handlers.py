"""What the API does with each command: load from the log, decide, append. No HTTP here."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from genrail_events import batches, jobs, ledger, subjects, users
from genrail_commands.accounts import append_to_account, load_account
from genrail_commands.batches import batch_request, create_batch_records
from genrail_eventlog.store import EventStore, retry_on_conflict
from genrail_commands.jobs import append_job_created, append_job_event, load_job, transition
from genrail_runtime.logs import event as log_event

from .errors import KeyReused

log = logging.getLogger("genrail.api")


class EmailTaken(Exception):
    pass


@dataclass(frozen=True)
class Registration:
    user_id: str
    email: str
    api_key: str
    balance: int
    position: int  # where user.registered sits in USERS, for read-your-writes


async def register_user(store: EventStore, email: str, *, grant_wait_s: float) -> Registration:
    """Append `user.registered` (the log refuses a second one for the same email), then wait
    up to `grant_wait_s` (0 when no grant is coming) until the ledger's signup grant is on the
    log, so the caller can spend it at once."""
    api_key = users.new_api_key()
    event = users.user_registered(email, api_key)
    user_id = event.aggregate_id
    appended = await store.append_first(users.registered_subject(user_id), event, msg_id=f"register:{user_id}")
    if appended is None:
        raise EmailTaken(f"{users.normalize_email(email)} is already registered")
    await wait_for_signup_grant(store, user_id, grant_wait_s)
    account, _ = await load_account(store, user_id)
    return Registration(user_id, event.data.email, api_key, account.balance, appended.seq)


async def wait_for_signup_grant(store: EventStore, user_id: str, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and not await store.exists(subjects.ledger(user_id, "granted", "signup")):
        await asyncio.sleep(0.01)


async def create_job(store: EventStore, user_id: str, job_type: jobs.JobType, job_input: dict[str, Any],
                     cost: int, idempotency_key: str | None,
                     webhook: jobs.WebhookTarget | None = None) -> tuple[jobs.Job, bool]:
    """Charge and create. Returns the job and whether this call created it (False: the
    idempotency key named an existing job). InsufficientCredits propagates, nothing charged."""
    job_id = jobs.job_id_for(user_id, idempotency_key)
    if idempotency_key is not None:
        existing, _ = await load_job(store, job_id)
        if existing is not None:
            return _same(existing, job_type, job_input, idempotency_key), False
    request = ledger.JobRequest(type=job_type, input=job_input, cost=cost, webhook=webhook)
    debit_subject = subjects.ledger(user_id, "debited", job_id, "1")
    charged = await append_to_account(
        store, user_id, lambda account: ledger.decide_debit(account, job_id, 1, cost, request),
        unique_subject=debit_subject if idempotency_key is not None else None,
    )
    if charged is None:  # charged before (the same key, by a request that died before creating the job)
        request = await _charged_request(store, debit_subject, request)
    created = jobs.job_created(job_id, user_id, request.type, request.cost, request.input, webhook=request.webhook)
    if not await append_job_created(store, created):
        # Created already: by a concurrent request with the same key, or by the ledger's
        # recovery policy from our own debit. Ours is a new job exactly when we charged it.
        job, _ = await load_job(store, job_id)
        assert job is not None
        return _same(job, job_type, job_input, idempotency_key), charged is not None
    log_event(log, "job.created", job_id=job_id, user_id=user_id, type=str(job_type), cost=cost)
    # Created as its debit asked; an earlier request with this key may have asked otherwise.
    return _same(jobs.evolve(None, created), job_type, job_input, idempotency_key), True


def _same(job: jobs.Job, job_type: jobs.JobType, job_input: dict[str, Any], key: str | None) -> jobs.Job:
    if key is not None and not jobs.same_request(job, job_type, job_input):
        raise KeyReused(f"idempotency key {key!r} already named another request (job {job.id}, {job.type}): "
                        "use a new key for a new request")
    return job


async def _charged_request(store: EventStore, debit_subject: str, fallback: ledger.JobRequest) -> ledger.JobRequest:
    """What the debit on `debit_subject` paid for: the job is created as charged."""
    debit = await store.last(debit_subject)
    if debit is not None and isinstance(debit.event, ledger.CreditsDebited) and isinstance(debit.event.data.job,
                                                                                           ledger.JobRequest):
        return debit.event.data.job
    return fallback


async def cancel_job(store: EventStore, job: jobs.Job, *, by: str = "user") -> jobs.Job:
    """InvalidTransition when the job is already final. `by`: who cancels (the user, an admin)."""
    canceled, _, _ = await transition(
        store, job.id, lambda current: jobs.decide_transition(current, jobs.JobStatus.canceled,
                                                              error=f"canceled by the {by}", reason=by))
    log_event(log, "job.transition", job_id=job.id, user_id=job.user_id, to="canceled", reason=by)
    return canceled


# --- admin --------------------------------------------------------------------------

class JobNotFound(LookupError):
    pass


class UserNotFound(LookupError):
    pass


class IdempotencyKeyReused(Exception):
    pass


async def retry_job(store: EventStore, job_id: str, *, requested_by: str) -> jobs.Job:
    """Charge the job's next attempt, then put it back to pending as that attempt.

    JobNotFound; InvalidTransition (naming the current state) unless the job is failed or
    expired; InsufficientCredits with nothing charged. The debit's subject names the attempt,
    so a request repeated after a crash between the debit and `job.retried` charges nothing
    more and completes the retry (and the ledger completes it from the debit on its own)."""
    job, _ = await load_job(store, job_id)
    if job is None:
        raise JobNotFound(f"job {job_id} not found")
    if job.status not in jobs.RETRYABLE_STATUSES:
        log.warning("job.transition_denied", extra={"job_id": job_id, "from": str(job.status), "to": "pending",
                                                     "user_id": job.user_id})
        raise jobs.InvalidTransition(job.id, job.status, jobs.JobStatus.pending)
    attempt = job.attempt + 1
    request = ledger.JobRequest(type=job.type, input=job.input, cost=job.cost, batch_id=job.batch_id,
                                requested_by=requested_by)
    await append_to_account(
        store, job.user_id, lambda account: ledger.decide_debit(account, job.id, attempt, job.cost, request),
        unique_subject=subjects.ledger(job.user_id, "debited", job.id, str(attempt)))

    async def put_back() -> jobs.Job:
        current, seq = await load_job(store, job_id)
        assert current is not None
        if current.attempt >= attempt:
            return current  # retried already: by a concurrent request, or by the ledger from the debit
        event = jobs.decide_retry(current, requested_by=requested_by)
        await append_job_event(store, current, seq, event)
        log_event(log, "job.retried", job_id=job_id, user_id=job.user_id, attempt=attempt, cost=job.cost,
                  requested_by=requested_by)
        return jobs.evolve(current, event)

    return await retry_on_conflict(put_back)


ADJUSTMENT_ID_NAMESPACE = uuid.UUID("8f3d2c7e-4b1a-4e0f-9c6d-2a5b7e9f1c34")


@dataclass(frozen=True)
class Adjustment:
    adjustment_id: str
    user_id: str
    amount: int
    reason: str
    balance_after: int
    replayed: bool


async def adjust_credits(store: EventStore, user_id: str, amount: int, reason: str,
                         idempotency_key: str | None) -> Adjustment:
    """An operator's correction. The same idempotency key applies it once, forever.
    UserNotFound; InvalidAmount; InsufficientCredits if it would take the balance below
    zero; IdempotencyKeyReused when the key named a different adjustment."""
    if not await store.exists(users.registered_subject(user_id)):
        raise UserNotFound(f"user {user_id} not found")
    adjustment_id = (str(uuid.uuid5(ADJUSTMENT_ID_NAMESPACE, f"{user_id}:{idempotency_key}"))
                     if idempotency_key is not None else str(uuid.uuid4()))
    subject = subjects.ledger(user_id, "adjusted", adjustment_id)
    appended = await append_to_account(
        store, user_id, lambda account: ledger.decide_adjustment(account, adjustment_id, amount, reason),
        unique_subject=subject)
    stored = await store.last(subject)
    assert stored is not None and isinstance(stored.event, ledger.CreditsAdjusted)
    d = stored.event.data
    if appended is None and (d.amount, d.reason) != (amount, reason):
        raise IdempotencyKeyReused(f"idempotency_key {idempotency_key!r} already applied an adjustment of "
                                   f"{d.amount} ({d.reason!r})")
    if appended is not None:
        log_event(log, "credits.adjusted", user_id=user_id, amount=amount, reason=reason,
                  adjustment_id=adjustment_id)
    return Adjustment(adjustment_id, user_id, d.amount, d.reason, d.balance_after, replayed=appended is None)


async def create_batch(store: EventStore, user_id: str, prompt: str, image_keys: list[str], cost_per_image: int,
                       idempotency_key: str | None) -> tuple[str, bool]:
    """Charge one debit for every image, all or nothing, then create the batch and its jobs.
    Returns the batch id and whether this call created it. InsufficientCredits propagates."""
    batch_id = batches.batch_id_for(user_id, idempotency_key)
    debit_subject = subjects.ledger(user_id, "debited", batch_id, "1")
    if idempotency_key is not None and (charged := await store.last(debit_subject)) is not None:
        # Charged before with this key: finish what that request may not have (its batch and
        # image jobs, each created only if missing), as it was charged.
        assert isinstance(charged.event, ledger.CreditsDebited) and isinstance(charged.event.data.job,
                                                                                ledger.BatchRequest)
        asked = batch_request(batch_id, prompt, image_keys, cost_per_image)
        if (charged.event.data.job.prompt, charged.event.data.job.image_keys) != (asked.prompt, asked.image_keys):
            raise KeyReused(f"idempotency key {idempotency_key!r} already named another batch ({batch_id}): "
                            "use a new key for a new request")
        await create_batch_records(store, user_id, charged.event.data.job)
        return batch_id, False
    request = batch_request(batch_id, prompt, image_keys, cost_per_image)
    await append_to_account(
        store, user_id, lambda account: ledger.decide_debit(account, batch_id, 1, request.cost, request),
        unique_subject=debit_subject if idempotency_key is not None else None)
    created = await create_batch_records(store, user_id, request)
    if created:
        log_event(log, "batch.created", batch_id=batch_id, user_id=user_id, images=len(image_keys),
                  cost=request.cost)
    return batch_id, created
