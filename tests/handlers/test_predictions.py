"""Applying a provider's prediction to its job (what a Replicate webhook, or the deadline's
poll, does): given a job on the log, when this prediction arrives (again, late, out of
order, for another attempt or another prediction), then these events were appended.
Outputs are fetched from a fake CDN (httpx.MockTransport) into file storage in tmp_path."""

from __future__ import annotations

import asyncio
import pytest

from genrail_commands.predictions import OutputDownloadFailed, Prediction, apply_prediction
from genrail_events import jobs
from genrail_events.jobs import JobStatus as S
from genrail_events.jobs import JobType
from genrail_ledger.policies import refund_ended_attempt

from .conftest import RETRIED, Given, appended_since, balance, job_on_log, new_id, violations
from genrail_runtime.settings import FetchSettings

from .fakes import CDN, FILES, Cdn

@pytest.fixture
def apply(log, storage, http):
    async def apply(job_id: str, attempt: int | None, status: str, prediction_id: str, **fields) -> str:
        prediction = Prediction.from_object({"id": prediction_id, "status": status, **fields})
        return await apply_prediction(log, storage, http, job_id, attempt, prediction, max_bytes=1_000_000,
                                      timeout_s=5, output_hosts=FetchSettings().allowed_output_hosts())
    return apply


async def test_an_output_on_a_host_outputs_do_not_come_from_fails_the_job_unfetched_and_it_is_refunded(
        log, given: Given, apply, cdn: Cdn) -> None:
    user, job = await static_ad(given)
    await apply(job.id, 1, "processing", "pred_1")

    outcome = await apply(job.id, 1, "succeeded", "pred_1", output=["http://169.254.169.254/latest/meta-data/"])

    failed = await job_on_log(log, job.id)
    assert outcome == "failed" and failed.status is S.failed and "169.254.169.254" in failed.error
    assert cdn.requests == []
    [transition] = [e for e in (await log.read(f"job.transitioned.*.{job.id}")) if e.event.data.to is S.failed]
    await refund_ended_attempt(log, transition.event)
    assert await balance(log, user) == 10 and violations(log) == []


async def static_ad(given: Given, *path, credits: int = 10) -> tuple[str, jobs.Job]:
    user = await given.user(credits=credits)
    return user, await given.job(user, *path, type=JobType.static_ad, cost=3)


def processing(prediction_id: str):
    return (S.processing, {"prediction_id": prediction_id})


async def test_a_succeeded_prediction_completes_the_job_with_its_outputs_stored(log, given: Given, apply,
                                                                               storage) -> None:
    _, job = await static_ad(given, processing("pred-1"))
    appended = appended_since(log)

    outcome = await apply(job.id, 1, "succeeded", "pred-1", output=list(FILES), metrics={"predict_time": 2.5})

    assert outcome == "completed"
    completed = appended.one(f"job.*.*.{job.id}")
    assert (completed.data.from_status, completed.data.to) == (S.processing, S.completed)
    output = completed.data.output
    assert (output["prediction_id"], output["metrics"]) == ("pred-1", {"predict_time": 2.5})
    assert [(f["key"], f["content_type"]) for f in output["files"]] == [
        (f"jobs/{job.id}/1/output-0.png", "image/png"), (f"jobs/{job.id}/1/output-1.webp", "image/webp")]
    assert [await storage.get(f["key"]) for f in output["files"]] == [body for body, _ in FILES.values()]


async def test_the_same_callback_twice_completes_once(log, given: Given, apply) -> None:
    _, job = await static_ad(given, processing("pred-1"))
    appended = appended_since(log)

    first = await apply(job.id, 1, "succeeded", "pred-1", output=list(FILES))
    again = await apply(job.id, 1, "succeeded", "pred-1", output=list(FILES))

    assert (first, again) == ("completed", "job already completed")
    assert [e.data.to for e in appended.events()] == [S.completed]


async def test_two_deliveries_of_one_callback_at_once_complete_once(log, given: Given, apply) -> None:
    _, job = await static_ad(given, processing("pred-1"))
    appended = appended_since(log)

    outcomes = await asyncio.gather(*(apply(job.id, 1, "succeeded", "pred-1", output=list(FILES))
                                      for _ in range(2)))

    assert sorted(outcomes) == ["completed", "job moved on meanwhile"]
    assert [e.data.to for e in appended.events()] == [S.completed]


async def test_a_processing_callback_after_completion_is_late_and_changes_nothing(
        log, given: Given, apply) -> None:
    _, job = await static_ad(given, processing("pred-1"))
    await apply(job.id, 1, "succeeded", "pred-1", output=list(FILES))
    appended = appended_since(log)

    assert await apply(job.id, 1, "processing", "pred-1") == "job already completed"
    assert appended.subjects() == []


async def test_succeeded_before_starting_completes_and_the_late_starting_changes_nothing(log, given: Given,
                                                                                         apply) -> None:
    _, job = await static_ad(given)  # pending: the callbacks beat the pipeline's own record of the prediction
    appended = appended_since(log)

    assert await apply(job.id, 1, "succeeded", "pred-1", output=list(FILES)[:1]) == "completed"
    assert await apply(job.id, 1, "starting", "pred-1") == "job already completed"

    moves = [(e.data.from_status, e.data.to, e.data.prediction_id) for e in appended.events()]
    assert moves == [(S.pending, S.processing, "pred-1"), (S.processing, S.completed, None)]


async def test_a_starting_callback_records_the_prediction_of_a_job_not_yet_marked_processing(
        log, given: Given, apply) -> None:
    _, job = await static_ad(given, S.queued)
    appended = appended_since(log)

    assert await apply(job.id, 1, "starting", "pred-1") == "started"
    assert await apply(job.id, 1, "processing", "pred-1") == "started"

    assert [(e.data.to, e.data.prediction_id) for e in appended.events()] == [(S.processing, "pred-1")]


async def test_a_callback_for_an_earlier_attempt_after_an_admin_retry_is_ignored(log, given: Given, apply,
                                                                                 cdn: Cdn) -> None:
    _, job = await static_ad(given, processing("pred-1"), S.failed, RETRIED)
    appended = appended_since(log)

    outcome = await apply(job.id, 1, "succeeded", "pred-1", output=list(FILES))

    assert outcome == "earlier attempt"
    assert appended.subjects() == [] and cdn.requests == []


async def test_a_callback_for_another_prediction_than_the_jobs_is_ignored(log, given: Given, apply,
                                                                          cdn: Cdn) -> None:
    # The job records pred-1; pred-2 is a second prediction a crash and a redelivery started for it.
    _, job = await static_ad(given, processing("pred-1"))
    appended = appended_since(log)

    outcome = await apply(job.id, 1, "succeeded", "pred-2", output=list(FILES))

    assert outcome == "not the job's prediction"
    assert appended.subjects() == [] and cdn.requests == []
    assert (await job_on_log(log, job.id)).status is S.processing


@pytest.mark.parametrize("status", ["failed", "canceled", "aborted"])
async def test_a_failed_prediction_fails_the_job_and_the_ledger_refunds_it_once(log, given: Given, apply,
                                                                                status: str) -> None:
    user, job = await static_ad(given, processing("pred-1"), credits=10)
    appended = appended_since(log)

    assert await apply(job.id, 1, status, "pred-1", error="NSFW content detected") == "failed"
    failed = appended.one(f"job.*.*.{job.id}")
    assert failed.data.to is S.failed
    assert failed.data.error == f"provider prediction {status}: NSFW content detected"

    await asyncio.gather(*(refund_ended_attempt(log, failed) for _ in range(3)))  # redelivered, two replicas

    assert len(appended.subjects(f"ledger.{user}.refunded.>")) == 1
    assert await balance(log, user) == 10
    assert violations(log) == []


async def test_outputs_the_provider_cannot_serve_yet_leave_the_job_for_a_later_delivery(log, given: Given,
                                                                                        apply) -> None:
    _, job = await static_ad(given, processing("pred-1"))
    appended = appended_since(log)

    with pytest.raises(OutputDownloadFailed):  # the webhook answers 503: Replicate delivers it again
        await apply(job.id, 1, "succeeded", "pred-1", output=[f"{CDN}/not-there-yet.png"])

    assert appended.subjects() == []


async def test_a_callback_for_an_unknown_job_changes_nothing(log, apply) -> None:
    appended = appended_since(log)

    assert await apply(new_id(), 1, "succeeded", "pred-1", output=list(FILES)) == "unknown job"
    assert appended.subjects() == []
