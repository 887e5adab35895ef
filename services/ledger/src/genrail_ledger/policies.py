"""The ledger's policies: what the ledger appends when something happens elsewhere.
Each is exactly-once by construction: the entry's subject names what it is for, and an
entry already on that subject means the policy already ran."""

from __future__ import annotations

import logging

from genrail_events import jobs, ledger, subjects
from genrail_events.envelope import Event
from genrail_platform.accounts import append_to_account
from genrail_platform.eventstore import ConcurrencyConflict, EventStore
from genrail_platform.logs import event as log_event

log = logging.getLogger("genrail.ledger")


async def grant_signup_credits(store: EventStore, registered: Event, amount: int) -> None:
    user_id = registered.data["user_id"]
    appended = await append_to_account(
        store, user_id, lambda account: ledger.decide_grant(account, amount, "signup", "signup"),
        unique_subject=subjects.ledger(user_id, "granted", "signup"))
    if appended:
        log_event(log, "credits.granted", user_id=user_id, amount=amount, reason="signup")


async def refund_ended_attempt(store: EventStore, transitioned: Event) -> None:
    d = transitioned.data
    if d["to"] not in jobs.REFUNDED_STATUSES:
        return
    user_id, job_id, attempt = d["user_id"], d["job_id"], int(d["attempt"])
    appended = await append_to_account(
        store, user_id,
        lambda account: ledger.decide_refund(account, job_id, attempt, int(d["cost"]), f"job {d['to']}"),
        unique_subject=subjects.ledger(user_id, "refunded", job_id, str(attempt)))
    if appended:
        log_event(log, "credits.refunded", user_id=user_id, job_id=job_id, attempt=attempt, amount=d["cost"],
                  reason=d["to"])


async def create_job_from_debit(store: EventStore, debited: Event) -> None:
    """The debit is the authoritative 'charge and create': if the API died between the two
    appends, the job is created here from the request the debit carries."""
    d = debited.data
    if int(d["attempt"]) != 1:
        return  # a retry's debit belongs to a job that exists already
    request = d["job"]
    created = jobs.job_created(d["job_id"], d["user_id"], jobs.JobType(request["type"]), int(request["cost"]),
                               request["input"], batch_id=request.get("batch_id"))
    try:
        await store.append(jobs.created_subject(d["job_id"]), created, msg_id=f"job.created:{d['job_id']}",
                           expect_last_seq=0, expect_filter=subjects.job_events(d["job_id"]))
    except ConcurrencyConflict:
        return  # the API created it, as it normally does
    log_event(log, "job.created", job_id=d["job_id"], user_id=d["user_id"], type=request["type"],
              recovered_from_debit=True)
