"""Stripe Checkout for credit packs: one hosted payment page per purchase.

The session and its PaymentIntent carry `purchase_metadata()`; see stripe_events for how the
webhook events that follow are read back into purchases and reversals.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

import stripe

from genrail_events.payments import CreditPack
from genrail_events.payments import purchase_metadata

if TYPE_CHECKING:
    from stripe.params.checkout import SessionCreateParams


class PaymentProviderError(Exception):
    """Stripe did not create what we asked for.

    transient: the same request (same idempotency key) may succeed later: network trouble,
    rate limits, Stripe-side errors, a concurrent request holding the idempotency key.
    """

    def __init__(self, message: str, transient: bool, *, status_code: int | None = None):
        super().__init__(message)
        self.transient = transient
        self.status_code = status_code


@dataclass(frozen=True, slots=True)
class CheckoutSession:
    id: str
    url: str


@dataclass(frozen=True, slots=True)
class SessionState:
    id: str
    user_id: str | None
    status: str  # open, complete, expired
    payment_status: str  # paid, unpaid, no_payment_required
    payment_id: str | None  # the PaymentIntent: the ledger's payment_id once paid
    pack: str | None


class StripeCheckout:
    """Creates Checkout Sessions through the stripe SDK's async methods, over httpx.

    `api_base` None means Stripe itself; the local emulator is e.g. http://127.0.0.1:8002.
    `success_url` may contain `{CHECKOUT_SESSION_ID}`, which Stripe fills in on redirect.
    """

    def __init__(
        self,
        api_key: str,
        api_base: str | None,
        success_url: str,
        cancel_url: str,
        *,
        timeout_s: float = 30.0,
        max_network_retries: int = 2,
    ):
        if not api_key:
            raise ValueError("a Stripe secret key (sk_...) is required")
        self._success_url = success_url
        self._cancel_url = cancel_url
        self._http = stripe.HTTPXClient(timeout=timeout_s)
        # The SDK retries connection errors, 409 and 5xx, reusing our idempotency key.
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            http_client=self._http,
            max_network_retries=max_network_retries,
        )

    async def create_session(self, user_id: str, pack: CreditPack, idempotency_key: str) -> CheckoutSession:
        """Open a payment page for `pack`; the same idempotency key gives back the same session.

        Stripe keeps idempotency keys for 24 hours and refuses a key reused with other
        parameters (a non-transient PaymentProviderError).
        """
        metadata = purchase_metadata(user_id, pack)
        params: SessionCreateParams = {
            "mode": "payment",
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": pack.currency,
                        "unit_amount": pack.amount_cents,
                        "product_data": {"name": pack.name},
                    },
                }
            ],
            "client_reference_id": user_id,
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata},
            "success_url": self._success_url,
            "cancel_url": self._cancel_url,
        }
        try:
            session = await self._client.v1.checkout.sessions.create_async(
                params, {"idempotency_key": idempotency_key}
            )
        except stripe.StripeError as exc:
            raise _payment_provider_error(exc) from exc
        if not session.url:
            raise PaymentProviderError(f"Stripe returned checkout session {session.id} without a url", False)
        return CheckoutSession(id=session.id, url=session.url)

    async def retrieve_session(self, session_id: str) -> SessionState:
        """Where a Checkout Session is: for the page a buyer lands on after paying."""
        try:
            session = await self._client.v1.checkout.sessions.retrieve_async(session_id)
        except stripe.StripeError as exc:
            raise _payment_provider_error(exc) from exc
        payment_intent = session.payment_intent
        return SessionState(id=session.id, user_id=session.client_reference_id, status=session.status or "",
                            payment_status=session.payment_status or "",
                            payment_id=payment_intent if isinstance(payment_intent, str) or payment_intent is None
                            else payment_intent.id,
                            pack=session.metadata.to_dict().get("pack") if session.metadata else None)

    async def aclose(self) -> None:
        await self._http.close_async()

    async def __aenter__(self) -> StripeCheckout:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def _payment_provider_error(exc: stripe.StripeError) -> PaymentProviderError:
    status = exc.http_status
    transient = (
        isinstance(exc, (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError))
        or status == 409
        or (status is not None and status >= 500)
    )
    context = [f"HTTP {status}"] if status else []
    if exc.request_id:
        context.append(f"request {exc.request_id}")
    suffix = f" ({', '.join(context)})" if context else ""
    return PaymentProviderError(
        f"Stripe {type(exc).__name__}{suffix}: {exc.user_message or exc}", transient, status_code=status
    )
