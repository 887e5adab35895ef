"""Dead letters: list them, and redrive or discard one, exactly once, whoever asks (the CLI's
`genrail dlq`, an admin in the studio).

A dead letter's ID is its sequence in the DLQ stream. Every decision is recorded on the log
itself (`dlq.resolved.<ID>`, appended only if none is there), so a dead letter is redriven or
discarded once, however often and by however many people it is asked for."""

from __future__ import annotations

from genrail_events import dead_letters as dl
from genrail_events.dead_letters import DeadLetter, Resolution
from genrail_events.envelope import Event

from genrail_eventlog.store import MSG_ID, EventStore

from .jobs import load_job


class Refused(Exception):
    """The decision cannot be made (already decided, no such dead letter, or harmful)."""


async def load(store: EventStore) -> tuple[list[DeadLetter], dict[int, Event]]:
    """Every dead letter, and the decision on each one decided (by dead letter ID)."""
    records, decisions = [], {}
    for seq, subject, data in await store.read_raw("dlq.>"):
        if dl.is_resolution(subject):
            decisions[int(subject.rsplit(".", 1)[1])] = Event.from_bytes(data)
        else:
            records.append(DeadLetter.from_record(seq, data))
    return records, decisions  # type: ignore[return-value]


async def undecided(store: EventStore) -> list[DeadLetter]:
    records, decisions = await load(store)
    return [r for r in records if r.id not in decisions]


async def fetch(store: EventStore, dlq_id: int) -> tuple[DeadLetter, Event | None]:
    found = await store.get("DLQ", dlq_id)
    if found is None or dl.is_resolution(found[0]):
        raise Refused(f"no dead letter {dlq_id}")
    decided = await store.last(dl.resolved_subject(dlq_id))
    return DeadLetter.from_record(dlq_id, found[1]), decided.event if decided else None


def _already(dlq_id: int, decision: Event) -> Refused:
    d = decision.data  # type: ignore[attr-defined]
    where = f" (republished as {d.stream} seq {d.republished_seq})" if d.republished_seq else ""
    return Refused(f"dead letter {dlq_id} was already {d.action} by {d.by} at "
                   f"{decision.occurred_at:%Y-%m-%d %H:%M:%S}{where}; nothing done")


async def _earlier_republish(nc, dead: DeadLetter) -> int | None:
    """The sequence of a republish of this dead letter already on the log (a redrive that
    died before recording its decision), so a second run does not publish it again."""
    js, seq = nc.jetstream(), dead.stream_seq + 1
    while True:
        try:
            raw = await js.get_msg(dead.stream, seq=seq, subject=dead.subject, next=True)
        except Exception:  # noqa: BLE001 - NotFound: no later message on the subject
            return None
        if (raw.headers or {}).get(MSG_ID) == dl.redrive_msg_id(dead.id):
            return raw.seq
        seq = raw.seq + 1


async def redrive(store: EventStore, dlq_id: int, *, by: str) -> str:
    """Republish the original message to its original subject (Nats-Msg-Id `redrive:<ID>`), so
    every consumer of it sees it again, and record the decision; Refused where a redrive would
    do harm or nothing (see `dead_letters.redrive_refusal`)."""
    dead, decision = await fetch(store, dlq_id)
    if decision is not None:
        raise _already(dlq_id, decision)
    job_id = dead.job_id()
    job = (await load_job(store, job_id))[0] if job_id else None
    if (refusal := dl.redrive_refusal(dead, job)) is not None:
        raise Refused(refusal)
    republished = await _earlier_republish(store.nc, dead)
    if republished is None:
        headers = {k: v for k, v in dead.headers.items() if not k.startswith("Nats-")}
        headers[MSG_ID] = dl.redrive_msg_id(dlq_id)  # JetStream drops a second one within its window
        republished = (await store.nc.jetstream().publish(dead.subject, dead.data.encode(), headers=headers)).seq
    event = dl.resolution_event(dead, Resolution.redriven, by=by, republished_seq=republished)
    if await store.append_first(dl.resolved_subject(dlq_id), event, msg_id=f"dlq-resolved:{dlq_id}") is None:
        raise _already(dlq_id, (await store.last(dl.resolved_subject(dlq_id))).event)
    return f"dead letter {dlq_id} redriven: {dead.subject} republished as {dead.stream} seq {republished}"


async def discard(store: EventStore, dlq_id: int, *, by: str) -> str:
    dead, decision = await fetch(store, dlq_id)
    if decision is not None:
        raise _already(dlq_id, decision)
    event = dl.resolution_event(dead, Resolution.discarded, by=by)
    if await store.append_first(dl.resolved_subject(dlq_id), event, msg_id=f"dlq-resolved:{dlq_id}") is None:
        raise _already(dlq_id, (await store.last(dl.resolved_subject(dlq_id))).event)
    return f"dead letter {dlq_id} discarded"
