"""`python -m bench.account`: what one account's size costs each of its appends.

Every ledger entry expects the last sequence on its account's filter `ledger.<user>.>`.
The server answers that by walking every subject of the account in the stream's last
block, so a busy account's appends slow down as its entries pile up (until the block
rolls over). This bench grows one account by `--step` debits at a time through the
account writer (as the API appends them) and, after each step, times as many debits of a
fresh account in the same stream: the ratio is the cost of the account's size alone.
It also times JetStream's atomic batches (two messages, all or none), the way to keep an
account's head on one literal subject, to show why that is not used.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from genrail_cli.embedded import EmbeddedNats, free_port
from genrail_commands.accounts import AccountWriter
from genrail_eventlog.store import EventStore, connect, ensure_streams
from genrail_events import ledger
from genrail_events.jobs import JobType
from nats.js.api import StreamConfig

REQUEST = ledger.JobRequest(type=JobType.copy, input={"product_name": "Mug"}, cost=1)


async def debits(writer: AccountWriter, user: str, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        job_id = str(uuid.uuid4())
        await writer.append(user, lambda a, j=job_id: ledger.decide_debit(a, j, 1, 1, REQUEST))
    return n / (time.perf_counter() - start)


async def atomic_batches(store: EventStore, n: int) -> float:
    await store.js.add_stream(StreamConfig(name="BENCHATOMIC", subjects=["benchatomic.>"], allow_atomic=True))
    start = time.perf_counter()
    for _ in range(n):
        batch = uuid.uuid4().hex
        await store.nc.publish(f"benchatomic.entry.{uuid.uuid4()}", b"x" * 300,
                               headers={"Nats-Batch-Id": batch, "Nats-Batch-Sequence": "1"})
        await store.nc.request("benchatomic.head", b"h", timeout=5, headers={
            "Nats-Batch-Id": batch, "Nats-Batch-Sequence": "2", "Nats-Batch-Commit": "1"})
    return n / (time.perf_counter() - start)


async def main(args: argparse.Namespace) -> None:
    server = EmbeddedNats(Path(tempfile.mkdtemp(prefix="genrail-bench-account-")), port=free_port()).start()
    try:
        nc = await connect(server.url, "bench-account")
        store = EventStore(nc)
        await ensure_streams(store.js)
        writer, busy = AccountWriter(store, remember=True), str(uuid.uuid4())
        await writer.append(busy, lambda a: ledger.decide_grant(a, 10_000_000, "bench", "bench"))
        print(f"\none account growing by {args.step:,} debits a step (appends/s, one at a time)")
        print(f"{'entries':>9} {'this account':>13} {'a fresh one':>12} {'ratio':>7}")
        for done in range(args.step, args.entries + 1, args.step):
            grown = await debits(writer, busy, args.step)
            fresh = str(uuid.uuid4())
            await writer.append(fresh, lambda a: ledger.decide_grant(a, 10_000, "bench", "bench"))
            baseline = await debits(writer, fresh, min(args.step, 1_000))
            print(f"{done:>9,} {grown:>13,.0f} {baseline:>12,.0f} {grown / baseline:>6.2f}×")
        print(f"\nJetStream atomic batch of two messages: {await atomic_batches(store, 300):,.0f} batches/s "
              f"(one at a time, same server)")
        await nc.close()
    finally:
        server.stop()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=12_000, help="debits of the growing account in all")
    parser.add_argument("--step", type=int, default=2_000)
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()
