"""When PostgreSQL or nats-server dies under `genrail up`: requests that need it answer 503
with Retry-After within a bounded time (never 500, never a hang), `/readyz` says which one
is missing while `/healthz` stays up, and the stack restarts the server, after which
everything answers again and nothing accepted was lost."""

from __future__ import annotations

import signal
import time

import httpx
import pytest

from tests.helpers import register, wait_for_job, wait_until
from tests.helpers import own_stack as a_stack_of_its_own

pytestmark = pytest.mark.e2e
COPY = {"product_name": "Trailblazer 2"}


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory):
    with a_stack_of_its_own(tmp_path_factory, "servers-down") as stack:
        yield stack


@pytest.fixture
async def api(own_stack):
    async with httpx.AsyncClient(base_url=own_stack.api_url, timeout=30) as client:
        yield client


async def ready(api: httpx.AsyncClient) -> bool:
    return (await api.get("/readyz")).status_code == 200


def down_for_good(server) -> None:
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(30)


async def timed(call) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    answer = await call
    return answer, time.monotonic() - started


async def test_postgresql_down_is_a_503_and_the_stack_brings_it_back(own_stack, api):
    user = await register(api)
    own_stack.restart = False
    down_for_good(own_stack.postgres)
    try:
        listed, took = await timed(api.get("/api/jobs", headers=user.headers))
        assert listed.status_code == 503, listed.text
        assert "database is unavailable" in listed.json()["detail"] and listed.headers["Retry-After"] == "2"
        assert took < 10
        readiness = await api.get("/readyz")
        assert readiness.status_code == 503
        assert readiness.json()["checks"]["event log"] == "ok" and readiness.json()["checks"]["database"] != "ok"
        assert (await api.get("/healthz")).status_code == 200
    finally:
        own_stack.restart = True  # the supervisor restarts PostgreSQL (and reaps the old one)
    await wait_until(lambda: ready(api), timeout_s=60, interval_s=0.5)

    async def served() -> bool:  # the projections catch up on what they could not write meanwhile
        return (await api.get("/api/jobs", headers=user.headers)).status_code == 200

    await wait_until(served, timeout_s=30, interval_s=0.2)


async def test_nats_down_is_a_503_and_the_stack_brings_it_back(own_stack, api):
    user = await register(api)
    accepted = (await api.post("/api/generate/copy", headers=user.headers, json=COPY)).json()["id"]
    own_stack.restart = False
    down_for_good(own_stack.nats_nodes[0])
    try:
        refused, took = await timed(api.post("/api/generate/copy", headers=user.headers,
                                             json={**COPY, "idempotency_key": "while-nats-is-down"}))
        assert refused.status_code == 503, refused.text
        assert "event log is unavailable" in refused.json()["detail"] and took < 15
        readiness = await api.get("/readyz")
        assert readiness.status_code == 503 and readiness.json()["checks"]["event log"] != "ok"
    finally:
        own_stack.restart = True
    await wait_until(lambda: ready(api), timeout_s=60, interval_s=0.5)
    again = await api.post("/api/generate/copy", headers=user.headers,
                           json={**COPY, "idempotency_key": "while-nats-is-down"})
    assert again.status_code == 202, again.text
    for job_id in (accepted, again.json()["id"]):
        assert (await wait_for_job(api, user, job_id, {"completed"}, timeout_s=60))["status"] == "completed"
    balance = (await api.get("/api/credits", headers=user.headers)).json()["balance"]
    assert balance == 8  # two jobs charged once each, whatever the 503 did
