"""Appending to a user's credit account, one writer per account at a time.

Each process keeps, per account, a lock: concurrent entries of one account queue behind
each other instead of racing. A process that writes most of its accounts' entries (the
API: every debit) also remembers each account's last (balance, sequence) from the ack of
its own last append, so the next entry needs no read; a process whose entries interleave
with others' (the ledger's refunds come between the API's debits) reads each time, since a
remembered position would mostly be stale. Optimistic concurrency on the log
still guards every append: an entry another process appended first (the ledger's refund,
another API replica) makes the append conflict, the cached position is dropped, the
account read again and the entry decided again, after a short jittered pause. A conflict
that does not resolve within the budget is `AccountBusy` (the API answers 503 with
Retry-After), never a lost or doubled entry.
"""

from __future__ import annotations

import asyncio
import random
import weakref
from collections import OrderedDict
from collections.abc import Callable

from genrail_eventlog.store import Appended, ConcurrencyConflict, EventLog
from genrail_events import ledger, subjects
from genrail_events.ledger import (
    Account,
    CreditsDebited,
    CreditsRefunded,
    Entry,
    InsufficientCredits,
    LedgerEvent,
)
from genrail_runtime import metrics

BUDGET_S = 5.0


class AccountBusy(Exception):
    """The account's entry could not be appended within the budget: others kept writing first."""

    def __init__(self, user_id: str, retry_after_s: float = 1.0):
        super().__init__(f"account {user_id} is busy: try again in {retry_after_s:g}s")
        self.retry_after_s = retry_after_s


async def load_account(log: EventLog, user_id: str) -> tuple[Account, int]:
    last = await log.last(subjects.ledger_account(user_id))
    if last is None:
        return Account(user_id), 0
    return Account(user_id, last.event.data.balance_after), last.seq


class AccountWriter:
    """The one writer per account of a process (see the module's docstring)."""

    def __init__(self, log: EventLog, *, remember: bool = False, budget_s: float = BUDGET_S,
                 max_known: int = 100_000):
        self.log, self.remember, self.budget_s, self.max_known = log, remember, budget_s, max_known
        self._locks: dict[str, asyncio.Lock] = {}
        self._waiting: dict[str, int] = {}
        self._known: OrderedDict[str, tuple[Account, int]] = OrderedDict()

    async def append(self, user_id: str, decide: Callable[[Account], Entry], *,
                     unique_subject: str | None = None) -> Appended | None:
        self._waiting[user_id] = self._waiting.get(user_id, 0) + 1
        lock = self._locks.setdefault(user_id, asyncio.Lock())
        try:
            async with lock:
                return await self._append(user_id, decide, unique_subject)
        finally:
            self._waiting[user_id] -= 1
            if not self._waiting[user_id]:
                del self._waiting[user_id], self._locks[user_id]

    async def _append(self, user_id: str, decide: Callable[[Account], Entry],
                      unique_subject: str | None) -> Appended | None:
        loop = asyncio.get_running_loop()
        deadline, pause = loop.time() + self.budget_s, 0.002
        while True:
            if unique_subject is not None and await self.log.exists(unique_subject):
                return None
            account, seq, entry = await self._decide(user_id, decide)
            try:
                appended = await self.log.append(entry.subject, entry.event, msg_id=entry.msg_id,
                                                 expect_last_seq=seq, expect_filter=subjects.ledger_account(user_id))
            except ConcurrencyConflict:
                self._known.pop(user_id, None)  # someone else wrote: read the account again
                if loop.time() + pause > deadline:
                    raise AccountBusy(user_id) from None
                await asyncio.sleep(pause * random.uniform(0.5, 1.5))
                pause = min(pause * 2, 0.1)
                continue
            self._remember(user_id, None if appended.duplicate else (ledger.evolve(account, entry.event),
                                                                      appended.seq))
            if not appended.duplicate:
                count_credits(entry.event)
            return appended

    async def _decide(self, user_id: str, decide: Callable[[Account], Entry]) -> tuple[Account, int, Entry]:
        """Decide on the cached account; a refusal on cached state is checked on the log's."""
        if (known := self._known.get(user_id)) is not None:
            try:
                return known[0], known[1], decide(known[0])
            except InsufficientCredits:
                self._known.pop(user_id, None)  # a refund may have come in meanwhile
        account, seq = await load_account(self.log, user_id)
        return account, seq, decide(account)

    def _remember(self, user_id: str, known: tuple[Account, int] | None) -> None:
        if known is None or not self.remember:
            self._known.pop(user_id, None)
            return
        self._known[user_id] = known
        self._known.move_to_end(user_id)
        while len(self._known) > self.max_known:
            self._known.popitem(last=False)


_writers: weakref.WeakKeyDictionary[EventLog, AccountWriter] = weakref.WeakKeyDictionary()


def writer_for(log: EventLog, *, remember: bool = False) -> AccountWriter:
    """The process's writer for this log (one per log object); `remember` on its first call
    decides whether it keeps accounts' positions between entries (see the module's docstring)."""
    if (writer := _writers.get(log)) is None:
        writer = _writers[log] = AccountWriter(log, remember=remember)
    return writer


async def append_to_account(log: EventLog, user_id: str, decide: Callable[[Account], Entry],
                            *, unique_subject: str | None = None) -> Appended | None:
    """Append the entry `decide` returns, as the account's one writer in this process. With
    `unique_subject`, an entry already on that subject means it was appended before (by us
    or a concurrent writer): nothing is appended and None is returned. Domain errors from
    `decide` propagate; AccountBusy when the budget runs out."""
    return await writer_for(log).append(user_id, decide, unique_subject=unique_subject)


def count_credits(event: LedgerEvent) -> None:
    """Credits charged for jobs and given back for them, in the process's metrics."""
    if isinstance(event, CreditsDebited):
        metrics.get().credits_charged(event.data.amount, str(event.data.job.type))
    elif isinstance(event, CreditsRefunded):
        metrics.get().credits_given_back(event.data.amount, event.data.reason)
