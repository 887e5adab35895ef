"""`just bench` (`python -m bench`): genrail against the plain CRUD design it replaces, on the
same machine, in the same run, with the same client.

genrail runs first (its stack as `genrail up` runs it), is stopped, then the CRUD peer
(bench/crud: FastAPI + one SQL statement + Celery on Valkey). Each side gets, in order:

  idle memory   RSS (and PSS) of every process of the stack, started and idle, before load
  closed loop   "N users": N clients, each its own user, P jobs each; "one busy account":
                the same N clients on one user. POST/s, POST p50/p99, and created -> completed:
                jobs accepted by the load / wall time from the load's start until the last of
                them is `completed` in the side's `jobs` table (the same query on both)
  open loop     a constant offered rate, latency p50/p99/p99.9 from each request's planned
                send time (no coordinated omission)

and genrail's raw JetStream ceilings (pipelined publish, pull fetch+ack) are measured on its
nats-server in the same run. The load generator (bench/load.py) runs in a process of its own.
`--smoke` runs everything at tiny sizes (well under a minute) and fails unless it is all green.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import tempfile
import time
import uuid
import hashlib
import shutil
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import psutil
import sqlalchemy as sa
from nats.js.api import StreamConfig

from genrail_cli.stack import SERVICES, Ports, Stack
from genrail_events import ledger
from genrail_commands.accounts import append_to_account
from genrail_readmodels.db import make_engine
from genrail_cli.embedded import free_port
from genrail_eventlog.store import EventStore, connect

from .crud.schema import CREATE_USERS
from .crud.stack import CrudStack
from .load import run_in_process, run_open_in_process

COPY = {"product_name": "Trailblazer 2 hiking boots", "product_description": "Waterproof leather, Vibram sole.",
        "tone": "bold", "length": "short"}
MB = 1024 * 1024

Fund = Callable[[int, int], Awaitable[list[dict]]]  # (users, credits each) -> [{"user_id", "api_key"}]


@dataclass
class Closed:
    clients: int
    jobs: int
    post_rate: float
    latencies: list[float]
    statuses: dict[int, int]
    accepted: int
    completed: int
    complete_rate: float
    cpu: dict[str, float] = field(default_factory=dict)  # part -> CPU seconds from load start to the last completion


@dataclass
class Open:
    offered: int
    rate: float
    seconds: float
    latencies: list[float]
    statuses: dict[int, int]
    answered_rate: float
    late: int
    max_lag: float
    opened: int
    waited: int


@dataclass
class Side:
    name: str
    runs: str
    memory: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # part -> (rss, pss, processes)
    closed: dict[str, Closed] = field(default_factory=dict)
    open: Open | None = None
    raw: tuple[float, float] | None = None


# --- measuring ---------------------------------------------------------------------------

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


def cpu_seconds(tops: dict[str, int]) -> dict[str, float]:
    """CPU time (user + system) of each part: its process tree, plus what its top process
    collected from children that exited (PostgreSQL backends that closed)."""
    found = {}
    for part, pid in tops.items():
        try:
            top = psutil.Process(pid)
            times = top.cpu_times()
            total = times.user + times.system + times.children_user + times.children_system
            for proc in top.children(recursive=True):
                try:
                    times = proc.cpu_times()
                except psutil.NoSuchProcess:
                    continue
                total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
        found[part] = total
    return found


def memory(tops: dict[str, int]) -> dict[str, tuple[int, int, int]]:
    """RSS and PSS of each part: its top process and all of that one's descendants (PostgreSQL's
    backends, prefork children). RSS counts shared pages in every process that maps them (each
    PostgreSQL backend's share of shared_buffers); PSS splits them, so PSS adds up fairly."""
    found = {}
    for part, pid in tops.items():
        try:
            top = psutil.Process(pid)
            procs = [top, *top.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        rss = pss = count = 0
        for proc in procs:
            try:
                info = proc.memory_full_info()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            rss, pss, count = rss + info.rss, pss + info.pss, count + 1
        found[part] = (rss, pss, count)
    return found


async def wait_completed(database_url: str, user_ids: list[str], total: int, timeout_s: float) -> tuple[float, int]:
    """Poll the side's `jobs` table until `total` of these users' jobs are completed: (wall time, completed)."""
    engine = make_engine(database_url, pool_size=1)
    deadline = time.perf_counter() + timeout_s
    done = 0
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
    return time.time(), done


async def in_child(fn, *args) -> dict:
    """The load runs in a child process, so the client does not share this event loop."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)


async def closed_loop(port: int, database_url: str, users: list[dict], per_client: int,
                      complete_timeout_s: float, tops: dict[str, int]) -> Closed:
    """One closed-loop load: every user's key sent by one client (one user: the same key by every client)."""
    warmup = await in_child(run_in_process, "127.0.0.1", port, [u["api_key"] for u in users[:5]], 20, COPY)
    user_ids = sorted({u["user_id"] for u in users})
    await wait_completed(database_url, user_ids, warmup["statuses"].get(202, 0), complete_timeout_s)
    cpu_before = cpu_seconds(tops)
    load = await in_child(run_in_process, "127.0.0.1", port, [u["api_key"] for u in users], per_client, COPY)
    accepted = load["statuses"].get(202, 0)
    finished_at, done = await wait_completed(database_url, user_ids, accepted + warmup["statuses"].get(202, 0),
                                             complete_timeout_s)
    cpu_after = cpu_seconds(tops)
    done_of_load = max(0, done - warmup["statuses"].get(202, 0))
    return Closed(clients=len(users), jobs=len(users) * per_client, post_rate=len(users) * per_client / load["elapsed"],
                  latencies=load["latencies"], statuses=load["statuses"], accepted=accepted, completed=done_of_load,
                  complete_rate=done_of_load / (finished_at - load["wall_start"]),
                  cpu={part: cpu_after[part] - cpu_before[part] for part in cpu_after if part in cpu_before})


async def open_loop(port: int, users: list[dict], rate: float, seconds: float) -> Open:
    result = await in_child(run_open_in_process, "127.0.0.1", port, [u["api_key"] for u in users], rate, seconds, COPY)
    return Open(offered=result["offered"], rate=rate, seconds=seconds, latencies=result["latencies"],
                statuses=result["statuses"], answered_rate=len(result["latencies"]) / result["elapsed"],
                late=result["late"], max_lag=result["max_lag"], opened=result["opened"],
                waited=result["waited_for_connection"])


async def run_loads(side: Side, port: int, database_url: str, fund: Fund, args: argparse.Namespace,
                    tops: dict[str, int]) -> None:
    scenarios = [(f"{args.clients} users", args.clients, args.per_client + 30),
                 ("one busy account", 1, args.clients * args.per_client + 200)]
    for name, user_count, credits in scenarios:
        users = await fund(user_count, credits)
        if user_count == 1:
            users = users * args.clients
        result = await closed_loop(port, database_url, users, args.per_client, args.complete_timeout, tops)
        side.closed[name] = result
        print(f"  {side.name:<7} {name:<17} {result.post_rate:7.0f} POST/s  p99 {pct(result.latencies, .99):7.1f} ms"
              f"  {result.complete_rate:6.0f} jobs/s completed  {result.statuses}", flush=True)
    if args.rate > 0 and args.open_seconds > 0:
        offered = int(args.rate * args.open_seconds)
        users = await fund(args.open_users, offered // args.open_users + 50)
        side.open = result = await open_loop(port, users, args.rate, args.open_seconds)
        print(f"  {side.name:<7} open loop {args.rate:.0f}/s   p99 {pct(result.latencies, .99):7.1f} ms from plan,"
              f" {result.answered_rate:.0f} answers/s  {result.statuses}", flush=True)


# --- the two sides -----------------------------------------------------------------------

async def fund_genrail(api: httpx.AsyncClient, nats_url: str, count: int, credits: int) -> list[dict]:
    """Users registered through the API; their credits granted on the ledger, as an admin grant is."""
    users = []
    for i in range(count):
        users.append((await api.post("/api/users", json={"email": f"bench-{time.time_ns()}-{i}@example.com"})).json())
    nc = await connect(nats_url, "bench-fund")
    store = EventStore(nc)
    for u in users:
        await append_to_account(store, u["user_id"],
                                lambda acc: ledger.decide_grant(acc, credits, "benchmark", "bench"))
    await nc.close()
    return users


async def bench_genrail(args: argparse.Namespace) -> Side:
    side = Side("genrail", f"nats-server, PostgreSQL, {len(SERVICES)} Python service processes "
                           f"({', '.join(SERVICES)}), 1 of them the API")
    data = Path(tempfile.mkdtemp(prefix="genrail-bench-"))
    ports = Ports(api=free_port(), webhooks=free_port(), localprovider=free_port(), nats=free_port(),
                  postgres=free_port(), ledger_metrics=free_port(), projector_metrics=free_port(),
                  pipeline_metrics=free_port())
    print(f"starting genrail ({data})", flush=True)
    # The peer limits nothing: neither does genrail here (the bench registers its users from one address).
    stack = Stack(data_dir=data, ports=ports, env={"LOG_LEVEL": "WARNING", "SIGNUPS_PER_HOUR_PER_ADDRESS": "0"}).start()
    try:
        await asyncio.sleep(args.settle)
        tops = {name: proc.pid for name, proc in stack.procs.items()}
        tops["nats-server"] = stack.nats_nodes[0].proc.pid
        tops["postgres"] = stack.postgres.proc.pid
        side.memory = memory(tops)
        side.raw = await raw_jetstream(stack.nats_url, args.raw)
        async with httpx.AsyncClient(base_url=stack.api_url, timeout=60) as api:
            await run_loads(side, ports.api, stack.database_url,
                            lambda count, credits: fund_genrail(api, stack.nats_url, count, credits), args, tops)
    except BaseException:
        stack.stop()
        print(f"  genrail failed; its data and logs are kept in {data}", flush=True)
        raise
    stack.stop()
    discard(data, args)
    return side


async def bench_crud(args: argparse.Namespace) -> Side:
    data = Path(tempfile.mkdtemp(prefix="genrail-bench-crud-"))
    stack = CrudStack(data, pool=args.crud_pool, concurrency=args.crud_concurrency)
    side = Side("CRUD", stack.describe())
    print(f"starting the CRUD peer ({data})", flush=True)
    stack.start()
    try:
        await asyncio.sleep(args.settle)
        side.memory = memory(stack.pids())
        conn = await asyncpg.connect(stack.dsn)

        async def fund(count: int, credits: int) -> list[dict]:
            """Users and funded accounts inserted directly, with their ledger rows."""
            users = [{"user_id": str(uuid.uuid4()), "api_key": f"crud_{uuid.uuid4().hex}{uuid.uuid4().hex}"}
                     for _ in range(count)]
            await conn.execute(CREATE_USERS, [u["user_id"] for u in users],
                               [f"bench-{u['user_id']}@example.com" for u in users],
                               [hashlib.sha256(u["api_key"].encode()).hexdigest() for u in users], credits)
            return users

        try:
            await run_loads(side, stack.api_port, stack.database_url, fund, args, stack.pids())
        finally:
            await conn.close()
    except BaseException:
        stack.stop()
        print(f"  the CRUD peer failed; its data and logs are kept in {data}", flush=True)
        raise
    stack.stop()
    discard(data, args)
    return side


def discard(data: Path, args: argparse.Namespace) -> None:
    """A stack's data directory goes once the run went through (--keep keeps it, with its logs)."""
    if args.keep:
        print(f"  kept {data}", flush=True)
    else:
        shutil.rmtree(data, ignore_errors=True)


# --- printing ----------------------------------------------------------------------------

def pct(values: list[float], p: float) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * p))] * 1000 if values else float("nan")


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}×" if a is not None and b else "-"


def row(label: str, g: float | None, c: float | None, fmt: str) -> str:
    cell = lambda v: format(v, fmt) if v is not None else "-"  # noqa: E731
    return f"  {label:<34} {cell(g):>14} {cell(c):>14}   {ratio(g, c):>8}"


def report(sides: dict[str, Side], args: argparse.Namespace) -> None:
    g, c = sides.get("genrail"), sides.get("CRUD")
    pick = lambda side, fn: fn(side) if side is not None else None  # noqa: E731
    print("\n" + "=" * 80)
    print("genrail against the CRUD design: same machine (2 cores shared by every process and the load "
          "generator), same run, same client (bench/load.py, in its own process)")
    for side in (g, c):
        if side:
            print(f"  {side.name:<8} runs {side.runs}")
    if g and g.raw:
        print(f"  raw JetStream on genrail's nats-server: pipelined publish {g.raw[0]:,.0f} msg/s, "
              f"pull fetch+ack {g.raw[1]:,.0f} msg/s (ceilings)")
    print("  genrail÷CRUD above 1: genrail's figure is the higher one (better for rates; worse for latency, "
          "CPU and memory)")
    head = f"  {'':<34} {'genrail':>14} {'CRUD':>14}   {'genrail÷CRUD':>8}"

    print("\nidle memory: every process of the stack, started and idle, before any load")
    print(head)
    total = lambda side, i: sum(v[i] for v in side.memory.values()) / MB  # noqa: E731
    print(row("RSS, all processes (MB)", pick(g, lambda s: total(s, 0)), pick(c, lambda s: total(s, 0)), ",.0f"))
    print(row("PSS, all processes (MB)", pick(g, lambda s: total(s, 1)), pick(c, lambda s: total(s, 1)), ",.0f"))
    for side in (g, c):
        if side:
            parts = ", ".join(f"{name} {rss / MB:.0f}" + (f" ({n} procs)" if n > 1 else "")
                              for name, (rss, _pss, n) in side.memory.items())
            print(f"    {side.name} RSS by part (MB): {parts}")

    for name in (g or c).closed if (g or c) else ():
        gs, cs = pick(g, lambda s: s.closed.get(name)), pick(c, lambda s: s.closed.get(name))
        any_s = gs or cs
        print(f"\n{name}: {any_s.clients} concurrent clients, {any_s.jobs} copy jobs (closed loop)")
        print(head)
        print(row("POST /api/generate/copy (req/s)", gs and gs.post_rate, cs and cs.post_rate, ",.0f"))
        print(row("POST p50 (ms)", gs and pct(gs.latencies, .5), cs and pct(cs.latencies, .5), ",.1f"))
        print(row("POST p99 (ms)", gs and pct(gs.latencies, .99), cs and pct(cs.latencies, .99), ",.1f"))
        print(row("created -> completed (jobs/s)", gs and gs.complete_rate, cs and cs.complete_rate, ",.0f"))
        per_job = lambda s: sum(s.cpu.values()) * 1000 / max(1, s.completed)  # noqa: E731
        print(row("CPU per job, all processes (ms)", gs and per_job(gs), cs and per_job(cs), ",.2f"))
        for side, s in ((g, gs), (c, cs)):
            if s:
                late = "" if s.completed >= s.accepted else f"; ONLY {s.completed} COMPLETED IN TIME"
                print(f"    {side.name} statuses {s.statuses} (0: dropped connection){late}")
                print(f"    {side.name} CPU per job by part (ms): " + ", ".join(
                    f"{part} {sec * 1000 / max(1, s.completed):.2f}" for part, sec in s.cpu.items()))
        if g and gs and g.raw:
            print(f"    genrail to its raw ceilings: POST/s ÷ publish {gs.post_rate / g.raw[0]:.3f}, "
                  f"completed/s ÷ fetch+ack {gs.complete_rate / g.raw[1]:.3f}")

    go, co = pick(g, lambda s: s.open), pick(c, lambda s: s.open)
    if go or co:
        o = go or co
        print(f"\nopen loop: {o.rate:.0f} POST/s offered for {o.seconds:.0f} s ({o.offered} requests over "
              f"{args.open_users} users), latency from each request's planned send time")
        print(head)
        for label, p in (("p50 (ms)", .5), ("p99 (ms)", .99), ("p99.9 (ms)", .999)):
            print(row(label, go and pct(go.latencies, p), co and pct(co.latencies, p), ",.1f"))
        print(row("answered (req/s)", go and go.answered_rate, co and co.answered_rate, ",.0f"))
        for side, s in ((g, go), (c, co)):
            if s:
                print(f"    {side.name} statuses {s.statuses}; {s.opened} connections opened; late starts "
                      f"(> 5 ms behind plan) {s.late}, worst {s.max_lag * 1000:.1f} ms")


def problems(sides: dict[str, Side]) -> list[str]:
    """What makes a smoke run red: anything but 202, or an accepted job not completed."""
    found = []
    for side in sides.values():
        for name, s in side.closed.items():
            if set(s.statuses) != {202}:
                found.append(f"{side.name} {name}: statuses {s.statuses}")
            if s.completed < s.accepted:
                found.append(f"{side.name} {name}: {s.completed} of {s.accepted} jobs completed")
        if side.open and set(side.open.statuses) != {202}:
            found.append(f"{side.name} open loop: statuses {side.open.statuses}")
        if not side.memory:
            found.append(f"{side.name}: no memory measured")
    return found


async def main(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    sides: dict[str, Side] = {}
    if args.only in (None, "genrail"):
        sides["genrail"] = await bench_genrail(args)
    if args.only in (None, "crud"):
        sides["CRUD"] = await bench_crud(args)
    report(sides, args)
    print(f"\n(whole run {time.perf_counter() - started:.0f} s)")
    if args.smoke:
        if found := problems(sides):
            raise SystemExit("smoke run FAILED:\n  " + "\n  ".join(found))
        print("smoke run green: every request answered 202, every accepted job completed, on "
              + " and ".join(sides))


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("genrail", "crud"), help="run one side only")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients of the closed loops")
    parser.add_argument("--per-client", type=int, default=60, help="jobs each client sends")
    parser.add_argument("--rate", type=float, default=300, help="open loop: offered POST/s (0: no open loop)")
    parser.add_argument("--open-seconds", type=float, default=10, help="open loop: how long")
    parser.add_argument("--open-users", type=int, default=100, help="open loop: users the requests are spread over")
    parser.add_argument("--raw", type=int, default=20000, help="messages for the raw JetStream ceilings")
    parser.add_argument("--crud-pool", choices=("solo", "prefork"), default="solo",
                        help="the peer's Celery pool (solo: measured the cheaper per job on 2 cores, see bench/README.md)")
    parser.add_argument("--crud-concurrency", type=int, default=2, help="prefork children of the peer's worker")
    parser.add_argument("--settle", type=float, default=3, help="seconds each stack idles before memory is read")
    parser.add_argument("--complete-timeout", type=float, default=240,
                        help="seconds to wait for a load's jobs to complete")
    parser.add_argument("--keep", action="store_true", help="keep each stack's data directory and logs")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, both sides, under a minute; exits non-zero unless all is green")
    args = parser.parse_args()
    if args.smoke:
        args.clients, args.per_client, args.rate, args.open_seconds = 4, 5, 20, 2
        args.open_users, args.raw, args.settle, args.complete_timeout = 5, 2000, 1, 30
    asyncio.run(main(args))


if __name__ == "__main__":
    cli()
