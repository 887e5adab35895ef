"""One writer per account: concurrent entries of one account queue instead of racing, the
next is decided on the balance the last ack gave, and a writer elsewhere (another process)
is caught by the log's expected sequence and resolved by reading again."""

from __future__ import annotations

import asyncio

import pytest

from genrail_commands.accounts import AccountBusy, AccountWriter, append_to_account, load_account, writer_for
from genrail_eventlog.memory import InMemoryEventLog
from genrail_events import ledger, subjects
from genrail_events.jobs import JobType
from genrail_events.ledger import InsufficientCredits

from .conftest import new_id

COPY = ledger.JobRequest(type=JobType.copy, input={}, cost=1)


def debit(job_id: str):
    return lambda account: ledger.decide_debit(account, job_id, 1, 1, COPY)


class CountingLog(InMemoryEventLog):
    """The in-memory log, counting the reads and the refused appends the writer causes."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = self.conflicts = 0

    async def last(self, subject_filter: str):
        self.reads += 1
        return await super().last(subject_filter)

    async def _publish(self, subject, body, headers):
        try:
            return await super()._publish(subject, body, headers)
        except Exception:
            self.conflicts += 1
            raise


async def granted(log, user_id: str, amount: int) -> None:
    await append_to_account(log, user_id, lambda a: ledger.decide_grant(a, amount, "test", new_id()))


async def test_two_hundred_concurrent_debits_of_one_account_queue_without_a_conflict_or_a_read_each() -> None:
    log, user = CountingLog(), new_id()
    writer_for(log, remember=True)  # as the API's
    await granted(log, user, 150)
    outcomes = await asyncio.gather(*(append_to_account(log, user, debit(new_id())) for _ in range(200)),
                                    return_exceptions=True)
    refused = [o for o in outcomes if isinstance(o, InsufficientCredits)]
    assert len(refused) == 50 and all(not isinstance(o, Exception) for o in outcomes if o not in refused)
    account, _ = await load_account(log, user)
    assert account.balance == 0
    assert log.conflicts == 0  # they queued: none raced another
    # the balance came from the last ack, not a read; each refusal is checked once on the log
    assert log.reads <= 1 + len(refused) + 1


async def test_an_entry_appended_by_another_process_is_caught_and_the_debit_decided_again() -> None:
    log, user = CountingLog(), new_id()
    writer_for(log, remember=True)
    await granted(log, user, 5)
    await append_to_account(log, user, debit(new_id()))  # the writer now knows: balance 4
    elsewhere = AccountWriter(log)  # another process's writer: the ledger refunding, another API replica
    await elsewhere.append(user, lambda a: ledger.decide_refund(a, "j0", 1, 1, "job failed"))
    await append_to_account(log, user, debit(new_id()))
    entries = [s.event.data for s in await log.read(subjects.ledger_account(user))]
    assert [e.balance_after for e in entries] == [5, 4, 5, 4]  # decided on the refund, after one conflict
    assert log.conflicts == 1


async def test_a_refusal_decided_on_a_stale_balance_is_checked_on_the_log_before_it_is_final() -> None:
    log, user = CountingLog(), new_id()
    writer_for(log, remember=True)
    await granted(log, user, 1)
    await append_to_account(log, user, debit(new_id()))  # the writer knows: balance 0
    await AccountWriter(log).append(user, lambda a: ledger.decide_grant(a, 3, "purchase", "p1"))  # elsewhere
    appended = await append_to_account(log, user, debit(new_id()))  # not a 402: three credits came in
    assert appended is not None and (await load_account(log, user))[0].balance == 2


async def test_a_conflict_that_never_resolves_is_account_busy_after_the_budget_not_a_crash() -> None:
    class AlwaysOvertaken(InMemoryEventLog):
        async def _publish(self, subject, body, headers):
            if subject.startswith("ledger.") and "debited" in subject:  # someone else gets there first
                last = await self.last(headers["Nats-Expected-Last-Subject-Sequence-Subject"])
                await super()._publish(last.subject, last.event.to_bytes(), {"Nats-Msg-Id": new_id()})
            return await super()._publish(subject, body, headers)

    log, user = AlwaysOvertaken(), new_id()
    await granted(log, user, 5)
    with pytest.raises(AccountBusy) as busy:
        await AccountWriter(log, budget_s=0.2).append(user, debit(new_id()))
    assert busy.value.retry_after_s >= 1
    assert [s.subject.split(".")[2] for s in await log.read(subjects.ledger_account(user))].count("debited") == 0


async def test_the_writer_forgets_accounts_beyond_its_bound_and_leaves_no_lock_behind() -> None:
    log = InMemoryEventLog()
    writer = AccountWriter(log, remember=True, max_known=3)
    users = [new_id() for _ in range(5)]
    for user in users:
        await writer.append(user, lambda a: ledger.decide_grant(a, 1, "test", "g"))
    assert list(writer._known) == users[-3:] and writer._locks == {} and writer._waiting == {}


async def test_a_writer_that_does_not_remember_reads_each_time_and_never_conflicts_on_a_stale_position() -> None:
    log, user = CountingLog(), new_id()
    await granted(log, user, 5)
    await append_to_account(log, user, debit(new_id()))
    await AccountWriter(log).append(user, lambda a: ledger.decide_refund(a, "j0", 1, 1, "job failed"))
    await append_to_account(log, user, debit(new_id()))
    assert log.conflicts == 0  # as the ledger's: its entries interleave with the API's
