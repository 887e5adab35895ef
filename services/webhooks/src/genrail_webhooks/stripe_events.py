"""Stripe webhook events: verify the signature, then read what the ledger needs. No I/O.

How a purchase and its reversals find each other. The PaymentIntent id is the payment id:
a Checkout Session names it in `payment_intent` (set once the session completes), and so do
the Charge it creates and any Dispute on that Charge. `checkout.session.completed` and
`checkout.session.async_payment_succeeded` for one payment therefore give one payment id,
and a refund or dispute points back at the purchase it undoes.

Where the user and the pack are written. StripeCheckout puts `purchase_metadata()` on the
session and, through `payment_intent_data.metadata`, on the PaymentIntent. Stripe copies a
PaymentIntent's metadata to the Charge when the intent is confirmed (once: later edits to the
intent do not follow), so `charge.refunded` names the user and the pack. A Dispute has only
its own metadata, empty unless someone sets it, so `charge.dispute.closed` names the payment
and the amount but not the user: `resolve_reversal()` completes it from the recorded purchase.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import stripe

from genrail_events.payments import PaymentReversed, PaymentSucceeded, reversed_credits

DEFAULT_TOLERANCE_S = 300
_FULFILMENT_EVENTS = frozenset({"checkout.session.completed", "checkout.session.async_payment_succeeded"})
_INTERPRETED_EVENTS = _FULFILMENT_EVENTS | {"charge.refunded", "charge.dispute.closed"}


class StripeWebhookRejected(Exception):
    """The request is not a Stripe event we can act on; answer 400 and do nothing."""


class StripeSignatureInvalid(StripeWebhookRejected):
    """Missing, malformed, forged or stale `Stripe-Signature`."""


class StripeEventMalformed(StripeWebhookRejected):
    """Signed, but not shaped as the event it claims to be."""


def verify_stripe_event(
    payload: bytes, sig_header: str | None, secret: str, tolerance_s: int = DEFAULT_TOLERANCE_S
) -> dict[str, Any]:
    """Check `Stripe-Signature` over the raw body and return the event as plain JSON data.

    Pass the body exactly as received: re-serialised JSON no longer matches the signature.
    """
    if not secret:
        raise ValueError("the Stripe webhook secret (whsec_...) is not configured")
    if not sig_header:
        raise StripeSignatureInvalid("missing Stripe-Signature header")
    try:
        event = stripe.Webhook.construct_event(payload, sig_header, secret, tolerance=tolerance_s)
    except stripe.SignatureVerificationError as exc:
        raise StripeSignatureInvalid(f"invalid Stripe-Signature: {exc.user_message}") from exc
    except ValueError as exc:  # not UTF-8, not JSON, or not a v1 snapshot event
        raise StripeEventMalformed(f"signed payload is not a Stripe event: {exc}") from exc
    return event.to_dict()


def interpret(event: Mapping[str, Any]) -> PaymentSucceeded | PaymentReversed | None:
    """What a verified event means for credits; None when it means nothing to us."""
    event_type = event.get("type")
    if event_type not in _INTERPRETED_EVENTS:
        return None
    event_id = _str(event, "id")
    data = event.get("data")
    obj = data.get("object") if isinstance(data, Mapping) else None
    if not isinstance(obj, Mapping):
        raise StripeEventMalformed(f"{event_type} event {event_id} has no data.object")
    if event_type in _FULFILMENT_EVENTS:
        return _purchase(event_id, obj)
    if event_type == "charge.refunded":
        return _refund(event_id, obj)
    return _lost_dispute(event_id, obj)


def _purchase(event_id: str, session: Mapping[str, Any]) -> PaymentSucceeded | None:
    if session.get("mode") != "payment" or session.get("payment_status") != "paid":
        return None
    ours = _our_metadata(session, f"checkout session {session.get('id')}")
    if ours is None:
        return None
    user_id, pack, credits = ours
    return PaymentSucceeded(
        stripe_event_id=event_id,
        payment_id=_object_id(session.get("payment_intent")) or _str(session, "id"),
        user_id=user_id,
        pack=pack,
        credits=credits,
        amount_cents=_int(session, "amount_total"),
        currency=_str(session, "currency"),
    )


def _refund(event_id: str, charge: Mapping[str, Any]) -> PaymentReversed | None:
    payment_id = _object_id(charge.get("payment_intent"))
    amount_refunded = _int(charge, "amount_refunded")
    if payment_id is None or amount_refunded <= 0:
        return None
    ours = _our_metadata(charge, f"charge {charge.get('id')}")
    user_id, credits = None, None
    if ours is not None:
        user_id, _, purchased_credits = ours
        credits = reversed_credits(purchased_credits, _int(charge, "amount"), amount_refunded)
    return PaymentReversed(
        stripe_event_id=event_id,
        payment_id=payment_id,
        user_id=user_id,
        credits=credits,
        reason="refund",
        amount_cents=amount_refunded,
        currency=_str(charge, "currency"),
    )


def _lost_dispute(event_id: str, dispute: Mapping[str, Any]) -> PaymentReversed | None:
    payment_id = _object_id(dispute.get("payment_intent"))
    if dispute.get("status") != "lost" or payment_id is None:
        return None
    return PaymentReversed(
        stripe_event_id=event_id,
        payment_id=payment_id,
        user_id=None,
        credits=None,
        reason="dispute_lost",
        amount_cents=_int(dispute, "amount"),
        currency=_str(dispute, "currency"),
    )


def _our_metadata(obj: Mapping[str, Any], what: str) -> tuple[str, str, int] | None:
    """(user_id, pack, credits) when the object is one of our purchases, None when it is not."""
    metadata = obj.get("metadata") or {}
    keys = ("user_id", "pack", "credits")
    if not any(key in metadata for key in keys):
        return None  # another integration on the same Stripe account
    values = [metadata.get(key) for key in keys]
    if not all(isinstance(value, str) and value for value in values):
        raise StripeEventMalformed(
            f"{what}: metadata must carry user_id, pack and credits, got {dict(metadata)}"
        )
    user_id, pack, credits = values
    if not credits.isdecimal() or int(credits) <= 0:
        raise StripeEventMalformed(f"{what}: metadata credits must be a positive integer, got {credits!r}")
    return user_id, pack, int(credits)


def _object_id(value: Any) -> str | None:
    """An expandable field: an id, an expanded object, or null."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _str(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise StripeEventMalformed(
            f"{obj.get('object', 'event')} {obj.get('id')}: {key} must be a non-empty string"
        )
    return value


def _int(obj: Mapping[str, Any], key: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise StripeEventMalformed(f"{obj.get('object', 'event')} {obj.get('id')}: {key} must be an integer")
    return value
