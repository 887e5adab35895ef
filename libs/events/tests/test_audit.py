"""Given a log, when it is audited, then exactly the violations planted in it are reported."""

from __future__ import annotations

from dataclasses import replace

import msgspec

from genrail_events import jobs, ledger
from genrail_events.audit import Logged, ViolationKind, audit
from genrail_events.envelope import Event
from genrail_events.jobs import JobStatus as S
from genrail_events.jobs import JobType
from genrail_events.ledger import Account


def copy_request(cost: int) -> ledger.JobRequest:
    return ledger.JobRequest(type=JobType.copy, input={}, cost=cost)


def with_balance_after(event: ledger.LedgerEvent, balance_after: int) -> ledger.LedgerEvent:
    """The same entry stating another balance: what a buggy writer would append."""
    return msgspec.structs.replace(event, data=msgspec.structs.replace(event.data, balance_after=balance_after))


class Log:
    """A log written the way the services write it: through the deciders, one sequence per stream."""

    def __init__(self) -> None:
        self.messages: list[Logged] = []
        self.seqs = {"JOBS": 0, "LEDGER": 0}
        self.accounts: dict[str, Account] = {}
        self.jobs: dict[str, jobs.Job] = {}

    def put(self, stream: str, subject: str, event: Event) -> Logged:
        self.seqs[stream] += 1
        logged = Logged(self.seqs[stream], subject, event)
        self.messages.append(logged)
        return logged

    def entry(self, entry: ledger.Entry) -> Logged:
        user_id = entry.event.data.user_id
        self.accounts[user_id] = ledger.evolve(self.accounts.get(user_id, Account(user_id)), entry.event)
        return self.put("LEDGER", entry.subject, entry.event)

    def account(self, user_id: str) -> Account:
        return self.accounts.get(user_id, Account(user_id))

    def job_event(self, event: Event) -> Logged:
        self.jobs[event.aggregate_id] = jobs.evolve(self.jobs.get(event.aggregate_id), event)
        return self.put("JOBS", jobs.subject_for(event), event)

    # what the services do
    def signup(self, user_id: str, credits: int = 10) -> None:
        self.entry(ledger.decide_grant(self.account(user_id), credits, "signup", "signup"))

    def create_job(self, user_id: str, job_id: str, cost: int = 1) -> None:
        self.entry(ledger.decide_debit(self.account(user_id), job_id, 1, cost, copy_request(cost)))
        self.job_event(jobs.job_created(job_id, user_id, JobType.copy, cost, {}))

    def move(self, job_id: str, *statuses: S) -> Logged:
        for status in statuses:
            moved = self.job_event(jobs.decide_transition(self.jobs[job_id], status))
            job = self.jobs[job_id]
            if status in jobs.REFUNDED_STATUSES:
                self.entry(ledger.decide_refund(self.account(job.user_id), job_id, job.attempt, job.cost, status))
        return moved

    def retry(self, job_id: str) -> None:
        job = self.jobs[job_id]
        self.entry(ledger.decide_debit(self.account(job.user_id), job_id, job.attempt + 1, job.cost, copy_request(job.cost)))
        self.job_event(jobs.decide_retry(job, requested_by="admin"))


def clean_log() -> Log:
    log = Log()
    log.signup("u1")
    log.signup("u2", 3)
    log.create_job("u1", "j1")
    log.move("j1", S.processing, S.completed)
    log.create_job("u1", "j2", cost=2)
    log.move("j2", S.processing, S.failed)
    log.retry("j2")
    log.move("j2", S.queued, S.processing, S.expired)
    log.create_job("u2", "j3", cost=3)
    log.move("j3", S.canceled)
    log.entry(ledger.decide_purchase(log.account("u2"), "pi_1", 100, "starter"))
    log.entry(ledger.decide_adjustment(log.account("u2"), "adj1", -4, "correction"))
    return log


def kinds(log: Log) -> list[ViolationKind]:
    return [v.kind for v in audit(log.messages)]


def test_a_clean_log_passes() -> None:
    assert audit(clean_log().messages) == []


def test_a_reversal_may_leave_the_balance_negative_until_it_is_paid_back() -> None:
    log = clean_log()
    log.entry(ledger.decide_reversal(log.account("u2"), "pi_1", 100, "disputed"))
    assert log.account("u2").balance < 0
    log.entry(ledger.decide_grant(log.account("u2"), 1, "goodwill", "g1"))
    log.entry(ledger.decide_purchase(log.account("u2"), "pi_2", 100, "starter"))
    assert audit(log.messages) == []


def test_a_debit_while_in_reversal_debt_is_caught() -> None:
    log = clean_log()
    log.entry(ledger.decide_reversal(log.account("u2"), "pi_1", 100, "disputed"))
    overspend = ledger.decide_debit(Account("u2", 1), "j9", 1, 1, copy_request(1))  # decided on a stale balance
    bad = log.put("LEDGER", overspend.subject, with_balance_after(overspend.event, log.account("u2").balance - 1))
    [violation] = audit(log.messages)
    assert violation.kind is ViolationKind.negative_balance and violation.events == [(bad.seq, bad.subject)]


def test_a_negative_balance_without_a_reversal_is_caught() -> None:
    log = clean_log()
    entry = ledger.decide_adjustment(Account("u1", 100), "adj2", -20, "mistake")
    planted = with_balance_after(entry.event, log.account("u1").balance - 20)
    log.put("LEDGER", entry.subject, planted)
    assert kinds(log) == [ViolationKind.negative_balance]


def test_an_extra_debit_of_the_same_attempt_is_caught_with_both_entries() -> None:
    log = clean_log()
    first = next(m for m in log.messages if m.subject == "ledger.u1.debited.j1.1")
    extra = log.entry(ledger.decide_debit(log.account("u1"), "j1", 1, 1, copy_request(1)))
    [violation] = audit(log.messages)
    assert violation.kind is ViolationKind.double_debit
    assert violation.events == [(first.seq, first.subject), (extra.seq, extra.subject)]


def test_a_balance_after_that_is_not_the_running_sum_is_caught_once() -> None:
    log = clean_log()
    entry = ledger.decide_grant(log.account("u1"), 5, "promo", "p1")
    wrong = with_balance_after(entry.event, 50)
    bad = log.put("LEDGER", entry.subject, wrong)
    log.accounts["u1"] = Account("u1", 50)
    log.create_job("u1", "j4")  # decided from the wrong balance: consistent from there on
    violations = audit(log.messages)
    assert [v.kind for v in violations] == [ViolationKind.balance_after, ViolationKind.balance]
    assert violations[0].events == [(bad.seq, bad.subject)]
    assert "expected" in violations[0].message and "= " in violations[1].message


def test_a_failed_attempt_never_refunded_is_caught() -> None:
    log = clean_log()
    log.create_job("u1", "j5")
    failed = log.job_event(jobs.decide_transition(log.jobs["j5"], S.failed))
    [violation] = audit(log.messages)
    assert violation.kind is ViolationKind.missing_refund and violation.events == [(failed.seq, failed.subject)]


def test_a_second_refund_of_one_attempt_is_caught() -> None:
    log = clean_log()
    log.entry(ledger.decide_refund(log.account("u2"), "j3", 1, 3, "canceled"))
    assert kinds(log) == [ViolationKind.double_refund]


def test_a_refund_without_a_failed_attempt_is_caught() -> None:
    log = clean_log()
    log.entry(ledger.decide_refund(log.account("u1"), "j1", 1, 1, "completed jobs are not refunded"))
    assert kinds(log) == [ViolationKind.refund_without_failure]


def test_a_refund_of_other_than_the_debit_is_caught() -> None:
    log = clean_log()
    log.create_job("u1", "j6", cost=2)
    log.job_event(jobs.decide_transition(log.jobs["j6"], S.failed))
    log.entry(ledger.decide_refund(log.account("u1"), "j6", 1, 5, "failed"))
    assert kinds(log) == [ViolationKind.refund_amount]


def test_an_illegal_transition_is_caught() -> None:
    log = clean_log()
    done = log.jobs["j1"]
    illegal = jobs.decide_transition(replace(done, status=S.processing), S.failed)
    bad = log.job_event(illegal)  # decided as if j1 were still processing: completed → failed
    violations = audit(log.messages)
    assert [v.kind for v in violations] == [ViolationKind.missing_refund, ViolationKind.illegal_transition]
    assert violations[1].events == [(bad.seq, bad.subject)] and "completed" in violations[1].message


def test_a_retry_of_a_completed_job_and_a_transition_before_creation_are_caught() -> None:
    log = clean_log()
    completed = log.jobs["j1"]
    log.job_event(jobs.decide_retry(replace(completed, status=S.failed),
                                    requested_by="admin"))
    ghost = jobs.Job(id="j7", user_id="u1", type=JobType.copy, status=S.pending, cost=1, input={},
                     created_at=completed.created_at, updated_at=completed.created_at)
    log.put("JOBS", "job.transitioned.processing.j7", jobs.decide_transition(ghost, S.processing))
    messages = [v.message for v in audit(log.messages)]
    assert len(messages) == 2
    assert "retried while completed" in messages[0] and "before job.created" in messages[1]


def test_a_redelivered_copy_of_a_job_event_is_not_a_second_fact_but_a_new_creation_is() -> None:
    log = clean_log()
    created = next(m for m in log.messages if m.subject == "job.created.copy.j1")
    log.put("JOBS", created.subject, created.event)  # `genrail dlq redrive` republishes the same event
    assert audit(log.messages) == []
    log.put("JOBS", created.subject, jobs.job_created("j1", "u1", JobType.copy, 1, {}))
    assert kinds(log) == [ViolationKind.illegal_transition]


def test_a_job_left_unfinished_past_the_limit_is_reported_stuck_and_a_recent_one_is_not() -> None:
    from datetime import timedelta

    log = clean_log()
    log.create_job("u1", "j4")
    stuck = log.move("j4", S.queued, S.processing)
    log.create_job("u1", "j5")
    started = log.jobs["j4"].updated_at

    assert audit(log.messages, now=started + timedelta(hours=1), stuck_after_s=7200) == []
    [violation] = audit(log.messages, now=started + timedelta(hours=3), stuck_after_s=7200)[:1]
    assert violation.kind is ViolationKind.stuck and violation.events == [(stuck.seq, stuck.subject)]
    assert "job j4 (copy) has been processing" in violation.message
    assert [v.message.split()[1] for v in audit(log.messages, now=started + timedelta(hours=3),
                                                stuck_after_s=7200)] == ["j4", "j5"]
    assert audit(log.messages) == []  # without the time of the audit, nothing is stuck
