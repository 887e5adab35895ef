"""The ledger's policies: what the ledger appends when something happens elsewhere.
Each is exactly-once by construction: the entry's subject names what it is for, and an
entry already on that subject means the policy already ran."""

from __future__ import annotations

import asyncio
import logging

from genrail_events import batches, jobs, ledger, subjects
from genrail_events.envelope import utcnow
from genrail_events.payments import PaymentRecorded, ReversalRecorded
from genrail_events.accounts import SignedIn
from genrail_events.users import UserRegistered
from genrail_commands.accounts import append_to_account, load_account
from genrail_commands.batches import create_batch_records
from genrail_eventlog.consumers import Defer, Retry
from genrail_eventlog.store import EventStore, retry_on_conflict
from genrail_commands.jobs import append_job_created, append_job_event, job_exists, last_job_event, load_job
from genrail_runtime.logs import event as log_event
from genrail_events.payments import resolve_reversal

log = logging.getLogger("genrail.ledger")


async def grant_signup_credits(store: EventStore, event: UserRegistered | SignedIn, amount: int) -> None:
    """Once per user, and a user id is its email's: once per email. On `user.signed_in` (with
    SIGNUP_CREDITS_ON=verified_email) only a proven email gets them."""
    if not isinstance(event, UserRegistered | SignedIn) or amount <= 0:
        return
    user_id = event.data.user_id
    appended = await append_to_account(
        store, user_id, lambda account: ledger.decide_grant(account, amount, "signup", "signup"),
        unique_subject=subjects.ledger(user_id, "granted", "signup"))
    if appended:
        log_event(log, "credits.granted", user_id=user_id, amount=amount, reason="signup")


async def refund_ended_attempt(store: EventStore, transitioned: jobs.JobTransitioned) -> None:
    d = transitioned.data
    if d.to not in jobs.REFUNDED_STATUSES:
        return  # only an older log's unrouted transitions reach here (see bootstrap's filter)
    appended = await append_to_account(
        store, d.user_id, lambda account: ledger.decide_refund(account, d.job_id, d.attempt, d.cost, f"job {d.to}"),
        unique_subject=subjects.ledger(d.user_id, "refunded", d.job_id, str(d.attempt)))
    if appended:
        log_event(log, "credits.refunded", user_id=d.user_id, job_id=d.job_id, attempt=d.attempt, amount=d.cost,
                  reason=str(d.to))


async def _created_already(store: EventStore, debit: ledger.DebitedData) -> bool:
    """Did the API finish what this debit paid for (the job, the retry, or the batch)?"""
    if isinstance(debit.job, ledger.BatchRequest):  # the batch, and every one of its image jobs
        batch_id = debit.job.batch_id
        image_jobs = [batches.image_job_id(batch_id, i) for i in range(len(debit.job.image_keys))]
        return all(await asyncio.gather(store.exists(batches.created_subject(batch_id)),
                                        *(job_exists(store, job_id) for job_id in image_jobs)))
    if debit.attempt == 1:
        return await job_exists(store, debit.job_id)
    retried = await last_job_event(store, "retried", debit.job_id)
    return (retried is not None and isinstance(retried.event, jobs.JobRetried)
            and retried.event.data.attempt >= debit.attempt)


async def create_job_from_debit(store: EventStore, debited: ledger.CreditsDebited, *, grace_s: float = 0.0,
                                wait_s: float = 0.0) -> None:
    """The debit is the authoritative 'charge and create': if the API died between the two
    appends, the job is created here from the request the debit carries. A debit younger
    than `grace_s` is looked at again once it is that old: the API normally finishes its own
    work first. The handler waits for that itself when it is at most `wait_s` away (the
    consumer reads in order, so the debits behind it are younger still: one look each, and
    the consumer runs `grace_s` behind the log); longer, the message is deferred."""
    d = debited.data
    age_s = (utcnow() - debited.occurred_at).total_seconds()
    if 0 < grace_s - age_s <= wait_s:
        await asyncio.sleep(grace_s - age_s)
        age_s = grace_s
    if await _created_already(store, d):
        return  # the common case: the API created it right after charging
    if age_s < grace_s:
        raise Defer(grace_s - age_s)
    if d.attempt != 1:
        await retry_job_from_debit(store, debited)  # a retry's debit belongs to a job that exists already
        return
    request = d.job
    if isinstance(request, ledger.BatchRequest):  # a batch's debit: the batch and its image jobs
        if await create_batch_records(store, d.user_id, request):
            log_event(log, "batch.created", batch_id=request.batch_id, user_id=d.user_id, recovered_from_debit=True)
        return
    created = jobs.job_created(d.job_id, d.user_id, request.type, request.cost, request.input,
                               batch_id=request.batch_id, webhook=request.webhook)
    if not await append_job_created(store, created):
        return  # the API created it, as it normally does
    log_event(log, "job.created", job_id=d.job_id, user_id=d.user_id, type=str(request.type),
              recovered_from_debit=True)


async def retry_job_from_debit(store: EventStore, debited: ledger.CreditsDebited) -> None:
    """A retry's debit is the authoritative 'charge and retry': if the API died between the
    debit and `job.retried`, the job is retried here. When the job is already at that
    attempt (the API appended it, as it normally does), nothing happens."""
    d = debited.data
    attempt = d.attempt

    async def once() -> None:
        job, seq = await load_job(store, d.job_id)
        if job is None or job.attempt >= attempt:
            return
        if job.attempt != attempt - 1 or job.status not in jobs.RETRYABLE_STATUSES:
            log.error("job.retry_unrecoverable", extra={"job_id": job.id, "attempt": attempt,
                                                        "status": str(job.status), "job_attempt": job.attempt})
            return
        requested_by = getattr(d.job, "requested_by", None) or "recovered from debit"
        await append_job_event(store, job, seq, jobs.decide_retry(job, requested_by=requested_by))
        log_event(log, "job.retried", job_id=job.id, user_id=job.user_id, attempt=attempt,
                  recovered_from_debit=True)

    await retry_on_conflict(once)


# --- payments -----------------------------------------------------------------------

async def credit_purchase(store: EventStore, succeeded: PaymentRecorded) -> None:
    purchase = succeeded.data
    appended = await append_to_account(
        store, purchase.user_id,
        lambda account: ledger.decide_purchase(account, purchase.payment_id, purchase.credits, purchase.pack),
        unique_subject=subjects.ledger(purchase.user_id, "purchased", purchase.payment_id))
    if appended:
        log_event(log, "credits.purchased", user_id=purchase.user_id, payment_id=purchase.payment_id,
                  amount=purchase.credits, pack=purchase.pack)


async def reverse_payment(store: EventStore, reversed_event: ReversalRecorded) -> None:
    """Take back what a refund or a lost dispute reverses of a purchase. The purchase on the
    log is the authority for the user and the credits (a dispute names neither); until the
    purchase is credited, the reversal waits (Retry), so it is never lost nor applied early.
    Totals are cumulative: only what is due beyond earlier reversals is taken back."""
    reversal = reversed_event.data
    recorded = await store.last(subjects.payment("succeeded", reversal.payment_id))
    if recorded is None or not isinstance(recorded.event, PaymentRecorded):
        raise Retry(f"payment {reversal.payment_id}: {reversal.reason} received before its purchase")
    purchase = recorded.event.data
    resolved = resolve_reversal(reversal, purchase)  # ValueError (to the DLQ) if the users differ
    user_id, total = purchase.user_id, int(resolved.credits or 0)
    if not await store.exists(subjects.ledger(user_id, "purchased", purchase.payment_id)):
        raise Retry(f"payment {reversal.payment_id}: {reversal.reason} received before its purchase is credited")
    prior_filter = subjects.ledger(user_id, "reversed", purchase.payment_id) + ".>"

    async def attempt() -> ledger.Entry | None:
        # The account is read first: a reversal appended after this read conflicts on append.
        account, seq = await load_account(store, user_id)
        prior = [(s.event.data.reason, s.event.data.amount) for s in await store.read(prior_filter)
                 if isinstance(s.event, ledger.CreditsReversed)]
        entry = ledger.decide_payment_reversal(account, purchase.payment_id, purchase.credits, prior,
                                               reversal.reason, total)
        if entry is not None:
            await store.append(entry.subject, entry.event, msg_id=entry.msg_id, expect_last_seq=seq,
                               expect_filter=subjects.ledger_account(user_id))
        return entry

    entry = await retry_on_conflict(attempt)
    if entry is not None:
        log_event(log, "credits.reversed", user_id=user_id, payment_id=purchase.payment_id,
                  amount=entry.event.data.amount, reason=reversal.reason,
                  balance_after=entry.event.data.balance_after, stripe_event_id=reversal.stripe_event_id)
