"""Async generation through Replicate's protocol: the local provider does the work and calls
back signed as Replicate signs; outputs land in storage behind expiring URLs."""

from __future__ import annotations

import asyncio
import io
import json
import time
import uuid
import wave

import httpx
import pytest
from PIL import Image

from genrail_commands.predictions import callback_url
from genrail_runtime import webhook_signing
from tests.conftest import new_stack
from tests.helpers import drained, driving, ledger_events, own_stack, register, wait_for_job, wait_until

pytestmark = pytest.mark.e2e

AD = {"headline": "Built for the long way round", "cta": "Shop now", "style": "vibrant"}


async def _download(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.get(url)


async def test_a_static_ad_completes_by_signed_webhook_and_its_url_downloads_a_png(api, shop):
    user = await register(api)
    created = await api.post("/api/generate/static-ad", headers=user.headers,
                             json={**AD, "product_image_url": shop.url("/img/product.png")})
    assert created.status_code == 202, created.text
    assert created.json()["cost"] == 3
    job = await wait_for_job(api, user, created.json()["id"], {"completed", "failed", "expired"})
    assert job["status"] == "completed", job
    [file] = job["output"]["files"]
    assert file["content_type"] == "image/png"
    image = Image.open(io.BytesIO((await _download(file["url"])).content))
    assert image.format == "PNG" and image.size == (1080, 1080)
    assert (await api.get("/api/credits", headers=user.headers)).json()["balance"] == 7


async def test_a_ugc_video_and_a_tts_job_produce_playable_files(api):
    user = await register(api)
    video = (await api.post("/api/generate/ugc-video", headers=user.headers,
                            json={"script": "Dry feet on a wet day", "duration_s": 1})).json()
    speech = (await api.post("/api/generate/tts", headers=user.headers,
                             json={"text": "Dry feet, any trail.", "duration_s": 1.5})).json()
    video_job = await wait_for_job(api, user, video["id"], {"completed", "failed"})
    speech_job = await wait_for_job(api, user, speech["id"], {"completed", "failed"})
    clip = Image.open(io.BytesIO((await _download(video_job["output"]["files"][0]["url"])).content))
    assert clip.format == "WEBP" and getattr(clip, "n_frames", 1) > 1
    audio = wave.open(io.BytesIO((await _download(speech_job["output"]["files"][0]["url"])).content))
    assert abs(audio.getnframes() / audio.getframerate() - 1.5) < 0.01


async def test_media_urls_are_signed_and_expire(api, stack):
    user = await register(api)
    job_id = (await api.post("/api/generate/tts", headers=user.headers, json={"text": "Hello there"})).json()["id"]
    job = await wait_for_job(api, user, job_id, {"completed"})
    url = job["output"]["files"][0]["url"]
    token = url.rsplit("/", 1)[1]
    forged = url.replace(token, token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"))
    assert (await _download(forged)).status_code == 404
    from genrail_storage.media_urls import sign_media_token

    secret = stack.local_secrets()["media_url"]
    key = job["output"]["files"][0]["key"]
    expired = sign_media_token(key, int(time.time()) - 1, secret)
    response = await _download(f"{stack.api_url}/api/media/{expired}")
    assert response.status_code == 410 and "expired" in response.json()["detail"]


async def prediction_of(log, job_id: str) -> str:
    """The prediction id the pipeline recorded for the job."""
    return next(s.event.data.prediction_id for s in await log.read(f"job.transitioned.*.{job_id}")
                if s.event.data.prediction_id)


def _signed(stack, job_id: str, prediction: dict, *, webhook_id: str | None = None,
            timestamp: int | None = None, secret: str | None = None) -> tuple[str, bytes, dict]:
    body = json.dumps(prediction).encode()
    headers = webhook_signing.sign(secret or stack.local_secrets()["replicate_webhook"],
                                   webhook_id or f"msg_{uuid.uuid4().hex}", timestamp or int(time.time()), body)
    return callback_url(stack.webhooks_url, job_id, 1, stack.local_secrets()["replicate_webhook"]), body, headers


async def test_a_webhook_delivered_five_times_at_once_before_the_prediction_was_recorded_applies_once(
        api, log, stack, shop):
    stack.kill("pipeline")  # nobody submits: the callback arrives before any prediction id is recorded
    try:
        user = await register(api)
        job_id = (await api.post("/api/generate/static-ad", headers=user.headers, json=AD)).json()["id"]
        prediction = {"id": "pred_dup", "status": "succeeded", "output": [shop.url("/img/product.png")],
                      "error": None, "metrics": {"predict_time": 0.1}}
        url, body, headers = _signed(stack, job_id, prediction, webhook_id="msg_same_for_all_retries")
        async with httpx.AsyncClient(timeout=30) as client:
            answers = await asyncio.gather(*(client.post(url, content=body, headers=headers) for _ in range(5)))
        assert {a.status_code for a in answers} == {200}
    finally:
        stack.start_service("pipeline")
    job = await wait_for_job(api, user, job_id, {"completed"})
    history = [getattr(s.event.data, "to", None) for s in await log.read(f"job.*.*.{job_id}")]
    assert history == [None, "processing", "completed"]
    stored = list((stack.data_dir / "media" / "jobs" / job_id).rglob("*"))
    assert [p.name for p in stored if p.is_file()] == ["output-0.png"]
    assert job["output"]["prediction_id"] == "pred_dup"
    await drained(log)  # the pipeline, back, has handled the job's message: it found the job final
    assert [getattr(s.event.data, "to", None) for s in await log.read(f"job.*.*.{job_id}")] == history


async def test_a_start_and_a_completed_callback_racing_each_other_apply_once_each(api, log, stack, shop):
    stack.kill("pipeline")  # the two different webhooks race on the log, not behind one in-process lock
    try:
        user = await register(api)
        job_id = (await api.post("/api/generate/static-ad", headers=user.headers, json=AD)).json()["id"]
        started = {"id": "pred_race", "status": "starting", "output": None}
        finished = {"id": "pred_race", "status": "succeeded", "output": [shop.url("/img/product.png")]}
        deliveries = [_signed(stack, job_id, prediction) for prediction in (started, finished) for _ in range(3)]
        async with httpx.AsyncClient(timeout=30) as client:
            answers = await asyncio.gather(*(client.post(url, content=body, headers=headers)
                                             for url, body, headers in deliveries))
        assert {a.status_code for a in answers} == {200}
    finally:
        stack.start_service("pipeline")
    assert (await wait_for_job(api, user, job_id, {"completed"}))["output"]["prediction_id"] == "pred_race"
    await drained(log)
    history = [getattr(s.event.data, "to", None) for s in await log.read(f"job.*.*.{job_id}")]
    assert history == [None, "processing", "completed"]
    assert await ledger_events(log, user.id, "refunded") == []


@pytest.fixture(scope="module")
def slow_provider_stack(tmp_path_factory):
    """A provider that takes 30 s per prediction: jobs stay in flight while a test acts on them."""
    with own_stack(tmp_path_factory, "slow", {"LOCALPROVIDER_DELAY_S": "30"}) as stack:
        yield stack


@pytest.fixture
async def slow(slow_provider_stack):
    async with driving(slow_provider_stack, "tests-slow") as (api, log):
        yield slow_provider_stack, api, log


async def test_forged_unsigned_and_stale_webhooks_against_an_in_flight_job_are_rejected_and_change_nothing(slow):
    stack, api, log = slow
    user = await register(api)
    job_id = (await api.post("/api/generate/tts", headers=user.headers, json={"text": "Nothing to see"})).json()["id"]
    await wait_for_job(api, user, job_id, {"processing"})
    before = await log.read(f"job.*.*.{job_id}")
    prediction = {"id": await prediction_of(log, job_id), "status": "failed", "error": "forged"}
    url, body, headers = _signed(stack, job_id, prediction, secret=webhook_signing.new_secret())
    async with httpx.AsyncClient(timeout=30) as client:
        forged = await client.post(url, content=body, headers=headers)
        unsigned = await client.post(url, content=body)
        url, body, headers = _signed(stack, job_id, prediction, timestamp=int(time.time()) - 3600)
        stale = await client.post(url, content=body, headers=headers)
        tampered_url, _, tampered_headers = _signed(stack, job_id, prediction)
        tampered = await client.post(tampered_url, content=body.replace(b"forged", b"F0rged"),
                                     headers=tampered_headers)
    assert (forged.status_code, unsigned.status_code, stale.status_code, tampered.status_code) == (401, 401, 400, 401)
    assert "timestamp" in stale.json()["detail"]
    await drained(log)
    assert await log.read(f"job.*.*.{job_id}") == before  # a valid one would have failed it (and refunded it)
    assert (await api.get(f"/api/jobs/{job_id}", headers=user.headers)).json()["status"] == "processing"
    assert await ledger_events(log, user.id, "refunded") == []


async def test_a_signed_callback_replayed_to_another_jobs_url_is_refused(slow, shop):
    """The provider signs the body, not the URL: the URL's own signature of its job and
    attempt keeps a genuine callback of one job from being applied to another."""
    stack, api, log = slow
    user = await register(api)
    victim = (await api.post("/api/generate/tts", headers=user.headers, json={"text": "Mine"})).json()["id"]
    await wait_for_job(api, user, victim, {"processing"})
    before = await log.read(f"job.*.*.{victim}")
    prediction = {"id": "pred_elsewhere", "status": "succeeded", "output": [shop.url("/img/product.png")]}
    url, body, headers = _signed(stack, str(uuid.uuid4()), prediction)  # genuine, for another job
    other_job = url.split("job_id=")[1].split("&")[0]
    async with httpx.AsyncClient(timeout=30) as client:
        replayed = await client.post(url.replace(other_job, victim), content=body, headers=headers)
        unsigned = await client.post(url.replace(other_job, victim).split("&sig=")[0], content=body, headers=headers)
    assert (replayed.status_code, unsigned.status_code) == (401, 401), replayed.text
    assert "not signed for this job" in replayed.json()["detail"]
    await drained(log)
    assert await log.read(f"job.*.*.{victim}") == before


async def test_a_late_and_out_of_order_callback_after_completion_is_harmless(api, log, stack):
    user = await register(api)
    job_id = (await api.post("/api/generate/tts", headers=user.headers, json={"text": "On time"})).json()["id"]
    job = await wait_for_job(api, user, job_id, {"completed"})
    history = await log.read(f"job.*.*.{job_id}")
    for status in ("processing", "failed"):
        url, body, headers = _signed(stack, job_id, {"id": job["output"]["prediction_id"], "status": status})
        async with httpx.AsyncClient() as client:
            assert (await client.post(url, content=body, headers=headers)).status_code == 200
    assert len(await log.read(f"job.*.*.{job_id}")) == len(history)
    refunds = await ledger_events(log, user.id, "refunded")
    assert refunds == []


async def test_canceling_an_in_flight_async_job_cancels_the_prediction_and_refunds_once(slow):
    stack, api, log = slow
    user = await register(api)
    job_id = (await api.post("/api/generate/ugc-video", headers=user.headers,
                             json={"script": "cancel me", "duration_s": 8})).json()["id"]
    await wait_for_job(api, user, job_id, {"processing"})  # the provider works on it for 30 s
    prediction_id = await prediction_of(log, job_id)
    canceled = await api.post(f"/api/jobs/{job_id}/cancel", headers=user.headers)
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"

    async def prediction_canceled() -> bool:
        async with httpx.AsyncClient() as client:
            answer = await client.get(f"{stack.localprovider_url}/v1/predictions/{prediction_id}",
                                      headers={"Authorization": "Bearer r8_genrail_local"})
        return answer.json()["status"] == "canceled"

    await wait_until(prediction_canceled)
    await drained(log)
    refunds = await ledger_events(log, user.id, "refunded")
    assert [(r.data.job_id, r.data.attempt, r.data.amount) for r in refunds] == [(job_id, 1, 5)]
    assert (await api.get("/api/credits", headers=user.headers)).json()["balance"] == 10


@pytest.fixture(scope="module")
def silent_provider_stack(tmp_path_factory):
    """A provider that never calls back and never finishes in time; deadlines of 2 s."""
    stack = new_stack(tmp_path_factory.mktemp("silent"), env={
        "LOCALPROVIDER_NEVER_CALL_BACK": "true", "LOCALPROVIDER_DELAY_S": "60",
        "DEADLINE_STATIC_AD_S": "2", "DEADLINE_TTS_S": "2", "DEADLINE_UGC_VIDEO_S": "2",
        "DEADLINE_SWEEP_INTERVAL_S": "0.5"}).start()
    yield stack
    stack.stop()


async def test_a_job_whose_provider_never_calls_back_expires_and_is_refunded_exactly_once(silent_provider_stack):
    stack = silent_provider_stack
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as api:
        user = await register(api)
        job_id = (await api.post("/api/generate/tts", headers=user.headers, json={"text": "Anyone?"})).json()["id"]
        job = await wait_for_job(api, user, job_id, {"expired", "completed", "failed"}, timeout_s=30)
        assert job["status"] == "expired" and "no result from the provider" in job["error"]
        from genrail_eventlog.store import EventStore, connect

        nc = await connect(stack.nats_url, "test")
        try:
            log = EventStore(nc)
            await wait_until(lambda: ledger_events(log, user.id, "refunded"))
            await asyncio.sleep(1.5)  # more sweeps pass (every 0.5 s): still one refund
            await drained(log)
            refunds = await ledger_events(log, user.id, "refunded")
            assert [(r.data.job_id, r.data.attempt) for r in refunds] == [(job_id, 1)]
        finally:
            await nc.close()
        assert (await api.get("/api/credits", headers=user.headers)).json()["balance"] == 10
