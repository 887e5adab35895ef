"""The pipeline's deadlines of async jobs, and cancellations at the provider: given a job on
the log and what the provider answers, when the deadline is checked (or the job canceled),
then these events were appended and these calls made to the provider.

The sweeper finds its candidates in PostgreSQL; these tests give it the candidates instead
and check what it decides from the log."""

from __future__ import annotations

from datetime import timedelta

import pytest

from genrail_events import jobs
from genrail_events.envelope import utcnow
from genrail_events.jobs import JobStatus as S
from genrail_events.jobs import JobType
from genrail_ledger.policies import refund_ended_attempt
from genrail_pipeline.clients.errors import ProviderError
from genrail_pipeline.deadlines import DeadlineSweeper, cancel_at_provider

from .conftest import Given, appended_since, balance, violations
from .fakes import CDN, FILES, FakeProviders

DEADLINE_S = 300  # static ads, in the `settings` fixture


@pytest.fixture
def providers(http) -> FakeProviders:
    return FakeProviders(http=http)


@pytest.fixture
def sweeper(log, storage, providers, settings) -> DeadlineSweeper:
    return DeadlineSweeper(log, None, storage, providers, settings)  # no engine: `check` reads only the log


async def static_ad(given: Given, *path, late_by_s: float = 60, credits: int = 10) -> tuple[str, jobs.Job]:
    """A static ad whose whole history is `DEADLINE_S + late_by_s` old (negative: not yet due)."""
    user = await given.user(credits=credits)
    at = utcnow() - timedelta(seconds=DEADLINE_S + late_by_s)
    return user, await given.job(user, *path, type=JobType.static_ad, cost=3, at=at)


def processing(prediction_id: str):
    return (S.processing, {"prediction_id": prediction_id})


async def sweep_once(sweeper: DeadlineSweeper, *job_ids: str) -> None:
    """One pass of the sweeper, its candidates given (they come from the jobs projection)."""
    async def candidates() -> list[str]:
        return list(job_ids)

    sweeper.candidates = candidates
    await sweeper.sweep()


def not_found(prediction_id: str) -> ProviderError:
    """What ReplicateClient raises for a 404."""
    return ProviderError(f"Replicate GET /predictions/{prediction_id} answered 404: Not found",
                         transient=False, status_code=404)


# --- the provider answers ------------------------------------------------------------------

@pytest.mark.parametrize("status", ["starting", "processing", "queued-somewhere-new"])
async def test_a_job_past_its_deadline_whose_prediction_still_runs_is_canceled_there_and_expires(
        log, given: Given, sweeper, providers, status: str) -> None:
    user, job = await static_ad(given, processing("pred-1"))
    providers.replicate.predictions["pred-1"] = {"id": "pred-1", "status": status}
    appended = appended_since(log)

    await sweeper.check(job.id)

    assert providers.replicate.canceled == ["pred-1"]
    expired = appended.one(f"job.*.*.{job.id}")
    assert expired.data.to is S.expired
    assert expired.data.error == f"no result from the provider within {DEADLINE_S}s"
    await refund_ended_attempt(log, expired)
    assert await balance(log, user) == 10 and violations(log) == []


async def test_a_job_past_its_deadline_whose_callback_was_lost_completes_from_the_provider(
        log, given: Given, sweeper, providers, storage) -> None:
    _, job = await static_ad(given, processing("pred-1"))
    providers.replicate.predictions["pred-1"] = {"id": "pred-1", "status": "succeeded", "output": list(FILES)}
    appended = appended_since(log)

    await sweeper.check(job.id)

    completed = appended.one(f"job.*.*.{job.id}")
    assert completed.data.to is S.completed and providers.replicate.canceled == []
    stored = [await storage.get(f["key"]) for f in completed.data.output["files"]]
    assert stored == [body for body, _ in FILES.values()]


async def test_a_job_past_its_deadline_whose_prediction_failed_fails(
        log, given: Given, sweeper, providers) -> None:
    _, job = await static_ad(given, processing("pred-1"))
    providers.replicate.predictions["pred-1"] = {"id": "pred-1", "status": "failed", "error": "out of memory"}
    appended = appended_since(log)

    await sweeper.check(job.id)

    failed = appended.one(f"job.*.*.{job.id}")
    assert (failed.data.to, failed.data.error) == (S.failed, "provider prediction failed: out of memory")


async def test_a_processing_job_with_no_prediction_expires_without_asking_the_provider(
        log, given: Given, sweeper, providers) -> None:
    _, job = await static_ad(given, S.processing)
    appended = appended_since(log)

    await sweeper.check(job.id)

    assert [e.data.to for e in appended.events()] == [S.expired]
    assert providers.replicate.asked == [] and providers.replicate.canceled == []


# --- nothing to do --------------------------------------------------------------------------

async def test_a_job_within_its_deadline_is_left_alone(log, given: Given, sweeper, providers) -> None:
    _, job = await static_ad(given, processing("pred-1"), late_by_s=-60)
    appended = appended_since(log)

    await sweeper.check(job.id)

    assert appended.subjects() == [] and providers.replicate.asked == []


@pytest.mark.parametrize("path", [(), (S.queued,), (processing("pred-1"), S.completed),
                                  (processing("pred-1"), S.canceled)], ids=["pending", "queued", "completed",
                                                                            "canceled"])
async def test_a_job_that_is_not_processing_is_left_alone(
        log, given: Given, sweeper, providers, path) -> None:
    _, job = await static_ad(given, *path)
    appended = appended_since(log)

    await sweeper.check(job.id)

    assert appended.subjects() == [] and providers.replicate.asked == []


# --- the provider fails to answer -------------------------------------------------------------

async def test_a_provider_that_cannot_answer_now_is_asked_again_at_the_next_sweep(log, given: Given, sweeper,
                                                                                 providers) -> None:
    _, job = await static_ad(given, processing("pred-1"))
    providers.replicate.predictions["pred-1"] = ProviderError("503", transient=True, status_code=503)
    appended = appended_since(log)

    await sweep_once(sweeper, job.id)  # logged as deadline.check_failed
    assert appended.subjects() == []

    providers.replicate.predictions["pred-1"] = {"id": "pred-1", "status": "processing"}
    await sweep_once(sweeper, job.id)
    assert [e.data.to for e in appended.events()] == [S.expired]


async def test_a_provider_unreachable_for_twice_the_deadline_no_longer_holds_the_job(log, given: Given, sweeper,
                                                                                    providers) -> None:
    user, job = await static_ad(given, processing("pred-1"), late_by_s=DEADLINE_S + 1)
    providers.replicate.predictions["pred-1"] = ProviderError("connect refused", transient=True)
    appended = appended_since(log)

    await sweep_once(sweeper, job.id)

    expired = appended.one(f"job.*.*.{job.id}")
    assert expired.data.to is S.expired
    assert expired.data.error == f"no result from the provider within {DEADLINE_S}s (it could not be reached)"
    await refund_ended_attempt(log, expired)
    assert await balance(log, user) == 10 and violations(log) == []


async def test_a_job_whose_prediction_the_provider_does_not_know_expires_and_is_refunded(
        log, given: Given, sweeper, providers) -> None:
    user, job = await static_ad(given, processing("pred-1"))
    providers.replicate.predictions["pred-1"] = not_found("pred-1")

    await sweep_once(sweeper, job.id)

    expired = await log.last(f"job.transitioned.*.{job.id}")
    assert expired.event.data.to is S.expired
    await refund_ended_attempt(log, expired.event)
    assert await balance(log, user) == 10


async def test_a_succeeded_prediction_whose_outputs_are_gone_fails_the_job_and_it_is_refunded(
        log, given: Given, sweeper, providers) -> None:
    user, job = await static_ad(given, processing("pred-1"))
    providers.replicate.predictions["pred-1"] = {"id": "pred-1", "status": "succeeded",
                                                 "output": [f"{CDN}/deleted-after-an-hour.png"]}

    await sweep_once(sweeper, job.id)

    failed = await log.last(f"job.transitioned.*.{job.id}")
    assert failed.event.data.to is S.failed and "could not be fetched" in failed.event.data.error
    await refund_ended_attempt(log, failed.event)
    assert await balance(log, user) == 10


# --- cancellations stop the work at the provider --------------------------------------------

async def cancel(log, given: Given, job: jobs.Job) -> jobs.JobTransitionedData:
    [stored] = await given.events(jobs.decide_transition(job, S.canceled, reason="user"))
    return stored.event.data


async def test_canceling_an_async_job_cancels_its_prediction(log, given: Given, providers) -> None:
    _, job = await static_ad(given, processing("pred-1"), late_by_s=-60)

    await cancel_at_provider(log, providers, await cancel(log, given, job))

    assert providers.replicate.canceled == ["pred-1"]


async def test_an_async_job_canceled_before_its_prediction_or_an_inline_job_asks_the_provider_nothing(
        log, given: Given, providers) -> None:
    user, pending = await static_ad(given, late_by_s=-60)
    inline = await given.job(user, S.processing)

    for job in (pending, inline):
        await cancel_at_provider(log, providers, await cancel(log, given, job))

    assert providers.replicate.canceled == []


async def test_a_prediction_cancel_refused_for_now_is_retried_and_one_refused_for_good_is_dropped(
        log, given: Given, providers) -> None:
    _, job = await static_ad(given, processing("pred-1"), late_by_s=-60)
    canceled = await cancel(log, given, job)

    providers.replicate.cancel_answer = ProviderError("502", transient=True, status_code=502)
    with pytest.raises(ProviderError):
        await cancel_at_provider(log, providers, canceled)  # the consumer delivers it again

    providers.replicate.cancel_answer = ProviderError("finished already", transient=False, status_code=400)
    await cancel_at_provider(log, providers, canceled)  # logged, and done with


# --- any job, whatever kept it from finishing ----------------------------------------------

@pytest.mark.parametrize("job_type, late_by_s, path, to, error", [
    (JobType.copy, 601, [S.queued, S.processing], S.expired, "no result within 600s"),
    (JobType.image_edit, 601, [S.processing], S.expired, "no result within 600s"),
    (JobType.static_ad, 301, [S.queued, S.processing], S.expired, "no result within 300s"),  # never submitted
    (JobType.scrape, 3601, [], S.failed, "not started within 3600s"),
    (JobType.tts, 3601, [S.queued], S.failed, "not started within 3600s"),
])
async def test_a_job_stuck_for_any_reason_ends_and_is_refunded_once(
        log, given: Given, sweeper, providers, job_type, late_by_s, path, to, error) -> None:
    user = await given.user(credits=10)
    job = await given.job(user, *path, type=job_type, cost=2, at=utcnow() - timedelta(seconds=late_by_s))
    appended = appended_since(log)

    await sweeper.check(job.id)
    await sweeper.check(job.id)  # a second sweep finds it final

    ended = appended.one(f"job.*.*.{job.id}")
    assert (ended.data.to, ended.data.error) == (to, error) and providers.replicate.canceled == []
    await refund_ended_attempt(log, ended)
    await refund_ended_attempt(log, ended)
    assert await balance(log, user) == 10 and violations(log) == []


@pytest.mark.parametrize("job_type, late_by_s, path", [
    (JobType.copy, 590, [S.processing]),
    (JobType.scrape, 3500, [S.queued]),   # a backlog after an outage is not lost work
    (JobType.copy, 99_999, [S.processing, S.completed]),
])
async def test_a_job_within_its_deadline_or_final_is_left_alone(log, given: Given, sweeper, job_type, late_by_s,
                                                                 path) -> None:
    user = await given.user(credits=10)
    job = await given.job(user, *path, type=job_type, at=utcnow() - timedelta(seconds=late_by_s))
    appended = appended_since(log)
    await sweeper.check(job.id)
    assert appended.subjects() == []
