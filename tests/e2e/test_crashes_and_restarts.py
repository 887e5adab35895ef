"""Killing any process at any moment loses no accepted job and no credit."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid

import pytest

from tests.conftest import new_stack
from genrail_readmodels.db import make_engine, projection_position
from tests.helpers import drained, grant, ledger_events, register, wait_for_job, wait_until

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
    history = [getattr(s.event.data, "to", None) for s in await log.read(f"job.*.*.{job_id}")]
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


async def test_the_projector_killed_twice_in_the_middle_of_a_backlog_neither_skips_nor_doubles_events(
        api, log, stack):
    user = await register(api)
    await grant(log, user, 200)
    stack.kill("projector")
    ids = [r.json()["id"] for r in await asyncio.gather(*(api.post("/api/generate/copy", json=COPY, headers=user.headers)
                                                           for _ in range(150)))]
    await drained(log)  # every job ran to completed on the log: a backlog of ~600 events for the projector
    target = (await log.js.stream_info("JOBS")).state.last_seq
    engine = make_engine(stack.database_url, pool_size=1)
    try:
        start = await _checkpoint(engine, "jobs")
        for _ in range(2):  # one event per transaction: slow enough to be caught halfway, twice
            stack.start_service("projector", env={"PROJECTOR_BATCH_SIZE": "1"})
            killed_at = await wait_until(lambda: _past(engine, start), interval_s=0.005)
            stack.kill("projector")
            assert start < killed_at < target, (start, killed_at, target)  # in the middle of the backlog
            start = await _checkpoint(engine, "jobs")
        stack.start_service("projector")
        await wait_until(lambda: _past(engine, target - 1))
    finally:
        await engine.dispose()
    listed = (await api.get("/api/jobs?limit=200", headers=user.headers)).json()["items"]
    assert sorted(j["id"] for j in listed) == sorted(ids) and {j["status"] for j in listed} == {"completed"}
    verified = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "genrail_cli.main", "replay", "--verify"], capture_output=True,
        text=True, timeout=300, env={**os.environ, "NATS_URL": stack.nats_url, "DATABASE_URL": stack.database_url})
    assert verified.returncode == 0, verified.stdout + verified.stderr  # every row as a replay from scratch builds it


async def _checkpoint(engine, name: str) -> int:
    async with engine.connect() as conn:
        return await projection_position(conn, name)


async def _past(engine, position: int) -> int | None:
    """The jobs checkpoint once it is past `position`, else None."""
    now = await _checkpoint(engine, "jobs")
    return now if now > position else None


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
