"""Buying credits: a Stripe Checkout Session per purchase. The credits arrive when Stripe's
signed event reaches the webhooks service and the ledger records the purchase."""

from __future__ import annotations

import hashlib
import uuid

from fastapi import APIRouter
from pydantic import BaseModel, Field

from genrail_events.payments import CreditPack
from genrail_api.stripe_checkout import PaymentProviderError

from ..deps import CheckoutDep, CurrentUser, SettingsDep
from ..errors import ApiError, BillingUnavailable
from ..schemas import ERRORS, ErrorBody, Strict


router = APIRouter(prefix="/billing", tags=["billing"])


class UnknownPack(ApiError):
    status_code = 422


class PaymentProviderRefused(ApiError):
    status_code = 502


class CheckoutCreate(Strict):
    pack: str = Field(min_length=1, max_length=40, examples=["starter"], description="The id of a pack on sale")
    idempotency_key: str | None = Field(
        None, min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$", examples=["cart-7f3a"],
        description="Send the same key again (a double click, a retry) to get the same session back, for 24 hours")


class CheckoutCreated(BaseModel):
    checkout_url: str = Field(description="Send the buyer here to pay")
    session_id: str
    pack: str
    credits: int = Field(description="Credits added once the payment succeeds")
    amount_cents: int
    currency: str


def stripe_idempotency_key(user_id: str, pack: CreditPack, idempotency_key: str | None) -> str:
    """The same user, pack and key name the same Checkout Session; no key: a new one."""
    if idempotency_key is None:
        return f"checkout-{uuid.uuid4()}"
    digest = hashlib.sha256(f"{user_id}\n{pack.id}\n{idempotency_key}".encode()).hexdigest()
    return f"checkout-{digest}"


@router.post(
    "/checkout", status_code=201, response_model=CheckoutCreated,
    summary="Start buying a credit pack: returns the Stripe Checkout page to send the buyer to",
    responses={401: ERRORS[401], 422: ERRORS[422],
               502: {"model": ErrorBody, "description": "Stripe refused the request"},
               503: {"model": ErrorBody, "description": "Billing is not configured, or Stripe is unreachable: "
                                                        "try again with the same idempotency_key"}},
)
async def create_checkout(body: CheckoutCreate, user_id: CurrentUser, settings: SettingsDep,
                          checkout: CheckoutDep) -> CheckoutCreated:
    pack = settings.packs.get(body.pack)
    if pack is None:
        on_sale = ", ".join(sorted(settings.packs)) or "none"
        raise UnknownPack(f"pack: unknown pack {body.pack!r}; packs on sale: {on_sale}")
    try:
        session = await checkout.create_session(user_id, pack,
                                                stripe_idempotency_key(user_id, pack, body.idempotency_key))
    except PaymentProviderError as exc:
        if exc.transient:
            raise BillingUnavailable(f"the payment provider is unavailable, try again: {exc}") from None
        raise PaymentProviderRefused(f"the payment provider refused the checkout: {exc}") from None
    return CheckoutCreated(checkout_url=session.url, session_id=session.id, pack=pack.id, credits=pack.credits,
                           amount_cents=pack.amount_cents, currency=pack.currency)
