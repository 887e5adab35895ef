"""The walking skeleton end to end: credits, jobs and projections, under concurrency."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from genrail_events.ledger import signed_amount
from tests.helpers import drained, grant, ledger_events, register, wait_for_job, wait_until

pytestmark = pytest.mark.e2e

COPY = {"product_name": "Trailblazer 2 hiking boots", "product_description": "Waterproof leather, Vibram sole.",
        "tone": "bold", "length": "short"}


async def test_a_new_user_gets_ten_credits_and_a_copy_job_completes(api, log):
    user = await register(api)
    credits = await api.get("/api/credits", headers=user.headers)
    assert credits.json()["balance"] == 10
    created = await api.post("/api/generate/copy", json=COPY, headers=user.headers)
    assert created.status_code == 202, created.text
    job = created.json()
    assert (job["type"], job["status"], job["cost"]) == ("copy", "pending", 1)
    seen_right_away = await api.get(f"/api/jobs/{job['id']}", headers=user.headers)
    assert seen_right_away.status_code == 200  # read-your-writes: never a 404 after the POST
    done = await wait_for_job(api, user, job["id"], {"completed"})
    assert "Trailblazer" in done["output"]["headline"] + done["output"]["body"]
    assert (await api.get("/api/credits", headers=user.headers)).json()["balance"] == 9


async def test_two_hundred_concurrent_copy_requests_never_overspend(api, log):
    user = await register(api)
    responses = await asyncio.gather(*(api.post("/api/generate/copy", json=COPY, headers=user.headers)
                                       for _ in range(200)))
    codes = [r.status_code for r in responses]
    assert codes.count(202) == 10 and codes.count(402) == 190, codes
    refused = next(r for r in responses if r.status_code == 402).json()
    assert refused["cost"] == 1 and refused["balance"] == 0 and "insufficient credits" in refused["detail"]
    events = await ledger_events(log, user.id)
    assert all(e.data.balance_after >= 0 for e in events)
    assert sum(signed_amount(e) for e in events) == events[-1].data.balance_after == 0
    assert (await api.get("/api/credits", headers=user.headers)).json()["balance"] == 0
    accepted = {r.json()["id"] for r in responses if r.status_code == 202}
    await wait_until(lambda: _listed(api, user, accepted))


async def test_one_account_driven_by_a_hundred_concurrent_clients_gets_only_202_or_402_and_an_exact_balance(
        api, log, stack):
    user = await register(api)
    await grant(log, user, 290)  # 300 credits for 500 requests: the last 200 must be refused, cleanly
    clients = [httpx.AsyncClient(base_url=stack.api_url, timeout=60, headers=user.headers) for _ in range(100)]

    async def client_sends_five(client: httpx.AsyncClient) -> list[int]:
        return [(await client.post("/api/generate/copy", json=COPY)).status_code for _ in range(5)]

    try:
        codes = [code for sent in await asyncio.gather(*(client_sends_five(c) for c in clients)) for code in sent]
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    assert set(codes) <= {202, 402}, sorted(set(codes))  # never a 5xx, never a dropped connection
    assert codes.count(202) == 300 and codes.count(402) == 200
    await drained(log)
    entries = await ledger_events(log, user.id)
    assert all(e.data.balance_after >= 0 for e in entries)
    assert len([e for e in entries if e.data.kind == "debited"]) == 300
    assert sum(signed_amount(e) for e in entries) == entries[-1].data.balance_after == 0
    assert (await api.get("/api/credits", headers=user.headers)).json()["balance"] == 0


async def _listed(api, user, ids) -> bool:
    items = (await api.get("/api/jobs?limit=200", headers=user.headers)).json()["items"]
    return {j["id"] for j in items} == ids


async def test_fifty_concurrent_requests_with_one_idempotency_key_make_one_job(api, log):
    user = await register(api)
    body = {**COPY, "idempotency_key": "campaign-42"}
    responses = await asyncio.gather(*(api.post("/api/generate/copy", json=body, headers=user.headers)
                                       for _ in range(50)))
    assert {r.status_code for r in responses} == {202}
    job_ids = {r.json()["id"] for r in responses}
    assert len(job_ids) == 1
    job_id = job_ids.pop()
    debits = await ledger_events(log, user.id, "debited")
    assert [d.data.job_id for d in debits] == [job_id]
    assert len(await log.read(f"job.created.*.{job_id}")) == 1

    # Past JetStream's message-id window (2 s in the tests), the key still names the job.
    await asyncio.sleep(2.5)
    again = await api.post("/api/generate/copy", json=body, headers=user.headers)
    assert again.status_code == 202 and again.json()["id"] == job_id
    assert again.headers.get("Idempotent-Replay") == "true"
    debits = await ledger_events(log, user.id, "debited")
    assert len(debits) == 1
    await wait_for_job(api, user, job_id, {"completed"})
    assert (await api.get("/api/credits", headers=user.headers)).json()["balance"] == 9


async def test_a_scrape_job_extracts_the_product_page(api, shop):
    user = await register(api)
    created = await api.post("/api/generate/scrape", json={"url": shop.url("/product")}, headers=user.headers)
    assert created.status_code == 202, created.text
    done = await wait_for_job(api, user, created.json()["id"], {"completed", "failed"})
    assert done["status"] == "completed", done
    assert done["output"]["price"] == "149.00" and done["output"]["currency"] == "USD"
    assert done["output"]["title"] == "Trailblazer 2 Hiking Boots"


async def test_a_job_whose_provider_fails_three_times_fails_is_refunded_once_and_is_dead_lettered(api, log, shop):
    user = await register(api)
    created = await api.post("/api/generate/scrape", json={"url": shop.url("/down")}, headers=user.headers)
    job_id = created.json()["id"]
    failed = await wait_for_job(api, user, job_id, {"failed", "completed"}, timeout_s=60)
    assert failed["status"] == "failed" and "503" in failed["error"]
    await drained(log)  # every consumer has handled every event of the job: no second refund is on its way
    refunds = await ledger_events(log, user.id, "refunded")
    assert [(r.data.job_id, r.data.attempt, r.data.amount) for r in refunds] == [(job_id, 1, 1)]
    assert (await api.get("/api/credits", headers=user.headers)).json()["balance"] == 10
    dead = await wait_until(lambda: _dead_letter_for(log, job_id))
    assert dead["num_delivered"] == 3 and "503" in dead["reason"]


async def _dead_letter_for(log, job_id: str) -> dict | None:
    import json

    for _seq, _subject, data in await log.read_raw("dlq.JOBS.pipeline"):
        record = json.loads(data)
        if job_id in record["subject"]:
            return record
    return None


async def test_canceling_a_running_job_refunds_it_once_and_its_late_result_is_dropped(api, log, shop):
    user = await register(api)
    created = await api.post("/api/generate/scrape", json={"url": shop.url("/slow?s=2")}, headers=user.headers)
    job_id = created.json()["id"]
    await wait_for_job(api, user, job_id, {"processing"})
    canceled = await api.post(f"/api/jobs/{job_id}/cancel", headers=user.headers)
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    again = await api.post(f"/api/jobs/{job_id}/cancel", headers=user.headers)
    assert again.status_code == 409 and "canceled" in again.json()["detail"]
    await drained(log)  # the slow page answered and the pipeline settled its message: the result was dropped
    assert (await api.get(f"/api/jobs/{job_id}", headers=user.headers)).json()["status"] == "canceled"
    refunds = await ledger_events(log, user.id, "refunded")
    assert [r.data.job_id for r in refunds] == [job_id]
    assert (await api.get("/api/credits", headers=user.headers)).json()["balance"] == 10


async def test_another_users_job_is_not_found(api):
    owner, stranger = await register(api), await register(api)
    job = (await api.post("/api/generate/copy", json=COPY, headers=owner.headers)).json()
    for request in (api.get(f"/api/jobs/{job['id']}", headers=stranger.headers),
                    api.post(f"/api/jobs/{job['id']}/cancel", headers=stranger.headers)):
        response = await request
        assert response.status_code == 404 and "not found" in response.json()["detail"]
    listed = (await api.get("/api/jobs", headers=stranger.headers)).json()
    assert listed == {"items": [], "next_cursor": None}


async def test_job_list_pages_newest_first_and_filters(api):
    user = await register(api)
    ids = [(await api.post("/api/generate/copy", json=COPY, headers=user.headers)).json()["id"] for _ in range(5)]
    for job_id in ids:
        await wait_for_job(api, user, job_id, {"completed"})
    seen, cursor = [], None
    while True:
        page = (await api.get("/api/jobs", params={"limit": 2, **({"cursor": cursor} if cursor else {})},
                              headers=user.headers)).json()
        seen += [j["id"] for j in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert seen == list(reversed(ids))
    completed = (await api.get("/api/jobs?status=completed&type=copy", headers=user.headers)).json()["items"]
    assert len(completed) == 5
    assert (await api.get("/api/jobs?type=scrape", headers=user.headers)).json()["items"] == []


async def test_copy_through_an_openai_compatible_api_runs_end_to_end(api, log, stack):
    """COPY_PROVIDER=openai sends copy jobs over the chat completions protocol (to the local
    provider's emulator here): a good key completes the job, a refused key fails it with
    OpenAI's own error, so the answer provably came over that wire."""
    openai = {"COPY_PROVIDER": "openai", "OPENAI_BASE_URL": f"{stack.localprovider_url}/v1"}
    user = await register(api)
    outcomes = {}
    try:
        for key in ("sk-genrail-local", ""):
            stack.kill("pipeline")
            stack.start_service("pipeline", env={**openai, "OPENAI_API_KEY": key})
            job_id = (await api.post("/api/generate/copy", json={**COPY, "tone": "bold"}, headers=user.headers)).json()["id"]
            outcomes[key] = await wait_for_job(api, user, job_id, {"completed", "failed"})
    finally:
        stack.kill("pipeline")
        stack.start_service("pipeline")
    good, refused = outcomes["sk-genrail-local"], outcomes[""]
    assert good["status"] == "completed", good
    assert COPY["product_name"] in good["output"]["headline"] + good["output"]["body"]
    assert good["output"]["hashtags"] and all(tag.startswith("#") for tag in good["output"]["hashtags"])
    assert refused["status"] == "failed" and "OpenAI chat 401" in refused["error"], refused
    await drained(log)
    assert [r.data.job_id for r in await ledger_events(log, user.id, "refunded")] == [refused["id"]]
