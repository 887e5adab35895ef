"""`genrail audit`: check the log's invariants from the log alone (no projection)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from genrail_events.audit import Logged, Violation, audit
from genrail_events.envelope import Event
from genrail_eventlog.store import connect, stream_for
from rich.console import Console
from rich.markup import escape

from . import logread
from .events import row
from .options import NATS_URL, NatsUrl, prose

console = Console()
# What the invariants are about. JOBS first: a refund is appended after its transition, so
# reading LEDGER second never finds a refund whose transition was not read.
AUDITED_STREAMS = ("JOBS", "LEDGER")


async def read_log(nats_url: str) -> tuple[list[Logged], dict[str, int]]:
    nc = await connect(nats_url, "genrail-audit")
    try:
        logged: list[Logged] = []
        counts: dict[str, int] = {}
        for stream in AUDITED_STREAMS:
            n = 0
            async for batch in logread.read(nc, stream):
                logged += [Logged(m.seq, m.subject, Event.from_bytes(m.data)) for m in batch]
                n += len(batch)
            counts[stream] = n
        return logged, counts
    finally:
        await nc.close()


async def evidence(nats_url: str, violations: list[Violation]) -> dict[tuple[int, str], logread.Message]:
    nc = await connect(nats_url, "genrail-audit-evidence")
    try:
        out: dict[tuple[int, str], logread.Message] = {}
        for ref in {ref for v in violations for ref in v.events}:
            message = await logread.get(nc, stream_for(ref[1]), ref[0])
            if message is not None:
                out[ref] = message
        return out
    finally:
        await nc.close()


def run_audit(nats_url: str, stuck_after_s: float = 7200) -> int:
    started = time.perf_counter()
    logged, counts = asyncio.run(read_log(nats_url))
    read_s = time.perf_counter() - started
    violations = audit(logged, now=datetime.now(UTC), stuck_after_s=stuck_after_s or None)
    total = sum(counts.values())
    console.print(f"read {', '.join(f'{n:,} {s}' for s, n in counts.items())} events in {read_s:.1f} s "
                  f"({total / max(read_s, 1e-9):,.0f}/s); audited in {time.perf_counter() - started - read_s:.1f} s")
    if not violations:
        console.print("[bold green]the log holds every invariant[/]")
        return 0
    found = asyncio.run(evidence(nats_url, violations))
    for violation in violations:
        console.print(f"[bold red]✗ {violation.kind}[/]: {escape(violation.message)}", highlight=False)
        for ref in violation.events:
            if ref in found:
                seq, when, subject, kind, what = row(found[ref])
                console.print(f"    {seq:<14} {when}  {escape(subject)}  [magenta]{kind}[/]  {escape(what)}", highlight=False)
            else:
                console.print(f"    {ref[1]} seq {ref[0]} (no longer readable)")
    console.print(f"[bold red]{len(violations)} violation(s)[/]")
    return 1


@prose
def audit_command(
    nats_url: NatsUrl = NATS_URL,
    data_dir: Annotated[Path | None, typer.Option(
        help="Audit the log kept in a stopped stack's data directory (e.g. .genrail): starts an embedded "
             "nats-server on it, on a free port, for the audit's duration")] = None,
    stuck_after: Annotated[float, typer.Option(
        "--stuck-after", help="Seconds after its last change that a job not yet final is reported stuck "
                              "(longer than every deadline of the pipeline; 0: not checked)")] = 7200,
) -> None:
    """Recompute from the log alone, with no projection: every balance is grants + purchases
    − debits + refunds ± adjustments − reversals, entry by entry; no balance below zero
    except after a payment reversal (until paid back); every failed, canceled or expired
    attempt refunded exactly once, and no other refund; no job attempt charged twice; every
    state change a legal transition; no job left unfinished (and charged) longer than
    --stuck-after. Prints each violation with the events behind it; exits 1 when there is any."""
    if data_dir is None:
        raise typer.Exit(run_audit(nats_url, stuck_after))
    from genrail_cli.embedded import EmbeddedNats, free_port

    if not (data_dir / "nats" / "jetstream").is_dir():
        console.print(f"[bold red]error:[/] no log under {data_dir / 'nats'}")
        raise typer.Exit(2)
    server = EmbeddedNats(data_dir / "nats", port=free_port()).start()
    try:
        status = run_audit(server.url, stuck_after)
    finally:
        server.stop()
    raise typer.Exit(status)
