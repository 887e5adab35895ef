"""A log the original code wrote still replays, with this code, into the same read models.

`tests/fixtures/log-fce92d7` holds every message of the log an e2e session of commit
fce92d7 wrote (see its README), and the tables that commit's projections built from it.
Here that log is republished, message by message with its original headers, into a
nats-server of its own, every projection of this code is built from it into a fresh
database, and each table must come out identical, row by row. Every recorded message must
also decode with this code, and the audit must find the old log sound.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import gzip
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from genrail_cli.embedded import EmbeddedNats, free_port
from genrail_eventlog.store import connect, ensure_streams
from genrail_events.audit import Logged, audit
from genrail_events.dead_letters import DeadLetter, is_resolution
from genrail_events.envelope import Event
from genrail_readmodels import runner
from genrail_readmodels.db import create_schema, make_engine, projection_position
from genrail_readmodels.registry import FACTORIES, ddl
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

pytestmark = pytest.mark.e2e


def decode(raw: bytes) -> Event:
    """How this code reads an event off the log. The one line to change when decoding does."""
    return Event.from_bytes(raw)


FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "log-fce92d7"
STREAMS = ("JOBS", "LEDGER", "USERS", "PAYMENTS", "BATCHES", "DLQ")
SHOWN = 15  # differences printed on failure


@functools.cache
def recorded_messages() -> tuple[dict[str, Any], ...]:
    with gzip.open(FIXTURE / "messages.jsonl.gz", "rt", encoding="utf-8") as f:
        return tuple(json.loads(line) for line in f)


@functools.cache
def recorded_tables() -> dict[str, Any]:
    with gzip.open(FIXTURE / "tables.json.gz", "rt", encoding="utf-8") as f:
        return json.load(f)


# --- the same normalisation the recording used ----------------------------------------

def normalise(value: Any, pg_type: str) -> Any:
    if value is None:
        return None
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime):
        assert value.tzinfo is not None, value
        return value.astimezone(dt.UTC).isoformat()
    if pg_type in ("json", "jsonb"):
        return json.loads(value) if isinstance(value, str) else value
    return value


async def dump_tables(engine: AsyncEngine, tables: list[str]) -> dict[str, Any]:
    """Each table's columns, their types, its primary key and its rows sorted by it."""
    out = {}
    async with engine.connect() as conn:
        for table in tables:
            types = dict((await conn.execute(sa.text(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = :t ORDER BY ordinal_position"),
                {"t": table})).all())
            pk = list((await conn.execute(sa.text(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = CAST(:t AS regclass) AND i.indisprimary "
                "ORDER BY array_position(i.indkey, a.attnum)"), {"t": table})).scalars())
            rows = [{c: normalise(v, types[c]) for c, v in r._mapping.items()}
                    for r in await conn.execute(sa.text(f"SELECT * FROM {table}"))]
            rows.sort(key=lambda row: tuple(row[c] for c in pk))
            out[table] = {"primary_key": pk, "types": types, "rows": rows}
    return out


def differences(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for table, want in expected.items():
        got = actual[table]
        if (got["types"], got["primary_key"]) != (want["types"], want["primary_key"]):
            found.append(f"{table}: columns {got['types']} pk {got['primary_key']}, "
                         f"recorded {want['types']} pk {want['primary_key']}")
            continue
        pk = want["primary_key"]
        wanted = {tuple(r[c] for c in pk): r for r in want["rows"]}
        have = {tuple(r[c] for c in pk): r for r in got["rows"]}
        for key in sorted(wanted.keys() - have.keys()):
            found.append(f"{table} {key}: missing; recorded {wanted[key]}")
        for key in sorted(have.keys() - wanted.keys()):
            found.append(f"{table} {key}: not in the recording: {have[key]}")
        for key in sorted(wanted.keys() & have.keys()):
            for column in want["types"]:
                if wanted[key][column] != have[key][column]:
                    found.append(f"{table} {key}.{column}: {have[key][column]!r}, recorded {wanted[key][column]!r}")
        if not found and got["rows"] != want["rows"]:
            found.append(f"{table}: the same rows in another order")
    return found


# --- decoding and the audit: the recording alone ------------------------------------------

def test_every_recorded_message_decodes_with_this_code():
    counts: dict[str, int] = {}
    for m in recorded_messages():
        raw = m["data"]
        if m["stream"] == "DLQ" and not is_resolution(m["subject"]):
            raw = DeadLetter.from_record(m["seq"], raw.encode()).data  # the event a dead letter holds
        event, original = decode(raw.encode()), json.loads(raw)
        assert (event.type, str(event.id), event.aggregate_id) == (
            original["type"], original["id"], original["aggregate_id"]), m
        counts[event.type] = counts.get(event.type, 0) + 1
    # The recording holds every kind of event the original code wrote.
    assert set(counts) == {"job.created", "job.transitioned", "job.retried", "job.provider_failed",
                           "user.registered", "batch.created", "payment.succeeded", "payment.reversed",
                           "dlq.resolved", *(f"ledger.{k}" for k in ("granted", "purchased", "debited",
                                                                      "refunded", "adjusted", "reversed"))}


def test_the_audit_finds_the_old_log_sound():
    # As `genrail audit` reads it: JOBS first, then LEDGER, each in its own order.
    logged = [Logged(m["seq"], m["subject"], decode(m["data"].encode()))
              for stream in ("JOBS", "LEDGER") for m in recorded_messages() if m["stream"] == stream]
    assert len(logged) == sum(recorded_tables()["last_seq"][s] for s in ("JOBS", "LEDGER"))
    violations = audit(logged)
    assert violations == [], "\n".join(f"{v.kind}: {v.message} {v.events}" for v in violations[:SHOWN])


# --- republishing and replaying --------------------------------------------------------------

@pytest.fixture(scope="module")
async def old_log(tmp_path_factory: pytest.TempPathFactory):
    """A nats-server of its own holding the recorded log, at the recorded sequences."""
    server = EmbeddedNats(tmp_path_factory.mktemp("old-log"), port=free_port()).start()
    nc = None
    try:
        nc = await connect(server.url, "old-log-replay")
        js = nc.jetstream(timeout=10)
        await ensure_streams(js)
        for m in recorded_messages():
            # With its original headers: the same message id, and the same expected last
            # subject sequence, which the server checks again and which must hold again.
            ack = await js.publish(m["subject"], m["data"].encode(), stream=m["stream"],
                                   headers=m["headers"] or None)
            assert (ack.stream, ack.seq, bool(ack.duplicate)) == (m["stream"], m["seq"], False), m
        for stream in STREAMS:
            state = (await js.stream_info(stream)).state
            assert (state.messages, state.last_seq) == (recorded_tables()["last_seq"][stream],) * 2, stream
        yield nc
    finally:
        if nc is not None:
            await nc.close()
        server.stop()


@pytest.fixture
async def fresh_database(stack):
    """A database of its own on the session's PostgreSQL, dropped afterwards."""
    name = f"oldlog_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(stack.database_url, isolation_level="AUTOCOMMIT", pool_size=1)
    try:
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        engine = make_engine(make_url(stack.database_url).set(database=name).render_as_string(hide_password=False),
                             pool_size=len(FACTORIES) * 2)  # `runner.run` holds two each
        try:
            yield engine
        finally:
            await engine.dispose()
            async with admin.connect() as conn:
                await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


async def follow_until_caught_up(nc, engine: AsyncEngine) -> None:
    """As the projector does: each projection follows the log until it reaches the end."""
    await create_schema(engine, ddl())
    stop = asyncio.Event()
    projections = [factory() for factory in FACTORIES]
    tasks = [asyncio.create_task(runner.run(nc, engine, p, stop=stop)) for p in projections]
    try:
        for projection in projections:
            end = await runner.last_position(nc, projection)
            for _ in range(300):
                async with engine.connect() as conn:
                    if await projection_position(conn, projection.name) >= end:
                        break
                if any(t.done() for t in tasks):
                    break
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.gather(*tasks)


async def rebuild(nc, engine: AsyncEngine, batch_size: int) -> None:
    """As `genrail replay` does: into shadow tables, then swapped in."""
    for factory in FACTORIES:
        result = await runner.rebuild(nc, engine, factory, batch_size=batch_size)
        assert result.swapped and result.position == await runner.last_position(nc, factory())


# Projections of streams the old log does not have: they build empty from it.
ADDED_SINCE = {"webhook_messages", "webhook_attempts", "api_key_names", "api_key_revocations"}

BUILDS = {
    "follow": follow_until_caught_up,
    "rebuild": functools.partial(rebuild, batch_size=2000),
    "rebuild-in-small-batches": functools.partial(rebuild, batch_size=7),
}


@pytest.mark.parametrize("build", list(BUILDS))
async def test_every_projection_built_from_the_old_log_gives_the_old_tables(old_log, fresh_database, build):
    await BUILDS[build](old_log, fresh_database)
    recorded = recorded_tables()
    async with fresh_database.connect() as conn:
        checkpoints = dict((await conn.execute(sa.text("SELECT name, position FROM projection_checkpoints"))).all())
    assert {name: position for name, position in checkpoints.items() if position} == recorded["checkpoints"]
    tables = [t for factory in FACTORIES for t in factory().tables]
    added_since = {t for t in tables if t not in recorded["tables"]}  # read models newer than the old log
    assert set(recorded["tables"]) <= set(tables) and added_since == ADDED_SINCE
    dumped = await dump_tables(fresh_database, tables)
    assert not any(dumped[t]["rows"] for t in added_since), "the old log holds nothing a newer read model shows"
    found = differences(recorded["tables"], {t: rows for t, rows in dumped.items() if t not in added_since})
    assert not found, (f"{len(found)} difference(s) from the tables fce92d7 built; the first {SHOWN}:\n"
                       + "\n".join(found[:SHOWN]))
