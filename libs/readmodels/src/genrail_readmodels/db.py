"""PostgreSQL: the engine and the checkpoint table every projection writes beside its rows."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine


def make_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


CHECKPOINTS_DDL = """
CREATE TABLE IF NOT EXISTS projection_checkpoints (
    name       text PRIMARY KEY,
    position   bigint NOT NULL,
    version    integer NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
)"""

# Events a projection could not write (a row PostgreSQL refused, a history its code cannot
# fold): skipped so that the projection goes on for everyone, kept here with the error.
QUARANTINE_DDL = """
CREATE TABLE IF NOT EXISTS projection_quarantine (
    projection     text NOT NULL,
    position       bigint NOT NULL,
    subject        text NOT NULL,
    event_type     text NOT NULL,
    error          text NOT NULL,
    quarantined_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, position)
)"""


async def run_ddl(conn: AsyncConnection, statements: list[str] | str) -> None:
    for statement in [statements] if isinstance(statements, str) else statements:
        await conn.execute(sa.text(statement))


SCHEMA_LOCK = "genrail:schema"


async def create_schema(engine: AsyncEngine, statements: list[str]) -> None:
    """DDL under one advisory lock for every service: processes starting together would
    otherwise race on CREATE ... IF NOT EXISTS of shared objects (projection_checkpoints)."""
    async with engine.begin() as conn:
        await conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": SCHEMA_LOCK})
        await run_ddl(conn, [CHECKPOINTS_DDL, QUARANTINE_DDL, *statements])


async def copy_rows(conn: AsyncConnection, table: str, columns: Sequence[str], rows: Iterable[tuple]) -> None:
    """Write `rows` (tuples in the order of `columns`) into `table` with one binary COPY on
    the connection's asyncpg connection, in its transaction if it has begun one (jsonb as
    JSON text, uuid as text or UUID, as the statements of the projections take them)."""
    driver = (await conn.get_raw_connection()).driver_connection
    await driver.copy_records_to_table(table, records=rows, columns=list(columns))


async def load_checkpoint(conn: AsyncConnection, name: str) -> tuple[int, int | None]:
    row = (await conn.execute(sa.text("SELECT position, version FROM projection_checkpoints WHERE name = :n"),
                              {"n": name})).first()
    return (row[0], row[1]) if row else (0, None)


async def save_checkpoint(conn: AsyncConnection, name: str, position: int, version: int) -> None:
    await conn.execute(sa.text(
        "INSERT INTO projection_checkpoints (name, position, version) VALUES (:n, :p, :v) "
        "ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, version = EXCLUDED.version, "
        "updated_at = now()"), {"n": name, "p": position, "v": version})


async def quarantine(conn: AsyncConnection, projection: str, position: int, subject: str, event_type: str,
                     error: str) -> None:
    await conn.execute(sa.text(
        "INSERT INTO projection_quarantine (projection, position, subject, event_type, error) "
        "VALUES (:p, :pos, :s, :t, :e) ON CONFLICT (projection, position) DO UPDATE SET error = EXCLUDED.error, "
        "quarantined_at = now()"), {"p": projection, "pos": position, "s": subject, "t": event_type,
                                    "e": error[:2000]})


async def quarantined(conn: AsyncConnection) -> list[sa.Row]:
    return list(await conn.execute(sa.text(
        "SELECT projection, position, subject, event_type, error, quarantined_at FROM projection_quarantine "
        "ORDER BY projection, position")))


async def projection_position(conn: AsyncConnection, name: str) -> int:
    row = (await conn.execute(sa.text("SELECT position FROM projection_checkpoints WHERE name = :n"),
                              {"n": name})).first()
    return row[0] if row else 0


async def wait_for_position(engine: AsyncEngine, name: str, position: int, timeout_s: float) -> bool:
    """Wait (up to `timeout_s`) until the projection `name` has written the log up to
    `position`: read your own writes. False when it has not by then."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        async with engine.connect() as conn:
            if await projection_position(conn, name) >= position:
                return True
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.01)


async def wait_for_tables(engine: AsyncEngine, tables: list[str], timeout_s: float = 60) -> None:
    """Wait (up to `timeout_s`) until the projector has created `tables`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        async with engine.connect() as conn:
            found = (await conn.execute(sa.text(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = ANY(:t)"),
                {"t": tables})).scalar()
        if found == len(tables) or loop.time() > deadline:
            return
        await asyncio.sleep(0.2)
