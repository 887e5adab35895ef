"""StripeCheckout against the local Stripe emulator in a real server, and the emulator's
signed events read back by verify_stripe_event and interpret, as the webhooks service will."""

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from genrail_localprovider import stripe as stripe_emulator
from genrail_localprovider.stripe import StripeEmulator, StripeEmulatorSettings
from genrail_events.payments import CreditPack
from genrail_api.stripe_checkout import CheckoutSession, PaymentProviderError, StripeCheckout
from genrail_events.payments import PaymentReversed, PaymentSucceeded, resolve_reversal
from genrail_webhooks.stripe_events import StripeWebhookRejected, interpret, verify_stripe_event
from tests.servers import serve_in_thread

API_KEY = "sk_test_genrail_service_tests"
WEBHOOK_SECRET = "whsec_service_test_secret"
STARTER = CreditPack("starter", 100, 900, "usd", "Starter pack")
PRO = CreditPack("pro", 1000, 7900, "usd", "Pro pack")


@dataclass
class LocalStripe:
    base_url: str
    # stripe event id -> what interpret() made of it, filled by the receiver route
    received: dict[str, PaymentSucceeded | PaymentReversed | None] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)


def build_app(local_stripe: LocalStripe) -> FastAPI:
    app = FastAPI()
    app.include_router(stripe_emulator.router)
    app.state.stripe_emulator = StripeEmulator(StripeEmulatorSettings(
        webhook_url=f"{local_stripe.base_url}/test/webhooks/stripe",
        webhook_secret=WEBHOOK_SECRET,
        public_url=local_stripe.base_url,
    ))

    @app.post("/test/webhooks/stripe")
    async def receive(request: Request) -> JSONResponse:
        try:
            event = verify_stripe_event(await request.body(), request.headers.get("stripe-signature"),
                                        WEBHOOK_SECRET)
        except StripeWebhookRejected as exc:
            local_stripe.rejected.append(str(exc))
            return JSONResponse({"error": str(exc)}, status_code=400)
        local_stripe.received[event["id"]] = interpret(event)
        return JSONResponse({"received": True})

    return app


@pytest.fixture(scope="module")
def local_stripe() -> Iterator[LocalStripe]:
    running: list[LocalStripe] = []

    def app_at(url: str):
        running.append(LocalStripe(base_url=url))
        return build_app(running[0])

    with serve_in_thread(factory=app_at):
        yield running[0]


@pytest.fixture
async def checkout(local_stripe: LocalStripe):
    async with StripeCheckout(API_KEY, local_stripe.base_url,
                              success_url="http://127.0.0.1/paid?session={CHECKOUT_SESSION_ID}",
                              cancel_url="http://127.0.0.1/canceled") as client:
        yield client


@pytest.fixture
async def http(local_stripe: LocalStripe):
    async with httpx.AsyncClient(base_url=local_stripe.base_url, timeout=10) as client:
        yield client


async def buy(checkout: StripeCheckout, http: httpx.AsyncClient, key: str) -> tuple[CheckoutSession, dict]:
    session = await checkout.create_session("user-42", STARTER, idempotency_key=key)
    paid = await http.post(f"/emulator/stripe/sessions/{session.id}/pay")
    assert paid.status_code == 200, paid.text
    return session, paid.json()


async def test_creates_a_session_with_a_payment_page(checkout, http, local_stripe):
    session = await checkout.create_session("user-42", STARTER, idempotency_key="buy-page")

    assert session.id.startswith("cs_test_")
    assert session.url == f"{local_stripe.base_url}/emulator/stripe/pay/{session.id}"
    page = await http.get(session.url)
    assert page.status_code == 200 and "9.00 USD" in page.text and "<button" in page.text


async def test_session_carries_what_the_webhook_needs(checkout, http):
    session = await checkout.create_session("user-42", STARTER, idempotency_key="buy-fields")

    stored = (await http.get(f"/v1/checkout/sessions/{session.id}", auth=(API_KEY, ""))).json()
    assert stored["mode"] == "payment" and stored["status"] == "open" and stored["payment_status"] == "unpaid"
    assert stored["client_reference_id"] == "user-42"
    assert stored["metadata"] == {"user_id": "user-42", "pack": "starter", "credits": "100"}
    assert (stored["amount_total"], stored["currency"]) == (900, "usd")


async def test_same_idempotency_key_gives_the_same_session(checkout):
    first = await checkout.create_session("user-42", STARTER, idempotency_key="buy-once")
    again = await checkout.create_session("user-42", STARTER, idempotency_key="buy-once")
    other = await checkout.create_session("user-42", STARTER, idempotency_key="buy-twice")

    assert again == first
    assert other.id != first.id


async def test_idempotency_key_reused_for_another_pack_is_refused(checkout):
    await checkout.create_session("user-42", STARTER, idempotency_key="buy-reused")

    with pytest.raises(PaymentProviderError, match="IdempotencyError") as refused:
        await checkout.create_session("user-42", PRO, idempotency_key="buy-reused")
    assert refused.value.transient is False and refused.value.status_code == 400


async def test_paying_delivers_a_signed_completed_event_read_as_a_purchase(checkout, http, local_stripe):
    session, paid = await buy(checkout, http, "buy-and-pay")

    assert paid["delivery"] == {"delivered": True, "status_code": 200}
    event = paid["event"]
    assert event["type"] == "checkout.session.completed" and event["object"] == "event"
    assert event["id"].startswith("evt_") and event["livemode"] is False and event["api_version"]
    purchase = local_stripe.received[event["id"]]
    assert purchase == PaymentSucceeded(
        stripe_event_id=event["id"], payment_id=event["data"]["object"]["payment_intent"], user_id="user-42",
        pack="starter", credits=100, amount_cents=900, currency="usd",
    )
    assert purchase.payment_id.startswith("pi_")
    stored = (await http.get(f"/v1/checkout/sessions/{session.id}", auth=(API_KEY, ""))).json()
    assert (stored["status"], stored["payment_status"]) == ("complete", "paid")


async def test_resent_event_keeps_its_id_so_receivers_can_deduplicate(checkout, http, local_stripe):
    _, paid = await buy(checkout, http, "buy-and-resend")

    resent = (await http.post(f"/emulator/stripe/events/{paid['event']['id']}/resend")).json()

    assert resent["delivery"]["delivered"] is True
    assert resent["event"]["id"] == paid["event"]["id"]


async def test_paying_twice_is_refused(checkout, http):
    session, _ = await buy(checkout, http, "buy-pay-twice")

    again = await http.post(f"/emulator/stripe/sessions/{session.id}/pay")

    assert again.status_code == 400
    assert again.json()["error"]["type"] == "invalid_request_error"


async def test_pay_button_redirects_the_browser_to_the_success_url(checkout, http):
    session = await checkout.create_session("user-42", STARTER, idempotency_key="buy-in-browser")

    clicked = await http.post(f"/emulator/stripe/sessions/{session.id}/pay", headers={"Accept": "text/html"})

    assert clicked.status_code == 303
    assert clicked.headers["location"] == f"http://127.0.0.1/paid?session={session.id}"


async def test_refunds_are_read_as_cumulative_reversals_of_the_purchase(checkout, http, local_stripe):
    session, paid = await buy(checkout, http, "buy-and-refund")
    payment_id = local_stripe.received[paid["event"]["id"]].payment_id

    refund_url = f"/emulator/stripe/sessions/{session.id}/refund"
    partial = (await http.post(refund_url, params={"amount": 300})).json()
    rest = (await http.post(refund_url)).json()

    first, second = local_stripe.received[partial["event"]["id"]], local_stripe.received[rest["event"]["id"]]
    assert first == PaymentReversed(partial["event"]["id"], payment_id, "user-42", 34, "refund", 300, "usd")
    assert second == PaymentReversed(rest["event"]["id"], payment_id, "user-42", 100, "refund", 900, "usd")
    too_much = await http.post(refund_url)
    assert too_much.json()["error"]["code"] == "charge_already_refunded"


async def test_lost_dispute_is_resolved_against_the_purchase(checkout, http, local_stripe):
    session, paid = await buy(checkout, http, "buy-and-dispute")
    purchase = local_stripe.received[paid["event"]["id"]]

    lost = (await http.post(f"/emulator/stripe/sessions/{session.id}/dispute-lost")).json()

    assert lost["event"]["type"] == "charge.dispute.closed"
    reversal = local_stripe.received[lost["event"]["id"]]
    assert reversal.payment_id == purchase.payment_id and reversal.reason == "dispute_lost"
    assert reversal.user_id is None  # a Dispute does not carry the charge's metadata
    assert resolve_reversal(reversal, purchase).credits == 100
    refund = await http.post(f"/emulator/stripe/sessions/{session.id}/refund")
    assert refund.json()["error"]["code"] == "charge_disputed"


async def test_events_signed_with_another_secret_are_rejected_by_the_receiver(http, local_stripe):
    forged = await http.post("/test/webhooks/stripe", content=b'{"id": "evt_forged", "object": "event"}',
                             headers={"Stripe-Signature": "t=1,v1=00"})

    assert forged.status_code == 400
    assert "evt_forged" not in local_stripe.received
    assert "invalid Stripe-Signature" in local_stripe.rejected[-1]


async def test_stripe_error_shape_for_bad_params_and_keys(http):
    form = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/x-www-form-urlencoded"}
    missing_mode = await http.post("/v1/checkout/sessions", content="line_items[0][quantity]=1", headers=form)
    unknown = await http.post("/v1/checkout/sessions", content="mode=payment&colour=red", headers=form)
    no_key = await http.post("/v1/checkout/sessions", content="mode=payment")

    assert missing_mode.status_code == 400
    assert missing_mode.json() == {"error": {"type": "invalid_request_error", "code": "parameter_missing",
                                             "message": "Missing required param: mode.", "param": "mode"}}
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "colour"
    assert no_key.status_code == 401 and no_key.json()["error"]["type"] == "invalid_request_error"


async def test_bad_api_key_is_not_worth_retrying(local_stripe):
    async with StripeCheckout("pk_test_wrong_kind_of_key", local_stripe.base_url, "http://127.0.0.1/ok",
                              "http://127.0.0.1/no") as checkout:
        with pytest.raises(PaymentProviderError, match="AuthenticationError") as refused:
            await checkout.create_session("user-42", STARTER, idempotency_key="buy-bad-key")
    assert refused.value.transient is False and refused.value.status_code == 401


async def test_unreachable_stripe_is_worth_retrying():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    async with StripeCheckout(API_KEY, f"http://127.0.0.1:{closed_port}", "http://127.0.0.1/ok",
                              "http://127.0.0.1/no", max_network_retries=0) as checkout:
        with pytest.raises(PaymentProviderError, match="APIConnectionError") as refused:
            await checkout.create_session("user-42", STARTER, idempotency_key="buy-unreachable")
    assert refused.value.transient is True
