"""The audit: what must hold on the log, recomputed from the log alone (no projection, no I/O).

Given every event of the JOBS and LEDGER streams (each stream in its own order), the audit
checks the invariants the design promises:

- every entry's `balance_after` is the running sum of the user's entries, so the balance is
  grants + purchases − debits + refunds ± adjustments − reversals;
- no balance below zero, except right after a payment reversal and until it is paid back
  (while in that debt only entries that add credits are allowed);
- every failed, canceled or expired attempt is refunded exactly once, with what its debit
  took, and no refund exists without such an attempt;
- no job attempt is debited twice;
- every change of a job's state is a transition the state machine allows;
- given the time of the audit, no job is left unfinished (and charged) for longer than
  `stuck_after_s` after its last change: the deadline sweeper ends every such job.

A JOBS message whose event id was already seen for the same job is a redelivered copy of a
known fact (`genrail dlq redrive` republishes the original event): it changes nothing and
is skipped. Ledger entries are never skipped: a copy there would count twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple

from . import jobs
from .envelope import Event, UnknownEvent
from .ledger import CreditsDebited, CreditsRefunded, EntryKind, signed_amount


class Logged(NamedTuple):
    """One message of the log: its stream sequence, its subject and its event."""

    seq: int
    subject: str
    event: Event


Ref = tuple[int, str]  # (stream_seq, subject): where a violation's evidence lies


class ViolationKind(StrEnum):
    balance_after = "balance_after"            # an entry's balance_after is not the running sum
    balance = "balance"                        # the final balance is not the sum of the entries
    negative_balance = "negative_balance"      # below zero, not because of a payment reversal
    double_debit = "double_debit"              # one job attempt charged more than once
    missing_refund = "missing_refund"          # a failed/canceled/expired attempt never refunded
    double_refund = "double_refund"            # one attempt refunded more than once
    refund_without_failure = "refund_without_failure"  # a refund no ended attempt explains
    refund_amount = "refund_amount"            # a refund that gives back other than the debit took
    illegal_transition = "illegal_transition"  # a job state change the state machine forbids
    stuck = "stuck"                            # a job not final long after its last change


@dataclass(frozen=True)
class Violation:
    kind: ViolationKind
    message: str
    events: list[Ref] = field(default_factory=list)


def _ref(logged: Logged) -> Ref:
    return (logged.seq, logged.subject)


def audit(log: Iterable[Logged], *, now: datetime | None = None,
          stuck_after_s: float | None = None) -> list[Violation]:
    """Every violation on the log, ledger ones first, then jobs', each group in log order;
    with `now` and `stuck_after_s`, then the jobs left unfinished."""
    entries: list[Logged] = []
    job_events: list[Logged] = []
    for logged in log:
        if logged.event.type.startswith("ledger."):
            entries.append(logged)
        elif logged.event.type.startswith("job."):
            job_events.append(logged)
    ended, violations, last = _audit_jobs(job_events)
    stuck = _stuck(last, now, stuck_after_s) if now is not None and stuck_after_s is not None else []
    return [*_audit_balances(entries), *_audit_charges(entries, ended), *violations, *stuck]


def _stuck(last: dict[str, tuple[jobs.Job, Logged]], now: datetime, after_s: float) -> list[Violation]:
    out = []
    for job, logged in last.values():
        idle_s = (now - job.updated_at).total_seconds()
        if job.status not in jobs.FINAL_STATUSES and idle_s > after_s:
            out.append(Violation(ViolationKind.stuck, f"job {job.id} ({job.type}) has been {job.status} since "
                                 f"{job.updated_at:%Y-%m-%d %H:%M:%S} UTC ({idle_s / 3600:.1f} h), charged: "
                                 "nothing ended it", [_ref(logged)]))
    return out


# --- balances -----------------------------------------------------------------------

def _audit_balances(entries: list[Logged]) -> list[Violation]:
    by_user: dict[str, list[Logged]] = defaultdict(list)
    for logged in entries:
        by_user[logged.event.data.user_id].append(logged)
    out: list[Violation] = []
    for user_id, account in by_user.items():
        out.extend(_audit_account(user_id, account))
    return out


def _audit_account(user_id: str, account: list[Logged]) -> list[Violation]:
    out: list[Violation] = []
    stated = 0      # the balance as the entries state it (what the service decided from)
    total = 0       # the sum of every entry's signed amount: the balance recomputed
    in_debt = False  # below zero because of a reversal, not yet paid back
    for logged in account:
        data, change = logged.event.data, signed_amount(logged.event)
        total += change
        after = data.balance_after
        if after != stated + change:
            out.append(Violation(ViolationKind.balance_after,
                                 f"user {user_id}: {data.kind} of {data.amount} states balance_after "
                                 f"{after}, but the entries before it sum to {stated} "
                                 f"(expected {stated + change})", [_ref(logged)]))
        kind = data.kind
        if after < 0:
            allowed = kind is EntryKind.reversed or (in_debt and change >= 0)
            if not allowed:
                out.append(Violation(ViolationKind.negative_balance,
                                     f"user {user_id}: {kind} of {data.amount} leaves the balance at {after}"
                                     + (" while it was in reversal debt" if in_debt else ""), [_ref(logged)]))
            in_debt = in_debt or kind is EntryKind.reversed
        else:
            in_debt = False
        stated = after  # resynchronise: one wrong entry is one violation, not a cascade
    if account and stated != total:
        out.append(Violation(ViolationKind.balance,
                             f"user {user_id}: balance {stated} but grants + purchases − debits + refunds "
                             f"± adjustments − reversals = {total}", [_ref(account[-1])]))
    return out


# --- charges and refunds ------------------------------------------------------------

Attempt = tuple[str, int]  # (job_id, attempt)


def _audit_charges(entries: list[Logged], ended: dict[Attempt, Logged]) -> list[Violation]:
    debits: dict[Attempt, list[Logged]] = defaultdict(list)
    refunds: dict[Attempt, list[Logged]] = defaultdict(list)
    for logged in entries:
        event = logged.event
        if isinstance(event, CreditsDebited):
            debits[(event.data.job_id, event.data.attempt)].append(logged)
        elif isinstance(event, CreditsRefunded):
            refunds[(event.data.job_id, event.data.attempt)].append(logged)
    out: list[Violation] = []
    for (job_id, attempt), charged in debits.items():
        if len(charged) > 1:
            out.append(Violation(ViolationKind.double_debit,
                                 f"job {job_id} attempt {attempt} debited {len(charged)} times",
                                 [_ref(d) for d in charged]))
    for key, end in ended.items():
        job_id, attempt = key
        given = refunds.get(key, [])
        status = end.event.data.to
        if not given:
            out.append(Violation(ViolationKind.missing_refund,
                                 f"job {job_id} attempt {attempt} {status} but was never refunded", [_ref(end)]))
        elif len(given) > 1:
            out.append(Violation(ViolationKind.double_refund,
                                 f"job {job_id} attempt {attempt} {status} and refunded {len(given)} times",
                                 [_ref(end), *(_ref(r) for r in given)]))
        if given and key in debits:
            took, gave = debits[key][0].event.data.amount, given[0].event.data.amount
            if took != gave:
                out.append(Violation(ViolationKind.refund_amount,
                                     f"job {job_id} attempt {attempt}: debited {took} but refunded {gave}",
                                     [_ref(debits[key][0]), _ref(given[0])]))
    for key, given in refunds.items():
        if key not in ended:
            out.append(Violation(ViolationKind.refund_without_failure,
                                 f"job {key[0]} attempt {key[1]} refunded, but no failed, canceled or "
                                 f"expired transition of that attempt is on the log", [_ref(r) for r in given]))
    return out


# --- job state changes --------------------------------------------------------------

def _audit_jobs(job_events: list[Logged]) -> tuple[dict[Attempt, Logged], list[Violation],
                                                  dict[str, tuple[jobs.Job, Logged]]]:
    """Fold each job with the state machine. Returns the attempts that ended in a refunded
    status (the transition that ended each), the illegal state changes, and each job as it
    ends up with its last event."""
    state: dict[str, jobs.Job] = {}
    seen: dict[str, set] = defaultdict(set)
    ended: dict[Attempt, Logged] = {}
    out: list[Violation] = []
    last: dict[str, tuple[jobs.Job, Logged]] = {}
    for logged in job_events:
        event = logged.event
        job_id = event.aggregate_id
        if event.id in seen[job_id]:
            continue  # a redelivered copy of a fact already counted
        seen[job_id].add(event.id)
        job = state.get(job_id)
        problem = _illegal(job, event)
        if problem is not None:
            out.append(Violation(ViolationKind.illegal_transition, f"job {job_id}: {problem}", [_ref(logged)]))
            if job is None and event.type != "job.created":
                continue  # nothing to fold onto
        state[job_id] = jobs.evolve(None if event.type == "job.created" else job, event)
        last[job_id] = (state[job_id], logged)
        if isinstance(event, jobs.JobTransitioned) and event.data.to in jobs.REFUNDED_STATUSES:
            ended.setdefault((job_id, event.data.attempt), logged)
    return ended, out, last


def _illegal(job: jobs.Job | None, event: Event | UnknownEvent) -> str | None:
    if isinstance(event, jobs.JobCreated):
        return None if job is None else f"created again while {job.status} (event {event.id})"
    if not isinstance(event, jobs.JobTransitioned | jobs.JobRetried):
        return None  # events that change no state
    if job is None:
        return f"{event.type} before job.created"
    d = event.data
    if isinstance(event, jobs.JobRetried):
        if job.status not in jobs.RETRYABLE_STATUSES:
            return f"retried while {job.status}"
        if d.attempt != job.attempt + 1:
            return f"retry names attempt {d.attempt} after attempt {job.attempt}"
        return None
    if d.from_status != job.status:
        return f"transition decided from {d.from_status} while the job was {job.status}"
    if d.to is jobs.JobStatus.pending or not jobs.can_transition(job.status, d.to):
        return f"{job.status} → {d.to} is not a legal transition"
    if d.attempt != job.attempt:
        return f"transition of attempt {d.attempt} while the job is at attempt {job.attempt}"
    return None
