import json
import time
from typing import Any

import pytest
import stripe

from genrail_events.payments import PaymentReversed, PaymentSucceeded, resolve_reversal, reversed_credits
from genrail_webhooks.stripe_events import StripeEventMalformed, StripeSignatureInvalid, interpret, verify_stripe_event

SECRET = "whsec_unit_test_secret"
PAYMENT_INTENT = "pi_3PurchaseOfStarterPack"
OUR_METADATA = {"user_id": "user-42", "pack": "starter", "credits": "100"}


def event(event_type: str, obj: dict[str, Any], event_id: str = "evt_1") -> dict[str, Any]:
    return {
        "id": event_id, "object": "event", "api_version": "2025-01-27.acacia", "created": 1_700_000_000,
        "data": {"object": obj}, "livemode": False, "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None}, "type": event_type,
    }


def session(**changes: Any) -> dict[str, Any]:
    return {
        "id": "cs_test_a1", "object": "checkout.session", "mode": "payment", "status": "complete",
        "payment_status": "paid", "payment_intent": PAYMENT_INTENT, "client_reference_id": "user-42",
        "amount_subtotal": 900, "amount_total": 900, "currency": "usd", "metadata": dict(OUR_METADATA),
    } | changes


def charge(**changes: Any) -> dict[str, Any]:
    return {
        "id": "ch_3Purchase", "object": "charge", "amount": 900, "amount_captured": 900,
        "amount_refunded": 900, "refunded": True, "currency": "usd", "payment_intent": PAYMENT_INTENT,
        "metadata": dict(OUR_METADATA),
    } | changes


def dispute(**changes: Any) -> dict[str, Any]:
    return {
        "id": "du_1", "object": "dispute", "amount": 900, "charge": "ch_3Purchase", "currency": "usd",
        "metadata": {}, "payment_intent": PAYMENT_INTENT, "reason": "fraudulent", "status": "lost",
    } | changes


PURCHASE = PaymentSucceeded("evt_paid", PAYMENT_INTENT, "user-42", "starter", 100, 900, "usd")


# --- purchases ---------------------------------------------------------------------------------

def test_paid_checkout_session_is_a_purchase_keyed_by_its_payment_intent():
    assert interpret(event("checkout.session.completed", session(), "evt_paid")) == PURCHASE


def test_completed_but_unpaid_session_waits_for_the_async_payment():
    assert interpret(event("checkout.session.completed", session(payment_status="unpaid"))) is None


def test_async_payment_success_names_the_same_payment_as_completion():
    completed = interpret(event("checkout.session.completed", session(), "evt_a"))
    async_succeeded = interpret(event("checkout.session.async_payment_succeeded", session(), "evt_b"))

    assert isinstance(completed, PaymentSucceeded) and isinstance(async_succeeded, PaymentSucceeded)
    assert async_succeeded.payment_id == completed.payment_id == PAYMENT_INTENT
    assert async_succeeded.stripe_event_id != completed.stripe_event_id


def test_expanded_payment_intent_gives_the_same_payment_id():
    expanded = session(payment_intent={"id": PAYMENT_INTENT, "object": "payment_intent"})

    assert interpret(event("checkout.session.completed", expanded)).payment_id == PAYMENT_INTENT


def test_session_without_payment_intent_is_keyed_by_the_session():
    purchase = interpret(event("checkout.session.completed", session(payment_intent=None)))

    assert purchase.payment_id == "cs_test_a1"


@pytest.mark.parametrize(
    "other",
    [session(metadata={}), session(mode="subscription"), session(payment_status="no_payment_required")],
)
def test_sessions_that_are_not_credit_purchases_mean_nothing(other):
    assert interpret(event("checkout.session.completed", other)) is None


@pytest.mark.parametrize(
    "metadata", [{"user_id": "user-42"}, OUR_METADATA | {"credits": "-5"}, OUR_METADATA | {"credits": "ten"}]
)
def test_our_session_with_broken_metadata_is_rejected(metadata):
    with pytest.raises(StripeEventMalformed, match="metadata"):
        interpret(event("checkout.session.completed", session(metadata=metadata)))


def test_event_without_object_is_rejected():
    with pytest.raises(StripeEventMalformed, match="no data.object"):
        interpret({"id": "evt_1", "type": "checkout.session.completed", "data": {}})


# --- refunds -----------------------------------------------------------------------------------

def test_full_refund_takes_every_credit_back():
    assert interpret(event("charge.refunded", charge(), "evt_refund")) == PaymentReversed(
        stripe_event_id="evt_refund", payment_id=PAYMENT_INTENT, user_id="user-42", credits=100,
        reason="refund", amount_cents=900, currency="usd",
    )


@pytest.mark.parametrize(("amount_refunded", "credits"), [(450, 50), (1, 1), (899, 100), (300, 34)])
def test_partial_refund_takes_back_proportional_credits_rounded_up(amount_refunded, credits):
    reversal = interpret(event("charge.refunded", charge(amount_refunded=amount_refunded, refunded=False)))

    assert reversal.credits == credits
    assert reversal.amount_cents == amount_refunded  # cumulative, as Stripe reports it


def test_refund_of_a_charge_without_our_metadata_is_resolved_from_the_purchase():
    reversal = interpret(event("charge.refunded", charge(metadata={}, amount_refunded=450)))

    assert reversal.user_id is None and reversal.credits is None and not reversal.is_resolved
    resolved = resolve_reversal(reversal, PURCHASE)
    assert (resolved.user_id, resolved.credits, resolved.is_resolved) == ("user-42", 50, True)


def test_refund_of_a_charge_without_payment_intent_means_nothing():
    assert interpret(event("charge.refunded", charge(payment_intent=None))) is None


# --- disputes ----------------------------------------------------------------------------------

def test_lost_dispute_names_the_payment_and_amount_and_is_resolved_from_the_purchase():
    reversal = interpret(event("charge.dispute.closed", dispute(), "evt_lost"))

    assert reversal == PaymentReversed(
        stripe_event_id="evt_lost", payment_id=PAYMENT_INTENT, user_id=None, credits=None,
        reason="dispute_lost", amount_cents=900, currency="usd",
    )
    assert resolve_reversal(reversal, PURCHASE).credits == 100


def test_lost_dispute_for_part_of_the_payment_reverses_that_part():
    reversal = interpret(event("charge.dispute.closed", dispute(amount=450)))

    assert resolve_reversal(reversal, PURCHASE).credits == 50


@pytest.mark.parametrize("status", ["won", "warning_closed"])
def test_dispute_closed_in_our_favour_means_nothing(status):
    assert interpret(event("charge.dispute.closed", dispute(status=status))) is None


def test_resolving_against_another_payment_is_refused():
    reversal = interpret(event("charge.dispute.closed", dispute(payment_intent="pi_other")))

    with pytest.raises(ValueError, match="cannot be resolved"):
        resolve_reversal(reversal, PURCHASE)


def test_resolving_a_reversal_that_names_another_user_is_refused():
    reversal = interpret(event("charge.refunded", charge(metadata=OUR_METADATA | {"user_id": "user-7"})))

    with pytest.raises(ValueError, match="names user 'user-7'"):
        resolve_reversal(reversal, PURCHASE)


@pytest.mark.parametrize(
    ("credits", "paid", "reversed_amount", "expected"),
    [(100, 900, 900, 100), (100, 900, 5000, 100), (100, 900, 0, 0), (3, 1000, 1, 1), (1000, 7900, 3950, 500)],
)
def test_reversed_credits_round_up_and_never_exceed_the_purchase(credits, paid, reversed_amount, expected):
    assert reversed_credits(credits, paid, reversed_amount) == expected


@pytest.mark.parametrize("event_type", ["payment_intent.succeeded", "charge.succeeded", "customer.created"])
def test_other_event_types_mean_nothing(event_type):
    assert interpret(event(event_type, {"id": "x", "object": "whatever"})) is None


# --- signatures --------------------------------------------------------------------------------

def signed(payload: str, secret: str = SECRET, timestamp: int | None = None) -> str:
    return stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=timestamp)


PAYLOAD = json.dumps(event("checkout.session.completed", session()), indent=2)


def test_verified_event_is_plain_json_data():
    verified = verify_stripe_event(PAYLOAD.encode(), signed(PAYLOAD), SECRET)

    assert verified == json.loads(PAYLOAD)
    assert type(verified) is dict and type(verified["data"]["object"]["metadata"]) is dict


def test_forged_signature_is_rejected():
    with pytest.raises(StripeSignatureInvalid, match="expected signature"):
        verify_stripe_event(PAYLOAD.encode(), signed(PAYLOAD, secret="whsec_someone_else"), SECRET)


def test_tampered_body_is_rejected():
    tampered = PAYLOAD.replace('"100"', '"100000"')

    with pytest.raises(StripeSignatureInvalid, match="expected signature"):
        verify_stripe_event(tampered.encode(), signed(PAYLOAD), SECRET)


def test_stale_signature_is_rejected():
    stale = signed(PAYLOAD, timestamp=int(time.time()) - 301)

    with pytest.raises(StripeSignatureInvalid, match="tolerance"):
        verify_stripe_event(PAYLOAD.encode(), stale, SECRET)


def test_tolerance_is_configurable():
    ten_minutes_old = signed(PAYLOAD, timestamp=int(time.time()) - 600)

    assert verify_stripe_event(PAYLOAD.encode(), ten_minutes_old, SECRET, tolerance_s=900)["id"] == "evt_1"


@pytest.mark.parametrize("header", [None, ""])
def test_missing_signature_is_rejected(header):
    with pytest.raises(StripeSignatureInvalid, match="missing Stripe-Signature"):
        verify_stripe_event(PAYLOAD.encode(), header, SECRET)


def test_garbled_signature_header_is_rejected():
    with pytest.raises(StripeSignatureInvalid, match="Unable to extract timestamp"):
        verify_stripe_event(PAYLOAD.encode(), "v1=deadbeef", SECRET)


def test_signed_payload_that_is_not_an_event_is_rejected():
    with pytest.raises(StripeEventMalformed):
        verify_stripe_event(b"not json", signed("not json"), SECRET)


def test_unconfigured_secret_is_a_server_error_not_a_bad_request():
    with pytest.raises(ValueError, match="not configured"):
        verify_stripe_event(PAYLOAD.encode(), signed(PAYLOAD), "")
