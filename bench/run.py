"""`just bench`: POST /api/generate/copy throughput and latency at 50 concurrent clients,
and create->completed jobs per second, next to raw JetStream publish and consume rates
measured in the same run on the same servers, printed as ratios (machines are noisy)."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import sqlalchemy as sa
from nats.js.api import StreamConfig

from genrail_cli.stack import Ports, Stack
from genrail_events import ledger
from genrail_platform.accounts import append_to_account
from genrail_platform.db import make_engine
from genrail_platform.embedded import free_port
from genrail_platform.eventstore import EventStore, connect

COPY = {"product_name": "Trailblazer 2 hiking boots", "product_description": "Waterproof leather, Vibram sole.",
        "tone": "bold", "length": "short"}


async def raw_jetstream(nats_url: str, n: int) -> tuple[float, float]:
    """Ceilings: pipelined publish (publish_async) and pull fetch+ack, msgs/s."""
    nc = await connect(nats_url, "bench-raw")
    js = nc.jetstream(publish_async_max_pending=4000)
    await js.add_stream(StreamConfig(name="BENCH", subjects=["bench.>"]))
    payload = b"x" * 400
    start = time.perf_counter()
    for i in range(n):
        await js.publish_async(f"bench.{i % 100}", payload)
    await js.publish_async_completed()
    publish_rate = n / (time.perf_counter() - start)
    sub = await js.pull_subscribe("bench.>", durable="bench", stream="BENCH")
    got, start = 0, time.perf_counter()
    while got < n:
        msgs = await sub.fetch(500, timeout=5)
        for m in msgs:
            await m.ack()
        got += len(msgs)
    consume_rate = n / (time.perf_counter() - start)
    await js.delete_stream("BENCH")
    await nc.close()
    return publish_rate, consume_rate


async def fund_users(api: httpx.AsyncClient, nats_url: str, clients: int, credits: int) -> list[dict]:
    users = []
    for i in range(clients):
        users.append((await api.post("/api/users", json={"email": f"bench-{time.time_ns()}-{i}@example.com"})).json())
    nc = await connect(nats_url, "bench-fund")
    store = EventStore(nc)
    for u in users:
        await append_to_account(store, u["user_id"],
                                lambda acc: ledger.decide_grant(acc, credits, "benchmark", "bench"))
    await nc.close()
    return users


async def post_load(api: httpx.AsyncClient, users: list[dict], per_client: int) -> tuple[list[float], float, int]:
    latencies: list[float] = []
    errors = 0

    async def client(user: dict) -> None:
        nonlocal errors
        headers = {"Authorization": f"Bearer {user['api_key']}"}
        for _ in range(per_client):
            t0 = time.perf_counter()
            r = await api.post("/api/generate/copy", json=COPY, headers=headers)
            latencies.append(time.perf_counter() - t0)
            errors += r.status_code != 202

    start = time.perf_counter()
    await asyncio.gather(*(client(u) for u in users))
    return latencies, time.perf_counter() - start, errors


async def wait_completed(database_url: str, user_ids: list[str], total: int, timeout_s: float) -> float:
    engine = make_engine(database_url, pool_size=1)
    deadline = time.perf_counter() + timeout_s
    async with engine.connect() as conn:
        while time.perf_counter() < deadline:
            done = (await conn.execute(sa.text(
                "SELECT count(*) FROM jobs WHERE status = 'completed' AND user_id = ANY(CAST(:u AS uuid[]))"),
                {"u": user_ids})).scalar()
            await conn.commit()
            if done >= total:
                break
            await asyncio.sleep(0.02)
    await engine.dispose()
    return time.perf_counter()


def pct(values: list[float], p: float) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * p))] * 1000


async def main(args: argparse.Namespace) -> None:
    data = Path(tempfile.mkdtemp(prefix="genrail-bench-"))
    ports = Ports(api=free_port(), webhooks=free_port(), localprovider=free_port(), nats=free_port(),
                  postgres=free_port())
    stack = Stack(data_dir=data, ports=ports, env={"LOG_LEVEL": "WARNING"}).start()
    try:
        publish_rate, consume_rate = await raw_jetstream(stack.nats_url, args.raw)
        async with httpx.AsyncClient(base_url=stack.api_url, timeout=60,
                                     limits=httpx.Limits(max_connections=args.clients + 10)) as api:
            users = await fund_users(api, stack.nats_url, args.clients, args.per_client + 10)
            await post_load(api, users[:5], 20)  # warm-up
            total = args.clients * args.per_client
            created_at = time.perf_counter()
            latencies, elapsed, errors = await post_load(api, users, args.per_client)
            finished_at = await wait_completed(stack.database_url, [u["user_id"] for u in users],
                                               total + 100, timeout_s=300)
        post_rate = total / elapsed
        complete_rate = total / (finished_at - created_at)
        print(f"\ngenrail benchmark ({args.clients} concurrent clients, {total} copy jobs, 2 cores shared by all)")
        print(f"  raw JetStream publish (pipelined)   {publish_rate:9.0f} msg/s   (ceiling)")
        print(f"  raw JetStream pull fetch+ack        {consume_rate:9.0f} msg/s   (ceiling)")
        print(f"  POST /api/generate/copy             {post_rate:9.0f} req/s   ratio to raw publish {post_rate / publish_rate:.3f}")
        print(f"    latency p50 {pct(latencies, .5):.1f} ms  p99 {pct(latencies, .99):.1f} ms  "
              f"mean {statistics.mean(latencies) * 1000:.1f} ms  errors {errors}")
        print(f"  created -> completed (visible)      {complete_rate:9.0f} jobs/s  ratio to raw consume {complete_rate / consume_rate:.3f}")
        print("  targets: created->completed >= 500 jobs/s, POST p99 <= 50 ms")
    finally:
        stack.stop()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--per-client", type=int, default=60)
    parser.add_argument("--raw", type=int, default=20000, help="messages for the raw JetStream ceilings")
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()
