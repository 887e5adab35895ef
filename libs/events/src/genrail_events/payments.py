"""Payments in the domain: credit packs on sale, the payment events the ledger acts on,
and how much of a purchase a refund or lost dispute takes back. No I/O.

Credit packs are read from one configuration string.

A spec is a comma-separated list of `id:credits:amount_cents:currency[:name]`, e.g.
`starter:100:900:usd,pro:1000:7900:usd:Pro pack`. Amounts are in the currency's smallest
unit, as Stripe takes them (cents for usd, whole yen for jpy).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import msgspec

from .envelope import Event, Payload

_PACK_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
_CURRENCY = re.compile(r"[a-z]{3}")


@dataclass(frozen=True, slots=True)
class CreditPack:
    id: str
    credits: int
    amount_cents: int
    currency: str
    name: str

    def __post_init__(self) -> None:
        if not _PACK_ID.fullmatch(self.id):
            raise ValueError(
                f"credit pack id {self.id!r} must be 1-40 characters of a-z, 0-9, '_' or '-', "
                "starting with a letter or digit"
            )
        if self.credits <= 0:
            raise ValueError(f"credit pack {self.id!r}: credits must be positive, got {self.credits}")
        if self.amount_cents <= 0:
            raise ValueError(
                f"credit pack {self.id!r}: amount_cents must be positive, got {self.amount_cents}"
            )
        if not _CURRENCY.fullmatch(self.currency):
            raise ValueError(
                f"credit pack {self.id!r}: currency must be a lowercase ISO 4217 code such as 'usd', "
                f"got {self.currency!r}"
            )
        if not self.name.strip():
            raise ValueError(f"credit pack {self.id!r}: name must not be blank")


def parse_packs(spec: str) -> dict[str, CreditPack]:
    """Parse a pack spec into packs by id; an empty spec means no packs are on sale."""
    if not spec.strip():
        return {}
    packs: dict[str, CreditPack] = {}
    for position, entry in enumerate(spec.split(","), start=1):
        pack = _parse_entry(entry.strip(), position)
        if pack.id in packs:
            raise ValueError(f"credit pack {pack.id!r} is defined twice")
        packs[pack.id] = pack
    return packs


def _parse_entry(entry: str, position: int) -> CreditPack:
    if not entry:
        raise ValueError(f"credit pack #{position} is empty (stray comma?)")
    fields = entry.split(":", 4)
    if len(fields) < 4:
        raise ValueError(
            f"credit pack #{position} {entry!r} must be id:credits:amount_cents:currency[:name]"
        )
    pack_id, credits_text, amount_text, currency = (field.strip() for field in fields[:4])
    credits = _int(credits_text, "credits", entry)
    return CreditPack(
        id=pack_id,
        credits=credits,
        amount_cents=_int(amount_text, "amount_cents", entry),
        currency=currency.lower(),
        name=fields[4].strip() if len(fields) == 5 else f"{credits} credits ({pack_id} pack)",
    )


def _int(text: str, field: str, entry: str) -> int:
    if not text.isdecimal():
        raise ValueError(f"credit pack {entry!r}: {field} must be a whole number, got {text!r}")
    return int(text)


ReversalReason = Literal["refund", "dispute_lost"]


class PaymentSucceeded(Payload, frozen=True):
    stripe_event_id: str
    payment_id: str
    user_id: str
    pack: str
    credits: int
    amount_cents: int
    currency: str


class PaymentReversed(Payload, frozen=True):
    """Money taken back from a purchase.

    Stripe reports refunds cumulatively (`amount_refunded` is the running total), so
    `amount_cents` and `credits` are totals for this payment and this reason as of the event,
    not deltas. The ledger takes back `credits` minus what it already took back for
    (payment_id, reason), never below zero, and never more than the purchase in all: then
    repeated and out-of-order events change nothing.

    `user_id` and `credits` are None when the event does not carry them (disputes): complete
    them with `resolve_reversal()` and the purchase recorded under `payment_id`.
    """

    stripe_event_id: str
    payment_id: str
    user_id: str | None
    credits: int | None
    reason: ReversalReason
    amount_cents: int
    currency: str

    @property
    def is_resolved(self) -> bool:
        return self.user_id is not None and self.credits is not None


def purchase_metadata(user_id: str, pack: CreditPack) -> dict[str, str]:
    """What StripeCheckout writes on the session and its PaymentIntent; interpret() reads it."""
    return {"user_id": user_id, "pack": pack.id, "credits": str(pack.credits)}


def reversed_credits(purchased_credits: int, purchased_amount_cents: int, reversed_amount_cents: int) -> int:
    """Credits that go with `reversed_amount_cents` of a purchase: rounded up, capped at the purchase."""
    if purchased_amount_cents <= 0:
        raise ValueError(f"purchase amount must be positive, got {purchased_amount_cents}")
    if reversed_amount_cents <= 0:
        return 0
    proportional = -(-purchased_credits * reversed_amount_cents // purchased_amount_cents)
    return min(purchased_credits, proportional)


def resolve_reversal(reversal: PaymentReversed, purchase: PaymentSucceeded) -> PaymentReversed:
    """Fill in the user and the credits from the purchase the reversal undoes.

    The purchase recorded in the log is the authority, also for refunds whose charge carries
    metadata: that copy can be edited in the Dashboard.
    """
    if reversal.payment_id != purchase.payment_id:
        raise ValueError(
            f"reversal of {reversal.payment_id} cannot be resolved by purchase {purchase.payment_id}"
        )
    if reversal.user_id is not None and reversal.user_id != purchase.user_id:
        raise ValueError(
            f"payment {purchase.payment_id}: reversal names user {reversal.user_id!r}, "
            f"purchase names {purchase.user_id!r}"
        )
    if reversal.currency == purchase.currency:
        credits = reversed_credits(purchase.credits, purchase.amount_cents, reversal.amount_cents)
    else:
        # Amounts in two currencies cannot be compared: take the whole purchase back.
        credits = purchase.credits
    return msgspec.structs.replace(reversal, user_id=purchase.user_id, credits=credits)


class PaymentRecorded(Event, tag="payment.succeeded", frozen=True, kw_only=True):
    """A payment that buys credits, as the payment provider reported it."""

    data: PaymentSucceeded


class ReversalRecorded(Event, tag="payment.reversed", frozen=True, kw_only=True):
    """Money taken back from a payment (a refund or a lost dispute), as reported."""

    data: PaymentReversed


PAYMENT_EVENTS: tuple[type[Event], ...] = (PaymentRecorded, ReversalRecorded)
