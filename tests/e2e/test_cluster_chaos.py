"""Chaos on a 3-node JetStream cluster on loopback (`genrail up --cluster 3`, every stream on
3 replicas), under load: the node leading JOBS and LEDGER is killed and comes back, then
every service process is killed once. Clients behave as integrators do: an idempotency key
per job, and a 503 retried after its Retry-After.

What must hold: no answer is a 500; every job the API accepted exists and completes; no
one is charged twice; the audit and `genrail replay --verify` are clean. The longest stall
a client saw and the number of 503s are printed (`-s`) for the record.

Run it alone with `pytest -m chaos -s`."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter

import httpx
import pytest

from genrail_cli.embedded import free_port
from genrail_cli.stack import Ports, Stack
from genrail_events.audit import Logged, audit
from genrail_eventlog.store import EventStore, connect
from tests.conftest import TEST_ENV
from tests.helpers import drained, grant, register, wait_for_job

pytestmark = [pytest.mark.e2e, pytest.mark.chaos]
CLIENTS = 12
SERVICES_KILLED = ("api", "ledger", "pipeline", "projector", "webhooks")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    ports = Ports(api=free_port(), webhooks=free_port(), localprovider=free_port(), nats=free_port(),
                  postgres=free_port(), ledger_metrics=free_port(), projector_metrics=free_port(),
                  pipeline_metrics=free_port(), nats_others=(free_port(), free_port()),
                  nats_routes=(free_port(), free_port(), free_port()))
    stack = Stack(data_dir=tmp_path_factory.mktemp("cluster"), ports=ports, cluster=3, env=dict(TEST_ENV)).start(
        timeout_s=120)
    yield stack
    stack.stop()


class Load:
    """Clients creating copy jobs until told to stop, each retrying a 503 with the same key."""

    def __init__(self, api_url: str, users: list) -> None:
        self.api_url, self.users = api_url, users
        self.accepted: dict[str, object] = {}  # job id -> its user
        self.statuses: Counter[int] = Counter()
        self.longest_stall_s = 0.0
        self.stop = asyncio.Event()

    async def client(self, n: int) -> None:
        user = self.users[n % len(self.users)]
        async with httpx.AsyncClient(base_url=self.api_url, timeout=60) as api:
            while not self.stop.is_set():
                body = {"product_name": f"Boot {n}", "idempotency_key": uuid.uuid4().hex}
                started = time.monotonic()
                while True:
                    try:
                        answer = await api.post("/api/generate/copy", headers=user.headers, json=body)
                    except httpx.TransportError:  # the API process itself was killed: as a 503
                        self.statuses[0] += 1
                        await asyncio.sleep(0.5)
                        continue
                    self.statuses[answer.status_code] += 1
                    if answer.status_code != 503:
                        break
                    await asyncio.sleep(float(answer.headers.get("Retry-After", "1")))
                self.longest_stall_s = max(self.longest_stall_s, time.monotonic() - started)
                assert answer.status_code == 202, answer.text  # 402 cannot happen: credits are plenty
                self.accepted[answer.json()["id"]] = user
                await asyncio.sleep(0.05)


async def leader_of(log: EventStore, stream: str) -> str:
    info = await log.js.stream_info(stream)
    return info.cluster.leader


async def test_losing_the_leading_node_and_every_process_loses_nothing(cluster):
    stack = cluster
    nc = await connect(stack.nats_url, "tests-chaos")
    log = EventStore(nc)
    try:
        async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as api:
            users = [await register(api) for _ in range(4)]
        for user in users:
            await grant(log, user, 10_000)
        load = Load(stack.api_url, users)
        clients = [asyncio.create_task(load.client(n)) for n in range(CLIENTS)]
        await asyncio.sleep(3)

        leaders = {await leader_of(log, "JOBS"), await leader_of(log, "LEDGER")}
        victims = [node for node in stack.nats_nodes if node.name in leaders]
        for node in victims:  # the supervisor restarts it
            node.proc.send_signal(signal.SIGKILL)
        await asyncio.sleep(8)
        for name in SERVICES_KILLED:  # each killed once, restarted by the supervisor
            stack.procs[name].send_signal(signal.SIGKILL)
            await asyncio.sleep(2.5)
        await asyncio.sleep(3)
        load.stop.set()
        await asyncio.gather(*clients)

        print(f"\nchaos: {len(load.accepted)} jobs accepted; answers {dict(load.statuses)}; "
              f"longest stall {load.longest_stall_s:.1f} s; leaders killed: {sorted(leaders)}")
        assert load.statuses[500] == 0 and set(load.statuses) <= {0, 202, 503}

        async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as api:
            for job_id, user in load.accepted.items():
                job = await wait_for_job(api, user, job_id, {"completed", "failed", "expired"}, timeout_s=120)
                assert job["status"] == "completed", job
        await drained(log, timeout_s=60)
        messages = [Logged(s.seq, s.subject, s.event) for subject in ("job.>", "ledger.>")
                    for s in await log.read(subject)]
        assert audit(messages) == []
        debits = [m for m in messages if m.event.type == "ledger.debited"]
        assert len(debits) == len(load.accepted) and len({d.event.data.job_id for d in debits}) == len(debits)
    finally:
        await nc.close()

    verify = subprocess.run([sys.executable, "-m", "genrail_cli.main", "replay", "--verify", "--nats-url",
                             stack.nats_url],
                            env={**os.environ, "DATABASE_URL": stack.database_url}, capture_output=True, text=True,
                            timeout=300)
    assert verify.returncode == 0, verify.stdout[-3000:] + verify.stderr[-3000:]
