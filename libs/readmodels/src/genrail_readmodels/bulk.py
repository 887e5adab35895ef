"""Bulk rebuilds: a projection's rows folded in memory from the log and written with COPY.

A rebuild starts from empty shadow tables and reads the log in order, so it does not need
what the incremental projections do for every batch (read the rows the batch touches, fold,
upsert them): a `Loader` folds the events into rows kept in memory, keyed as the table's
primary key, and writes them with COPY (binary, `copy_records_to_table`) in large chunks.
The rows it writes are exactly the rows the projection's `apply` writes for the same
events, column by column, `position` included (`tests/service/test_replay_bulk.py` checks
it on a log with every event type, with and without rows leaving memory early):

- rows no later event can change (ledger entries, users, api keys, batches: the first event
  for a key wins, as `ON CONFLICT DO NOTHING` does) are written whenever enough are held;
- rows later events do change (jobs, balances) are held until the end, up to
  `rows_in_memory` of them; beyond that the oldest are written early, and one that a later
  event touches again is taken back out of the table first (`DELETE ... RETURNING`) and
  folded on, from the row, as `apply` does it.

A projection without a loader here is rebuilt with its `apply`, batch by batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import msgspec
import sqlalchemy as sa
from genrail_events import jobs as job_events
from genrail_events.accounts import KeyCreated, KeyRevoked
from genrail_events.batches import BatchCreated
from genrail_events.envelope import Event, UnknownEvent
from genrail_events.ledger import LEDGER_EVENTS
from genrail_events.users import UserRegistered
from sqlalchemy.ext.asyncio import AsyncConnection

from .db import copy_rows

# The rows (of the tables whose rows later events change) a rebuild holds in memory before
# it writes the older half: a job's state is about 2 kB, so 60,000 keep a rebuild of jobs
# near 200 MB, and the rows are written while the log is still being read (a rebuild of 1M
# events that held every job until the end took 500 MB and 5 s more, writing them at the end).
ROWS_IN_MEMORY = 60_000
# Rows of append-only tables written per COPY.
CHUNK_ROWS = 20_000

Batch = Sequence[tuple[int, Event | UnknownEvent]]  # (stream sequence, event), in log order


class Loader(Protocol):
    async def absorb(self, conn: AsyncConnection, batch: Batch) -> None:
        """Fold one batch in; may write (and commit) rows through `conn`."""

    async def flush(self, conn: AsyncConnection) -> None:
        """Write every row held (and commit): the tables then hold the whole fold so far."""

    def held(self) -> int:
        """Rows held in memory, not yet written."""


def loader_for(name: str, tables: tuple[str, ...], *, rows_in_memory: int | None = None,
               chunk_rows: int | None = None) -> Loader | None:
    """The bulk loader of the projection `name` writing into `tables` (its shadow tables),
    or None when it has none."""
    rows_in_memory = ROWS_IN_MEMORY if rows_in_memory is None else rows_in_memory
    chunk_rows = CHUNK_ROWS if chunk_rows is None else chunk_rows
    if name == "jobs" and len(tables) == 1:
        return JobsLoader(tables[0], rows_in_memory=rows_in_memory)
    if name == "ledger" and len(tables) == 2:
        return LedgerLoader(*tables, rows_in_memory=rows_in_memory, chunk_rows=chunk_rows)
    if name == "users" and len(tables) == 4:
        return UsersLoader(*tables, chunk_rows=chunk_rows)
    if name == "batches" and len(tables) == 1:
        return BatchesLoader(tables[0], chunk_rows=chunk_rows)
    return None


class _Appender:
    """Rows of one append-only table, written by COPY every `chunk_rows`; the first row for
    a key wins (`INSERT ... ON CONFLICT DO NOTHING`, batch by batch and across batches)."""

    def __init__(self, table: str, columns: tuple[str, ...], chunk_rows: int):
        self.table, self.columns, self.chunk_rows = table, columns, chunk_rows
        self.rows: list[tuple] = []
        self.keys: set[Any] = set()  # every key written or held

    def add(self, key: Any, row: tuple) -> None:
        if key not in self.keys:
            self.keys.add(key)
            self.rows.append(row)

    async def write(self, conn: AsyncConnection, *, all_rows: bool = False) -> bool:
        if not self.rows or (not all_rows and len(self.rows) < self.chunk_rows):
            return False
        rows, self.rows = self.rows, []
        await copy_rows(conn, self.table, self.columns, rows)
        return True


class _LastWins:
    """Rows of one table that the last event for a key decides (no earlier state needed):
    held by key; beyond `limit` all are written, and a key written and then seen again has
    its row deleted before it is written anew."""

    def __init__(self, table: str, columns: tuple[str, ...], key_column: str, key_type: str, limit: int):
        self.table, self.columns, self.limit = table, columns, limit
        self.rows: dict[Any, tuple] = {}
        self.written: set[Any] = set()
        self._delete = sa.text(f"DELETE FROM {table} WHERE {key_column} = ANY(CAST(:keys AS {key_type}[]))")

    async def write(self, conn: AsyncConnection, *, all_rows: bool = False) -> bool:
        if not self.rows or (not all_rows and len(self.rows) <= self.limit):
            return False
        stale = [key for key in self.rows if key in self.written]
        if stale:
            await conn.execute(self._delete, {"keys": stale})
        rows, self.rows = self.rows, {}
        self.written.update(rows)
        await copy_rows(conn, self.table, self.columns, rows.values())
        return True


# --- jobs ------------------------------------------------------------------------------

class JobsLoader:
    """`jobs.make`'s `apply`, folded over the whole rebuild: each job's row is what
    `genrail_events.jobs.evolve` applied to its events in order gives, in the columns
    `jobs._params` makes of it (jsonb encoded by msgspec rather than `json`: the same JSON
    values), and the sequence of its last event.

    The fold is `fold_job` below, on rows: `evolve` builds a new frozen `Job` per event
    (`dataclasses.replace`), which was a third of a jobs rebuild's CPU; `fold_job` changes
    the row's columns in place exactly as `evolve` changes the job's fields, for the job
    events there are, and leaves any other event to `evolve` itself.
    `tests/service/test_replay_bulk.py` checks it against `evolve` event by event."""

    def __init__(self, table: str, *, rows_in_memory: int = ROWS_IN_MEMORY):
        from . import jobs as projection  # the projection imports the runner, which imports this lazily

        self.table, self.limit = table, max(rows_in_memory, 1)
        self.columns: tuple[str, ...] = projection.COLUMNS
        assert self.columns == _JOB_COLUMNS, "fold_job's row layout is the jobs table's columns"
        self._from_row = projection._from_row
        self.rows: dict[str, list] = {}  # by aggregate id, oldest first
        self.written: set[str] = set()  # rows in the table, not in memory
        self._take_back = sa.text(f"DELETE FROM {table} WHERE id = ANY(CAST(:ids AS uuid[])) RETURNING *")

    def held(self) -> int:
        return len(self.rows)

    async def absorb(self, conn: AsyncConnection, batch: Batch) -> None:
        rows, fold = self.rows, fold_job
        if self.written:
            await self._take_back_rows(conn, batch)
        for seq, event in batch:
            key = event.aggregate_id
            row = rows.get(key)
            if row is None:
                rows[key] = row = fold(None, event)
            else:
                fold(row, event)
            row[_POSITION] = seq
        if len(rows) > self.limit:
            await self._write(conn, len(rows) - self.limit // 2)

    async def flush(self, conn: AsyncConnection) -> None:
        await self._write(conn, len(self.rows))

    async def _take_back_rows(self, conn: AsyncConnection, batch: Batch) -> None:
        back = {event.aggregate_id for _, event in batch} & self.written
        if not back:
            return
        for row in await conn.execute(self._take_back, {"ids": list(back)}):
            self.rows[str(row.id)] = job_row(self._from_row(row), row.position)
        self.written.difference_update(back)
        await conn.commit()

    async def _write(self, conn: AsyncConnection, count: int) -> None:
        """Write the `count` oldest rows held and forget them."""
        if count <= 0:
            return
        rows = self.rows
        keys = list(rows) if count >= len(rows) else [key for key, _ in zip(rows, range(count))]
        records = [_job_record(rows.pop(key)) for key in keys]
        self.written.update(keys)
        await copy_rows(conn, self.table, self.columns, records)
        await conn.commit()


# A job's row while it is folded: the jobs table's columns in order, `position` last, then
# the job's provider `failures` (not a column; kept so that `evolve` gets the whole job).
_JOB_COLUMNS = ("id", "user_id", "type", "status", "cost", "input", "output", "error", "attempt", "prediction_id",
                "batch_id", "created_at", "updated_at", "position")
_ID, _USER_ID, _TYPE, _STATUS, _COST, _INPUT, _OUTPUT, _ERROR, _ATTEMPT, _PREDICTION_ID, _BATCH_ID, _CREATED_AT, \
    _UPDATED_AT, _POSITION, _FAILURES = range(15)
_ENDED = (job_events.JobStatus.failed, job_events.JobStatus.expired, job_events.JobStatus.canceled)
_PENDING = job_events.JobStatus.pending


def fold_job(row: list | None, event: Event | UnknownEvent) -> list:
    """`genrail_events.jobs.evolve` on a row: `row` (None before the job's first event)
    changed in place, or a new row, as `evolve` changes the job or makes a new one."""
    cls = type(event)
    if row is None:
        if cls is not job_events.JobCreated:
            return job_row(job_events.evolve(None, event), 0)  # evolve refuses it, or knows better
        d = event.data
        return [d.job_id, d.user_id, d.type, _PENDING, d.cost, d.input, None, None, d.attempt, None, d.batch_id,
                event.occurred_at, event.occurred_at, 0, 0]
    if cls is job_events.JobTransitioned:
        d = event.data
        row[_STATUS], row[_UPDATED_AT] = d.to, event.occurred_at
        if d.output is not None:
            row[_OUTPUT] = d.output
        if d.to in _ENDED:
            row[_ERROR] = d.error
        if d.prediction_id:
            row[_PREDICTION_ID] = d.prediction_id
    elif cls is job_events.JobProviderFailed:
        if event.data.attempt == row[_ATTEMPT]:
            row[_FAILURES] = event.data.failures
    elif cls is job_events.JobRetried:
        row[_STATUS], row[_ATTEMPT], row[_OUTPUT], row[_ERROR], row[_PREDICTION_ID], row[_FAILURES], \
            row[_UPDATED_AT] = _PENDING, event.data.attempt, None, None, None, 0, event.occurred_at
    elif cls is not job_events.JobCreated and cls is not UnknownEvent:  # a creation again changes nothing
        row[:] = job_row(job_events.evolve(_job(row), event), row[_POSITION])
    return row


def job_row(job: job_events.Job, position: int) -> list:
    return [job.id, job.user_id, job.type, job.status, job.cost, job.input, job.output, job.error, job.attempt,
            job.prediction_id, job.batch_id, job.created_at, job.updated_at, position, job.failures]


def _job(row: list) -> job_events.Job:
    return job_events.Job(id=row[_ID], user_id=row[_USER_ID], type=row[_TYPE], status=row[_STATUS], cost=row[_COST],
                          input=row[_INPUT], created_at=row[_CREATED_AT], updated_at=row[_UPDATED_AT],
                          attempt=row[_ATTEMPT], output=row[_OUTPUT], error=row[_ERROR],
                          prediction_id=row[_PREDICTION_ID], batch_id=row[_BATCH_ID], failures=row[_FAILURES])


_json = msgspec.json.Encoder()


def _job_record(row: list) -> tuple:
    """The record `jobs._params` makes of the job, in the order of `jobs.COLUMNS`."""
    output = row[_OUTPUT]
    return (row[_ID], row[_USER_ID], str(row[_TYPE]), str(row[_STATUS]), row[_COST], _json.encode(row[_INPUT]).decode(),
            None if output is None else _json.encode(output).decode(), row[_ERROR], row[_ATTEMPT],
            row[_PREDICTION_ID], row[_BATCH_ID], row[_CREATED_AT], row[_UPDATED_AT], row[_POSITION])


# --- ledger ----------------------------------------------------------------------------

class LedgerLoader:
    """`ledger.make`'s `apply`: one entry per ledger event (`ledger._row`), and each user's
    balance from their last entry."""

    def __init__(self, entries: str, balances: str, *, rows_in_memory: int = ROWS_IN_MEMORY,
                 chunk_rows: int = CHUNK_ROWS):
        from . import ledger as projection

        self.columns: tuple[str, ...] = projection.ENTRY_COLUMNS
        self._row = projection._row
        self.entries = _Appender(entries, self.columns, chunk_rows)
        self.balances = _LastWins(balances, ("user_id", "balance", "updated_at", "position"), "user_id", "uuid",
                                  max(rows_in_memory, 1))

    def held(self) -> int:
        return len(self.entries.rows) + len(self.balances.rows)

    async def absorb(self, conn: AsyncConnection, batch: Batch) -> None:
        make_row, columns = self._row, self.columns
        entries, balances = self.entries.rows, self.balances.rows
        for seq, event in batch:
            if isinstance(event, LEDGER_EVENTS):
                r = make_row(seq, event)
                entries.append(tuple([r[c] for c in columns]))  # the sequence is unique: no key to check
                balances[r["user_id"]] = (r["user_id"], r["balance_after"], r["occurred_at"], seq)
        if await self.entries.write(conn) | await self.balances.write(conn):
            await conn.commit()

    async def flush(self, conn: AsyncConnection) -> None:
        await self.entries.write(conn, all_rows=True)
        await self.balances.write(conn, all_rows=True)
        await conn.commit()


# --- users -----------------------------------------------------------------------------

class UsersLoader:
    """`users.make`'s `apply`: a user and an API key per `UserRegistered`, the first of each
    user id and of each key hash; a key and its name per `KeyCreated`; the first revocation of
    each key per `KeyRevoked`."""

    def __init__(self, users: str, api_keys: str, api_key_names: str, api_key_revocations: str, *,
                 chunk_rows: int = CHUNK_ROWS):
        self.users = _Appender(users, ("user_id", "email", "created_at"), chunk_rows)
        self.api_keys = _Appender(api_keys, ("key_hash", "user_id", "key_prefix", "created_at"), chunk_rows)
        self.names = _Appender(api_key_names, ("key_hash", "key_id", "user_id", "name"), chunk_rows)
        self.revocations = _Appender(api_key_revocations, ("user_id", "key_id", "revoked_at"), chunk_rows)

    def _all(self) -> tuple[_Appender, ...]:
        return self.users, self.api_keys, self.names, self.revocations

    def held(self) -> int:
        return sum(len(a.rows) for a in self._all())

    async def absorb(self, conn: AsyncConnection, batch: Batch) -> None:
        for _seq, event in batch:
            if isinstance(event, UserRegistered):
                d, at = event.data, event.occurred_at
                self.users.add(d.user_id, (d.user_id, d.email, at))
                self.api_keys.add(d.key_hash, (d.key_hash, d.user_id, d.key_prefix, at))
            elif isinstance(event, KeyCreated):
                c = event.data
                self.api_keys.add(c.key_hash, (c.key_hash, c.user_id, c.key_prefix, event.occurred_at))
                self.names.add(c.key_hash, (c.key_hash, c.key_id, c.user_id, c.name))
            elif isinstance(event, KeyRevoked):
                r = event.data
                self.revocations.add((r.user_id, r.key_id), (r.user_id, r.key_id, event.occurred_at))
        wrote = False
        for appender in self._all():
            wrote = await appender.write(conn) or wrote
        if wrote:
            await conn.commit()

    async def flush(self, conn: AsyncConnection) -> None:
        for appender in self._all():
            await appender.write(conn, all_rows=True)
        await conn.commit()


# --- batches ---------------------------------------------------------------------------

class BatchesLoader:
    """`batches.make`'s `apply`: a row per `BatchCreated`, the first of each batch id."""

    COLUMNS = ("id", "user_id", "prompt", "total", "image_keys", "job_ids", "cost_per_image", "created_at",
               "position")

    def __init__(self, table: str, *, chunk_rows: int = CHUNK_ROWS):
        import json

        self._dumps = json.dumps
        self.rows = _Appender(table, self.COLUMNS, chunk_rows)

    def held(self) -> int:
        return len(self.rows.rows)

    async def absorb(self, conn: AsyncConnection, batch: Batch) -> None:
        dumps = self._dumps
        for seq, event in batch:
            if isinstance(event, BatchCreated):
                d = event.data
                self.rows.add(d.batch_id, (d.batch_id, d.user_id, d.prompt, len(d.job_ids), dumps(d.image_keys),
                                           dumps(d.job_ids), d.cost_per_image, event.occurred_at, seq))
        if await self.rows.write(conn):
            await conn.commit()

    async def flush(self, conn: AsyncConnection) -> None:
        await self.rows.write(conn, all_rows=True)
        await conn.commit()
