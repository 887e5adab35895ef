"""The API's command handlers against the log: given these events, when this command, then
these events were appended (or, for a refused command, none)."""

from __future__ import annotations

import asyncio

import pytest

from genrail_api.errors import KeyReused
from genrail_api.handlers import (
    EmailTaken,
    IdempotencyKeyReused,
    JobNotFound,
    UserNotFound,
    adjust_credits,
    cancel_job,
    create_batch,
    create_job,
    register_user,
    retry_job,
)
from genrail_events import batches, jobs, ledger, subjects, users
from genrail_events.jobs import JobStatus as S
from genrail_events.jobs import JobType
from genrail_events.ledger import BatchRequest, InsufficientCredits, InvalidAmount, JobRequest
from genrail_ledger.policies import grant_signup_credits, refund_ended_attempt

from .conftest import RETRIED, Given, appended_since, balance, job_on_log, new_id, violations

COPY_INPUT = {"product": "trail boots", "audience": "hikers"}
COPY_REQUEST = JobRequest(type=JobType.copy, input=COPY_INPUT, cost=2)


def debited(user_id: str, job_id: str, attempt: int = 1) -> str:
    return subjects.ledger(user_id, "debited", job_id, str(attempt))


# --- register_user ----------------------------------------------------------------------

async def test_register_user_waits_for_the_signup_grant_so_it_can_be_spent_at_once(log) -> None:
    email = f"{new_id()}@example.com"
    appended = appended_since(log)
    registering = asyncio.create_task(register_user(log, email, grant_wait_s=5))

    while not appended.subjects() and not registering.done():
        await asyncio.sleep(0)
    await grant_signup_credits(log, appended.one("user.>"), 10)  # the ledger, on user.registered
    registration = await registering

    assert registration.balance == 10
    assert appended.subjects() == [users.registered_subject(registration.user_id),
                                   subjects.ledger(registration.user_id, "granted", "signup")]


async def test_an_email_registers_once(log) -> None:
    email = f"{new_id()}@example.com"
    first = await register_user(log, email, grant_wait_s=0)
    appended = appended_since(log)

    with pytest.raises(EmailTaken):
        await register_user(log, f"  {email.upper()} ", grant_wait_s=0)

    assert appended.subjects() == [] and first.balance == 0


# --- create_job -------------------------------------------------------------------------

async def test_create_job_charges_once_then_creates_the_job(log, given: Given) -> None:
    user = await given.user(credits=5)
    appended = appended_since(log)

    job, created = await create_job(log, user, JobType.copy, COPY_INPUT, 2, None)

    assert created and job.status is S.pending and job.attempt == 1
    assert appended.subjects() == [debited(user, job.id), subjects.job("created", "copy", job.id)]
    debit, job_created = appended.events()
    assert debit.data.job == JobRequest(type=JobType.copy, input=COPY_INPUT, cost=2)
    assert (debit.data.amount, debit.data.balance_after) == (2, 3)
    assert (job_created.data.user_id, job_created.data.cost, job_created.data.input) == (user, 2, COPY_INPUT)
    assert violations(log) == []


@pytest.mark.parametrize("credits", [0, 1])
async def test_insufficient_credits_appends_nothing(log, given: Given, credits: int) -> None:
    user = await given.user(credits=credits)
    appended = appended_since(log)

    with pytest.raises(InsufficientCredits):
        await create_job(log, user, JobType.copy, COPY_INPUT, 2, "key-1")

    assert appended.subjects() == []


async def test_the_same_idempotency_key_twice_charges_once_and_makes_one_job(log, given: Given) -> None:
    user = await given.user(credits=5)
    appended = appended_since(log)

    first, first_created = await create_job(log, user, JobType.copy, COPY_INPUT, 2, "key-1")
    again, again_created = await create_job(log, user, JobType.copy, COPY_INPUT, 2, "key-1")

    assert (first_created, again_created) == (True, False) and again.id == first.id
    assert appended.subjects() == [debited(user, first.id), subjects.job("created", "copy", first.id)]
    assert await balance(log, user) == 3


async def test_the_same_key_with_another_request_is_refused_and_changes_nothing(log, given: Given) -> None:
    user = await given.user(credits=5)
    first, _ = await create_job(log, user, JobType.copy, COPY_INPUT, 2, "key-1")
    appended = appended_since(log)

    for job_type, job_input in ((JobType.copy, {**COPY_INPUT, "tone": "bold"}), (JobType.scrape, COPY_INPUT)):
        with pytest.raises(KeyReused, match=f"already named another request \\(job {first.id}"):
            await create_job(log, user, job_type, job_input, 2, "key-1")

    assert appended.subjects() == [] and await balance(log, user) == 3


async def test_the_same_batch_key_with_other_images_or_prompt_is_refused(log, given: Given) -> None:
    user = await given.user(credits=10)
    batch_id, created = await create_batch(log, user, "sepia", ["uploads/u/a.png", "uploads/u/b.png"], 1, "b-1")
    appended = appended_since(log)

    for prompt, keys in (("sepia", ["uploads/u/a.png"]), ("noir", ["uploads/u/a.png", "uploads/u/b.png"])):
        with pytest.raises(KeyReused, match="already named another batch"):
            await create_batch(log, user, prompt, keys, 1, "b-1")
    again, created_again = await create_batch(log, user, "sepia", ["uploads/u/a.png", "uploads/u/b.png"], 1, "b-1")

    assert (created, again, created_again) == (True, batch_id, False)
    assert appended.subjects() == [] and await balance(log, user) == 8


async def test_twenty_concurrent_calls_with_one_key_charge_once_and_make_one_job(log, given: Given) -> None:
    user = await given.user(credits=50)
    appended = appended_since(log)

    results = await asyncio.gather(*(create_job(log, user, JobType.copy, COPY_INPUT, 2, "key-1")
                                     for _ in range(20)))

    [job_id] = {job.id for job, _ in results}
    assert appended.subjects() == [debited(user, job_id), subjects.job("created", "copy", job_id)]
    assert await balance(log, user) == 48
    assert violations(log) == []


async def test_twenty_concurrent_jobs_against_five_credits_make_five_and_never_overspend(
        log, given: Given) -> None:
    user = await given.user(credits=5)
    appended = appended_since(log)

    results = await asyncio.gather(*(create_job(log, user, JobType.copy, COPY_INPUT, 1, None)
                                     for _ in range(20)), return_exceptions=True)

    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(refused) == 15 and all(isinstance(r, InsufficientCredits) for r in refused)
    assert len(appended.subjects("job.created.>")) == 5
    assert [e.data.balance_after for e in appended.events(f"ledger.{user}.>")] == [4, 3, 2, 1, 0]
    assert violations(log) == []


async def test_a_debit_whose_job_was_never_created_is_found_by_the_next_call_with_the_same_key(
        log, given: Given) -> None:
    user = await given.user(credits=5)
    job_id = jobs.job_id_for(user, "key-1")
    await given.debit(user, job_id, 1, COPY_REQUEST)  # then the API died
    appended = appended_since(log)

    job, _ = await create_job(log, user, JobType.copy, COPY_INPUT, 2, "key-1")

    assert job.id == job_id
    assert appended.subjects() == [subjects.job("created", "copy", job_id)]  # no second charge
    assert await balance(log, user) == 3


async def test_a_job_recovered_by_the_same_key_is_the_job_its_debit_paid_for(log, given: Given) -> None:
    user = await given.user(credits=5)
    job_id = jobs.job_id_for(user, "key-1")
    await given.debit(user, job_id, 1, COPY_REQUEST)  # then the API died

    job, _ = await create_job(log, user, JobType.copy, COPY_INPUT, 3, "key-1")  # the price went up meanwhile
    failed = (await given.events(jobs.decide_transition(job, S.failed, error="provider down")))[0].event
    await refund_ended_attempt(log, failed)

    assert violations(log) == []  # not "debited 2 but refunded 3"
    assert await balance(log, user) == 5 and job.cost == 2


# --- cancel_job -------------------------------------------------------------------------

FINAL = {"completed": (S.processing, S.completed), "failed": (S.processing, S.failed),
         "canceled": (S.canceled,), "expired": (S.processing, S.expired)}
NOT_FINAL = {"pending": (), "queued": (S.queued,), "processing": (S.processing,)}


@pytest.mark.parametrize("path", NOT_FINAL.values(), ids=NOT_FINAL.keys())
async def test_cancel_job_cancels_a_job_that_is_not_final(log, given: Given, path) -> None:
    user = await given.user()
    job = await given.job(user, *path)
    appended = appended_since(log)

    canceled = await cancel_job(log, job)

    assert canceled.status is S.canceled
    transition = appended.one(f"job.*.*.{job.id}")
    d = transition.data
    assert (d.from_status, d.to, d.reason) == (job.status, S.canceled, "user")
    assert appended.subjects() == [jobs.subject_for(transition)]


@pytest.mark.parametrize("path", FINAL.values(), ids=FINAL.keys())
async def test_cancel_job_refuses_a_final_job(log, given: Given, path) -> None:
    user = await given.user()
    job = await given.job(user, *path)
    appended = appended_since(log)

    with pytest.raises(jobs.InvalidTransition):
        await cancel_job(log, job)

    assert appended.subjects() == []


# --- retry_job --------------------------------------------------------------------------

@pytest.mark.parametrize("ended", [S.failed, S.expired])
async def test_retry_job_charges_the_next_attempt_then_puts_the_job_back_to_pending(
        log, given: Given, ended: S) -> None:
    user = await given.user(credits=10)
    job = await given.job(user, S.processing, ended, cost=3)
    appended = appended_since(log)

    retried = await retry_job(log, job.id, requested_by="admin@example.com")

    assert (retried.status, retried.attempt) == (S.pending, 2)
    debit, event = appended.events()
    assert appended.subjects() == [debited(user, job.id, 2), jobs.subject_for(event)]
    assert debit.data.job == JobRequest(type=JobType.copy, input=job.input, cost=3,
                                        requested_by="admin@example.com")
    assert (debit.data.attempt, debit.data.amount) == (2, 3)
    assert isinstance(event, jobs.JobRetried) and (event.data.attempt, event.data.from_status) == (2, ended)
    assert await balance(log, user) == 7
    assert violations(log) == []


NOT_RETRYABLE = {**NOT_FINAL, "completed": FINAL["completed"], "canceled": FINAL["canceled"]}


@pytest.mark.parametrize("path", NOT_RETRYABLE.values(), ids=NOT_RETRYABLE.keys())
async def test_retry_job_refuses_a_job_that_did_not_fail_or_expire(log, given: Given, path) -> None:
    user = await given.user()
    job = await given.job(user, *path)
    appended = appended_since(log)

    with pytest.raises(jobs.InvalidTransition) as refused:
        await retry_job(log, job.id, requested_by="admin")

    assert refused.value.from_status is job.status
    assert appended.subjects() == []


async def test_retry_job_without_the_credits_charges_nothing(log, given: Given) -> None:
    user = await given.user(credits=3)
    job = await given.job(user, S.processing, S.failed, cost=3)  # refunded: back to 3
    await given.entry(user, lambda account: ledger.decide_adjustment(account, new_id(), -1, "correction"))
    appended = appended_since(log)

    with pytest.raises(InsufficientCredits):
        await retry_job(log, job.id, requested_by="admin")

    assert appended.subjects() == []
    assert (await job_on_log(log, job.id)).status is S.failed


async def test_a_retry_cut_off_after_its_debit_is_completed_by_calling_again_without_a_second_charge(
        log, given: Given) -> None:
    user = await given.user(credits=10)
    job = await given.job(user, S.processing, S.failed, cost=3)
    await given.debit(user, job.id, 2, JobRequest(type=job.type, input=job.input, cost=3,
                                                  requested_by="admin"))
    appended = appended_since(log)  # the API died before job.retried

    retried = await retry_job(log, job.id, requested_by="admin")

    assert (retried.status, retried.attempt) == (S.pending, 2)
    assert appended.subjects() == [jobs.subject_for(appended.one(f"job.*.*.{job.id}"))]
    assert await balance(log, user) == 7


async def test_concurrent_retries_of_one_job_charge_one_attempt(log, given: Given) -> None:
    user = await given.user(credits=10)
    job = await given.job(user, S.processing, S.failed, cost=3)
    appended = appended_since(log)

    await asyncio.gather(*(retry_job(log, job.id, requested_by="admin") for _ in range(5)))

    assert len(appended.subjects(f"ledger.{user}.debited.>")) == 1
    assert len(appended.subjects(f"job.retried.*.{job.id}")) == 1
    assert violations(log) == []


async def test_a_second_failure_can_be_retried_as_a_third_attempt(log, given: Given) -> None:
    user = await given.user(credits=10)
    job = await given.job(user, S.processing, S.failed, RETRIED, S.processing, S.failed, cost=2)

    retried = await retry_job(log, job.id, requested_by="admin")

    assert retried.attempt == 3
    assert await log.exists(debited(user, job.id, 3))


async def test_retry_job_of_an_unknown_job_is_job_not_found(log) -> None:
    with pytest.raises(JobNotFound):
        await retry_job(log, new_id(), requested_by="admin")


# --- adjust_credits ---------------------------------------------------------------------

async def test_an_adjustment_with_one_key_is_applied_once(log, given: Given) -> None:
    user = await given.user(credits=10)
    appended = appended_since(log)

    first = await adjust_credits(log, user, 5, "goodwill", "adj-1")
    again = await adjust_credits(log, user, 5, "goodwill", "adj-1")

    assert appended.subjects() == [subjects.ledger(user, "adjusted", first.adjustment_id)]
    assert (first.replayed, again.replayed) == (False, True)
    assert first.balance_after == again.balance_after == 15 == await balance(log, user)


async def test_concurrent_adjustments_with_one_key_apply_once(log, given: Given) -> None:
    user = await given.user(credits=10)
    appended = appended_since(log)

    results = await asyncio.gather(*(adjust_credits(log, user, -4, "chargeback", "adj-1") for _ in range(10)))

    assert sum(not r.replayed for r in results) == 1
    assert len(appended.subjects()) == 1 and await balance(log, user) == 6


async def test_an_adjustment_key_reused_for_another_amount_is_refused(log, given: Given) -> None:
    user = await given.user(credits=10)
    await adjust_credits(log, user, 5, "goodwill", "adj-1")
    appended = appended_since(log)

    with pytest.raises(IdempotencyKeyReused):
        await adjust_credits(log, user, 7, "goodwill", "adj-1")

    assert appended.subjects() == []


async def test_an_adjustment_never_takes_the_balance_below_zero(log, given: Given) -> None:
    user = await given.user(credits=10)
    appended = appended_since(log)

    with pytest.raises(InsufficientCredits):
        await adjust_credits(log, user, -11, "chargeback", "adj-1")
    assert appended.subjects() == []

    emptied = await adjust_credits(log, user, -10, "chargeback", "adj-2")
    assert emptied.balance_after == 0 == await balance(log, user)


async def test_an_adjustment_of_zero_or_for_an_unknown_user_is_refused(log, given: Given) -> None:
    user = await given.user(credits=10)
    appended = appended_since(log)

    with pytest.raises(InvalidAmount):
        await adjust_credits(log, user, 0, "nothing", "adj-1")
    with pytest.raises(UserNotFound):
        await adjust_credits(log, new_id(), 5, "goodwill", "adj-1")

    assert appended.subjects() == []


# --- create_batch -----------------------------------------------------------------------

IMAGES = ["uploads/a.png", "uploads/b.jpg", "uploads/c.png"]


async def test_create_batch_charges_one_debit_for_every_image_then_creates_the_batch_and_its_jobs(
        log, given: Given) -> None:
    user = await given.user(credits=10)
    appended = appended_since(log)

    batch_id, created = await create_batch(log, user, "make it pop", IMAGES, 2, None)

    assert created
    job_ids = [batches.image_job_id(batch_id, i) for i in range(len(IMAGES))]
    subjects_appended = appended.subjects()
    assert subjects_appended[:2] == [debited(user, batch_id), batches.created_subject(batch_id)]
    assert sorted(subjects_appended[2:]) == sorted(subjects.job("created", "image_edit", j) for j in job_ids)
    debit = appended.one(f"ledger.{user}.>")
    assert debit.data.job == BatchRequest(batch_id=batch_id, prompt="make it pop", image_keys=IMAGES,
                                          cost_per_image=2, cost=6)
    assert debit.data.amount == 6 and await balance(log, user) == 4
    assert appended.one(f"batch.*.{batch_id}").data.job_ids == job_ids
    for index, job_id in enumerate(job_ids):
        d = appended.one(f"job.created.*.{job_id}").data
        assert (d.type, d.cost, d.batch_id, d.input["image_key"], d.input["index"]) == (
            JobType.image_edit, 2, batch_id, IMAGES[index], index)
    assert violations(log) == []


async def test_create_batch_without_the_credits_appends_nothing(log, given: Given) -> None:
    user = await given.user(credits=5)
    appended = appended_since(log)

    with pytest.raises(InsufficientCredits):
        await create_batch(log, user, "make it pop", IMAGES, 2, "batch-1")

    assert appended.subjects() == []


async def test_the_same_batch_key_twice_charges_once_and_makes_one_batch(log, given: Given) -> None:
    user = await given.user(credits=10)
    appended = appended_since(log)

    first = await create_batch(log, user, "make it pop", IMAGES, 2, "batch-1")
    again = await create_batch(log, user, "make it pop", IMAGES, 2, "batch-1")

    assert (first[0], first[1], again[1]) == (again[0], True, False)
    assert len(appended.subjects(f"ledger.{user}.>")) == 1
    assert len(appended.subjects("batch.>")) == 1 and len(appended.subjects("job.created.>")) == len(IMAGES)


async def test_twenty_concurrent_batch_requests_with_one_key_charge_once_and_make_one_batch(
        log, given: Given) -> None:
    user = await given.user(credits=100)
    appended = appended_since(log)

    results = await asyncio.gather(*(create_batch(log, user, "make it pop", IMAGES, 2, "batch-1")
                                     for _ in range(20)))

    [batch_id] = {batch_id for batch_id, _ in results}
    assert sum(created for _, created in results) == 1
    assert appended.subjects(f"ledger.{user}.>") == [debited(user, batch_id)]
    assert appended.subjects("batch.>") == [batches.created_subject(batch_id)]
    assert len(appended.subjects("job.created.>")) == len(IMAGES)
    assert await balance(log, user) == 94


async def test_a_batch_cut_off_after_its_debit_is_created_by_the_same_key_as_charged(
        log, given: Given) -> None:
    user = await given.user(credits=10)
    batch_id = batches.batch_id_for(user, "batch-1")
    request = BatchRequest(batch_id=batch_id, prompt="make it pop", image_keys=IMAGES, cost_per_image=2,
                           cost=6)
    await given.debit(user, batch_id, 1, request)  # then the API died
    appended = appended_since(log)

    await create_batch(log, user, "make it pop", IMAGES, 3, "batch-1")  # the price went up meanwhile

    assert appended.subjects(f"ledger.{user}.>") == [] and await balance(log, user) == 4
    assert appended.one("batch.>").data.cost_per_image == 2
    assert {e.data.cost for e in appended.events("job.created.>")} == {2}
    assert len(appended.subjects("job.created.>")) == len(IMAGES)


async def test_a_batch_cut_off_after_batch_created_is_completed_by_the_same_key(log, given: Given) -> None:
    user = await given.user(credits=10)
    batch_id = batches.batch_id_for(user, "batch-1")
    request = BatchRequest(batch_id=batch_id, prompt="make it pop", image_keys=IMAGES, cost_per_image=2,
                           cost=6)
    await given.debit(user, batch_id, 1, request)
    await given.events(batches.batch_created(batch_id, user, "make it pop", IMAGES, 2))  # then the API died

    await create_batch(log, user, "make it pop", IMAGES, 2, "batch-1")

    for index in range(len(IMAGES)):
        assert await log.exists(jobs.created_subject(batches.image_job_id(batch_id, index)))
