"""`genrail quarantine`: the events projections set aside because they could not write them."""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console
from rich.table import Table

from .options import DATABASE_URL, DatabaseUrl, prose

console = Console()


@prose
def quarantine_command(database_url: DatabaseUrl = DATABASE_URL) -> None:
    """List the events a projection could not write (a row PostgreSQL refused, a history its
    code could not fold) and set aside so that it went on for everyone: the projection, the
    event's stream sequence and subject, and the error. Each is still on the log: once the
    cause is fixed, `genrail replay` rebuilds the projection with it. Exit 1 when any."""
    from genrail_readmodels.db import QUARANTINE_DDL, make_engine, quarantined, run_ddl

    async def read():
        engine = make_engine(database_url, pool_size=1)
        try:
            async with engine.begin() as conn:
                await run_ddl(conn, QUARANTINE_DDL)
                return await quarantined(conn)
        finally:
            await engine.dispose()

    rows = asyncio.run(read())
    if not rows:
        console.print("no quarantined events")
        return
    table = Table("projection", "seq", "subject", "type", "error", "at")
    for row in rows:
        table.add_row(row.projection, str(row.position), row.subject, row.event_type, row.error,
                      row.quarantined_at.isoformat(timespec="seconds"))
    console.print(table)
    raise typer.Exit(1)
