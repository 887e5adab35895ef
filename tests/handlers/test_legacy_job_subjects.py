"""A log written before job subjects carried a routing token (`job.transitioned.<id>`) keeps
working after the upgrade: its jobs load, move on, retry and refund once, and their new
events go to routed subjects (`job.transitioned.failed.<id>`) guarded by the same
optimistic concurrency."""

from __future__ import annotations

import asyncio

from genrail_api.handlers import cancel_job, create_job, retry_job
from genrail_commands.jobs import job_exists, load_job, transition
from genrail_events import jobs, subjects
from genrail_events.jobs import JobStatus as S
from genrail_events.jobs import JobType
from genrail_ledger.policies import create_job_from_debit, refund_ended_attempt

from .conftest import Given, appended_since, balance, job_on_log, violations


async def test_a_job_on_three_token_subjects_loads_and_its_next_event_is_routed(log, given: Given) -> None:
    user = await given.user(credits=10)
    job = await given.job(user, S.processing, legacy=True)
    appended = appended_since(log)

    loaded, seq = await load_job(log, job.id)
    assert loaded == job and seq == 0  # nothing on the routed filter yet
    await transition(log, job.id, lambda j: jobs.decide_transition(j, S.completed, output={"headline": "x"}))

    assert appended.subjects() == [f"job.transitioned.completed.{job.id}"]
    assert (await job_on_log(log, job.id)).status is S.completed


async def test_concurrent_transitions_of_a_legacy_job_append_one(log, given: Given) -> None:
    user = await given.user(credits=10)
    job = await given.job(user, S.processing, legacy=True, cost=3)
    appended = appended_since(log)

    def complete(j: jobs.Job) -> jobs.JobTransitioned | None:
        return jobs.decide_transition(j, S.completed, output={}) if j.status is S.processing else None

    await asyncio.gather(*(transition(log, job.id, complete) for _ in range(10)))

    assert appended.subjects() == [f"job.transitioned.completed.{job.id}"]


async def test_a_legacy_failed_job_retries_refunds_and_the_audit_adds_up(log, given: Given) -> None:
    user = await given.user(credits=10)
    job = await given.job(user, S.processing, S.failed, legacy=True, cost=2)
    assert await balance(log, user) == 10

    retried = await retry_job(log, job.id, requested_by="admin")
    assert (retried.status, retried.attempt) == (S.pending, 2)
    _, failed, _ = await transition(log, job.id, lambda j: jobs.decide_transition(j, S.failed, error="boom"))
    await refund_ended_attempt(log, failed)
    await refund_ended_attempt(log, failed)

    assert await balance(log, user) == 10
    assert len(await log.read(f"ledger.{user}.refunded.{job.id}.>")) == 2  # attempt 1 and attempt 2
    assert violations(log) == []


async def test_an_unrouted_transition_still_reaches_the_refund_policy(log, given: Given) -> None:
    user = await given.user(credits=10)
    job = await given.job(user, S.processing, S.failed, legacy=True, cost=4, refunds=False)
    stored = (await log.read(subjects.legacy_job_kind("transitioned", job.id)))[-1]

    await refund_ended_attempt(log, stored.event)

    assert await balance(log, user) == 10


async def test_the_recovery_sees_a_legacy_creation_and_creates_nothing(log, given: Given) -> None:
    user = await given.user(credits=10)
    job = await given.job(user, legacy=True)
    [debit] = [s.event for s in await log.read(f"ledger.{user}.debited.{job.id}.>")]
    appended = appended_since(log)

    assert await job_exists(log, job.id)
    await create_job_from_debit(log, debit, grace_s=0)

    assert appended.subjects() == []


async def test_an_idempotent_request_finds_its_legacy_job(log, given: Given) -> None:
    user = await given.user(credits=10)
    first = await given.job(user, legacy=True, job_id=jobs.job_id_for(user, "key-1"), input={"product": "mug"})
    appended = appended_since(log)

    again, created_again = await create_job(log, user, JobType.copy, {"product": "mug"}, 1, "key-1")

    assert (again.id, created_again) == (first.id, False)
    assert appended.subjects() == []  # no second charge, no second job


async def test_a_legacy_job_is_canceled_once(log, given: Given) -> None:
    user = await given.user(credits=10)
    job = await given.job(user, legacy=True, cost=2)
    appended = appended_since(log)

    await asyncio.gather(*(cancel_job(log, job) for _ in range(3)), return_exceptions=True)

    assert appended.subjects("job.>") == [f"job.transitioned.canceled.{job.id}"]
    assert isinstance(appended.one("job.>"), jobs.JobTransitioned)
