"""The ledger's policies against the log: given these events, when this event is handled
(once, again, or many times at once, as redeliveries and replicas do), then these entries
were appended, once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from genrail_eventlog.consumers import Defer, Retry
from genrail_events import accounts, batches, jobs, subjects, users
from genrail_events.envelope import utcnow
from genrail_events.jobs import JobStatus as S
from genrail_events.jobs import JobType
from genrail_events.ledger import BatchRequest, JobRequest
from genrail_events.payments import PaymentRecorded, PaymentReversed, PaymentSucceeded, ReversalRecorded
from genrail_ledger.policies import (
    create_job_from_debit,
    credit_purchase,
    grant_signup_credits,
    refund_ended_attempt,
    reverse_payment,
)

from .conftest import RETRIED, Given, appended_since, balance, job_on_log, new_id, violations

GRACE_S = 30.0
LONG_AGO = timedelta(seconds=2 * GRACE_S)


async def last_transition(log, job_id: str) -> jobs.JobTransitioned:
    stored = await log.last(f"job.transitioned.*.{job_id}")
    return stored.event


# --- signup -----------------------------------------------------------------------------

async def test_a_signup_is_granted_once_however_often_it_is_handled(log, given: Given) -> None:
    registered = users.user_registered(f"{new_id()}@example.com", users.new_api_key())
    await given.events(registered)
    user = registered.aggregate_id
    appended = appended_since(log)

    await grant_signup_credits(log, registered, 25)
    await grant_signup_credits(log, registered, 25)
    await asyncio.gather(*(grant_signup_credits(log, registered, 25) for _ in range(10)))

    assert appended.subjects() == [subjects.ledger(user, "granted", "signup")]
    assert await balance(log, user) == 25


async def test_a_verified_email_is_granted_once_however_often_it_signs_in(log, given: Given) -> None:
    email = f"{new_id()}@example.com"
    registered = users.user_registered(email, users.new_api_key())
    await given.events(registered)
    user = registered.aggregate_id
    appended = appended_since(log)

    for method in (accounts.SignInMethod.magic_link, accounts.SignInMethod.github, accounts.SignInMethod.magic_link):
        await grant_signup_credits(log, accounts.signed_in(user, email, method, new_id()), 25)

    assert appended.subjects() == [subjects.ledger(user, "granted", "signup")]
    assert await balance(log, user) == 25


async def test_no_credits_means_no_grant(log, given: Given) -> None:
    registered = users.user_registered(f"{new_id()}@example.com", users.new_api_key())
    await given.events(registered)
    appended = appended_since(log)
    await grant_signup_credits(log, registered, 0)
    assert appended.subjects() == []


# --- refunds ----------------------------------------------------------------------------

ENDINGS = {"failed": (S.processing, S.failed), "canceled while pending": (S.canceled,),
           "canceled while processing": (S.processing, S.canceled), "expired": (S.processing, S.expired)}


@pytest.mark.parametrize("path", ENDINGS.values(), ids=ENDINGS.keys())
async def test_an_ended_attempt_is_refunded_what_it_was_charged(log, given: Given, path) -> None:
    user = await given.user(credits=10)
    job = await given.job(user, *path, cost=4, refunds=False)
    appended = appended_since(log)

    await refund_ended_attempt(log, await last_transition(log, job.id))

    refund = appended.one(f"ledger.{user}.>")
    assert appended.subjects() == [subjects.ledger(user, "refunded", job.id, "1")]
    assert (refund.data.amount, refund.data.attempt, refund.data.reason) == (4, 1, f"job {job.status}")
    assert await balance(log, user) == 10
    assert violations(log) == []


async def test_a_transition_handled_twice_refunds_once(log, given: Given) -> None:
    user = await given.user(credits=10)
    job = await given.job(user, S.processing, S.failed, cost=4, refunds=False)
    failed = await last_transition(log, job.id)
    appended = appended_since(log)

    await refund_ended_attempt(log, failed)
    await refund_ended_attempt(log, failed)

    assert appended.subjects() == [subjects.ledger(user, "refunded", job.id, "1")]
    assert await balance(log, user) == 10


async def test_ten_concurrent_handlings_of_a_transition_refund_once(log, given: Given) -> None:
    user = await given.user(credits=10)
    job = await given.job(user, S.processing, S.expired, cost=4, refunds=False)
    expired = await last_transition(log, job.id)
    appended = appended_since(log)

    await asyncio.gather(*(refund_ended_attempt(log, expired) for _ in range(10)))

    assert appended.subjects() == [subjects.ledger(user, "refunded", job.id, "1")]
    assert violations(log) == []


@pytest.mark.parametrize("path", [(S.queued,), (S.processing,), (S.processing, S.completed)],
                         ids=["queued", "processing", "completed"])
async def test_a_transition_that_does_not_end_an_attempt_in_failure_refunds_nothing(
        log, given: Given, path) -> None:
    user = await given.user(credits=10)
    job = await given.job(user, *path, cost=4)
    appended = appended_since(log)

    await refund_ended_attempt(log, await last_transition(log, job.id))

    assert appended.subjects() == []
    assert await balance(log, user) == 6


async def test_a_second_attempt_that_fails_is_refunded_separately(log, given: Given) -> None:
    user = await given.user(credits=10)
    job = await given.job(user, S.processing, S.failed, RETRIED, S.processing, cost=4)  # attempt 1 refunded
    [stored] = await given.events(jobs.decide_transition(job, S.failed, error="provider down again"))
    appended = appended_since(log)

    await refund_ended_attempt(log, stored.event)
    await refund_ended_attempt(log, stored.event)

    assert appended.subjects() == [subjects.ledger(user, "refunded", job.id, "2")]
    assert await balance(log, user) == 10
    assert violations(log) == []


# --- recovery: the debit is the authoritative "charge and create" -------------------------

async def test_a_debit_whose_job_was_never_created_creates_the_job(log, given: Given) -> None:
    user = await given.user(credits=10)
    job_id, request = new_id(), JobRequest(type=JobType.tts, input={"text": "hello"}, cost=2)
    debit = await given.debit(user, job_id, 1, request, at=utcnow() - LONG_AGO)  # then the API died
    appended = appended_since(log)

    await create_job_from_debit(log, debit, grace_s=GRACE_S)
    await create_job_from_debit(log, debit, grace_s=GRACE_S)

    assert appended.subjects() == [subjects.job("created", "tts", job_id)]
    d = appended.one("job.>").data
    assert (d.user_id, d.type, d.input, d.cost, d.attempt) == (user, JobType.tts, {"text": "hello"}, 2, 1)
    assert violations(log) == []


async def test_a_batch_debit_whose_batch_was_never_created_creates_the_batch_and_every_image_job(
        log, given: Given) -> None:
    user = await given.user(credits=10)
    batch_id, keys = new_id(), ["uploads/a.png", "uploads/b.png", "uploads/c.png"]
    request = BatchRequest(batch_id=batch_id, prompt="brighter", image_keys=keys, cost_per_image=2, cost=6)
    debit = await given.debit(user, batch_id, 1, request, at=utcnow() - LONG_AGO)
    appended = appended_since(log)

    await create_job_from_debit(log, debit, grace_s=GRACE_S)

    job_ids = [batches.image_job_id(batch_id, i) for i in range(len(keys))]
    assert appended.subjects()[0] == batches.created_subject(batch_id)
    assert sorted(appended.subjects()[1:]) == sorted(subjects.job("created", "image_edit", j) for j in job_ids)
    for job_id in job_ids:
        assert (await job_on_log(log, job_id)).batch_id == batch_id


async def test_a_retry_debit_whose_retry_never_happened_retries_the_job(log, given: Given) -> None:
    user = await given.user(credits=10)
    job = await given.job(user, S.processing, S.failed, cost=3)
    request = JobRequest(type=job.type, input=job.input, cost=3, requested_by="ops@example.com")
    debit = await given.debit(user, job.id, 2, request, at=utcnow() - LONG_AGO)  # then the API died
    appended = appended_since(log)

    await create_job_from_debit(log, debit, grace_s=GRACE_S)
    await create_job_from_debit(log, debit, grace_s=GRACE_S)

    retried = appended.one(f"job.*.*.{job.id}")
    assert isinstance(retried, jobs.JobRetried)
    assert (retried.data.attempt, retried.data.requested_by) == (2, "ops@example.com")
    assert appended.subjects() == [jobs.subject_for(retried)]
    assert violations(log) == []


async def test_a_debit_whose_job_the_api_created_changes_nothing(log, given: Given) -> None:
    user = await given.user(credits=10)
    job = await given.job(user, cost=2)
    debit = (await log.last(subjects.ledger(user, "debited", job.id, "1"))).event
    appended = appended_since(log)

    await create_job_from_debit(log, debit, grace_s=0)

    assert appended.subjects() == []


async def test_a_retry_debit_whose_retry_the_api_appended_changes_nothing(log, given: Given) -> None:
    user = await given.user(credits=10)
    job = await given.job(user, S.processing, S.failed, RETRIED, cost=2)
    debit = (await log.last(subjects.ledger(user, "debited", job.id, "2"))).event
    appended = appended_since(log)

    await create_job_from_debit(log, debit, grace_s=0)

    assert appended.subjects() == []


async def test_a_batch_debit_whose_batch_the_api_created_changes_nothing(log, given: Given) -> None:
    user = await given.user(credits=10)
    batch_id, keys = new_id(), ["uploads/a.png", "uploads/b.png"]
    request = BatchRequest(batch_id=batch_id, prompt="brighter", image_keys=keys, cost_per_image=2, cost=4)
    debit = await given.debit(user, batch_id, 1, request)
    created = batches.batch_created(batch_id, user, "brighter", keys, 2)
    await given.events(created, *(jobs.job_created(job_id, user, JobType.image_edit, 2, {"image_key": key},
                                                   batch_id=batch_id)
                                  for job_id, key in zip(created.data.job_ids, keys, strict=True)))
    appended = appended_since(log)

    await create_job_from_debit(log, debit, grace_s=0)

    assert appended.subjects() == []


async def test_a_debit_younger_than_the_grace_period_is_deferred(log, given: Given) -> None:
    user = await given.user(credits=10)
    debit = await given.debit(user, new_id(), 1, JobRequest(type=JobType.copy, input={}, cost=1))
    appended = appended_since(log)

    with pytest.raises(Defer) as deferred:
        await create_job_from_debit(log, debit, grace_s=GRACE_S)

    assert 0 < deferred.value.delay_s <= GRACE_S
    assert appended.subjects() == []


async def test_a_debit_due_within_the_wait_is_looked_at_once_when_it_is_due(log, given: Given) -> None:
    user = await given.user(credits=10)
    job_id = new_id()
    debit = await given.debit(user, job_id, 1, JobRequest(type=JobType.copy, input={}, cost=1),
                              at=utcnow() - timedelta(seconds=GRACE_S - 0.05))
    appended = appended_since(log)

    await create_job_from_debit(log, debit, grace_s=GRACE_S, wait_s=1.0)  # waits 0.05 s, then recovers

    assert appended.subjects() == [subjects.job("created", "copy", job_id)]


async def test_a_young_debit_whose_job_exists_is_done_with_at_once(log, given: Given) -> None:
    user = await given.user(credits=10)
    job = await given.job(user)
    debit = (await log.last(subjects.ledger(user, "debited", job.id, "1"))).event

    await create_job_from_debit(log, debit, grace_s=GRACE_S)  # no Defer: nothing left to wait for


async def test_the_api_and_the_recovery_racing_on_one_debit_make_one_job(log, given: Given) -> None:
    user = await given.user(credits=10)
    job_id, request = new_id(), JobRequest(type=JobType.copy, input={"product": "mug"}, cost=1)
    debit = await given.debit(user, job_id, 1, request, at=utcnow() - LONG_AGO)
    appended = appended_since(log)

    await asyncio.gather(*(create_job_from_debit(log, debit, grace_s=GRACE_S) for _ in range(10)))

    assert appended.subjects() == [subjects.job("created", "copy", job_id)]


async def test_a_batch_cut_off_after_batch_created_gets_every_image_job_from_its_debit(
        log, given: Given) -> None:
    user = await given.user(credits=10)
    batch_id, keys = new_id(), ["uploads/a.png", "uploads/b.png", "uploads/c.png"]
    request = BatchRequest(batch_id=batch_id, prompt="brighter", image_keys=keys, cost_per_image=2, cost=6)
    debit = await given.debit(user, batch_id, 1, request, at=utcnow() - LONG_AGO)
    created = batches.batch_created(batch_id, user, "brighter", keys, 2)
    first_image = jobs.job_created(created.data.job_ids[0], user, JobType.image_edit, 2,
                                   {"image_key": keys[0]}, batch_id=batch_id)
    await given.events(created, first_image)  # then the API died

    await create_job_from_debit(log, debit, grace_s=GRACE_S)

    for job_id in created.data.job_ids:
        assert await log.exists(jobs.created_subject(job_id))


# --- payments ---------------------------------------------------------------------------

def payment_of(user: str, *, credits: int = 100, amount_cents: int = 1000) -> PaymentSucceeded:
    return PaymentSucceeded(stripe_event_id=f"evt_{new_id()[:8]}", payment_id=f"pi_{new_id()[:12]}",
                            user_id=user, pack="starter", credits=credits, amount_cents=amount_cents,
                            currency="usd")


async def given_payment(given: Given, payment: PaymentSucceeded) -> PaymentRecorded:
    """The purchase as the webhook receiver records it (genrail_webhooks.stripe.recorded_as)."""
    subject = subjects.payment("succeeded", payment.payment_id)
    event = PaymentRecorded(aggregate_id=payment.payment_id, data=payment)
    await given.log.append(subject, event, msg_id=subject.replace(".", ":"))
    return event


def reversal(payment: PaymentSucceeded, reason: str, amount_cents: int) -> ReversalRecorded:
    """A refund or lost dispute as recorded from Stripe: totals so far, no user nor credits."""
    return ReversalRecorded(aggregate_id=payment.payment_id, data=PaymentReversed(
        stripe_event_id=f"evt_{new_id()[:8]}", payment_id=payment.payment_id, user_id=None, credits=None,
        reason=reason, amount_cents=amount_cents, currency="usd"))


async def test_a_purchase_is_credited_once(log, given: Given) -> None:
    user = await given.user(credits=0)
    purchase = await given_payment(given, payment_of(user, credits=100))
    appended = appended_since(log)

    await credit_purchase(log, purchase)
    await asyncio.gather(*(credit_purchase(log, purchase) for _ in range(5)))

    assert appended.subjects() == [subjects.ledger(user, "purchased", purchase.data.payment_id)]
    assert await balance(log, user) == 100


async def test_a_reversal_waits_for_its_purchase_to_be_recorded_and_credited(log, given: Given) -> None:
    user = await given.user(credits=0)
    payment = payment_of(user, credits=100)
    refund = reversal(payment, "refund", 1000)

    with pytest.raises(Retry):
        await reverse_payment(log, refund)  # the purchase is not on the log yet
    await given_payment(given, payment)
    appended = appended_since(log)
    with pytest.raises(Retry):
        await reverse_payment(log, refund)  # recorded, but the ledger has not credited it yet

    assert appended.subjects() == []
    assert await balance(log, user) == 0


async def test_a_reversal_takes_back_cumulative_totals_once(log, given: Given) -> None:
    user = await given.user(credits=0)
    payment = payment_of(user, credits=100, amount_cents=1000)
    await credit_purchase(log, await given_payment(given, payment))
    appended = appended_since(log)

    await reverse_payment(log, reversal(payment, "refund", 300))   # 30 credits
    await reverse_payment(log, reversal(payment, "refund", 300))   # the same total again: nothing
    await reverse_payment(log, reversal(payment, "refund", 500))   # 50 in all: 20 more
    await reverse_payment(log, reversal(payment, "refund", 300))   # a stale total: nothing

    taken = [e.data.amount for e in appended.events(f"ledger.{user}.reversed.>")]
    assert taken == [30, 20]
    assert await balance(log, user) == 50


async def test_a_lost_dispute_after_a_partial_refund_takes_back_only_the_rest(log, given: Given) -> None:
    user = await given.user(credits=0)
    payment = payment_of(user, credits=100, amount_cents=1000)
    await credit_purchase(log, await given_payment(given, payment))
    await reverse_payment(log, reversal(payment, "refund", 400))
    appended = appended_since(log)

    dispute = reversal(payment, "dispute_lost", 1000)  # a dispute names neither the user nor the credits
    await asyncio.gather(*(reverse_payment(log, dispute) for _ in range(5)))

    assert [e.data.amount for e in appended.events(f"ledger.{user}.>")] == [60]
    assert await balance(log, user) == 0
    assert violations(log) == []
