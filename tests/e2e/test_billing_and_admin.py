"""Buying credits through Stripe Checkout (the local emulator), Stripe's webhooks, refunds and
lost disputes, and the admin side: retries, adjustments, everyone's jobs."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx
import pytest
import stripe

from genrail_events import ledger
from genrail_events.jobs import JobType
from genrail_events.ledger import Account
from genrail_commands.accounts import append_to_account
from tests.conftest import TEST_ENV
from tests.helpers import STRIPE_WEBHOOK_SECRET, User, drained, ledger_events, register, wait_for_job, wait_until

pytestmark = pytest.mark.e2e

ADMIN = {"Authorization": f"Bearer {TEST_ENV['ADMIN_TOKEN']}"}
WEBHOOK_SECRET = STRIPE_WEBHOOK_SECRET  # the test stack's, shared by the emulator and the webhooks service
COPY = {"product_name": "Trailblazer 2 hiking boots", "tone": "bold", "length": "short"}


# --- helpers --------------------------------------------------------------------------------

async def balance(api: httpx.AsyncClient, user: User) -> int:
    return (await api.get("/api/credits", headers=user.headers)).json()["balance"]


async def settles_at(api: httpx.AsyncClient, user: User, expected: int, hold_s: float = 0.5) -> None:
    """The balance reaches `expected` and stays there (a second effect would show by then)."""
    await wait_until(lambda: _is(api, user, expected))
    await asyncio.sleep(hold_s)
    assert await balance(api, user) == expected


async def _is(api: httpx.AsyncClient, user: User, expected: int) -> bool:
    return await balance(api, user) == expected


async def checkout(api: httpx.AsyncClient, user: User, pack: str = "starter", **extra: Any) -> dict:
    response = await api.post("/api/billing/checkout", json={"pack": pack, **extra}, headers=user.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def emulator(stack, path: str, **params: Any) -> dict:
    async with httpx.AsyncClient(base_url=stack.localprovider_url, timeout=30) as client:
        response = await client.post(path, params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["delivery"] == {"delivered": True, "status_code": 200}, body
    return body["event"]


async def buy(api: httpx.AsyncClient, stack, user: User, pack: str = "starter") -> tuple[str, str]:
    """Checkout and pay, as a buyer would: (session id, payment id)."""
    session = await checkout(api, user, pack)
    paid = await emulator(stack, f"/emulator/stripe/sessions/{session['session_id']}/pay")
    return session["session_id"], paid["data"]["object"]["payment_intent"]


async def deliver(stack, payload: str, signature: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/json"} | ({"Stripe-Signature": signature} if signature else {})
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(f"{stack.webhooks_url}/webhooks/stripe", content=payload, headers=headers)


async def scrape(api: httpx.AsyncClient, user: User, url: str) -> str:
    created = await api.post("/api/generate/scrape", json={"url": url}, headers=user.headers)
    assert created.status_code == 202, created.text
    return created.json()["id"]


async def adjust(api: httpx.AsyncClient, user_id: str, body: dict[str, Any]) -> httpx.Response:
    return await api.post(f"/api/admin/users/{user_id}/credits", json=body, headers=ADMIN)


async def failed_then_fixed(api: httpx.AsyncClient, log, shop, user: User) -> str:
    """A scrape job that failed because its site answered 503 three times, refunded; the
    site answers again now."""
    name = uuid.uuid4().hex
    shop.failing.add(name)
    job_id = await scrape(api, user, shop.url(f"/flaky/{name}"))
    assert (await wait_for_job(api, user, job_id, {"failed", "completed"}, timeout_s=60))["status"] == "failed"
    await wait_until(lambda: ledger_events(log, user.id, "refunded"))
    shop.failing.discard(name)
    return job_id


def signed(payload: str, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    return stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=timestamp)


def stripe_event(event_type: str, obj: dict[str, Any]) -> str:
    return json.dumps({"id": f"evt_test_{uuid.uuid4().hex}", "object": "event", "type": event_type,
                       "api_version": stripe.api_version, "created": int(time.time()), "data": {"object": obj},
                       "livemode": False, "pending_webhooks": 1})


def paid_session(user: User, payment_id: str) -> dict[str, Any]:
    return {"id": f"cs_test_{uuid.uuid4().hex}", "object": "checkout.session", "mode": "payment",
            "status": "complete", "payment_status": "paid", "payment_intent": payment_id,
            "client_reference_id": user.id, "amount_total": 900, "currency": "usd",
            "metadata": {"user_id": user.id, "pack": "starter", "credits": "100"}}


def refunded_charge(user: User, payment_id: str, amount_refunded: int) -> dict[str, Any]:
    return {"id": f"ch_{uuid.uuid4().hex}", "object": "charge", "amount": 900, "currency": "usd",
            "amount_refunded": amount_refunded, "refunded": amount_refunded == 900, "payment_intent": payment_id,
            "metadata": {"user_id": user.id, "pack": "starter", "credits": "100"}}


# --- buying credits -------------------------------------------------------------------------

async def test_buying_a_pack_through_checkout_adds_its_credits_once(api, log, stack):
    user = await register(api)
    session = await checkout(api, user)
    assert session["checkout_url"].startswith(stack.localprovider_url)
    assert (session["pack"], session["credits"], session["amount_cents"], session["currency"]) == (
        "starter", 100, 900, "usd")
    paid = await emulator(stack, f"/emulator/stripe/sessions/{session['session_id']}/pay")
    stripe_session = paid["data"]["object"]
    assert stripe_session["client_reference_id"] == user.id and stripe_session["metadata"]["pack"] == "starter"
    await settles_at(api, user, 110)
    [purchase] = await ledger_events(log, user.id, "purchased")
    assert (purchase.data.payment_id, purchase.data.amount) == (stripe_session["payment_intent"], 100)


async def test_the_same_idempotency_key_opens_one_checkout_session(api):
    user = await register(api)
    first, second = await asyncio.gather(checkout(api, user, "pro", idempotency_key="cart-1"),
                                         checkout(api, user, "pro", idempotency_key="cart-1"))
    assert first["session_id"] == second["session_id"]
    other = await checkout(api, user, "pro", idempotency_key="cart-2")
    assert other["session_id"] != first["session_id"]


async def test_an_unknown_pack_is_refused_naming_the_packs_on_sale(api):
    user = await register(api)
    response = await api.post("/api/billing/checkout", json={"pack": "mega"}, headers=user.headers)
    assert response.status_code == 422
    assert "mega" in response.json()["detail"] and "pro, starter" in response.json()["detail"]
    assert (await api.post("/api/billing/checkout", json={"pack": "starter"})).status_code == 401


async def test_a_checkout_completed_delivered_three_times_adds_credits_once(api, log, stack):
    user = await register(api)
    session = await checkout(api, user)
    paid = await emulator(stack, f"/emulator/stripe/sessions/{session['session_id']}/pay")
    await asyncio.gather(*(emulator(stack, f"/emulator/stripe/events/{paid['id']}/resend") for _ in range(2)))
    # Past the log's 2 s message-id window: the payment id still names the purchase.
    await asyncio.sleep(2.5)
    payment_id = paid["data"]["object"]["payment_intent"]
    payload = stripe_event("checkout.session.async_payment_succeeded", paid["data"]["object"])
    again = await deliver(stack, payload, signed(payload))
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    await settles_at(api, user, 110, hold_s=1.0)
    assert len(await ledger_events(log, user.id, "purchased")) == 1
    assert len(await log.read(f"payment.succeeded.{payment_id}")) == 1


async def test_a_forged_stale_or_missing_signature_is_refused_and_changes_nothing(api, log, stack):
    user = await register(api)
    payment_id = f"pi_forged_{uuid.uuid4().hex}"
    payload = stripe_event("checkout.session.completed", paid_session(user, payment_id))
    tampered = payload.replace('"credits": "100"', '"credits": "999"')
    for signature, body in ((signed(payload, "whsec_not_the_secret"), payload),
                            (signed(payload, timestamp=int(time.time()) - 600), payload),
                            (None, payload), ("t=1,v1=deadbeef", payload), (signed(payload), tampered)):
        refused = await deliver(stack, body, signature)
        assert refused.status_code == 400, refused.text
        assert "Stripe-Signature" in refused.json()["detail"]
    await drained(log)  # had anything been recorded, the ledger would have credited it by now
    assert await log.last(f"payment.succeeded.{payment_id}") is None
    assert await balance(api, user) == 10
    accepted = await deliver(stack, payload, signed(payload))  # the same event, signed: it would have counted
    assert accepted.status_code == 200 and accepted.json()["status"] == "recorded"
    await settles_at(api, user, 110)


async def test_events_we_do_not_act_on_are_acknowledged_and_ignored(stack):
    payload = stripe_event("customer.created", {"id": "cus_1", "object": "customer"})
    response = await deliver(stack, payload, signed(payload))
    assert response.status_code == 200 and response.json()["status"] == "ignored"


async def test_the_stripe_webhook_answers_503_unconfigured_and_413_oversized_so_stripe_retries():
    from genrail_webhooks.main import create_app
    from genrail_webhooks.settings import WebhooksSettings

    unconfigured = WebhooksSettings(stripe_webhook_secret=None)
    small = WebhooksSettings(stripe_webhook_secret=WEBHOOK_SECRET, webhooks_max_body_bytes=10)
    for settings, body, status in ((unconfigured, "{}", 503), (small, "x" * 11, 413)):
        app = create_app(settings)
        app.state.settings = settings  # what the lifespan sets; both answers come before the log is touched
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hooks") as client:
            response = await client.post("/webhooks/stripe", content=body,
                                         headers={"Stripe-Signature": signed(body)})
        assert response.status_code == status and response.json()["detail"]


# --- taking credits back --------------------------------------------------------------------

async def test_refunds_take_back_what_they_refund_once_even_below_zero_then_jobs_are_refused(api, log, stack):
    user = await register(api)
    session_id, payment_id = await buy(api, stack, user)
    await settles_at(api, user, 110, hold_s=0)
    spent = await asyncio.gather(*(api.post("/api/generate/copy", json=COPY, headers=user.headers)
                                   for _ in range(11)))
    assert {r.status_code for r in spent} == {202}
    half = await emulator(stack, f"/emulator/stripe/sessions/{session_id}/refund", amount=450)
    await settles_at(api, user, 49, hold_s=0)
    await emulator(stack, f"/emulator/stripe/events/{half['id']}/resend")  # the same total again: nothing
    await emulator(stack, f"/emulator/stripe/sessions/{session_id}/refund")  # the rest: total 900
    await settles_at(api, user, -1, hold_s=1.0)
    reversals = await ledger_events(log, user.id, "reversed")
    assert [(r.data.amount, r.data.reason, r.data.payment_id) for r in reversals] == [
        (50, "refund", payment_id), (50, "refund", payment_id)]
    refused = await api.post("/api/generate/copy", json=COPY, headers=user.headers)
    assert refused.status_code == 402, refused.text
    assert (refused.json()["balance"], refused.json()["cost"]) == (-1, 1)
    assert await balance(api, user) == -1


async def test_a_lost_dispute_takes_the_purchase_back_though_it_names_no_user(api, log, stack):
    user = await register(api)
    session_id, payment_id = await buy(api, stack, user)
    await settles_at(api, user, 110, hold_s=0)
    dispute = await emulator(stack, f"/emulator/stripe/sessions/{session_id}/dispute-lost")
    assert dispute["data"]["object"]["metadata"] == {}
    await settles_at(api, user, 10, hold_s=1.0)
    [reversal] = await ledger_events(log, user.id, "reversed")
    assert (reversal.data.amount, reversal.data.reason, reversal.data.payment_id) == (
        100, "dispute_lost", payment_id)


async def test_a_refund_that_arrives_before_its_purchase_waits_for_it(api, log, stack):
    user = await register(api)
    payment_id = f"pi_early_{uuid.uuid4().hex}"
    refund = stripe_event("charge.refunded", refunded_charge(user, payment_id, 900))
    recorded = await deliver(stack, refund, signed(refund))
    assert recorded.status_code == 200 and recorded.json()["status"] == "recorded"
    await asyncio.sleep(1.0)  # the ledger tries it and puts it back to wait (not drained: it waits on purpose)
    assert await balance(api, user) == 10  # nothing to take back yet, and nothing lost
    purchase = stripe_event("checkout.session.completed", paid_session(user, payment_id))
    assert (await deliver(stack, purchase, signed(purchase))).status_code == 200
    await wait_until(lambda: ledger_events(log, user.id, "reversed"), timeout_s=30)
    await settles_at(api, user, 10)
    assert [e.data.kind for e in await ledger_events(log, user.id)] == ["granted", "purchased", "reversed"]


# --- admin ----------------------------------------------------------------------------------

async def test_admin_routes_need_the_admin_token(api):
    user = await register(api)
    routes = [("POST", f"/api/admin/jobs/{uuid.uuid4()}/retry", None),
              ("POST", f"/api/admin/users/{user.id}/credits", {"amount": 5, "reason": "x"}),
              ("GET", "/api/admin/jobs", None)]
    for headers in ({}, {"Authorization": "Bearer wrong"}, user.headers):
        for method, path, body in routes:
            response = await api.request(method, path, json=body, headers=headers)
            assert response.status_code == 401, (path, response.text)
            assert "admin token" in response.json()["detail"]
    assert await balance(api, user) == 10


async def test_admin_routes_answer_403_when_no_admin_token_is_configured():
    from genrail_api.main import create_app
    from genrail_api.settings import ApiSettings

    settings = ApiSettings(admin_token=None)
    app = create_app(settings)
    app.state.settings = settings  # what the lifespan sets; no connections are needed to refuse
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        response = await client.get("/api/admin/jobs", headers=ADMIN)
    assert response.status_code == 403 and "ADMIN_TOKEN" in response.json()["detail"]


async def test_retry_of_a_failed_job_charges_again_and_completes(api, log, shop):
    user = await register(api)
    job_id = await failed_then_fixed(api, log, shop, user)
    assert await balance(api, user) == 10  # attempt 1 refunded

    retried = await api.post(f"/api/admin/jobs/{job_id}/retry", headers=ADMIN)
    assert retried.status_code == 202, retried.text
    job = retried.json()
    assert (job["status"], job["attempt"], job["user_id"]) == ("pending", 2, user.id)
    assert await balance(api, user) == 9  # charged again at once
    done = await wait_for_attempt(api, user, job_id, 2)
    assert (done["status"], done["attempt"]) == ("completed", 2)
    assert done["output"]["title"] == "Trailblazer 2 Hiking Boots"
    await settles_at(api, user, 9)
    debits = [(e.data.job_id, e.data.attempt) for e in await ledger_events(log, user.id, "debited")]
    refunds = [(e.data.job_id, e.data.attempt) for e in await ledger_events(log, user.id, "refunded")]
    assert (debits, refunds) == ([(job_id, 1), (job_id, 2)], [(job_id, 1)])

    again = await api.post(f"/api/admin/jobs/{job_id}/retry", headers=ADMIN)
    assert again.status_code == 409 and "completed" in again.json()["detail"]
    assert len(await ledger_events(log, user.id, "debited")) == 2
    listed = await api.get("/api/admin/jobs", params={"user": user.id, "status": "completed"}, headers=ADMIN)
    assert [(j["id"], j["attempt"], j["user_id"]) for j in listed.json()["items"]] == [(job_id, 2, user.id)]


async def test_retry_without_credits_is_refused_and_charges_nothing(api, log, shop):
    user = await register(api)
    job_id = await scrape(api, user, shop.url("/down"))
    await wait_for_job(api, user, job_id, {"failed"}, timeout_s=60)
    await settles_at(api, user, 10, hold_s=0)
    spent = await adjust(api, user.id, {"amount": -10, "reason": "spend it all"})
    assert spent.status_code == 201 and spent.json()["balance"] == 0
    refused = await api.post(f"/api/admin/jobs/{job_id}/retry", headers=ADMIN)
    assert refused.status_code == 402 and refused.json()["balance"] == 0
    assert len(await ledger_events(log, user.id, "debited")) == 1
    assert (await log.last(f"job.retried.*.{job_id}")) is None
    missing = await api.post(f"/api/admin/jobs/{uuid.uuid4()}/retry", headers=ADMIN)
    assert missing.status_code == 404


async def test_a_retry_cut_off_after_its_charge_is_completed_by_the_next_request_without_a_second_charge(
        api, log, stack, shop):
    user = await register(api)
    job_id = await failed_then_fixed(api, log, shop, user)
    url = (await api.get(f"/api/jobs/{job_id}", headers=user.headers)).json()["input"]["url"]
    stack.kill("ledger")  # so nothing but the next request can complete the retry
    try:
        # What the retry handler appends first; the API "dies" before `job.retried`.
        job = ledger.JobRequest(type=JobType.scrape, input={"url": url}, cost=1, requested_by="admin")
        await append_to_account(log, user.id, lambda account: ledger.decide_debit(account, job_id, 2, 1, job),
                                unique_subject=f"ledger.{user.id}.debited.{job_id}.2")
        assert await log.last(f"job.retried.*.{job_id}") is None
        retried = await api.post(f"/api/admin/jobs/{job_id}/retry", headers=ADMIN)
        assert retried.status_code == 202, retried.text
        assert retried.json()["attempt"] == 2
    finally:
        stack.start_service("ledger")
    done = await wait_for_attempt(api, user, job_id, 2)
    assert (done["status"], done["attempt"]) == ("completed", 2)
    await settles_at(api, user, 9, hold_s=1.0)
    assert [e.data.attempt for e in await ledger_events(log, user.id, "debited")] == [1, 2]
    assert len(await log.read(f"job.retried.*.{job_id}")) == 1


async def test_a_retry_charge_whose_request_never_returns_is_completed_by_the_ledger(api, log, shop):
    user = await register(api)
    job_id = await failed_then_fixed(api, log, shop, user)
    url = (await api.get(f"/api/jobs/{job_id}", headers=user.headers)).json()["input"]["url"]
    job = ledger.JobRequest(type=JobType.scrape, input={"url": url}, cost=1)
    await append_to_account(log, user.id, lambda account: ledger.decide_debit(account, job_id, 2, 1, job))
    done = await wait_for_job(api, user, job_id, {"completed"}, timeout_s=60)
    assert done["attempt"] == 2
    assert len(await log.read(f"job.retried.*.{job_id}")) == 1
    await settles_at(api, user, 9)


async def test_an_adjustment_is_applied_once_per_idempotency_key(api, log):
    user = await register(api)
    body = {"amount": 25, "reason": "goodwill", "idempotency_key": "ticket-17"}
    first = await adjust(api, user.id, body)
    assert first.status_code == 201 and first.json()["balance"] == 35
    again = await adjust(api, user.id, body)
    assert again.status_code == 200 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == again.headers["Idempotent-Replay"] == "true"
    other = await adjust(api, user.id, {**body, "amount": 30})
    assert other.status_code == 409 and "ticket-17" in other.json()["detail"]
    below = await adjust(api, user.id, {"amount": -36, "reason": "x"})
    assert below.status_code == 409 and "below zero" in below.json()["detail"]
    for bad in ({"amount": 0, "reason": "x"}, {"amount": "5", "reason": "x"}, {"amount": 5, "reason": ""}):
        assert (await adjust(api, user.id, bad)).status_code == 422
    assert (await adjust(api, str(uuid.uuid4()), body)).status_code == 404
    assert [e.data.amount for e in await ledger_events(log, user.id, "adjusted")] == [25]


# --- the whole ledger -----------------------------------------------------------------------

async def test_the_full_ledger_of_a_user_adds_up_to_the_balance(api, log, stack, shop):
    user = await register(api)
    session_id, payment_id = await buy(api, stack, user)
    await buy(api, stack, user, "pro")
    await settles_at(api, user, 1110, hold_s=0)
    copy_ids = [(await api.post("/api/generate/copy", json=COPY, headers=user.headers)).json()["id"]
                for _ in range(3)]
    failing_id = await scrape(api, user, shop.url("/down"))
    await emulator(stack, f"/emulator/stripe/sessions/{session_id}/refund", amount=300)  # 34 credits, rounded up
    assert (await adjust(api, user.id, {"amount": 7, "reason": "goodwill"})).status_code == 201
    for job_id in copy_ids:
        await wait_for_job(api, user, job_id, {"completed"})
    await wait_for_job(api, user, failing_id, {"failed"}, timeout_s=60)
    expected = 10 + 100 + 1000 - 3 - 1 + 1 - 34 + 7
    await settles_at(api, user, expected)

    async def whole_ledger() -> list[dict] | None:
        items, cursor = [], None
        while True:
            params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
            page = (await api.get("/api/credits/transactions", params=params, headers=user.headers)).json()
            items += page["items"]
            if not (cursor := page["next_cursor"]):
                return items if len(items) == 10 else None  # once the projection has caught up

    items = await wait_until(whole_ledger)
    assert [i["seq"] for i in items] == sorted((i["seq"] for i in items), reverse=True)
    assert sum(i["amount"] for i in items) == items[0]["balance_after"] == expected
    assert sorted(i["kind"] for i in items) == sorted(
        ["granted", "purchased", "purchased", "debited", "debited", "debited", "debited", "refunded",
         "reversed", "adjusted"])
    for item in items:
        if item["kind"] in ("debited", "refunded"):
            assert item["job_id"] in [*copy_ids, failing_id] and item["attempt"] == 1
        if item["kind"] in ("purchased", "reversed"):
            assert item["payment_id"] and item["payment_id"].startswith("pi_")
        assert item["reason"]
    assert next(i for i in items if i["kind"] == "reversed")["payment_id"] == payment_id
    assert next(i for i in items if i["kind"] == "adjusted")["reason"] == "goodwill"
    events = await ledger_events(log, user.id)
    assert sum(ledger.signed_amount(e) for e in events) == ledger.evolve(Account(user.id), events[-1]).balance
    bad = await api.get("/api/credits/transactions", params={"cursor": "abc"}, headers=user.headers)
    assert bad.status_code == 422


async def wait_for_attempt(api, user, job_id: str, attempt: int, timeout_s: float = 60) -> dict:
    """The job once the given attempt is final (the projection may still show the last one)."""
    async def final() -> dict | None:
        job = (await api.get(f"/api/jobs/{job_id}", headers=user.headers)).json()
        return job if job["attempt"] == attempt and job["status"] in ("completed", "failed", "expired") else None

    return await wait_until(final, timeout_s=timeout_s)
