"""Nothing stays charged and unfinished when callbacks are lost: the provider and the webhook
receiver are killed while async jobs are in flight. Whatever happens next (the provider
comes back having forgotten its predictions, or never comes back), every job ends, and
each one that did not complete is refunded exactly once. Deadlines are a few seconds here."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from genrail_events.audit import Logged, audit
from tests.helpers import driving, grant, ledger_events, own_stack, register, wait_for_job

pytestmark = pytest.mark.e2e
DEADLINE_S = 4
FINAL = {"completed", "failed", "canceled", "expired"}


@pytest.fixture(scope="module")
def short_deadlines(tmp_path_factory):
    env = {"LOCALPROVIDER_DELAY_S": "20", "DEADLINE_STATIC_AD_S": str(DEADLINE_S), "DEADLINE_TTS_S": str(DEADLINE_S),
           "DEADLINE_UGC_VIDEO_S": str(DEADLINE_S), "DEADLINE_SWEEP_INTERVAL_S": "0.5"}
    with own_stack(tmp_path_factory, "deadlines", env) as stack:
        yield stack


@pytest.fixture
async def system(short_deadlines):
    async with driving(short_deadlines, "tests-lost-callbacks") as (api, log):
        yield short_deadlines, api, log


async def in_flight_jobs(api, log, user) -> list[str]:
    await grant(log, user, 40)
    bodies = [("tts", {"text": "Dry feet, any trail."}), ("tts", {"text": "Built for the long way."}),
              ("static-ad", {"headline": "Go far", "cta": "Shop", "style": "vibrant"}),
              ("ugc-video", {"script": "Rain all day, dry feet", "duration_s": 1})]
    ids = []
    for path, body in bodies:
        created = await api.post(f"/api/generate/{path}", headers=user.headers, json=body)
        assert created.status_code == 202, created.text
        ids.append(created.json()["id"])
    for job_id in ids:
        await wait_for_job(api, user, job_id, {"processing"})  # submitted: the provider holds it
    return ids


async def every_job_ends_and_what_did_not_complete_is_refunded_once(api, log, user, ids: list[str]) -> list[dict]:
    ended = [await wait_for_job(api, user, job_id, FINAL, timeout_s=60) for job_id in ids]
    for _ in range(100):
        refunds = await ledger_events(log, user.id, "refunded")
        if len(refunds) >= sum(job["status"] != "completed" for job in ended):
            break
        await asyncio.sleep(0.1)
    refunded = sorted(r.data.job_id for r in refunds)
    assert refunded == sorted(job["id"] for job in ended if job["status"] != "completed")  # once each
    spent = sum(job["cost"] for job in ended if job["status"] == "completed")
    assert (await api.get("/api/credits", headers=user.headers)).json()["balance"] == 50 - spent
    messages = [Logged(s.seq, s.subject, s.event) for stream in ("job.>", f"ledger.{user.id}.>")
                for s in await log.read(stream)]
    assert [v for v in audit(messages) if user.id in v.message or any(i in v.message for i in ids)] == []
    return ended


def lose_the_provider_and_the_webhook_receiver(stack, *, its_data_too: bool) -> None:
    stack.kill("webhooks")
    stack.kill("localprovider")
    if its_data_too:
        shutil.rmtree(stack.data_dir / "localprovider")
    stack.start_service("webhooks")


async def test_a_provider_that_comes_back_without_its_predictions(system):
    stack, api, log = system
    user = await register(api)
    ids = await in_flight_jobs(api, log, user)
    lose_the_provider_and_the_webhook_receiver(stack, its_data_too=True)
    stack.start_service("localprovider")  # it knows no prediction: the sweeper is told 404
    ended = await every_job_ends_and_what_did_not_complete_is_refunded_once(api, log, user, ids)
    assert {job["status"] for job in ended} == {"expired"}


async def test_a_provider_that_never_comes_back(system):
    stack, api, log = system
    user = await register(api)
    ids = await in_flight_jobs(api, log, user)
    lose_the_provider_and_the_webhook_receiver(stack, its_data_too=False)
    try:
        ended = await every_job_ends_and_what_did_not_complete_is_refunded_once(api, log, user, ids)
    finally:
        stack.start_service("localprovider")
    assert {job["status"] for job in ended} == {"expired"}
    assert all("could not be reached" in job["error"] for job in ended)
