"""`POST /webhooks/stripe`: Stripe's payment events, verified with the SDK, recorded once.

Nothing happens before the signature is verified. A purchase becomes
`payment.succeeded.<payment_id>`: the payment (PaymentIntent) id, not the Stripe event id,
because `checkout.session.completed` and `checkout.session.async_payment_succeeded` can both
fulfil one payment; the append expects nothing on that subject yet, so the second is refused
by the log and answered 200. A refund or lost dispute becomes
`payment.reversed.<payment_id>.<stripe_event_id>`, recorded as Stripe reported it (totals
are cumulative); the ledger reads it against the purchase. Events we do not act on are
answered 200 at once, so Stripe stops sending them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

import nats.errors
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from genrail_events import subjects
from genrail_events.payments import PaymentRecorded, PaymentReversed, PaymentSucceeded, ReversalRecorded
from genrail_runtime import metrics
from genrail_runtime.logs import event as log_event
from genrail_webhooks.stripe_events import (
    StripeEventMalformed,
    StripeSignatureInvalid,
    StripeWebhookRejected,
    interpret,
    verify_stripe_event,
)

from .deps import SettingsDep, get_resources

log = logging.getLogger("genrail.webhooks.stripe")
router = APIRouter(tags=["stripe"])


class StripeReceipt(BaseModel):
    status: Literal["recorded", "duplicate", "ignored"] = Field(
        description="recorded: appended to the log; duplicate: recorded before; ignored: nothing to do")
    stripe_event_id: str
    subject: str | None = Field(None, description="Where the event is (or already was) on the log")


class ErrorBody(BaseModel):
    detail: str


def _error(status_code: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status_code)


def recorded_as(payment: PaymentSucceeded | PaymentReversed) -> tuple[str, PaymentRecorded | ReversalRecorded, str]:
    """The subject, the event and its message id for an interpreted Stripe event.
    StripeEventMalformed when an id would not make a valid subject token."""
    try:
        if isinstance(payment, PaymentSucceeded):
            subjects.token(payment.user_id)  # becomes part of the ledger's subjects
            subject = subjects.payment("succeeded", payment.payment_id)
            event: PaymentRecorded | ReversalRecorded = PaymentRecorded(aggregate_id=payment.payment_id, data=payment)
        else:
            event_token = subjects.token(payment.stripe_event_id)
            subject = f"{subjects.payment('reversed', payment.payment_id)}.{event_token}"
            event = ReversalRecorded(aggregate_id=payment.payment_id, data=payment)
    except ValueError as exc:
        raise StripeEventMalformed(f"event {payment.stripe_event_id}: {exc}") from exc
    return subject, event, subject.replace(".", ":")


@router.post(
    "/webhooks/stripe", response_model=StripeReceipt,
    summary="Receive a Stripe event: purchases add credits, refunds and lost disputes take them back",
    responses={
        400: {"model": ErrorBody, "description": "Missing, forged or stale signature, or not a Stripe event"},
        413: {"model": ErrorBody, "description": "The body is larger than any Stripe event"},
        503: {"model": ErrorBody, "description": "Not configured, or the log is unreachable: Stripe retries"},
    },
    openapi_extra={"requestBody": {"required": True, "description": "The event exactly as Stripe sent it",
                                   "content": {"application/json": {"schema": {"type": "object"}}}}},
)
async def receive_stripe_event(request: Request, settings: SettingsDep) -> StripeReceipt | JSONResponse:
    if settings.stripe_webhook_secret is None:
        return _error(503, "Stripe webhooks are not configured: set STRIPE_WEBHOOK_SECRET")
    body = await request.body()  # an oversized body was refused with 413 by the app's BodySizeLimit
    try:
        stripe_event = verify_stripe_event(body, request.headers.get("stripe-signature"),
                                           settings.stripe_webhook_secret.get_secret_value())
        payment = interpret(stripe_event)
        if payment is None:
            return StripeReceipt(status="ignored", stripe_event_id=str(stripe_event.get("id")))
        subject, event, msg_id = recorded_as(payment)
    except StripeWebhookRejected as exc:
        if isinstance(exc, StripeSignatureInvalid):
            metrics.get().webhook_verification_failed("stripe")
        log.warning("stripe.webhook_rejected", extra={"reason": str(exc)})
        return _error(400, str(exc))
    store = get_resources(request).store  # only now: what is refused above is answered without the log
    try:
        appended = await store.append_first(subject, event, msg_id=msg_id)
    except (nats.errors.Error, asyncio.TimeoutError) as exc:
        log.error("stripe.webhook_not_recorded", extra={"subject": subject, "error": repr(exc)})
        return _error(503, "the event could not be recorded right now; Stripe will deliver it again")
    if appended is None:  # recorded before: by another event for the same payment, or this one
        return StripeReceipt(status="duplicate", stripe_event_id=payment.stripe_event_id, subject=subject)
    log_event(log, f"payment.{'succeeded' if isinstance(payment, PaymentSucceeded) else 'reversed'}",
              payment_id=payment.payment_id, user_id=payment.user_id, stripe_event_id=payment.stripe_event_id)
    return StripeReceipt(status="recorded", stripe_event_id=payment.stripe_event_id, subject=subject)
