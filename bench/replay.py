"""`python -m bench.replay`: rebuild every projection from a log of 1,000,000 events.

Generates a realistic log (users registering, signup grants and purchases, jobs debited,
created, processed, completed or failed and refunded, a few retried) through the domain's
own deciders, publishes it pipelined (`publish_async`) into a fresh embedded nats-server,
then measures `rebuild` of all projections into a fresh embedded PostgreSQL next to the
raw ordered-consumer read rate of the same log on the same servers, and prints the ratio.
Only the embedded servers run: no service.

The raw read is measured before and after the rebuild and the ratio taken to their mean,
so that load from elsewhere on the machine weighs on both sides alike. The CPU time the
rebuild cost (its processes, nats-server and PostgreSQL) is printed per event too: on a
shared machine a steadier figure than the rate. `--data-dir` keeps the servers' data, and
a later run on the same directory reuses the log instead of publishing it again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from genrail_readmodels.registry import FACTORIES
from genrail_cli.replay import rebuild_all
from genrail_events import jobs, ledger, streams, users
from genrail_events.envelope import Event
from genrail_events.jobs import JobStatus as S
from genrail_events.jobs import JobType
from genrail_events.ledger import Account
from genrail_readmodels.db import create_schema, make_engine
from genrail_cli.embedded import EmbeddedNats, EmbeddedPostgres, free_port
from genrail_eventlog.store import connect, ensure_streams
from genrail_eventlog.reader import OrderedReader, stream_seq
from nats.aio.client import Client as NATS

COPY_INPUT = {"product_name": "Trailblazer 2 hiking boots", "product_description": "Waterproof leather, Vibram sole.",
              "tone": "bold", "length": "short"}
COPY_OUTPUT = {"headline": "Trailblazer 2: built for the long way round",
               "body": "Waterproof leather and a Vibram sole, for every trail you have not walked yet."}


def generate(total: int, seed: int = 7) -> Iterator[tuple[str, Event]]:
    """(subject, event) pairs, about `total` of them, in an order a busy system writes:
    jobs of many users interleaved, each job's events spread over a window of others."""
    rng = random.Random(seed)
    accounts: dict[str, Account] = {}
    emitted = 0

    def entry(e: ledger.Entry) -> tuple[str, Event]:
        accounts[e.event.data.user_id] = ledger.evolve(accounts[e.event.data.user_id], e.event)
        return e.subject, e.event

    user_ids: list[str] = []
    while emitted < total:
        wave: list[tuple[str, Event]] = []
        for _ in range(10):  # new users join
            registered = users.user_registered(f"bench-{uuid.uuid4().hex}@example.com", users.new_api_key())
            user_id = registered.data.user_id
            accounts[user_id] = Account(user_id)
            user_ids.append(user_id)
            wave += [(users.registered_subject(user_id), registered),
                     entry(ledger.decide_grant(accounts[user_id], 10, "signup", "signup"))]
        running: list[jobs.Job] = []
        for _ in range(200):  # jobs are requested
            user_id = rng.choice(user_ids)
            job_type, cost = (JobType.copy, 1) if rng.random() < 0.7 else (JobType.scrape, 2)
            if accounts[user_id].balance < cost:
                wave.append(entry(ledger.decide_purchase(accounts[user_id], f"cs_{uuid.uuid4().hex}", 100, "starter")))
            job_id = str(uuid.uuid4())
            request = ledger.JobRequest(type=job_type, cost=cost, input=COPY_INPUT)
            wave.append(entry(ledger.decide_debit(accounts[user_id], job_id, 1, cost, request)))
            created = jobs.job_created(job_id, user_id, job_type, cost, COPY_INPUT)
            wave.append((jobs.subject_for(created), created))
            running.append(jobs.evolve(None, created))
        for step in range(2):  # the pipeline works through them
            advanced = []
            for job in running:
                if step == 0:
                    to, fields = S.processing, {}
                elif rng.random() < 0.9:
                    to, fields = S.completed, {"output": COPY_OUTPUT}
                else:
                    to, fields = S.failed, {"error": "scrape provider: HTTP 503 from the page"}
                event = jobs.decide_transition(job, to, **fields)
                wave.append((jobs.subject_for(event), event))
                advanced.append(jobs.evolve(job, event))
                if to is S.failed:
                    wave.append(entry(ledger.decide_refund(accounts[job.user_id], job.id, job.attempt, job.cost,
                                                           "job failed")))
            running = advanced
        for subject, event in wave:
            yield subject, event
        emitted += len(wave)


async def publish(nc: NATS, total: int) -> tuple[int, float]:
    js = nc.jetstream(publish_async_max_pending=20_000)
    count, start = 0, time.perf_counter()
    for subject, event in generate(total):
        await js.publish_async(subject, event.to_bytes())
        count += 1
    await js.publish_async_completed()
    return count, time.perf_counter() - start


async def raw_read_rate(nc: NATS) -> tuple[int, float]:
    """Every stream read with the ordered consumer the projector's `read_batches` uses,
    counting messages without decoding them: the reference a replay's rate is a ratio of
    (once its ceiling; a replay now reads with `logread`'s pull batches, which cost less)."""
    count, start = 0, time.perf_counter()
    for spec in (streams.USERS, streams.JOBS, streams.LEDGER):
        last = (await nc.jetstream().stream_info(spec.name)).state.last_seq
        async with OrderedReader(nc, spec.name, spec.subjects, 0) as reader:
            seq = 0
            while seq < last:
                msgs = await reader.take(2000, timeout_s=5)
                seq = stream_seq(msgs[-1])
                count += len(msgs)
    return count, time.perf_counter() - start


def server_cpu_s(*servers: EmbeddedNats | EmbeddedPostgres) -> float | None:
    """CPU seconds the servers' processes have used so far: each server's own, its exited
    children's (PostgreSQL's backends, once the postmaster has reaped them) and its running
    children's. None without psutil."""
    try:
        import psutil
    except ImportError:
        return None
    total = 0.0
    for server in servers:
        try:
            root = psutil.Process(server.proc.pid)
            times = root.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
            for child in root.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    times = child.cpu_times()
                    total += times.user + times.system
        except psutil.Error:
            pass
    return total


async def main(args: argparse.Namespace) -> None:
    kept = args.data_dir is not None
    data = Path(args.data_dir) if kept else Path(tempfile.mkdtemp(prefix="genrail-bench-replay-"))
    nats_server = EmbeddedNats(data / "nats", port=free_port())
    postgres = EmbeddedPostgres(data / "postgres", port=free_port())
    try:
        nats_server.start()
        postgres.start()
        nc = await connect(nats_server.url, "bench-replay")
        await ensure_streams(nc.jetstream())
        logged = sum([(await nc.jetstream().stream_info(s.name)).state.messages
                      for s in (streams.USERS, streams.JOBS, streams.LEDGER)])
        if logged and abs(logged - args.events) <= 1000:
            print(f"reusing the {logged:,} events logged in {data}", flush=True)
        elif logged:
            raise SystemExit(f"{data} holds a log of {logged:,} events, not {args.events:,}: use another --data-dir")
        else:
            published, publish_s = await publish(nc, args.events)
            print(f"published {published} events in {publish_s:.1f} s ({published / publish_s:,.0f}/s)", flush=True)
        engine = make_engine(postgres.url, pool_size=4)
        await create_schema(engine, [s for f in FACTORIES for s in f().ddl])
        read, read_s = await raw_read_rate(nc)
        servers_before = server_cpu_s(nats_server, postgres)
        start = time.perf_counter()
        outcomes = await asyncio.to_thread(rebuild_all, [f().name for f in FACTORIES], nats_server.url, postgres.url)
        rebuild_s = time.perf_counter() - start
        servers_after = server_cpu_s(nats_server, postgres)
        read_after, read_after_s = await raw_read_rate(nc)
        for o in outcomes:
            if o.error:
                raise SystemExit(f"{o.projection}: {o.error}")
            print(f"  {o.projection:<8} {o.events:>9,} events in {o.seconds:6.1f} s ({o.events / o.seconds:,.0f}/s), "
                  f"{o.cpu_s:5.1f} s CPU, peak memory {o.max_rss_mb:,.0f} MB")
        rebuilt = sum(o.events for o in outcomes)
        rate = rebuilt / rebuild_s
        read_rates = (read / read_s, read_after / read_after_s)
        read_rate = sum(read_rates) / 2
        print(f"\nreplay benchmark ({rebuilt:,} events; one process per projection, as `genrail replay` runs; "
              f"2 cores shared by nats-server, PostgreSQL and Python)")
        print(f"  raw ordered-consumer read   {read_rate:10,.0f} events/s   (before {read_rates[0]:,.0f}, "
              f"after {read_rates[1]:,.0f})")
        print(f"  rebuild of all projections  {rate:10,.0f} events/s   ratio to raw read {rate / read_rate:.3f}")
        python_s = sum(o.cpu_s for o in outcomes)
        cpu = f"  CPU per event: rebuild processes {python_s / rebuilt * 1e6:.1f} µs"
        if servers_before is not None and servers_after is not None:
            servers = servers_after - servers_before
            cpu += (f", nats-server and PostgreSQL {servers / rebuilt * 1e6:.1f} µs: "
                    f"{(python_s + servers) / rebuilt * 1e6:.1f} µs in all")
        print(cpu)
        print(f"  target: rebuild >= 50,000 events/s -> {'met' if rate >= 50_000 else 'NOT met'}")
        await engine.dispose()
        await nc.close()
    finally:
        postgres.stop()
        nats_server.stop()
        if not kept:
            shutil.rmtree(data, ignore_errors=True)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="size of the generated log")
    parser.add_argument("--data-dir", help="keep the servers' data here (default: a temporary directory, removed "
                                           "afterwards); a log already there of about --events events is reused")
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()
