"""`just bench`: POST /api/generate/copy throughput and latency at 50 concurrent clients,
and create->completed jobs per second, next to raw JetStream publish and consume rates
measured in the same run on the same servers, printed as ratios (machines are noisy)."""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import httpx
import sqlalchemy as sa
from nats.js.api import StreamConfig

from genrail_cli.stack import Ports, Stack
from genrail_events import ledger
from genrail_commands.accounts import append_to_account
from genrail_readmodels.db import make_engine
from genrail_cli.embedded import free_port
from genrail_eventlog.store import EventStore, connect

from .load import run_in_process

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


async def post_load(port: int, users: list[dict], per_client: int) -> dict:
    """The load runs in a child process, so the client does not share this event loop."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return await asyncio.get_running_loop().run_in_executor(
            pool, run_in_process, "127.0.0.1", port, [u["api_key"] for u in users], per_client, COPY)


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
    return time.time()


def pct(values: list[float], p: float) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * p))] * 1000


async def scenario(stack: Stack, api: httpx.AsyncClient, name: str, users: list[dict], per_client: int,
                   rates: tuple[float, float]) -> None:
    """One load: every user's key sent by one client (one user: the same key by every client)."""
    publish_rate, consume_rate = rates
    warmup = await post_load(stack.ports.api, users[:5], 20)
    total = len(users) * per_client
    load = await post_load(stack.ports.api, users, per_client)
    accepted = warmup["statuses"].get(202, 0) + load["statuses"].get(202, 0)
    user_ids = sorted({u["user_id"] for u in users})
    finished_at = await wait_completed(stack.database_url, user_ids, accepted, timeout_s=120)
    latencies = load["latencies"]
    post_rate = total / load["elapsed"]
    complete_rate = load["statuses"].get(202, 0) / (finished_at - load["wall_start"])
    print(f"\n{name}: {len(users)} concurrent clients, {total} copy jobs")
    print(f"  POST /api/generate/copy             {post_rate:9.0f} req/s   ratio to raw publish {post_rate / publish_rate:.3f}")
    print(f"    latency p50 {pct(latencies, .5):.1f} ms  p99 {pct(latencies, .99):.1f} ms  "
          f"mean {statistics.mean(latencies) * 1000:.1f} ms  statuses {load['statuses']} (0: dropped connection)")
    print(f"  created -> completed (visible)      {complete_rate:9.0f} jobs/s  ratio to raw consume {complete_rate / consume_rate:.3f}")


async def main(args: argparse.Namespace) -> None:
    data = Path(tempfile.mkdtemp(prefix="genrail-bench-"))
    ports = Ports(api=free_port(), webhooks=free_port(), localprovider=free_port(), nats=free_port(),
                  postgres=free_port())
    stack = Stack(data_dir=data, ports=ports, env={"LOG_LEVEL": "WARNING"}).start()
    try:
        rates = await raw_jetstream(stack.nats_url, args.raw)
        print("\ngenrail benchmark (2 cores shared by every process and the load generator)")
        print(f"  raw JetStream publish (pipelined)   {rates[0]:9.0f} msg/s   (ceiling)")
        print(f"  raw JetStream pull fetch+ack        {rates[1]:9.0f} msg/s   (ceiling)")
        async with httpx.AsyncClient(base_url=stack.api_url, timeout=60,
                                     limits=httpx.Limits(max_connections=args.clients + 10)) as api:
            users = await fund_users(api, stack.nats_url, args.clients, args.per_client + 30)
            await scenario(stack, api, f"{args.clients} users", users, args.per_client, rates)
            [busy] = await fund_users(api, stack.nats_url, 1, args.clients * args.per_client + 200)
            await scenario(stack, api, "one busy account", [busy] * args.clients, args.per_client, rates)
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
