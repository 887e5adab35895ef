"""Dead letters: what the DLQ stream holds, how an operator's decision on one is recorded,
and when putting one back on the log (a redrive) is refused.

A dead letter is a JSON record on `dlq.<STREAM>.<consumer>` (see consumers.dead_letter);
its id is its sequence in the DLQ stream. A decision, redriven or discarded, is an event on
`dlq.resolved.<id>`, appended only if none is there yet: one decision per dead letter, for
ever, whoever makes it and however many times.

A redrive republishes the original event to its original subject, so every consumer of
that subject sees it again (consumers are idempotent by construction). It is refused when
that would do harm or nothing:
- a ledger entry: republishing it appends a second entry (a second charge or credit) and
  breaks the account's chain of balances; discard it and correct with an adjustment;
- a job's `job.created` or `job.retried` once the job has moved on from that attempt's
  `pending`: the job is folded from its own subject, and a copy of its start would start
  it again. In particular a job that failed when its deliveries ran out was failed and
  refunded: running it again is a new attempt, charged, which the admin retry does;
- a record whose data is not a readable event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum

from . import jobs
from .envelope import Event, Payload, UnknownEvent

RESOLVED_PREFIX = "dlq.resolved."
REDRIVE_MSG_ID_PREFIX = "redrive:"


def resolved_subject(dlq_seq: int) -> str:
    return f"{RESOLVED_PREFIX}{int(dlq_seq)}"


def is_resolution(subject: str) -> bool:
    return subject.startswith(RESOLVED_PREFIX)


def redrive_msg_id(dlq_seq: int) -> str:
    return f"{REDRIVE_MSG_ID_PREFIX}{int(dlq_seq)}"


class Resolution(StrEnum):
    redriven = "redriven"
    discarded = "discarded"


@dataclass(frozen=True)
class DeadLetter:
    id: int  # its sequence in the DLQ stream
    stream: str
    consumer: str
    stream_seq: int
    subject: str
    num_delivered: int
    reason: str
    failed_at: str
    data: str
    headers: dict[str, str]

    @classmethod
    def from_record(cls, dlq_seq: int, raw: bytes) -> DeadLetter:
        r = json.loads(raw)
        return cls(dlq_seq, r["stream"], r["consumer"], int(r["stream_seq"]), r["subject"],
                   int(r["num_delivered"]), r["reason"], r["failed_at"], r["data"], dict(r.get("headers") or {}))

    def event(self) -> Event | UnknownEvent | None:
        try:
            return Event.from_bytes(self.data.encode())
        except ValueError:
            return None

    def job_id(self) -> str | None:
        event = self.event()
        return event.aggregate_id if event is not None and event.type.startswith("job.") else None


class ResolutionData(Payload, frozen=True, kw_only=True):
    dlq_seq: int
    action: Resolution
    by: str
    stream: str
    consumer: str
    subject: str
    stream_seq: int
    republished_seq: int | None = None


class DeadLetterResolved(Event, tag="dlq.resolved", frozen=True, kw_only=True):
    data: ResolutionData


def resolution_event(dead: DeadLetter, action: Resolution, *, by: str,
                     republished_seq: int | None = None) -> DeadLetterResolved:
    return DeadLetterResolved(aggregate_id=str(dead.id), data=ResolutionData(
        dlq_seq=dead.id, action=action, by=by, stream=dead.stream, consumer=dead.consumer, subject=dead.subject,
        stream_seq=dead.stream_seq, republished_seq=republished_seq))


def redrive_refusal(dead: DeadLetter, job: jobs.Job | None = None) -> str | None:
    """Why this dead letter must not be redriven (None: it may). `job` is the job's state
    now, for a job event."""
    event = dead.event()
    if event is None:
        return f"dead letter {dead.id}: its data is not a readable event; discard it"
    if event.type.startswith("ledger."):
        return (f"dead letter {dead.id} is a ledger entry: republishing it would append a second "
                f"{event.type.removeprefix('ledger.')} entry to the account. Discard it, and correct the balance with "
                f"an adjustment if the entry's effect is missing")
    if isinstance(event, jobs.JobCreated | jobs.JobRetried):
        attempt = event.data.attempt
        if job is None:
            return f"dead letter {dead.id}: job {event.aggregate_id} is not on the log"
        if job.attempt != attempt or job.status is not jobs.JobStatus.pending:
            if job.status in jobs.REFUNDED_STATUSES and job.attempt == attempt:
                return (f"dead letter {dead.id}: job {job.id} is {job.status}, and its attempt {attempt} was "
                        f"refunded. A redrive would not run it again as a paid attempt: retry it "
                        f"(POST /v1/admin/jobs/{job.id}/retry charges a new attempt), then "
                        f"`genrail dlq discard {dead.id}`")
            return (f"dead letter {dead.id}: job {job.id} is {job.status} at attempt {job.attempt}; "
                    f"this {event.type} of attempt {attempt} has nothing left to start. "
                    f"Discard it with `genrail dlq discard {dead.id}`")
    return None
