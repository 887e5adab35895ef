"""`genrail dlq`: list, inspect, redrive and discard dead letters (the decisions themselves
are `genrail_commands.dead_letters`, which the studio's admin page shares); `list` shows
the undecided ones."""

from __future__ import annotations

import asyncio
import getpass
import json
import socket
from typing import Annotated

import typer
from genrail_events import dead_letters as dl
from genrail_eventlog.store import EventStore, connect
from genrail_commands import dead_letters
from genrail_commands.dead_letters import Refused
from genrail_commands.jobs import load_job
from nats.aio.client import Client as NATS
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .options import NATS_URL, NatsUrl, prose

console = Console()
dlq_app = typer.Typer(help="Dead letters: messages that failed every delivery, with the reason.",
                      no_args_is_help=True)
Ids = Annotated[list[int], typer.Argument(help="Dead letter IDs (their DLQ sequence, as `list` shows)")]


def operator() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


async def redrive_one(nc: NATS, dlq_id: int) -> str:
    return await dead_letters.redrive(EventStore(nc), dlq_id, by=operator())


async def discard_one(nc: NATS, dlq_id: int) -> str:
    return await dead_letters.discard(EventStore(nc), dlq_id, by=operator())


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
            return await dead_letters.load(EventStore(nc))
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
            dead, decision = await dead_letters.fetch(EventStore(nc), dlq_id)
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
