"""Each process of the stack holds exactly one NATS connection: the one the workers'
consumers fetch on is also the one their event store appends and reads on."""

from __future__ import annotations

import asyncio
from urllib.parse import urlparse

import psutil
import pytest

from genrail_cli.stack import Stack

pytestmark = pytest.mark.e2e

CONNECTED_TO_NATS = ("api", "webhooks", "ledger", "pipeline", "projector")


def nats_connections(stack: Stack, service: str) -> int:
    nats_port = urlparse(stack.nats_url).port
    process = psutil.Process(stack.procs[service].pid)
    return sum(1 for c in process.net_connections(kind="tcp")
               if c.raddr and c.raddr.port == nats_port and c.status == psutil.CONN_ESTABLISHED)


async def test_every_process_holds_one_nats_connection(stack: Stack):
    counts: dict[str, int] = {}
    for _ in range(300):  # a process the supervisor just restarted may not have connected yet
        counts = {service: nats_connections(stack, service) for service in CONNECTED_TO_NATS}
        if all(counts.values()):
            break
        await asyncio.sleep(0.1)
    assert counts == dict.fromkeys(CONNECTED_TO_NATS, 1)
