"""`genrail dlq`: list, inspect, redrive and discard dead letters.

A dead letter's ID is its sequence in the DLQ stream. Every decision is recorded on the log
itself (`dlq.resolved.<ID>`, appended only if none is there), so a dead letter is redriven
or discarded once, whoever asks and however often; `list` shows the undecided ones.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import socket
from typing import Annotated

import typer
from genrail_events import dead_letters as dl
from genrail_events.dead_letters import DeadLetter, Resolution
from genrail_events.envelope import Event
from genrail_eventlog.store import MSG_ID, EventStore, connect
from genrail_commands.jobs import load_job
from nats.aio.client import Client as NATS
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import logread
from .options import NATS_URL, NatsUrl, prose

console = Console()
dlq_app = typer.Typer(help="Dead letters: messages that failed every delivery, with the reason.",
                      no_args_is_help=True)
Ids = Annotated[list[int], typer.Argument(help="Dead letter IDs (their DLQ sequence, as `list` shows)")]


class Refused(Exception):
    pass


def operator() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


async def load(nc: NATS) -> tuple[list[DeadLetter], dict[int, Event]]:
    """Every dead letter, and the decision on each one decided (by dead letter ID)."""
    records, decisions = [], {}
    for m in await logread.read_all(nc, "DLQ"):
        if dl.is_resolution(m.subject):
            decisions[int(m.subject.rsplit(".", 1)[1])] = Event.from_bytes(m.data)
        else:
            records.append(DeadLetter.from_record(m.seq, m.data))
    return records, decisions


async def fetch(nc: NATS, dlq_id: int) -> tuple[DeadLetter, Event | None]:
    message = await logread.get(nc, "DLQ", dlq_id)
    if message is None or dl.is_resolution(message.subject):
        raise Refused(f"no dead letter {dlq_id} (see `genrail dlq list`)")
    decided = await EventStore(nc).last(dl.resolved_subject(dlq_id))
    return DeadLetter.from_record(dlq_id, message.data), decided.event if decided else None


def _already(dlq_id: int, decision: Event) -> Refused:
    d = decision.data
    where = f" (republished as {d.stream} seq {d.republished_seq})" if d.republished_seq else ""
    return Refused(f"dead letter {dlq_id} was already {d.action} by {d.by} at "
                   f"{decision.occurred_at:%Y-%m-%d %H:%M:%S}{where}; nothing done")


async def _earlier_republish(nc: NATS, dead: DeadLetter) -> int | None:
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


async def redrive_one(nc: NATS, dlq_id: int) -> str:
    dead, decision = await fetch(nc, dlq_id)
    if decision is not None:
        raise _already(dlq_id, decision)
    store = EventStore(nc)
    job_id = dead.job_id()
    job = (await load_job(store, job_id))[0] if job_id else None
    if (refusal := dl.redrive_refusal(dead, job)) is not None:
        raise Refused(refusal)
    republished = await _earlier_republish(nc, dead)
    if republished is None:
        headers = {k: v for k, v in dead.headers.items() if not k.startswith("Nats-")}
        headers[MSG_ID] = dl.redrive_msg_id(dlq_id)  # JetStream drops a second one within its window
        republished = (await nc.jetstream().publish(dead.subject, dead.data.encode(), headers=headers)).seq
    event = dl.resolution_event(dead, Resolution.redriven, by=operator(), republished_seq=republished)
    if await store.append_first(dl.resolved_subject(dlq_id), event, msg_id=f"dlq-resolved:{dlq_id}") is None:
        raise _already(dlq_id, (await store.last(dl.resolved_subject(dlq_id))).event)
    return f"dead letter {dlq_id} redriven: {dead.subject} republished as {dead.stream} seq {republished}"


async def discard_one(nc: NATS, dlq_id: int) -> str:
    dead, decision = await fetch(nc, dlq_id)
    if decision is not None:
        raise _already(dlq_id, decision)
    event = dl.resolution_event(dead, Resolution.discarded, by=operator())
    store = EventStore(nc)
    if await store.append_first(dl.resolved_subject(dlq_id), event, msg_id=f"dlq-resolved:{dlq_id}") is None:
        raise _already(dlq_id, (await store.last(dl.resolved_subject(dlq_id))).event)
    return f"dead letter {dlq_id} discarded"


def _each(nats_url: str, ids: list[int], action) -> None:
    async def main() -> bool:
        nc = await connect(nats_url, "genrail-dlq")
        ok = True
        try:
            for dlq_id in ids:
                try:
                    console.print(escape(await action(nc, dlq_id)), highlight=False)
                except Refused as exc:
                    console.print(f"[bold red]refused:[/] {escape(str(exc))}", highlight=False)
                    ok = False
        finally:
            await nc.close()
        return ok

    if not asyncio.run(main()):
        raise typer.Exit(1)


@dlq_app.command("list")
@prose
def list_(
    all_: Annotated[bool, typer.Option("--all", help="Also the dead letters already redriven or discarded")] = False,
    nats_url: NatsUrl = NATS_URL,
) -> None:
    """Dead letters still waiting for a decision: what failed, where, and why."""

    async def main():
        nc = await connect(nats_url, "genrail-dlq")
        try:
            return await load(nc)
        finally:
            await nc.close()

    records, decisions = asyncio.run(main())
    shown = [r for r in records if all_ or r.id not in decisions]
    out = Table(title=f"{len(shown)} dead letter(s)" + ("" if all_ else " waiting for a decision"),
                title_justify="left")
    for name in ("ID", "failed at", "stream/consumer", "subject", "tries", "reason", *(("decision",) if all_ else ())):
        out.add_column(name, overflow="fold")
    for r in shown:
        decision = decisions.get(r.id)
        out.add_row(str(r.id), r.failed_at[:19].replace("T", " "), f"{r.stream}/{r.consumer}", r.subject,
                    str(r.num_delivered), escape(r.reason[:80]),
                    *((decision.data.action if decision else "",) if all_ else ()))
    console.print(out)


@dlq_app.command()
@prose
def show(dlq_id: Annotated[int, typer.Argument(help="The dead letter's ID")], nats_url: NatsUrl = NATS_URL) -> None:
    """One dead letter: where it failed, why, the original event, and any decision on it."""

    async def main():
        nc = await connect(nats_url, "genrail-dlq")
        try:
            dead, decision = await fetch(nc, dlq_id)
            job_id = dead.job_id()
            job = (await load_job(EventStore(nc), job_id))[0] if job_id else None
            return dead, decision, job
        finally:
            await nc.close()

    try:
        dead, decision, job = asyncio.run(main())
    except Refused as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from None
    console.print(f"[bold]dead letter {dead.id}[/]\n  consumer   {dead.stream}/{dead.consumer}\n"
                  f"  message    {dead.subject} ({dead.stream} seq {dead.stream_seq})\n"
                  f"  failed at  {dead.failed_at} after {dead.num_delivered} deliveries\n  reason     {escape(dead.reason)}",
                  highlight=False)
    if job is not None:
        console.print(f"  job now    {job.status}, attempt {job.attempt}", highlight=False)
    if decision is not None:
        console.print(f"  decision   {decision.data.action} by {decision.data.by} at {decision.occurred_at}",
                      highlight=False)
    elif (refusal := dl.redrive_refusal(dead, job)) is not None:
        console.print(f"  redrive    refused: {escape(refusal)}", highlight=False)
    event = dead.event()
    console.print("[bold]original event[/]")
    console.print_json(event.to_bytes().decode() if event else json.dumps({"unreadable": dead.data}))


@dlq_app.command()
@prose
def redrive(ids: Ids, nats_url: NatsUrl = NATS_URL) -> None:
    """Put dead letters back on the log, each exactly once: the original event is republished
    to its original subject (with Nats-Msg-Id `redrive:<ID>`), so every consumer of that
    subject sees it again, and the decision is recorded; a second redrive or discard of the
    same ID is refused.

    Refused, with the reason, where a redrive would do harm or nothing: a ledger entry (it
    would append a second charge or credit: discard it and adjust the account); a job's
    job.created or job.retried once the job has moved on from that attempt's pending. A
    job that failed when its deliveries ran out was failed and refunded then; the pipeline
    does not run a failed job again, and running it again is a new, charged attempt: use
    the admin retry (POST /api/admin/jobs/<job_id>/retry), then discard the dead letter.
    A dead letter of a job still pending is processed again by the pipeline."""
    _each(nats_url, ids, redrive_one)


@dlq_app.command()
@prose
def discard(ids: Ids, nats_url: NatsUrl = NATS_URL) -> None:
    """Decide that dead letters need nothing more: recorded on the log, hidden from `list`."""
    _each(nats_url, ids, discard_one)
