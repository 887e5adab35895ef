"""A local Stripe for credit purchases: the Checkout Session endpoints the SDK calls, plus
emulator-only routes that pay, refund or lose a dispute and deliver the signed webhook
event Stripe would send.

Objects follow Stripe's shapes: paying a session creates its PaymentIntent and Charge, and
the Charge gets a copy of the PaymentIntent's metadata, as Stripe copies it on confirmation;
a Dispute carries only its own, empty, metadata. State lives in memory, one emulator per app
(`app.state.stripe_emulator`, built from the environment on first use unless set before).
"""

from __future__ import annotations

import base64
import copy
import html
import json
import re
import secrets
import string
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
import stripe
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.routing import APIRoute
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SESSION_LIFETIME_S = 24 * 3600
_ZERO_DECIMAL_CURRENCIES = frozenset(
    "bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split()
)
_CREATE_PARAMS = frozenset(
    {"mode", "line_items", "client_reference_id", "metadata", "payment_intent_data",
     "success_url", "cancel_url", "customer_email", "expand"}
)
_FORM_KEY = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")


class StripeEmulatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOCALPROVIDER_STRIPE_", extra="ignore")

    webhook_url: str = Field("http://127.0.0.1:8001/webhooks/stripe", description="Where events are sent")
    webhook_secret: str = Field(default_factory=lambda: "whsec_" + secrets.token_urlsafe(24),
                                description="Secret the receiver verifies with (genrail up makes one per data "
                                            "directory; unset: a random one, known to no receiver)")
    public_url: str = Field("http://127.0.0.1:8002", description="Base URL of this server, for payment pages")


class StripeApiError(Exception):
    """Answered as Stripe answers errors: {"error": {type, message, param, code}}."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 error_type: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.error_type = error_type

    def response(self) -> JSONResponse:
        error = {"type": self.error_type, "message": self.message, "param": self.param, "code": self.code}
        body = {"error": {key: value for key, value in error.items() if value is not None}}
        return JSONResponse(body, status_code=self.status, headers={"Request-Id": _new_id("req")})


@dataclass
class _Checkout:
    session: dict[str, Any]
    payment_intent_metadata: dict[str, str]
    charge: dict[str, Any] | None = None


@dataclass
class StripeEmulator:
    settings: StripeEmulatorSettings
    _checkouts: dict[str, _Checkout] = field(default_factory=dict)
    # (api key, idempotency key) -> (request parameters, the response first given)
    _idempotent: dict[tuple[str, str], tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=dict)
    _events: dict[str, dict[str, Any]] = field(default_factory=dict)

    def create_session(self, api_key: str, idempotency_key: str | None,
                       params: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """The new session, or the first answer to this idempotency key; and whether it is a replay."""
        if idempotency_key and (seen := self._idempotent.get((api_key, idempotency_key))):
            first_params, first_response = seen
            if first_params != params:
                raise StripeApiError(
                    400, "Keys for idempotent requests can only be used with the same parameters they were "
                    f"first used with. Try using a key other than '{idempotency_key}' if you meant to "
                    "execute a different request.", error_type="idempotency_error")
            return copy.deepcopy(first_response), True
        checkout = self._new_checkout(params)
        self._checkouts[checkout.session["id"]] = checkout
        if idempotency_key:
            self._idempotent[(api_key, idempotency_key)] = (params, copy.deepcopy(checkout.session))
        return copy.deepcopy(checkout.session), False

    def session(self, session_id: str) -> dict[str, Any]:
        return self._checkout(session_id).session

    def pay(self, session_id: str) -> dict[str, Any]:
        checkout = self._checkout(session_id)
        session = checkout.session
        if session["status"] != "open":
            raise StripeApiError(400, f"Checkout Session {session_id} is {session['status']}, not open.")
        payment_intent_id, amount = _new_id("pi"), session["amount_total"]
        checkout.charge = {
            "id": _new_id("ch"), "object": "charge", "amount": amount, "amount_captured": amount,
            "amount_refunded": 0, "captured": True, "created": int(time.time()),
            "currency": session["currency"], "disputed": False, "livemode": False,
            "metadata": dict(checkout.payment_intent_metadata), "paid": True,
            "payment_intent": payment_intent_id, "refunded": False, "status": "succeeded",
        }
        session.update(status="complete", payment_status="paid", payment_intent=payment_intent_id,
                       customer_details={"email": session["customer_email"] or "buyer@example.com",
                                         "name": "Local Buyer"})
        return self._event("checkout.session.completed", session)

    def refund(self, session_id: str, amount: int | None) -> dict[str, Any]:
        charge = self._charge(session_id)
        if charge["disputed"]:
            raise StripeApiError(400, f"Charge {charge['id']} has been charged back; it cannot be refunded.",
                                 code="charge_disputed")
        unrefunded = charge["amount"] - charge["amount_refunded"]
        if unrefunded == 0:
            raise StripeApiError(400, f"Charge {charge['id']} has already been refunded.",
                                 code="charge_already_refunded")
        amount = unrefunded if amount is None else amount
        if amount > unrefunded:
            raise StripeApiError(400, f"Refund amount ({amount}) is greater than unrefunded amount on "
                                 f"charge ({unrefunded})", param="amount", code="amount_too_large")
        previous = {"amount_refunded": charge["amount_refunded"], "refunded": charge["refunded"]}
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        return self._event("charge.refunded", charge, previous)

    def lose_dispute(self, session_id: str) -> dict[str, Any]:
        charge = self._charge(session_id)
        if charge["disputed"]:
            raise StripeApiError(400, f"Charge {charge['id']} has already been disputed.",
                                 code="charge_disputed")
        if charge["refunded"]:
            raise StripeApiError(400, f"Charge {charge['id']} has been refunded in full; nothing to dispute.")
        charge["disputed"] = True
        dispute = {
            "id": _new_id("du"), "object": "dispute", "amount": charge["amount"] - charge["amount_refunded"],
            "balance_transactions": [], "charge": charge["id"], "created": int(time.time()),
            "currency": charge["currency"], "is_charge_refundable": False, "livemode": False,
            "metadata": {}, "payment_intent": charge["payment_intent"], "reason": "fraudulent",
            "status": "lost",
        }
        return self._event("charge.dispute.closed", dispute, {"status": "under_review"})

    def event(self, event_id: str) -> dict[str, Any]:
        if (event := self._events.get(event_id)) is None:
            raise StripeApiError(404, f"No such event: '{event_id}'", param="id", code="resource_missing")
        return event

    async def deliver(self, event: dict[str, Any]) -> dict[str, Any]:
        """POST the event, signed, to the webhook URL; Stripe's state does not depend on the answer."""
        payload = json.dumps(event, indent=2)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Stripe-Signature": stripe.WebhookSignature.generate_signature_header(
                payload, self.settings.webhook_secret),
        }
        try:
            async with httpx.AsyncClient(timeout=10.0) as client:
                answer = await client.post(self.settings.webhook_url, content=payload, headers=headers)
        except httpx.HTTPError as exc:
            return {"delivered": False, "error": f"{type(exc).__name__}: {exc}"}
        return {"delivered": answer.is_success, "status_code": answer.status_code}

    def _new_checkout(self, params: dict[str, Any]) -> _Checkout:
        if unknown := sorted(set(params) - _CREATE_PARAMS):
            raise StripeApiError(400, f"Received unknown parameter: {unknown[0]}", param=unknown[0],
                                 code="parameter_unknown")
        if "mode" not in params:
            raise StripeApiError(400, "Missing required param: mode.", param="mode", code="parameter_missing")
        if params["mode"] != "payment":
            raise StripeApiError(400, f"The emulator supports mode=payment only, not {params['mode']!r}.",
                                 param="mode", code="parameter_invalid")
        items = params.get("line_items")
        if not isinstance(items, list) or not items:
            raise StripeApiError(400, "Missing required param: line_items.", param="line_items",
                                 code="parameter_missing")
        priced = [_priced_line_item(item, f"line_items[{index}]") for index, item in enumerate(items)]
        currencies = {currency for currency, _ in priced}
        if len(currencies) > 1:
            raise StripeApiError(400, "All line items must use the same currency.", param="line_items")
        client_reference_id = params.get("client_reference_id")
        if client_reference_id is not None and len(client_reference_id) > 200:
            raise StripeApiError(400, "client_reference_id must be at most 200 characters.",
                                 param="client_reference_id", code="parameter_invalid_string_too_long")
        total, now, session_id = sum(amount for _, amount in priced), int(time.time()), _new_id("cs_test")
        session = {
            "id": session_id, "object": "checkout.session", "amount_subtotal": total, "amount_total": total,
            "cancel_url": params.get("cancel_url"), "client_reference_id": client_reference_id,
            "created": now, "currency": currencies.pop(), "customer": None, "customer_details": None,
            "customer_email": params.get("customer_email"), "expires_at": now + SESSION_LIFETIME_S,
            "livemode": False, "metadata": _metadata(params.get("metadata"), "metadata"), "mode": "payment",
            "payment_intent": None, "payment_status": "unpaid", "status": "open",
            "success_url": params.get("success_url"),
            "url": f"{self.settings.public_url.rstrip('/')}/emulator/stripe/pay/{session_id}",
        }
        intent_data = params.get("payment_intent_data") or {}
        intent_metadata = _metadata(intent_data.get("metadata") if isinstance(intent_data, dict) else None,
                                    "payment_intent_data[metadata]")
        return _Checkout(session=session, payment_intent_metadata=intent_metadata)

    def _checkout(self, session_id: str) -> _Checkout:
        if (checkout := self._checkouts.get(session_id)) is None:
            raise StripeApiError(404, f"No such checkout.session: '{session_id}'", param="session",
                                 code="resource_missing")
        return checkout

    def _charge(self, session_id: str) -> dict[str, Any]:
        if (charge := self._checkout(session_id).charge) is None:
            raise StripeApiError(400, f"Checkout Session {session_id} has not been paid.")
        return charge

    def _event(self, event_type: str, obj: dict[str, Any],
               previous_attributes: dict[str, Any] | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {"object": copy.deepcopy(obj)}
        if previous_attributes:
            data["previous_attributes"] = previous_attributes
        event = {
            "id": _new_id("evt"), "object": "event", "api_version": stripe.api_version,
            "created": int(time.time()), "data": data, "livemode": False, "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None}, "type": event_type,
        }
        self._events[event["id"]] = event
        return event


class _StripeErrorsRoute(APIRoute):
    """Routers cannot register exception handlers, so each route answers StripeApiError itself."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_stripe_errors(request: Request) -> Response:
            try:
                return await handle(request)
            except StripeApiError as exc:
                return exc.response()

        return handle_stripe_errors


router = APIRouter(route_class=_StripeErrorsRoute)


def emulator(request: Request) -> StripeEmulator:
    state = request.app.state
    if getattr(state, "stripe_emulator", None) is None:
        state.stripe_emulator = StripeEmulator(StripeEmulatorSettings())
    return state.stripe_emulator


@router.post("/v1/checkout/sessions")
async def create_checkout_session(request: Request) -> JSONResponse:
    api_key = _api_key(request)
    params = _decode_form(await request.body())
    idempotency_key = request.headers.get("Idempotency-Key")
    session, replayed = emulator(request).create_session(api_key, idempotency_key, params)
    headers = {"Request-Id": _new_id("req")} | ({"Idempotent-Replayed": "true"} if replayed else {})
    return JSONResponse(session, headers=headers)


@router.get("/v1/checkout/sessions/{session_id}")
async def retrieve_checkout_session(session_id: str, request: Request) -> JSONResponse:
    _api_key(request)
    return JSONResponse(emulator(request).session(session_id), headers={"Request-Id": _new_id("req")})


@router.get("/emulator/stripe/pay/{session_id}", response_class=HTMLResponse)
async def payment_page(session_id: str, request: Request) -> HTMLResponse:
    session = emulator(request).session(session_id)
    amount = _display_amount(session["amount_total"], session["currency"])
    if session["status"] == "open":
        action = f"/emulator/stripe/sessions/{html.escape(session_id)}/pay"
        body = (f'<p>Pay {html.escape(amount)}?</p><form method="post" action="{action}">'
                '<button type="submit">Pay</button></form>')
        if session["cancel_url"]:
            body += f'<p><a href="{html.escape(session["cancel_url"])}">Cancel</a></p>'
    else:
        body = f"<p>{html.escape(amount)}: {html.escape(session['payment_status'])}.</p>"
    return HTMLResponse(f"<!doctype html><html><head><meta charset='utf-8'><title>Stripe emulator</title>"
                        f"</head><body><h1>Checkout (local Stripe emulator)</h1>{body}</body></html>")


@router.post("/emulator/stripe/sessions/{session_id}/pay")
async def pay_session(session_id: str, request: Request) -> Response:
    stripe_emulator = emulator(request)
    event = stripe_emulator.pay(session_id)
    delivery = await stripe_emulator.deliver(event)
    success_url = stripe_emulator.session(session_id)["success_url"]
    if "text/html" in request.headers.get("accept", "") and success_url:  # the Pay button of the page
        return RedirectResponse(success_url.replace("{CHECKOUT_SESSION_ID}", session_id), status_code=303)
    return JSONResponse({"event": event, "delivery": delivery})


@router.post("/emulator/stripe/sessions/{session_id}/refund")
async def refund_session(session_id: str, request: Request,
                         amount: int | None = Query(None, ge=1, description="Default: all that is left")
                         ) -> JSONResponse:
    stripe_emulator = emulator(request)
    event = stripe_emulator.refund(session_id, amount)
    return JSONResponse({"event": event, "delivery": await stripe_emulator.deliver(event)})


@router.post("/emulator/stripe/sessions/{session_id}/dispute-lost")
async def lose_dispute(session_id: str, request: Request) -> JSONResponse:
    stripe_emulator = emulator(request)
    event = stripe_emulator.lose_dispute(session_id)
    return JSONResponse({"event": event, "delivery": await stripe_emulator.deliver(event)})


@router.post("/emulator/stripe/events/{event_id}/resend")
async def resend_event(event_id: str, request: Request) -> JSONResponse:
    """Deliver an event again, as Stripe retries: same id, fresh signature."""
    stripe_emulator = emulator(request)
    event = stripe_emulator.event(event_id)
    return JSONResponse({"event": event, "delivery": await stripe_emulator.deliver(event)})


def _api_key(request: Request) -> str:
    authorization = request.headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    key = ""
    if scheme.lower() == "bearer":
        key = credentials.strip()
    elif scheme.lower() == "basic":
        try:
            key = base64.b64decode(credentials, validate=True).decode().partition(":")[0]
        except ValueError:
            key = ""
    if not key:
        raise StripeApiError(401, "You did not provide an API key. You need to provide your API key in the "
                             "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                             "YOUR_SECRET_KEY').")
    if not key.startswith(("sk_", "rk_")):
        raise StripeApiError(401, f"Invalid API Key provided: {key[:8]}{'*' * 4}{key[-4:]}")
    return key


def _decode_form(body: bytes) -> dict[str, Any]:
    """Stripe's form encoding: `a[b][0][c]=v` is {"a": {"b": [{"c": "v"}]}}; `a[]` appends."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(body.decode(errors="replace"), keep_blank_values=True):
        if not (match := _FORM_KEY.fullmatch(key)):
            raise StripeApiError(400, f"Invalid parameter name: {key}", param=key)
        path = [match[1], *re.findall(r"\[([^\[\]]*)\]", match[2])]
        node = root
        for part in path[:-1]:
            node = node.setdefault(part or str(len(node)), {})
            if not isinstance(node, dict):
                raise StripeApiError(400, f"Invalid parameter: {key} conflicts with another value", param=key)
        node[path[-1] or str(len(node))] = value
    return _lists_from_indexes(root)


def _lists_from_indexes(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    values = {key: _lists_from_indexes(value) for key, value in node.items()}
    if values and all(key.isdecimal() for key in values):
        return [values[key] for key in sorted(values, key=int)]
    return values


def _priced_line_item(item: Any, param: str) -> tuple[str, int]:
    """(currency, amount) of one line item, which must carry price_data: the emulator has no Prices."""
    if not isinstance(item, dict):
        raise StripeApiError(400, f"Invalid object: {param}", param=param)
    price_data = item.get("price_data")
    if not isinstance(price_data, dict):
        raise StripeApiError(400, f"Missing required param: {param}[price_data] (no Prices in the emulator).",
                             param=f"{param}[price_data]", code="parameter_missing")
    product_data = price_data.get("product_data")
    if not isinstance(product_data, dict) or not product_data.get("name"):
        raise StripeApiError(400, f"Missing required param: {param}[price_data][product_data][name].",
                             param=f"{param}[price_data][product_data][name]", code="parameter_missing")
    currency = price_data.get("currency")
    if not isinstance(currency, str) or not re.fullmatch(r"[a-zA-Z]{3}", currency):
        raise StripeApiError(400, f"Invalid currency: {currency}.", param=f"{param}[price_data][currency]",
                             code="parameter_invalid")
    unit_amount = _positive_int(price_data.get("unit_amount"), f"{param}[price_data][unit_amount]")
    quantity = _positive_int(item.get("quantity"), f"{param}[quantity]")
    return currency.lower(), unit_amount * quantity


def _positive_int(value: Any, param: str) -> int:
    if value is None:
        raise StripeApiError(400, f"Missing required param: {param}.", param=param, code="parameter_missing")
    if not isinstance(value, str) or not value.isdecimal() or int(value) < 1:
        raise StripeApiError(400, f"Invalid positive integer: {param}", param=param,
                             code="parameter_invalid_integer")
    return int(value)


def _metadata(value: Any, param: str) -> dict[str, str]:
    if value is None or value == "":
        return {}
    if not isinstance(value, dict) or not all(isinstance(item, str) for item in value.values()):
        raise StripeApiError(400, f"Invalid object: {param} must be string keys and values.", param=param)
    return dict(value)


def _display_amount(amount: int, currency: str) -> str:
    if currency in _ZERO_DECIMAL_CURRENCIES:
        return f"{amount} {currency.upper()}"
    return f"{amount / 100:.2f} {currency.upper()}"


def _new_id(prefix: str) -> str:
    alphabet = string.ascii_letters + string.digits
    return f"{prefix}_{''.join(secrets.choice(alphabet) for _ in range(24))}"
