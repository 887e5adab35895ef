"""What a program calling the API relies on: versioned paths (with the old ones kept),
errors as RFC 9457 problem details, the Idempotency-Key header, what is on sale, date
filters on job lists, an admin cancel, and an OpenAPI that validates."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from openapi_spec_validator import validate

from tests.conftest import TEST_ENV
from tests.helpers import ledger_events, register, wait_until

pytestmark = pytest.mark.e2e
COPY = {"product_name": "Trailblazer 2 hiking boots"}
ADMIN = {"Authorization": f"Bearer {TEST_ENV['ADMIN_TOKEN']}"}


async def test_the_openapi_validates_and_every_v1_operation_has_a_readable_id(api):
    spec = (await api.get("/openapi.json")).json()
    validate(spec)
    operations = [(path, op) for path, ops in spec["paths"].items() for op in ops.values()]
    ids = [op["operationId"] for _, op in operations]
    assert len(ids) == len(set(ids))
    for path, op in operations:
        if path.startswith("/api/"):
            assert op.get("deprecated") is True and op["operationId"].startswith("legacy_")
        elif path.startswith("/v1/"):
            assert not op.get("deprecated") and "__" not in op["operationId"] and "_v1_" not in op["operationId"]
    assert {"generate_copy", "jobs_get_job", "jobs_list_jobs", "batches_create_batch"} <= set(ids)


async def test_v1_and_the_old_paths_are_the_same_api(api):
    user = await register(api)
    created = await api.post("/v1/generate/copy", headers=user.headers, json=COPY)
    assert created.status_code == 202
    job_id = created.json()["id"]
    assert (await api.get(f"/api/jobs/{job_id}", headers=user.headers)).json()["id"] == job_id
    assert (await api.get(f"/v1/jobs/{job_id}", headers=user.headers)).json()["id"] == job_id


async def test_errors_are_problem_details_that_keep_detail(api):
    user = await register(api)
    missing = await api.get("/v1/jobs/5f0c3a1e-0000-4000-8000-000000000000", headers=user.headers)
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    body = missing.json()
    assert body["type"] == "urn:genrail:problem:not-found" and body["status"] == 404 and body["title"] == "Not found"
    assert "not found" in body["detail"]

    for _ in range(3):  # 10 credits: two videos of 5, then none left
        poor = await api.post("/v1/generate/ugc-video", headers=user.headers, json={"script": "x" * 20, "duration_s": 1})
    assert poor.status_code == 402
    assert (poor.json()["type"], poor.json()["balance"], poor.json()["cost"]) == (
        "urn:genrail:problem:insufficient-credits", 0, 5)

    invalid = await api.post("/v1/generate/copy", headers=user.headers, json={"product_name": ""})
    assert invalid.status_code == 422 and invalid.json()["type"] == "urn:genrail:problem:invalid-request"
    unauthorized = await api.get("/v1/jobs")
    assert unauthorized.status_code == 401 and unauthorized.json()["type"] == "urn:genrail:problem:unauthorized"


async def test_the_idempotency_key_header_names_one_request(api, log):
    user = await register(api)
    key = {**user.headers, "Idempotency-Key": "order-1234-copy"}
    first = await api.post("/v1/generate/copy", headers=key, json=COPY)
    again = await api.post("/v1/generate/copy", headers=key, json=COPY)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json()["id"] == first.json()["id"] and again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers

    other = await api.post("/v1/generate/copy", headers=key, json={**COPY, "tone": "bold"})
    assert other.status_code == 422 and "already named another request" in other.json()["detail"]
    both = await api.post("/v1/generate/copy", headers=key, json={**COPY, "idempotency_key": "something-else"})
    assert both.status_code == 422 and "differ" in both.json()["detail"]
    same_field = await api.post("/v1/generate/copy", headers=user.headers, json={**COPY, "idempotency_key":
                                                                                   "order-1234-copy"})
    assert same_field.json()["id"] == first.json()["id"]  # the header and the field are one key
    assert len(await ledger_events(log, user.id, "debited")) == 1


async def test_packs_on_sale_need_no_key(api):
    packs = await api.get("/v1/packs")
    assert packs.status_code == 200
    assert {p["id"]: (p["credits"], p["amount_cents"], p["currency"]) for p in packs.json()} == {
        "starter": (100, 900, "usd"), "pro": (1000, 7900, "usd")}


async def test_job_lists_filter_by_creation_time(api):
    user = await register(api)
    early = (await api.post("/v1/generate/copy", headers=user.headers, json=COPY)).json()
    await asyncio.sleep(0.05)
    middle = datetime.now(UTC)
    await asyncio.sleep(0.05)
    late = (await api.post("/v1/generate/copy", headers=user.headers, json=COPY)).json()

    async def listed(**params) -> list[str]:
        answer = await api.get("/v1/jobs", headers=user.headers,
                               params={k: v.isoformat() for k, v in params.items()})
        assert answer.status_code == 200, answer.text
        return [job["id"] for job in answer.json()["items"]]

    async def both_listed() -> bool:  # the projection has both jobs
        return len(await listed()) == 2

    await wait_until(both_listed, timeout_s=10)
    assert await listed(created_after=middle) == [late["id"]]
    assert await listed(created_before=middle) == [early["id"]]
    assert await listed(created_after=middle + timedelta(hours=1)) == []
    naive = await api.get("/v1/jobs", headers=user.headers, params={"created_after": "2026-11-30T00:00:00"})
    assert naive.status_code == 422 and "created_after" in naive.json()["detail"]


async def test_an_admin_cancels_any_users_job_and_it_is_refunded(api, log, stack):
    user = await register(api)
    job_id = (await api.post("/v1/generate/ugc-video", headers=user.headers,
                             json={"script": "cancel me please", "duration_s": 8})).json()["id"]
    canceled = await api.post(f"/v1/admin/jobs/{job_id}/cancel", headers=ADMIN)
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "canceled" and canceled.json()["error"] == "canceled by the admin"
    again = await api.post(f"/v1/admin/jobs/{job_id}/cancel", headers=ADMIN)
    assert again.status_code == 409 and again.json()["type"] == "urn:genrail:problem:invalid-transition"
    refunds = await wait_until(lambda: ledger_events(log, user.id, "refunded"), timeout_s=20)
    assert [r.data.job_id for r in refunds] == [job_id]
    async with httpx.AsyncClient(base_url=stack.api_url) as anonymous:
        assert (await anonymous.post(f"/v1/admin/jobs/{job_id}/cancel")).status_code == 401


async def test_a_webhook_where_none_are_sent_is_refused_before_anything_is_charged(api, log):
    """The test stack sends no webhooks (OUTGOING_WEBHOOK_KEY unset): asking for one is a 422,
    not a job that never calls back."""
    user = await register(api)
    asked = await api.post("/v1/generate/copy", headers=user.headers,
                           json={**COPY, "webhook": "https://example.com/hooks"})
    assert asked.status_code == 422 and "sends no webhooks" in asked.json()["detail"]
    assert (await api.get("/v1/webhooks/secret", headers=user.headers)).status_code == 404
    assert await ledger_events(log, user.id, "debited") == []
