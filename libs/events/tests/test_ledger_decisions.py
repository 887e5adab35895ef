"""Given an account, when a ledger command is decided, then the entry and balance_after."""

from __future__ import annotations

import pytest

from genrail_events import ledger
from genrail_events.jobs import JobType
from genrail_events.ledger import Account, InsufficientCredits, InvalidAmount

COPY = ledger.JobRequest(type=JobType.copy, input={}, cost=3)


def test_debit_takes_the_cost_and_carries_the_job_request() -> None:
    entry = ledger.decide_debit(Account("u1", 10), "j1", 1, 3, COPY)
    assert entry.subject == "ledger.u1.debited.j1.1"
    assert entry.event.data.balance_after == 7
    assert entry.event.data.job == COPY
    assert ledger.signed_amount(entry.event) == -3


def test_debit_of_more_than_the_balance_is_refused_with_both_numbers() -> None:
    with pytest.raises(InsufficientCredits) as refused:
        ledger.decide_debit(Account("u1", 2), "j1", 1, 3, COPY)
    assert (refused.value.balance, refused.value.cost) == (2, 3)


def test_debit_of_exactly_the_balance_leaves_zero() -> None:
    assert ledger.decide_debit(Account("u1", 3), "j1", 1, 3, COPY).event.data.balance_after == 0


def test_refund_is_keyed_by_job_and_attempt() -> None:
    entry = ledger.decide_refund(Account("u1", 0), "j1", 2, 3, "job failed")
    assert entry.subject == "ledger.u1.refunded.j1.2"
    assert entry.event.data.balance_after == 3


def test_grant_and_purchase_add_credits() -> None:
    assert ledger.decide_grant(Account("u1", 0), 10, "signup", "signup").event.data.balance_after == 10
    purchase = ledger.decide_purchase(Account("u1", 5), "pi_123", 100, "starter")
    assert (purchase.subject, purchase.event.data.balance_after) == ("ledger.u1.purchased.pi_123", 105)


def test_reversal_is_recorded_even_below_zero() -> None:
    assert ledger.decide_reversal(Account("u1", 20), "pi_1", 100, "refunded").event.data.balance_after == -80


def test_adjustment_may_be_negative_but_never_below_zero() -> None:
    assert ledger.decide_adjustment(Account("u1", 5), "a1", -5, "correction").event.data.balance_after == 0
    with pytest.raises(InsufficientCredits):
        ledger.decide_adjustment(Account("u1", 5), "a1", -6, "correction")


@pytest.mark.parametrize("amount", [0, -1, 1.5, "3"])
def test_amounts_must_be_positive_whole_credits(amount: object) -> None:
    with pytest.raises(InvalidAmount):
        ledger.decide_grant(Account("u1", 0), amount, "x", "g")  # type: ignore[arg-type]


def test_evolve_takes_the_balance_the_entry_carries() -> None:
    account = Account("u1", 10)
    entry = ledger.decide_debit(account, "j1", 1, 4, COPY)
    assert ledger.evolve(account, entry.event) == Account("u1", 6, 1)


def test_subject_tokens_refuse_anything_that_changes_the_subject() -> None:
    from genrail_events import subjects

    for bad in ("a.b", "*", ">", "a b", ""):
        with pytest.raises(ValueError):
            subjects.ledger_account(bad)


def test_reversal_without_a_key_keeps_the_payment_subject() -> None:
    assert ledger.decide_reversal(Account("u1", 5), "pi_1", 5, "refund").subject == "ledger.u1.reversed.pi_1"


def test_reversal_key_extends_the_subject_and_the_message_id() -> None:
    entry = ledger.decide_reversal(Account("u1", 5), "pi_1", 5, "refund", key=("refund", "50"))
    assert entry.subject == "ledger.u1.reversed.pi_1.refund.50"
    assert entry.msg_id == "reversed:u1:pi_1:refund:50"
    assert entry.event.data.payment_id == "pi_1" and entry.event.data.reason == "refund"


def test_a_first_partial_refund_takes_back_its_total() -> None:
    entry = ledger.decide_payment_reversal(Account("u1", 110), "pi_1", 100, [], "refund", 50)
    assert entry is not None
    assert (entry.subject, entry.event.data.amount, entry.event.data.balance_after) == (
        "ledger.u1.reversed.pi_1.refund.50", 50, 60)


def test_refund_totals_are_cumulative_so_a_later_refund_takes_only_the_difference() -> None:
    entry = ledger.decide_payment_reversal(Account("u1", 60), "pi_1", 100, [("refund", 50)], "refund", 80)
    assert entry is not None and entry.event.data.amount == 30
    assert entry.subject == "ledger.u1.reversed.pi_1.refund.80"


@pytest.mark.parametrize("total", [50, 30])
def test_a_repeated_or_stale_refund_report_takes_nothing(total: int) -> None:
    assert ledger.decide_payment_reversal(Account("u1", 60), "pi_1", 100, [("refund", 50)], "refund", total) is None


def test_reversals_never_take_back_more_than_the_purchase_in_all() -> None:
    # 51 credits refunded (rounded up), then a dispute lost over the rest, also rounded up.
    entry = ledger.decide_payment_reversal(Account("u1", 0), "pi_1", 100, [("refund", 51)], "dispute_lost", 50)
    assert entry is not None and entry.event.data.amount == 49
    assert ledger.decide_payment_reversal(
        Account("u1", 0), "pi_1", 100, [("refund", 51), ("dispute_lost", 49)], "dispute_lost", 50) is None


def test_a_payment_reversal_may_leave_the_balance_negative() -> None:
    entry = ledger.decide_payment_reversal(Account("u1", 3), "pi_1", 100, [], "dispute_lost", 100)
    assert entry is not None and entry.event.data.balance_after == -97


def test_reversal_due_is_the_difference_capped_by_what_is_left_of_the_purchase() -> None:
    assert ledger.reversal_due(100, [], "refund", 100) == 100
    assert ledger.reversal_due(100, [("refund", 40)], "refund", 100) == 60
    assert ledger.reversal_due(100, [("dispute_lost", 70)], "refund", 50) == 30
    assert ledger.reversal_due(100, [("refund", 100)], "refund", 100) == 0
