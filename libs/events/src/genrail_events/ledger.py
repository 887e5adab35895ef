"""Credits: the account aggregate. Every entry carries `balance_after`, so the last entry
on `ledger.<user_id>.>` is the account's balance and its version."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import msgspec

from . import subjects
from .envelope import Event, Payload, utcnow
from .jobs import JobType, WebhookTarget


class EntryKind(StrEnum):
    granted = "granted"
    purchased = "purchased"
    debited = "debited"
    refunded = "refunded"
    adjusted = "adjusted"
    reversed = "reversed"  # a payment refunded or disputed at the payment provider


# Sign each kind applies to the balance (adjusted carries its own sign in `amount`).
SIGN = {EntryKind.granted: 1, EntryKind.purchased: 1, EntryKind.debited: -1,
        EntryKind.refunded: 1, EntryKind.adjusted: 1, EntryKind.reversed: -1}


@dataclass(frozen=True)
class Account:
    user_id: str
    balance: int = 0
    entries: int = 0


class InsufficientCredits(Exception):
    def __init__(self, balance: int, cost: int):
        self.balance, self.cost = balance, cost
        super().__init__(f"insufficient credits: balance {balance}, cost {cost}")


class InvalidAmount(ValueError):
    pass


# --- what a debit pays for ---------------------------------------------------------

class JobRequest(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="job"):
    """One job's request, as its debit carries it (a retry's debit names who asked)."""

    type: JobType
    input: dict[str, Any]
    cost: int
    batch_id: str | None = None
    requested_by: str | None = None
    webhook: WebhookTarget | None = None


class BatchRequest(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="batch"):
    """A batch of image edits: everything needed to create the batch and its jobs again."""

    type: JobType = JobType.image_edit
    batch_id: str
    prompt: str
    image_keys: list[str]
    cost_per_image: int
    cost: int


Request = JobRequest | BatchRequest


# --- events -------------------------------------------------------------------------

class EntryData(Payload, frozen=True, kw_only=True):
    user_id: str
    kind: EntryKind
    amount: int
    balance_after: int


class GrantedData(EntryData, frozen=True, kw_only=True):
    reason: str


class PurchasedData(EntryData, frozen=True, kw_only=True):
    payment_id: str
    pack: str | None = None


class AttemptEntryData(EntryData, frozen=True, kw_only=True):
    """An entry for one attempt of a job (or of a batch, whose id stands in the job's place)."""

    job_id: str
    attempt: int


class DebitedData(AttemptEntryData, frozen=True, kw_only=True):
    job: Request


class RefundedData(AttemptEntryData, frozen=True, kw_only=True):
    reason: str


class AdjustedData(EntryData, frozen=True, kw_only=True):
    reason: str


class ReversedData(EntryData, frozen=True, kw_only=True):
    payment_id: str
    reason: str


class CreditsGranted(Event, tag="ledger.granted", frozen=True, kw_only=True):
    data: GrantedData


class CreditsPurchased(Event, tag="ledger.purchased", frozen=True, kw_only=True):
    data: PurchasedData


class CreditsDebited(Event, tag="ledger.debited", frozen=True, kw_only=True):
    data: DebitedData
    schema_version: int = 2  # v2: the request is tagged `kind: job | batch`


class CreditsRefunded(Event, tag="ledger.refunded", frozen=True, kw_only=True):
    data: RefundedData


class CreditsAdjusted(Event, tag="ledger.adjusted", frozen=True, kw_only=True):
    data: AdjustedData


class CreditsReversed(Event, tag="ledger.reversed", frozen=True, kw_only=True):
    data: ReversedData


LedgerEvent = CreditsGranted | CreditsPurchased | CreditsDebited | CreditsRefunded | CreditsAdjusted | CreditsReversed
LEDGER_EVENTS: tuple[type[Event], ...] = (CreditsGranted, CreditsPurchased, CreditsDebited, CreditsRefunded,
                                          CreditsAdjusted, CreditsReversed)
_EVENT_FOR = {EntryKind.granted: (CreditsGranted, GrantedData), EntryKind.purchased: (CreditsPurchased, PurchasedData),
              EntryKind.debited: (CreditsDebited, DebitedData), EntryKind.refunded: (CreditsRefunded, RefundedData),
              EntryKind.adjusted: (CreditsAdjusted, AdjustedData), EntryKind.reversed: (CreditsReversed, ReversedData)}


def upcast_debit_v1(data: dict[str, Any]) -> dict[str, Any]:
    """v1 debits told a batch's request from a job's by its `image_keys`; v2 tags it."""
    request = data["job"]
    return {**data, "job": {**request, "kind": "batch" if "image_keys" in request else "job"}}


@dataclass(frozen=True)
class Entry:
    """A decided ledger entry: the subject it goes to and the event."""

    subject: str
    event: LedgerEvent
    msg_id: str


def _entry(account: Account, kind: EntryKind, amount: int, key: tuple[str, ...],
           data: dict[str, Any], now: datetime | None) -> Entry:
    event_cls, data_cls = _EVENT_FOR[kind]
    payload = data_cls(user_id=account.user_id, kind=kind, amount=amount,
                       balance_after=account.balance + SIGN[kind] * amount, **data)
    event = event_cls(aggregate_id=account.user_id, occurred_at=now or utcnow(), data=payload)
    return Entry(subjects.ledger(account.user_id, kind, *key), event, f"{kind}:{account.user_id}:{':'.join(key)}")


def _positive(amount: int) -> None:
    if not isinstance(amount, int) or amount <= 0:
        raise InvalidAmount(f"amount must be a positive whole number of credits, got {amount!r}")


# --- decide -------------------------------------------------------------------------

def decide_grant(account: Account, amount: int, reason: str, grant_id: str, now: datetime | None = None) -> Entry:
    _positive(amount)
    return _entry(account, EntryKind.granted, amount, (grant_id,), {"reason": reason}, now)


def decide_debit(account: Account, job_id: str, attempt: int, amount: int, job: Request,
                 now: datetime | None = None) -> Entry:
    """Charge a job attempt. The entry carries the job request: it is the authoritative
    'charge and create'. A balance that would go below zero refuses the debit."""
    _positive(amount)
    if account.balance < amount:
        raise InsufficientCredits(account.balance, amount)
    return _entry(account, EntryKind.debited, amount, (job_id, str(attempt)),
                  {"job_id": job_id, "attempt": attempt, "job": job}, now)


def decide_refund(account: Account, job_id: str, attempt: int, amount: int, reason: str,
                  now: datetime | None = None) -> Entry:
    _positive(amount)
    return _entry(account, EntryKind.refunded, amount, (job_id, str(attempt)),
                  {"job_id": job_id, "attempt": attempt, "reason": reason}, now)


def decide_purchase(account: Account, payment_id: str, amount: int, pack: str,
                    now: datetime | None = None) -> Entry:
    _positive(amount)
    return _entry(account, EntryKind.purchased, amount, (payment_id,),
                  {"payment_id": payment_id, "pack": pack}, now)


def decide_reversal(account: Account, payment_id: str, amount: int, reason: str,
                    now: datetime | None = None, *, key: tuple[str, ...] = ()) -> Entry:
    """Take back purchased credits; recorded even if it leaves the balance negative.
    `key` extends the entry's uniqueness key beyond the payment (one payment can be
    reversed more than once: partial refunds, then a dispute)."""
    _positive(amount)
    return _entry(account, EntryKind.reversed, amount, (payment_id, *key),
                  {"payment_id": payment_id, "reason": reason}, now)


def reversal_due(purchased: int, prior: Iterable[tuple[str, int]], reason: str, total_for_reason: int) -> int:
    """Credits still to take back from a purchase of `purchased` credits when the payment
    provider reports `total_for_reason` credits reversed so far for `reason` (its totals are
    cumulative). `prior` is (reason, amount) of the reversals already recorded for the
    payment. Never negative, and never more than the purchase in all: so a repeated, stale
    or out-of-order report changes nothing."""
    taken_for_reason = sum(amount for prior_reason, amount in prior if prior_reason == reason)
    taken = sum(amount for _, amount in prior)
    return max(0, min(total_for_reason - taken_for_reason, purchased - taken))


def decide_payment_reversal(account: Account, payment_id: str, purchased: int,
                            prior: Iterable[tuple[str, int]], reason: str, total_for_reason: int,
                            now: datetime | None = None) -> Entry | None:
    """The reversal entry that brings `reason`'s reversals of the payment up to
    `total_for_reason`, or None when nothing is due. The entry's subject ends in
    `<payment_id>.<reason>.<total_for_reason>`: unique per report, whatever its deliveries."""
    prior = list(prior)
    due = reversal_due(purchased, prior, reason, total_for_reason)
    if due == 0:
        return None
    return decide_reversal(account, payment_id, due, reason, now, key=(reason, str(total_for_reason)))


def decide_adjustment(account: Account, adjustment_id: str, amount: int, reason: str,
                      now: datetime | None = None) -> Entry:
    """An operator's correction, positive or negative; never takes the balance below zero."""
    if not isinstance(amount, int) or amount == 0:
        raise InvalidAmount(f"amount must be a non-zero whole number of credits, got {amount!r}")
    if account.balance + amount < 0:
        raise InsufficientCredits(account.balance, -amount)
    return _entry(account, EntryKind.adjusted, amount, (adjustment_id,), {"reason": reason}, now)


# --- evolve -------------------------------------------------------------------------

def evolve(account: Account, event: LedgerEvent) -> Account:
    return Account(account.user_id, event.data.balance_after, account.entries + 1)


def signed_amount(event: LedgerEvent) -> int:
    return SIGN[event.data.kind] * event.data.amount
