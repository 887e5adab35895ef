"""Appending to a user's credit account: read the last entry, decide, append with the
account's last sequence expected, and start over on conflict."""

from __future__ import annotations

from collections.abc import Callable

from genrail_events import subjects
from genrail_events.ledger import Account, CreditsDebited, CreditsRefunded, Entry, LedgerEvent

from genrail_eventlog.store import Appended, EventStore, retry_on_conflict
from genrail_runtime import metrics


async def load_account(log: EventStore, user_id: str) -> tuple[Account, int]:
    last = await log.last(subjects.ledger_account(user_id))
    if last is None:
        return Account(user_id), 0
    return Account(user_id, last.event.data.balance_after), last.seq


async def append_to_account(log: EventStore, user_id: str, decide: Callable[[Account], Entry],
                            *, unique_subject: str | None = None) -> Appended | None:
    """Append the entry `decide` returns. With `unique_subject`, an entry already on that
    subject means it was appended before (by us or a concurrent writer): nothing is
    appended and None is returned. Domain errors from `decide` propagate."""

    async def attempt() -> Appended | None:
        account, seq = await load_account(log, user_id)
        if unique_subject is not None and await log.exists(unique_subject):
            return None
        entry = decide(account)
        appended = await log.append(entry.subject, entry.event, msg_id=entry.msg_id, expect_last_seq=seq,
                                    expect_filter=subjects.ledger_account(user_id))
        if not appended.duplicate:
            count_credits(entry.event)
        return appended

    return await retry_on_conflict(attempt)


def count_credits(event: LedgerEvent) -> None:
    """Credits charged for jobs and given back for them, in the process's metrics."""
    if isinstance(event, CreditsDebited):
        metrics.get().credits_charged(event.data.amount, str(event.data.job.type))
    elif isinstance(event, CreditsRefunded):
        metrics.get().credits_given_back(event.data.amount, event.data.reason)
