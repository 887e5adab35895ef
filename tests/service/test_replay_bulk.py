"""A bulk rebuild gives exactly the rows the incremental projections give.

`genrail replay` folds a projection in memory and writes it with COPY (`genrail_readmodels.
bulk`); the projector applies the log batch by batch with each projection's `apply`. Here
one generated log, holding every event type the projections read (and the odd ones: a job
created twice, an event type this code does not know, a v1 debit, a user and a batch
registered twice), is rebuilt both ways into the same database, one after the other, and
every table must come out the same, row by row and column by column, `position` and the
checkpoints included. The bulk rebuild runs again with tiny batches and room for a handful
of rows, so rows leave memory early and are taken back when a later event changes them.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa
from genrail_eventlog.store import connect, ensure_streams
from genrail_events import batches, jobs, ledger, users
from genrail_events.envelope import Event
from genrail_events.jobs import JobStatus as S
from genrail_events.jobs import JobType
from genrail_readmodels import bulk, logread, runner
from genrail_readmodels.db import make_engine
from genrail_readmodels.registry import FACTORIES, by_name

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def generate(seed: int = 11) -> list[tuple[str, bytes]]:
    """(subject, message) pairs: users, their credits and jobs going through every status,
    some jobs touched again long after the rest of their events, batches, and the odd events."""
    rng = random.Random(seed)
    out: list[tuple[str, bytes]] = []
    clock = iter(T0 + timedelta(milliseconds=i) for i in range(10**7))
    accounts: dict[str, ledger.Account] = {}

    def add(subject: str, event: Event) -> None:
        out.append((subject, event.to_bytes()))

    def entry(e: ledger.Entry) -> None:
        accounts[e.event.data.user_id] = ledger.evolve(accounts[e.event.data.user_id], e.event)
        add(e.subject, e.event)

    def job_subject(event: Event) -> str:  # both shapes of job subject a log holds
        kind = event.type.split(".", 1)[1]
        return f"job.{kind}.{event.aggregate_id}" if rng.random() < 0.5 else f"job.{kind}.x.{event.aggregate_id}"

    user_ids = []
    for i in range(12):
        registered = users.user_registered(f"bulk-{i}@example.com", users.new_api_key(), now=next(clock))
        add(f"user.registered.{registered.data.user_id}", registered)
        accounts[registered.data.user_id] = ledger.Account(registered.data.user_id)
        user_ids.append(registered.data.user_id)
        entry(ledger.decide_grant(accounts[registered.data.user_id], 20, "signup", "signup", now=next(clock)))
        if i % 3 == 0:
            entry(ledger.decide_purchase(accounts[registered.data.user_id], f"cs_u{i}", 100, "starter",
                                         now=next(clock)))
    # The same user registered again (another key): the first user row, both keys.
    again = users.user_registered("bulk-0@example.com", users.new_api_key(), now=next(clock))
    add(f"user.registered.{again.data.user_id}", again)

    late: list[jobs.Job] = []  # jobs that get one more event at the very end
    for n in range(160):
        user_id = rng.choice(user_ids)
        if accounts[user_id].balance < 5:
            entry(ledger.decide_purchase(accounts[user_id], f"cs_{n}", 100, "starter", now=next(clock)))
        job_type = rng.choice(list(JobType))
        job_id = str(uuid.uuid4())
        batch_id = str(uuid.uuid4()) if job_type is JobType.image_edit and rng.random() < 0.5 else None
        entry(ledger.decide_debit(accounts[user_id], job_id, 1, 2, ledger.JobRequest(
            type=job_type, cost=2, input={"prompt": f"job {n}", "n": n}, batch_id=batch_id), now=next(clock)))
        created = jobs.job_created(job_id, user_id, job_type, 2, {"prompt": f"job {n}", "n": n, "é": [1, 2.5]},
                                   batch_id=batch_id, now=next(clock))
        add(job_subject(created), created)
        job = jobs.evolve(None, created)
        if n % 17 == 0:  # a redriven dead letter: the creation again, which changes nothing
            add(job_subject(created), created)
        path = rng.choice([
            [(S.processing, {}), (S.completed, {"output": {"text": f"done {n}"}})],
            [(S.queued, {"prediction_id": f"p-{n}"}), (S.processing, {}), (S.completed, {"output": {"url": "u"}})],
            [(S.processing, {}), (S.failed, {"error": "provider said no"})],
            [(S.processing, {}), (S.expired, {"error": "too slow", "reason": "deadline"})],
            [(S.pending, None)],
            [(S.processing, {}), (S.canceled, {"reason": "user asked"})],
            [(S.failed, {"error": "bad input"})],
        ])
        for to, fields in path:
            if fields is None:  # stays pending, but a provider failure is recorded
                failed = jobs.provider_failed(job, "HTTP 503", now=next(clock))
                add(job_subject(failed), failed)
                job = jobs.evolve(job, failed)
                continue
            event = jobs.decide_transition(job, to, now=next(clock), **fields)
            add(job_subject(event), event)
            job = jobs.evolve(job, event)
            if to in jobs.REFUNDED_STATUSES:
                entry(ledger.decide_refund(accounts[user_id], job_id, job.attempt, 2, f"job {to}", now=next(clock)))
        if job.status in jobs.RETRYABLE_STATUSES and rng.random() < 0.5:
            retried = jobs.decide_retry(job, requested_by="admin", now=next(clock))
            add(job_subject(retried), retried)
            job = jobs.evolve(job, retried)
            event = jobs.decide_transition(job, S.processing, now=next(clock))
            add(job_subject(event), event)
            job = jobs.evolve(job, event)
        if n % 9 == 0:
            late.append(job)
        if n % 23 == 0:  # an event type of a newer producer: unknown here, it moves only `position`
            out.append((f"job.paused.{job_id}", json.dumps({
                "type": "job.paused", "id": str(uuid.uuid4()), "occurred_at": next(clock).isoformat(),
                "aggregate_id": job_id, "schema_version": 1, "data": {"why": "later"}}).encode()))
        if n % 31 == 0:
            entry(ledger.decide_adjustment(accounts[user_id], f"adj-{n}", 7, "goodwill", now=next(clock)))
        if n % 37 == 0:
            entry(ledger.decide_reversal(accounts[user_id], f"cs_{n}", 3, "refund", now=next(clock)))
    for i, user_id in enumerate(user_ids[:4]):  # batches, one of them twice
        created = batches.batch_created(str(uuid.uuid4()), user_id, f"make it blue {i}", [f"k{i}a", f"k{i}b"], 3,
                                        now=next(clock))
        add(f"batch.created.{created.data.batch_id}", created)
        if i == 0:
            add(f"batch.created.{created.data.batch_id}", created)
        request = ledger.BatchRequest(batch_id=created.data.batch_id, prompt=created.data.prompt,
                                      image_keys=created.data.image_keys, cost_per_image=3, cost=6)
        e = ledger.decide_debit(accounts[user_id], created.data.batch_id, 1, 6, request, now=next(clock))
        if i == 1:  # written by an older producer: schema v1, the request without its `kind`
            raw = json.loads(e.event.to_bytes())
            raw["schema_version"] = 1
            del raw["data"]["job"]["kind"]
            accounts[user_id] = ledger.evolve(accounts[user_id], e.event)
            out.append((e.subject, json.dumps(raw).encode()))
        else:
            entry(e)
    for job in late:  # long after: rows that left memory early come back
        if job.status in jobs.FINAL_STATUSES:
            failed = jobs.provider_failed(job, "late report", now=next(clock))
            add(job_subject(failed), failed)
        else:
            event = jobs.decide_transition(job, S.canceled, reason="cleanup", now=next(clock))
            add(job_subject(event), event)
            entry(ledger.decide_refund(accounts[job.user_id], job.id, job.attempt, 2, "canceled", now=next(clock)))
    return out


@pytest.fixture(scope="module")
async def logged(nats_server):
    nc = await connect(nats_server.url, "bulk-replay-test")
    js = nc.jetstream(timeout=10)
    await ensure_streams(js)
    messages = generate()
    for subject, data in messages:
        await js.publish(subject, data)
    yield nc, messages
    await nc.close()


@pytest.fixture
async def engine(postgres):
    engine = make_engine(postgres.url, pool_size=4)
    async with engine.begin() as conn:
        for factory in FACTORIES:
            for table in factory().tables:
                await conn.execute(sa.text(f"DROP TABLE IF EXISTS {table} CASCADE"))
        await conn.execute(sa.text("DROP TABLE IF EXISTS projection_checkpoints"))
    yield engine
    await engine.dispose()


async def dump(engine) -> dict[str, Any]:
    """Every table of every projection, rows in primary-key order, every column; the
    checkpoints; and each table's indexes."""
    out: dict[str, Any] = {}
    async with engine.connect() as conn:
        for factory in FACTORIES:
            for table in factory().tables:
                pk = [r[0] for r in await conn.execute(sa.text(
                    "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                    "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = CAST(:t AS regclass) AND i.indisprimary"),
                    {"t": table})]
                rows = await conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY {', '.join(pk)}"))
                out[table] = [dict(r._mapping) for r in rows]
                out[f"{table} indexes"] = sorted(r[0] for r in await conn.execute(sa.text(
                    "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = :t"),
                    {"t": table}))
        out["checkpoints"] = sorted((await conn.execute(sa.text(
            "SELECT name, position, version FROM projection_checkpoints"))).all())
    return out


async def rebuild_all(nc, engine, **kw) -> dict[str, Any]:
    for factory in FACTORIES:
        result = await runner.rebuild(nc, engine, factory, **kw)
        assert result.swapped and result.position == await runner.last_position(nc, factory())
    return await dump(engine)


def first_difference(expected: dict[str, Any], actual: dict[str, Any]) -> str | None:
    for table, rows in expected.items():
        if actual[table] == rows:
            continue
        if len(actual[table]) != len(rows):
            return f"{table}: {len(actual[table])} rows, {len(rows)} incrementally"
        for want, got in zip(rows, actual[table], strict=True):
            if want != got:
                return f"{table}: {got}\n  incrementally: {want}"
    return None


async def test_the_log_holds_every_event_type_the_projections_read(logged):
    _nc, messages = logged
    types = {json.loads(data)["type"] for _, data in messages}
    projected = {cls.__struct_config__.tag for cls in (*jobs.JOB_EVENTS, *ledger.LEDGER_EVENTS)}
    assert types >= projected | {"user.registered", "batch.created", "job.paused"}
    assert any(json.loads(data)["schema_version"] == 1 and json.loads(data)["type"] == "ledger.debited"
               for _, data in messages)


@pytest.mark.parametrize("batch_size, rows_in_memory, chunk_rows", [
    (2000, None, None),  # as `genrail replay` runs: everything in memory, one COPY a table
    (7, 5, 3),           # rows written early and taken back, COPY every few rows
    (1, 1, 1),
])
async def test_a_bulk_rebuild_gives_the_rows_the_incremental_projections_give(logged, engine, monkeypatch,
                                                                             batch_size, rows_in_memory, chunk_rows):
    nc, _ = logged
    incremental = await rebuild_all(nc, engine, bulk=False, batch_size=50)
    assert len(incremental["jobs"]) == 160 and len(incremental["ledger_entries"]) > 250
    assert {r["status"] for r in incremental["jobs"]} == {"completed", "failed", "expired", "canceled", "pending",
                                                          "processing"}
    if chunk_rows is not None:
        monkeypatch.setattr(bulk, "CHUNK_ROWS", chunk_rows)
    kw = {} if rows_in_memory is None else {"rows_in_memory": rows_in_memory}
    rebuilt = await rebuild_all(nc, engine, bulk=True, batch_size=batch_size, **kw)
    assert first_difference(incremental, rebuilt) is None, first_difference(incremental, rebuilt)
    assert rebuilt == incremental


async def test_jobs_rows_that_left_memory_are_taken_back_when_a_later_event_changes_them(logged, engine):
    """The path the comparison above relies on, seen from the loader: with room for 5 rows
    some of the late events find their job's row in the table, not in memory."""
    nc, _ = logged
    loader = bulk.loader_for("jobs", ("jobs",), rows_in_memory=5)
    assert isinstance(loader, bulk.JobsLoader)
    make_jobs = by_name()["jobs"]
    await runner.rebuild(nc, engine, make_jobs, batch_size=10)  # creates `jobs`
    async with engine.connect() as conn:
        await conn.execute(sa.text("TRUNCATE jobs"))
        await conn.commit()
        taken_back = 0
        original = loader._take_back_rows

        async def counting(conn_, batch):
            nonlocal taken_back
            before = len(loader.written)
            await original(conn_, batch)
            taken_back += before - len(loader.written)

        loader._take_back_rows = counting  # type: ignore[method-assign]
        async for batch in runner.read_events(nc, make_jobs(), 0, batch_size=10,
                                              stop_at=await runner.last_position(nc, make_jobs())):
            await loader.absorb(conn, batch)
        await loader.flush(conn)
        count = (await conn.execute(sa.text("SELECT count(*) FROM jobs"))).scalar_one()
    assert taken_back > 0
    assert count == len({json.loads(d)["aggregate_id"] for s, d in logged[1] if s.startswith("job.")})


@pytest.mark.parametrize("pull, read_bytes", [(20_000, 1 << 18), (7, 61)])
async def test_the_pull_reader_reads_what_the_ordered_consumer_reads(logged, monkeypatch, pull, read_bytes):
    """Messages with headers and without, requests for a few messages at a time and frames
    cut across reads: the same (sequence, body) pairs, in the same order, as nats-py's
    ordered consumer gives."""
    nc, messages = logged
    js = nc.jetstream()
    for i, (_subject, data) in enumerate(messages[:40]):  # a stream no projection reads, some with headers
        await js.publish(f"dlq.JOBS.test{i}", data, headers={"Nats-Msg-Id": f"dlq-{pull}-{i}"} if i % 3 else None)
    last = (await js.stream_info("DLQ")).state.last_seq

    async def read(fast: bool) -> list[tuple[int, bytes]]:
        if not fast:
            monkeypatch.setattr(logread._PullReader, "open", _unavailable)
        got = [m async for batch in logread.read_raw(nc, "DLQ", ("dlq.>",), 0, stop_at=last, batch_size=3)
               for m in batch]
        monkeypatch.undo()
        return got

    monkeypatch.setattr(logread, "PULL", pull)
    monkeypatch.setattr(logread, "READ_BYTES", read_bytes)
    fast = await read(True)
    monkeypatch.setattr(logread, "PULL", pull)
    monkeypatch.setattr(logread, "READ_BYTES", read_bytes)
    assert fast == await read(False)
    assert [seq for seq, _ in fast] == list(range(1, last + 1)) and [d for _, d in fast[-40:]] == [
        d for _, d in messages[:40]]


async def _unavailable(*_args, **_kw):
    raise logread.Unavailable("as if the connection used TLS")


async def test_a_bulk_rebuild_read_by_the_ordered_consumer_gives_the_same_rows(logged, engine, monkeypatch):
    nc, _ = logged
    fast = await rebuild_all(nc, engine, bulk=True)
    monkeypatch.setattr(logread._PullReader, "open", _unavailable)
    assert await rebuild_all(nc, engine, bulk=True) == fast


class JobNoted(Event, tag="job.noted", frozen=True, kw_only=True):
    """A job event `fold_job` has no case for: it leaves it to `evolve`."""

    data: dict[str, Any]


def random_job_events(rng: random.Random, n: int) -> list[Event]:
    """One job's events, as the system writes them and as it should not but might: every
    transition the state machine allows, retries, provider failures of this attempt and of
    an earlier one, the creation again, and events of types `fold_job` does not know."""
    clock = iter(T0 + timedelta(seconds=i) for i in range(10**6))
    batch_id = str(uuid.uuid4()) if rng.random() < 0.3 else None
    job_id = str(uuid.uuid4())
    created = jobs.job_created(job_id, str(uuid.uuid4()), rng.choice(list(JobType)), 3, {"n": n}, batch_id=batch_id,
                               now=next(clock))
    events: list[Event] = [created]
    job = jobs.evolve(None, created)
    for _ in range(rng.randint(0, 12)):
        options = sorted(jobs.TRANSITIONS[job.status] - {S.pending})
        choice = rng.random()
        if options and choice < 0.5:
            to = rng.choice(options)
            event = jobs.decide_transition(
                job, to, output=rng.choice([None, {"text": f"out {n}"}]), error=rng.choice([None, "", "it broke"]),
                prediction_id=rng.choice([None, "", f"p-{rng.randint(1, 9)}"]), reason=rng.choice([None, "why"]),
                now=next(clock))
        elif job.status in jobs.RETRYABLE_STATUSES and choice < 0.7:
            event = jobs.decide_retry(job, requested_by="admin", now=next(clock))
        elif choice < 0.8:
            event = jobs.provider_failed(job, "HTTP 503", now=next(clock))
            if rng.random() < 0.3:  # reported late, for an earlier attempt
                event = msgspec.structs.replace(event, data=msgspec.structs.replace(event.data,
                                                                                   attempt=job.attempt - 1))
        elif choice < 0.87:
            event = created
        elif choice < 0.94:
            event = jobs.UnknownEvent(type="job.paused", id=uuid.uuid4(), occurred_at=next(clock),
                                      aggregate_id=job_id, data={"why": "later"})
        else:
            event = JobNoted(aggregate_id=job_id, occurred_at=next(clock), data={"note": "hi"})
        events.append(event)
        job = jobs.evolve(job, event)
    return events


def test_fold_job_changes_a_row_as_evolve_changes_the_job():
    rng = random.Random(5)
    seen: set[str] = set()
    for n in range(400):
        job, row = None, None
        for event in random_job_events(rng, n):
            seen.add(type(event).__name__)
            job = jobs.evolve(job, event)
            row = bulk.fold_job(row, event)
            assert row == bulk.job_row(job, 0), (event, job)
    assert seen == {"JobCreated", "JobTransitioned", "JobRetried", "JobProviderFailed", "UnknownEvent", "JobNoted"}


def test_fold_job_refuses_what_evolve_refuses():
    job_id = str(uuid.uuid4())
    created = jobs.job_created(job_id, str(uuid.uuid4()), JobType.copy, 1, {}, now=T0)
    transitioned = jobs.decide_transition(jobs.evolve(None, created), S.processing, now=T0)
    with pytest.raises(ValueError, match="before job.created"):
        jobs.evolve(None, transitioned)
    with pytest.raises(ValueError, match="before job.created"):
        bulk.fold_job(None, transitioned)


async def test_a_pull_that_breaks_off_starts_again_after_the_last_message_received(logged, monkeypatch):
    nc, _ = logged
    last = (await nc.jetstream().stream_info("JOBS")).state.last_seq
    expected = [m async for batch in logread.read_raw(nc, "JOBS", ("job.>",), 0, stop_at=last, batch_size=50)
                for m in batch]
    monkeypatch.setattr(logread, "READ_BYTES", 997)
    original, broken = logread._PullReader.messages, []

    async def breaking_off(self, stop_at):
        async for chunk in original(self, stop_at):
            yield chunk
            if len(broken) < 3:  # three times, each after one chunk: as a dropped connection would
                broken.append(chunk[-1][0])
                raise logread._BrokenOff("as if the connection dropped")

    monkeypatch.setattr(logread._PullReader, "messages", breaking_off)
    got = [m async for batch in logread.read_raw(nc, "JOBS", ("job.>",), 0, stop_at=last, batch_size=50)
           for m in batch]
    assert len(broken) == 3 and got == expected

    async def never_delivering(self, stop_at):  # breaks off before any message, every time: it gives up
        raise logread._BrokenOff("as if the consumer were deleted")
        yield

    monkeypatch.setattr(logread._PullReader, "messages", never_delivering)
    with pytest.raises(RuntimeError, match="as if the consumer were deleted"):
        async for _ in logread.read_raw(nc, "JOBS", ("job.>",), 0, stop_at=last, batch_size=50):
            pass
