"""The pipeline's worker against the log: given a job on the log, when its message is
delivered (first, or again), then these events were appended and the message is settled
so (returns: ack; Retry, Defer, DeadLetter: what `consumers.settle` does with them)."""

from __future__ import annotations

import asyncio

import inspect

import pytest

from genrail_eventlog.consumers import DeadLetter, Defer, Retry, backoff_s
from genrail_events import jobs, subjects
from genrail_events.jobs import JobStatus as S
from genrail_events.jobs import JobType
from genrail_ledger.policies import refund_ended_attempt
from genrail_pipeline.clients.errors import ProviderError
from genrail_pipeline.clients.replicate import ReplicateClient
from genrail_pipeline.limits import Limiter
from genrail_pipeline.providers import Providers
from genrail_pipeline.settings import PipelineSettings
from genrail_pipeline.worker import Worker
from genrail_storage.store import ObjectNotFound

from .conftest import RETRIED, Given, appended_since, job_on_log, violations
from .fakes import FakeProviders, FakeReplicate

COPY = {"headline": "Dry feet, any trail", "body": "Trail boots that keep the rain out."}


@pytest.fixture
def limiter(settings: PipelineSettings) -> Limiter:
    return Limiter(settings.pipeline_max_per_user, {"image_edit": settings.pipeline_max_image_edits,
                                                    "scrape": settings.pipeline_max_scrapes},
                   max_waiting=settings.pipeline_max_waiting_per_user)


@pytest.fixture
def pipeline(log, settings: PipelineSettings, limiter: Limiter):
    """`pipeline(*answers)`: a worker on the test's log, and the fake providers answering it."""
    def pipeline(*answers) -> tuple[Worker, FakeProviders]:
        providers = FakeProviders(*answers)
        return Worker(log, providers, settings, limiter), providers
    return pipeline


async def deliver(worker: Worker, log, job_id: str, kind: str = "created", *, num_delivered: int = 1) -> None:
    """Deliver the job's last `job.<kind>` message to the worker, as the work consumer does."""
    message = await log.last(subjects.job_kind(kind, job_id))
    await worker.handle(message.event, message.seq, num_delivered)


def transient(message: str = "503 from the provider", retry_after_s: float | None = None) -> ProviderError:
    return ProviderError(message, transient=True, retry_after_s=retry_after_s, status_code=503)


def test_the_fake_providers_keep_the_real_ones_signatures() -> None:
    for name in ("run_inline", "submit_prediction"):
        assert inspect.signature(getattr(FakeProviders, name)) == inspect.signature(getattr(Providers, name))
    for name in ("get_prediction", "cancel_prediction"):
        real = inspect.signature(getattr(ReplicateClient, name))
        assert inspect.signature(getattr(FakeReplicate, name)) == real


# --- inline jobs ------------------------------------------------------------------------

async def test_a_copy_job_goes_from_pending_through_processing_to_completed(
        log, given: Given, pipeline, limiter) -> None:
    user = await given.user()
    job = await given.job(user, type=JobType.copy)
    worker, providers = pipeline(COPY)
    appended = appended_since(log)

    await deliver(worker, log, job.id)

    moves = [(e.data.from_status, e.data.to) for e in appended.events()]
    assert moves == [(S.pending, S.processing), (S.processing, S.completed)]
    assert appended.events()[-1].data.output == COPY
    assert providers.calls == [("run_inline", job.id, 1)]
    assert limiter.try_acquire(user, "copy")  # the user's one slot was given back


async def test_a_transient_provider_failure_is_recorded_and_the_message_retried(
        log, given: Given, pipeline) -> None:
    user = await given.user()
    job = await given.job(user)
    worker, _ = pipeline(transient(retry_after_s=7))
    appended = appended_since(log)

    with pytest.raises(Retry) as retry:
        await deliver(worker, log, job.id)

    assert retry.value.delay_s == 7  # what the provider asked for
    processing, failure = appended.events()
    assert processing.data.to is S.processing
    assert isinstance(failure, jobs.JobProviderFailed)
    assert (failure.data.failures, failure.data.attempt) == (1, 1)
    assert (await job_on_log(log, job.id)).status is S.processing


async def test_the_third_transient_failure_fails_the_job_and_dead_letters_its_message(
        log, given: Given, pipeline) -> None:
    user = await given.user(credits=5)
    job = await given.job(user, cost=2)
    worker, providers = pipeline(transient(), transient(), transient("still 503"))
    appended = appended_since(log)

    with pytest.raises(Retry) as first:
        await deliver(worker, log, job.id, num_delivered=1)
    with pytest.raises(Retry):
        await deliver(worker, log, job.id, num_delivered=2)
    with pytest.raises(DeadLetter):
        await deliver(worker, log, job.id, num_delivered=3)

    assert first.value.delay_s == backoff_s(1)
    assert [e.data.failures for e in appended.events() if isinstance(e, jobs.JobProviderFailed)] == [1, 2, 3]
    failed = appended.events()[-1]
    assert (failed.data.to, failed.data.error) == (S.failed, "copy provider: still 503")
    assert len(providers.calls) == 3
    await refund_ended_attempt(log, failed)
    assert violations(log) == []


async def test_a_permanent_provider_failure_fails_the_job_at_once(log, given: Given, pipeline) -> None:
    user = await given.user()
    job = await given.job(user)
    worker, _ = pipeline(ProviderError("400: bad prompt", transient=False, status_code=400))
    appended = appended_since(log)

    await deliver(worker, log, job.id)  # acked: nothing to retry

    assert [e.data.to for e in appended.events()] == [S.processing, S.failed]
    assert appended.events()[-1].data.error == "copy provider: 400: bad prompt"


async def test_an_image_edit_whose_upload_is_gone_fails_at_once(log, given: Given, pipeline) -> None:
    user = await given.user()
    job = await given.job(user, type=JobType.image_edit, input={"image_key": "uploads/gone.png"})
    worker, _ = pipeline(ObjectNotFound("uploads/gone.png"))
    appended = appended_since(log)

    await deliver(worker, log, job.id)

    assert [e.data.to for e in appended.events()] == [S.processing, S.failed]


# --- redeliveries and stale messages ------------------------------------------------------

@pytest.mark.parametrize("num_delivered", [1, 2])
async def test_a_job_canceled_before_it_runs_is_left_alone(
        log, given: Given, pipeline, num_delivered: int) -> None:
    user = await given.user()
    job = await given.job(user, S.canceled)
    worker, providers = pipeline()
    appended = appended_since(log)

    await deliver(worker, log, job.id, num_delivered=num_delivered)

    assert appended.subjects() == [] and providers.calls == []


async def test_a_job_canceled_while_it_runs_stays_canceled_and_its_result_is_dropped(
        log, given: Given, pipeline) -> None:
    user = await given.user()
    job = await given.job(user)

    async def canceled_meanwhile(running: jobs.Job) -> dict:
        await given.events(jobs.decide_transition(running, S.canceled, reason="user"))
        return COPY

    worker, _ = pipeline(canceled_meanwhile)
    appended = appended_since(log)

    await deliver(worker, log, job.id)

    assert [e.data.to for e in appended.events()] == [S.processing, S.canceled]


async def test_a_redelivery_of_a_completed_job_appends_nothing(log, given: Given, pipeline) -> None:
    user = await given.user()
    job = await given.job(user, S.processing, (S.completed, {"output": COPY}))
    worker, providers = pipeline()
    appended = appended_since(log)

    await deliver(worker, log, job.id, num_delivered=2)

    assert appended.subjects() == [] and providers.calls == []


async def test_a_redelivered_message_of_an_earlier_attempt_is_ignored(log, given: Given, pipeline) -> None:
    user = await given.user()
    job = await given.job(user, S.processing, S.failed, RETRIED)  # pending again, as attempt 2
    worker, providers = pipeline(COPY)
    appended = appended_since(log)

    await deliver(worker, log, job.id, "created", num_delivered=2)  # attempt 1's message
    assert appended.subjects() == [] and providers.calls == []

    await deliver(worker, log, job.id, "retried")  # attempt 2's message runs it
    assert [(e.data.to, e.data.attempt) for e in appended.events()] == [(S.processing, 2), (S.completed, 2)]


async def test_a_job_that_was_processing_when_its_worker_died_is_run_again(
        log, given: Given, pipeline) -> None:
    user = await given.user()
    job = await given.job(user, S.processing)
    worker, providers = pipeline(COPY)
    appended = appended_since(log)

    await deliver(worker, log, job.id, num_delivered=2)

    assert [(e.data.from_status, e.data.to) for e in appended.events()] == [(S.processing, S.completed)]
    assert len(providers.calls) == 1


async def test_a_message_out_of_deliveries_fails_its_job_once_and_never_a_final_one(
        log, given: Given, pipeline) -> None:
    user = await given.user()
    running = await given.job(user, S.queued)
    completed = await given.job(user, S.processing, S.completed)
    worker, _ = pipeline()
    appended = appended_since(log)

    for job_id in (running.id, running.id, completed.id):
        await worker.fail(job_id, "deferred 200 times")  # the consumer's on_exhausted

    assert [(e.aggregate_id, e.data.to) for e in appended.events()] == [(running.id, S.failed)]


# --- fair sharing -------------------------------------------------------------------------

async def test_no_free_slot_queues_the_job_and_defers_it_without_counting_a_failure(
        log, given: Given, pipeline, settings, limiter) -> None:
    user = await given.user()
    job = await given.job(user)
    assert limiter.try_acquire(user, "copy")  # the user's one slot is busy with another job
    worker, providers = pipeline(COPY)
    appended = appended_since(log)

    with pytest.raises(Defer) as deferred:
        await deliver(worker, log, job.id, num_delivered=1)
    with pytest.raises(Defer):
        await deliver(worker, log, job.id, num_delivered=2)  # still busy: already queued, nothing more

    assert deferred.value.delay_s == settings.pipeline_defer_s
    assert [(e.data.from_status, e.data.to) for e in appended.events()] == [(S.pending, S.queued)]
    assert (await job_on_log(log, job.id)).failures == 0 and providers.calls == []

    limiter.release(user, "copy")
    await deliver(worker, log, job.id, num_delivered=3)
    assert [e.data.to for e in appended.events()] == [S.queued, S.processing, S.completed]


async def test_a_job_waiting_for_its_users_slot_starts_when_it_frees_without_a_deferral(
        log, given: Given, pipeline, limiter) -> None:
    user = await given.user()
    first, second = await given.job(user), await given.job(user)
    worker, providers = pipeline(COPY)
    assert limiter.try_acquire(user, "copy")  # the user's one slot is busy with another job
    appended = appended_since(log)

    waiting = asyncio.create_task(deliver(worker, log, second.id))
    await asyncio.sleep(0.01)
    limiter.release(user, "copy")
    await waiting

    assert [e.data.to for e in appended.events()] == [S.processing, S.completed]  # never queued
    assert (await job_on_log(log, first.id)).status is S.pending


async def test_a_users_waiting_jobs_are_bounded_and_the_rest_deferred_at_once(
        log, given: Given, pipeline, settings, limiter) -> None:
    user, other = await given.user(), await given.user()
    jobs_of_user = [await given.job(user) for _ in range(settings.pipeline_max_waiting_per_user + 1)]
    worker, _ = pipeline(COPY)
    assert limiter.try_acquire(user, "copy")
    waiters = [asyncio.create_task(deliver(worker, log, j.id)) for j in jobs_of_user[:-1]]
    await asyncio.sleep(0)

    with pytest.raises(Defer):  # the user already has max_waiting jobs waiting: no wait at all
        await asyncio.wait_for(deliver(worker, log, jobs_of_user[-1].id), settings.pipeline_slot_wait_s / 2)
    await deliver(worker, log, (await given.job(other)).id)  # another user is not held up

    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, Defer) for r in results)  # the slot never freed: deferred after the wait


# --- async jobs: a prediction, completed later by its webhook ------------------------------

async def test_an_async_job_records_processing_with_its_prediction_id(log, given: Given, pipeline) -> None:
    user = await given.user()
    job = await given.job(user, type=JobType.static_ad, cost=3)
    worker, providers = pipeline({"id": "pred-1", "status": "starting"})
    appended = appended_since(log)

    await deliver(worker, log, job.id)
    await deliver(worker, log, job.id, num_delivered=2)  # a redelivery does not submit again

    [processing] = appended.events()
    assert (processing.data.from_status, processing.data.to, processing.data.prediction_id) == (
        S.pending, S.processing, "pred-1")
    assert providers.calls == [("submit_prediction", job.id, 1)]


async def test_a_transient_failure_while_submitting_a_prediction_is_recorded_as_provider_failed(
        log, given: Given, pipeline) -> None:
    user = await given.user()
    job = await given.job(user, type=JobType.tts, cost=2)
    worker, _ = pipeline(transient("429: slow down", retry_after_s=2))
    appended = appended_since(log)

    with pytest.raises(Retry) as retry:
        await deliver(worker, log, job.id)

    [failure] = appended.events()
    assert isinstance(failure, jobs.JobProviderFailed) and failure.data.failures == 1
    assert retry.value.delay_s == 2
    assert (await job_on_log(log, job.id)).status is S.pending


async def test_a_permanent_failure_while_submitting_a_prediction_fails_the_job(
        log, given: Given, pipeline) -> None:
    user = await given.user()
    job = await given.job(user, type=JobType.ugc_video, cost=5)
    worker, _ = pipeline(ProviderError("422: no such model", transient=False))
    appended = appended_since(log)

    await deliver(worker, log, job.id)

    assert [(e.data.from_status, e.data.to) for e in appended.events()] == [(S.pending, S.failed)]


async def test_a_prediction_submitted_for_a_job_canceled_meanwhile_is_canceled_at_the_provider(
        log, given: Given, pipeline) -> None:
    user = await given.user()
    job = await given.job(user, type=JobType.static_ad, cost=3)

    async def canceled_meanwhile(submitting: jobs.Job) -> dict:
        await given.events(jobs.decide_transition(submitting, S.canceled, reason="user"))
        return {"id": "pred-1", "status": "starting"}

    worker, providers = pipeline(canceled_meanwhile)

    await deliver(worker, log, job.id)

    assert providers.replicate.canceled == ["pred-1"]
