"""`genrail events`: the full history of one job or one user, and the log as it grows."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import msgspec
import typer
from genrail_events import dead_letters, subjects
from genrail_events.envelope import Event
from genrail_eventlog.store import connect, stream_for
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import logread
from .options import NATS_URL, NatsUrl, prose

console = Console()
events_app = typer.Typer(help="Read the log: one job's or one user's history, or the log as it grows.",
                         invoke_without_command=True)


def key_fields(event: Event | None, data: bytes = b"") -> str:
    """The few fields that say what an event is about, for one line of a table."""
    if event is None:
        try:
            record = json.loads(data)
        except ValueError:
            return "(not an event)"
        if "reason" in record and "subject" in record:  # a dead letter record
            return f"{record['subject']} after {record.get('num_delivered')} deliveries: {record['reason']}"[:160]
        return json.dumps(record, default=str)[:160]
    d = msgspec.to_builtins(event.data)  # the fields as they are on the wire
    if event.type.startswith("ledger."):
        about = (f"job {d['job_id']} attempt {d.get('attempt')}" if d.get("job_id") else
                 f"payment {d['payment_id']}" if d.get("payment_id") else d.get("reason") or "")
        return f"{d['kind']} {d['amount']} → balance {d['balance_after']}  {about}".rstrip()
    if event.type == "job.created":
        return f"{d['type']} job, cost {d['cost']}, user {d['user_id']}"
    if event.type == "job.transitioned":
        extra = d.get("error") or d.get("reason") or ""
        return f"{d['from']} → {d['to']} (attempt {d['attempt']}) {extra}"[:160].rstrip()
    if event.type == "job.retried":
        return f"{d['from']} → pending, attempt {d['attempt']}, by {d.get('requested_by')}"
    if event.type == "user.registered":
        return f"{d['email']} (key {d.get('key_prefix')}…)"
    if event.type == "dlq.resolved":
        return f"dead letter {d['dlq_seq']} {d['action']} by {d['by']}"
    return json.dumps(d, default=str)[:160]


def row(message: logread.Message) -> tuple[str, str, str, str, str]:
    event = message.event()
    when = event.occurred_at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if event else ""
    kind = event.type if event else ("dead letter" if message.stream == "DLQ" else "?")
    return f"{message.stream}:{message.seq}", when, message.subject, kind, key_fields(event, message.data)


def table(messages: list[logread.Message], title: str) -> Table:
    out = Table(title=title, title_justify="left", show_lines=False)
    for name, style in (("seq", "dim"), ("time", ""), ("subject", "cyan"), ("type", "magenta"), ("what", "")):
        out.add_column(name, style=style, overflow="fold")
    for message in messages:
        out.add_row(*(escape(cell) for cell in row(message)))
    return out


def _in_order(messages: list[logread.Message]) -> list[logread.Message]:
    """Each stream keeps its order; across streams, by the time the events occurred."""
    return sorted(messages, key=lambda m: (m.time.timestamp() if m.time else 0.0, m.stream, m.seq))


async def _dead_letters_about(nc, job_ids: set[str]) -> list[logread.Message]:
    records = await logread.read_all(nc, "DLQ")
    about: list[logread.Message] = []
    for m in records:
        if dead_letters.is_resolution(m.subject):
            continue
        dead = dead_letters.DeadLetter.from_record(m.seq, m.data)
        if dead.job_id() in job_ids:
            about.append(m)
    wanted = {m.seq for m in about}
    about += [m for m in records if dead_letters.is_resolution(m.subject)
              and int(m.subject.rsplit(".", 1)[1]) in wanted]
    return about


async def _job_events(nc, job_id: str) -> list[logread.Message]:
    """Routed subjects and the three-token ones of an older log."""
    return [*await logread.read_all(nc, "JOBS", subjects.job_events(job_id)),
            *await logread.read_all(nc, "JOBS", subjects.legacy_job_events(job_id))]


async def job_history(nc, job_id: str) -> list[logread.Message]:
    history = await _job_events(nc, job_id)
    created = next((m.event() for m in history if m.subject.startswith("job.created.")), None)
    if created is not None:
        user_id = created.data.user_id
        history += await logread.read_all(nc, "LEDGER", f"ledger.{subjects.token(user_id)}.*.{job_id}.*")
    history += await _dead_letters_about(nc, {job_id})
    return _in_order(history)


async def user_history(nc, user_id: str) -> list[logread.Message]:
    history = await logread.read_all(nc, "USERS", f"user.*.{subjects.token(user_id)}")
    entries = await logread.read_all(nc, "LEDGER", subjects.ledger_account(user_id))
    history += entries
    job_ids = list(dict.fromkeys(e.event().data.job_id for e in entries
                                 if e.subject.split(".")[2] == "debited"))
    for job_id in job_ids:
        history += await _job_events(nc, job_id)
    history += await _dead_letters_about(nc, set(job_ids))
    return _in_order(history)


@events_app.callback()
@prose
def history(
    ctx: typer.Context,
    job: Annotated[str | None, typer.Option("--job", help="A job's id: its events, charges, refunds, dead letters")] = None,
    user: Annotated[str | None, typer.Option("--user", help="A user's id: registration, every ledger entry, "
                                                            "and the history of each of their jobs")] = None,
    nats_url: NatsUrl = NATS_URL,
) -> None:
    """The full history of one job or one user, in order (or `events tail`)."""
    if ctx.invoked_subcommand is not None:
        return
    if (job is None) == (user is None):
        console.print("[bold red]error:[/] give exactly one of --job ID or --user ID (or use `genrail events tail`)")
        raise typer.Exit(2)
    try:
        subjects.token(job or user)
    except ValueError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None

    async def main() -> list[logread.Message]:
        nc = await connect(nats_url, "genrail-events")
        try:
            return await (job_history(nc, job) if job else user_history(nc, user))
        finally:
            await nc.close()

    messages = asyncio.run(main())
    what = f"job {job}" if job else f"user {user}"
    if not messages:
        console.print(f"nothing on the log for {what}")
        raise typer.Exit(1)
    console.print(table(messages, f"{what}: {len(messages)} events"))


@events_app.command()
@prose
def tail(
    subject: Annotated[list[str] | None, typer.Option("--subject", "-s", help="Subject filter to follow, e.g. "
                                                                              "'job.>' (repeatable; default: all)")] = None,
    count: Annotated[int | None, typer.Option(help="Stop after this many events")] = None,
    nats_url: NatsUrl = NATS_URL,
) -> None:
    """Follow the log live: every event appended from now on, as it is appended. Ctrl-C stops."""
    filters = subject or ["job.>", "ledger.>", "user.>", "payment.>", "batch.>", "dlq.>"]
    try:
        targets = [(stream_for(s), s) for s in filters]
    except ValueError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None

    async def main() -> None:
        nc = await connect(nats_url, "genrail-events-tail")
        merged: asyncio.Queue[logread.Message] = asyncio.Queue()

        async def pump(stream: str, subject_filter: str, subscribed: asyncio.Event) -> None:
            async for message in logread.follow(nc, stream, subject_filter, subscribed=subscribed):
                await merged.put(message)

        ready = [asyncio.Event() for _ in targets]
        pumps = [asyncio.create_task(pump(stream, s, r)) for (stream, s), r in zip(targets, ready, strict=True)]
        try:
            await asyncio.gather(*(r.wait() for r in ready))
            Console(stderr=True).print(f"following {', '.join(filters)}", highlight=False)
            seen = 0
            while count is None or seen < count:
                seq, when, subj, kind, what = row(await merged.get())
                console.print(f"{when}  {seq:<12} {escape(subj)}  [magenta]{kind}[/]  {escape(what)}", highlight=False,
                              soft_wrap=True)
                seen += 1
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            await nc.close()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
