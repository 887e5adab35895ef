"""Killing any process at any moment loses no accepted job and no credit."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from tests.conftest import new_stack
from tests.helpers import drained, ledger_events, register, wait_for_job, wait_until

pytestmark = pytest.mark.e2e

WORK = ("JOBS", "pipeline")  # the pipeline's durable work consumer
COPY = {"product_name": "Lumen desk lamp", "product_description": "Warm light, touch dimmer."}


async def test_a_worker_killed_after_the_work_but_before_the_ack_completes_the_job_once(api, log, stack, tmp_path):
    marker = tmp_path / "crashed"
    stack.kill("pipeline")
    stack.start_service("pipeline", env={"PIPELINE_FAILPOINT_CRASH_BEFORE_ACK_ONCE": str(marker)})
    before = (await drained(log, [WORK]))[WORK]
    user = await register(api)
    job_id = (await api.post("/api/generate/copy", json=COPY, headers=user.headers)).json()["id"]
    job = await wait_for_job(api, user, job_id, {"completed", "failed"})
    assert job["status"] == "completed"
    await wait_until(lambda: asyncio.sleep(0, marker.exists()))  # it died after the work, before the ack
    after = (await drained(log, [WORK]))[WORK]  # redelivered past the 3 s ack wait, to the restarted pipeline
    assert after.ack_floor.stream_seq == after.delivered.stream_seq  # settled: nothing left pending
    assert after.delivered.consumer_seq - before.delivered.consumer_seq == 2  # one message, delivered twice
    history = [getattr(s.event.data, "to", None) for s in await log.read(f"job.*.{job_id}")]
    assert history == [None, "processing", "completed"]
    debits = await ledger_events(log, user.id, "debited")
    assert len(debits) == 1
    assert (await api.get("/api/credits", headers=user.headers)).json()["balance"] == 9


async def test_jobs_accepted_while_the_pipeline_is_down_complete_when_it_returns(api, stack):
    stack.kill("pipeline")
    user = await register(api)
    ids = [(await api.post("/api/generate/copy", json=COPY, headers=user.headers)).json()["id"] for _ in range(5)]
    await asyncio.sleep(0.5)
    stack.start_service("pipeline")
    for job_id in ids:
        assert (await wait_for_job(api, user, job_id, {"completed", "failed"}))["status"] == "completed"


async def test_the_projector_killed_and_restarted_neither_skips_nor_doubles_events(api, stack):
    user = await register(api)
    stack.kill("projector")
    ids = [(await api.post("/api/generate/copy", json=COPY, headers=user.headers)).json()["id"] for _ in range(5)]
    stack.start_service("projector")

    async def all_listed_completed() -> list | None:
        listed = (await api.get("/api/jobs", headers=user.headers)).json()["items"]
        return listed if len(listed) >= 5 and all(j["status"] == "completed" for j in listed) else None

    listed = await wait_until(all_listed_completed)
    assert sorted(j["id"] for j in listed) == sorted(ids)


def test_a_second_start_finds_every_user_job_and_credit_where_it_left_them(tmp_path):
    import httpx

    email = f"persist-{uuid.uuid4().hex[:12]}@example.com"  # unique: the servers may be external and shared
    first = new_stack(tmp_path).start()
    try:
        with httpx.Client(base_url=first.api_url, timeout=30) as api:
            user = api.post("/api/users", json={"email": email}).json()
            headers = {"Authorization": f"Bearer {user['api_key']}"}
            job = api.post("/api/generate/copy", json=COPY, headers=headers).json()
            for _ in range(400):
                if api.get(f"/api/jobs/{job['id']}", headers=headers).json()["status"] == "completed":
                    break
                time.sleep(0.05)
            assert api.get(f"/api/jobs/{job['id']}", headers=headers).json()["status"] == "completed"
            assert api.get("/api/credits", headers=headers).json()["balance"] == 9
    finally:
        first.stop()
    second = new_stack(tmp_path)
    second.ports = first.ports
    second.start()
    try:
        with httpx.Client(base_url=second.api_url, timeout=30) as api:
            assert api.get(f"/api/jobs/{job['id']}", headers=headers).json()["status"] == "completed"
            assert api.get("/api/credits", headers=headers).json()["balance"] == 9
            assert api.post("/api/users", json={"email": email}).status_code == 409
    finally:
        second.stop()
