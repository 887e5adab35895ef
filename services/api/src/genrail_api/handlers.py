"""What the API does with each command: load from the log, decide, append. No HTTP here."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from genrail_events import jobs, ledger, subjects, users
from genrail_platform.accounts import append_to_account, load_account
from genrail_platform.eventstore import ConcurrencyConflict, EventStore
from genrail_platform.jobstore import load_job, transition
from genrail_platform.logs import event as log_event

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


async def register_user(store: EventStore, email: str, *, wait_s: float) -> Registration:
    """Append `user.registered` (the log refuses a second one for the same email), then wait
    until the ledger's signup grant is on the log, so the caller can spend it at once."""
    api_key = users.new_api_key()
    event = users.user_registered(email, api_key)
    user_id = event.aggregate_id
    try:
        appended = await store.append(users.registered_subject(user_id), event, msg_id=f"register:{user_id}",
                                      expect_last_seq=0)
    except ConcurrencyConflict:
        raise EmailTaken(f"{users.normalize_email(email)} is already registered") from None
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and not await store.exists(subjects.ledger(user_id, "granted", "signup")):
        await asyncio.sleep(0.01)
    account, _ = await load_account(store, user_id)
    return Registration(user_id, event.data["email"], api_key, account.balance, appended.seq)


async def create_job(store: EventStore, user_id: str, job_type: jobs.JobType, job_input: dict[str, Any],
                     cost: int, idempotency_key: str | None, *, batch_id: str | None = None) -> tuple[jobs.Job, bool]:
    """Charge and create. Returns the job and whether this call created it (False: the
    idempotency key named an existing job). InsufficientCredits propagates, nothing charged."""
    job_id = jobs.job_id_for(user_id, idempotency_key)
    if idempotency_key is not None:
        existing, _ = await load_job(store, job_id)
        if existing is not None:
            return existing, False
    request = {"type": str(job_type), "input": job_input, "cost": cost, "batch_id": batch_id}
    debit_subject = subjects.ledger(user_id, "debited", job_id, "1")
    await append_to_account(
        store, user_id, lambda account: ledger.decide_debit(account, job_id, 1, cost, request),
        unique_subject=debit_subject if idempotency_key is not None else None,
    )
    created = jobs.job_created(job_id, user_id, job_type, cost, job_input, batch_id=batch_id)
    try:
        await store.append(jobs.created_subject(job_id), created, msg_id=f"job.created:{job_id}",
                           expect_last_seq=0, expect_filter=subjects.job_events(job_id))
    except ConcurrencyConflict:
        job, _ = await load_job(store, job_id)  # a concurrent request with the same key won
        assert job is not None
        return job, False
    log_event(log, "job.created", job_id=job_id, user_id=user_id, type=str(job_type), cost=cost)
    return jobs.evolve(None, created), True


async def cancel_job(store: EventStore, job: jobs.Job) -> jobs.Job:
    """InvalidTransition when the job is already final."""
    canceled, _, _ = await transition(
        store, job.id, lambda current: jobs.decide_transition(current, jobs.JobStatus.canceled,
                                                              error="canceled by the user", reason="user"))
    log_event(log, "job.transition", job_id=job.id, user_id=job.user_id, to="canceled", reason="user")
    return canceled
