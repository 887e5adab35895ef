"""/credits (balance, the whole ledger, packs with Buy), and where Stripe Checkout sends a buyer back."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse
from genrail_commands.accounts import load_account
from genrail_readmodels import ledger as ledger_table

from ..deps import DbDep, LogDep, SettingsDep, get_checkout
from ..errors import ApiError, NotFound
from ..routes.billing import CheckoutCreate, create_checkout
from ..stripe_checkout import PaymentProviderError, StripeCheckout
from .auth import Csrf, PageUser
from .problems import shows_errors
from .templating import render

router = APIRouter()
LEDGER_PAGE = 50


@router.get("/credits")
@shows_errors
async def credits(request: Request, user_id: PageUser, db: DbDep, log: LogDep, settings: SettingsDep,
                  cursor: str = ""):
    if cursor and not cursor.isdigit():
        raise ApiError(f"cursor: {cursor!r} is not a ledger position")
    account, _ = await load_account(log, user_id)
    rows = await ledger_table.transactions(db, user_id, before_seq=int(cursor) if cursor else None,
                                           limit=LEDGER_PAGE + 1)
    return await render(request, "credits.html", {
        "balance": account.balance, "entries": rows[:LEDGER_PAGE],
        "next_cursor": rows[LEDGER_PAGE - 1]["seq"] if len(rows) > LEDGER_PAGE else None,
        "packs": list(settings.packs.values()), "billing": request.app.state.resources.stripe_checkout is not None})


@router.post("/credits/buy", dependencies=[Csrf])
@shows_errors
async def buy(request: Request, user_id: PageUser, settings: SettingsDep, pack: Annotated[str, Form()],
              checkout: Annotated[StripeCheckout, Depends(get_checkout)]):
    created = await create_checkout(CheckoutCreate(pack=pack), user_id, settings, checkout)
    return RedirectResponse(created.checkout_url, status_code=303)


async def _purchase(db, user_id: str, payment_id: str | None) -> dict | None:
    if payment_id is None:
        return None
    for entry in await ledger_table.transactions(db, user_id, before_seq=None, limit=200):
        if entry["kind"] == "purchased" and entry["payment_id"] == payment_id:
            return entry
    return None


async def _success_context(request, user_id: str, db, log, settings, session_id: str) -> dict:
    checkout = request.app.state.resources.stripe_checkout
    if checkout is None:
        raise ApiError("billing is not configured: set STRIPE_API_KEY on the API")
    try:
        session = await checkout.retrieve_session(session_id)
    except PaymentProviderError as exc:
        raise NotFound(f"checkout session {session_id!r}: {exc}") from None
    if session.user_id != user_id:
        raise NotFound(f"checkout session {session_id!r} not found")
    purchase = await _purchase(db, user_id, session.payment_id)
    account, _ = await load_account(log, user_id)
    pack = settings.packs.get(session.pack or "")
    return {"session": session, "pack": pack, "purchase": purchase, "balance": account.balance,
            "paid": session.payment_status == "paid"}


@router.get("/billing/success")
@shows_errors
async def success(request: Request, user_id: PageUser, db: DbDep, log: LogDep, settings: SettingsDep,
                  session_id: str = ""):
    if not session_id:
        raise ApiError("session_id: missing: this page is where Stripe Checkout sends you after paying")
    return await render(request, "billing_success.html",
                        await _success_context(request, user_id, db, log, settings, session_id))


@router.get("/billing/success/status")
@shows_errors
async def success_status(request: Request, user_id: PageUser, db: DbDep, log: LogDep, settings: SettingsDep,
                         session_id: str = ""):
    """Polled by the success page until the purchase is on the ledger."""
    return await render(request, "_purchase_status.html",
                        await _success_context(request, user_id, db, log, settings, session_id))


@router.get("/billing/cancel")
async def cancel(request: Request, user_id: PageUser, log: LogDep):
    account, _ = await load_account(log, user_id)
    return await render(request, "billing_cancel.html", {"balance": account.balance})
