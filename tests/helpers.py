"""Helpers the tests share: registering users, waiting for jobs, reading the log."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager, contextmanager
import subprocess
import sys
import uuid

import httpx
from nats.js.api import ConsumerInfo

from genrail_eventlog.store import EventStore

STREAMS = ("JOBS", "LEDGER", "USERS", "PAYMENTS", "BATCHES")


# The test stack's Stripe webhook secret (TEST_ENV in tests/conftest.py), so that tests can
# sign Stripe events as Stripe would; `genrail up` makes a random one per data directory.
STRIPE_WEBHOOK_SECRET = "whsec_tests_only_4c1d9e7a2b6f"


class User:
    def __init__(self, user_id: str, email: str, api_key: str):
        self.id, self.email, self.api_key = user_id, email, api_key
        self.headers = {"Authorization": f"Bearer {api_key}"}


async def register(api: httpx.AsyncClient) -> User:
    email = f"user-{uuid.uuid4().hex[:12]}@example.com"
    response = await api.post("/api/users", json={"email": email})
    assert response.status_code == 201, response.text
    body = response.json()
    return User(body["user_id"], email, body["api_key"])


async def wait_for_job(api: httpx.AsyncClient, user: User, job_id: str, statuses: set[str],
                       timeout_s: float = 30) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        response = await api.get(f"/api/jobs/{job_id}", headers=user.headers)
        assert response.status_code == 200, response.text
        job = response.json()
        if job["status"] in statuses:
            return job
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"job {job_id} still {job['status']} after {timeout_s}s: {job}")
        await asyncio.sleep(0.05)


async def ledger_events(log: EventStore, user_id: str, kind: str | None = None) -> list:
    """The user's ledger entries in order; only those of `kind` (debited, refunded…) if given."""
    events = [s.event for s in await log.read(f"ledger.{user_id}.>")]
    return [e for e in events if kind is None or e.data.kind == kind]


async def wait_until(predicate, timeout_s: float = 20, interval_s: float = 0.05):
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met after {timeout_s}s")
        await asyncio.sleep(interval_s)


async def drained(log: EventStore, consumers: list[tuple[str, str]] | None = None, *, timeout_s: float = 30,
                  calm_reads: int = 3) -> dict[tuple[str, str], ConsumerInfo]:
    """Wait until every durable consumer named (stream, durable), or every durable consumer of
    the log, has nothing left to deliver and nothing delivered but unacked (a message waiting
    for a redelivery counts as unacked), on `calm_reads` reads in a row. Returns the last
    reading; AssertionError naming what is still in flight after `timeout_s`."""
    js = log.js
    loop = asyncio.get_running_loop()
    deadline, calm = loop.time() + timeout_s, 0
    while True:
        named = consumers or [(stream, info.name) for stream in STREAMS for info in await js.consumers_info(stream)
                              if info.config.durable_name]
        infos = {key: await js.consumer_info(*key) for key in named}
        busy = {key: (i.num_pending, i.num_ack_pending) for key, i in infos.items() if i.num_pending or i.num_ack_pending}
        calm = 0 if busy else calm + 1
        if calm >= calm_reads:
            return infos
        if loop.time() > deadline:
            raise AssertionError(f"consumers still busy after {timeout_s}s (pending, ack pending): {busy}")
        await asyncio.sleep(0.05)


async def grant(log: EventStore, user: User, amount: int) -> None:
    """Credits for a test that needs more than the signup grant, appended as the ledger would."""
    from genrail_commands.accounts import append_to_account
    from genrail_events import ledger

    await append_to_account(log, user.id, lambda a: ledger.decide_grant(a, amount, "test", f"test-{uuid.uuid4()}"))


async def api_process(stack, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """Another API process on the running stack, with settings of its own: (process, URL)."""
    from genrail_cli.embedded import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "genrail_api"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**stack.environment("api", env), "API_PORT": str(port), "PUBLIC_URL": url})
    async with httpx.AsyncClient(base_url=url) as client:
        for _ in range(300):
            try:
                if (await client.get("/healthz")).status_code == 200:
                    return proc, url
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    proc.kill()
    raise AssertionError("a second API process did not start")


@asynccontextmanager
async def driving(stack, name: str):
    """An API client and the log, for a stack of a test module's own: (api, log)."""
    from genrail_eventlog.store import connect

    nc = await connect(stack.nats_url, name)
    try:
        async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as api:
            yield api, EventStore(nc)
    finally:
        await nc.close()


@contextmanager
def own_stack(tmp_path_factory, name: str, env: dict[str, str] | None = None):
    """A whole stack of a test module's own (settings of its own, on top of the tests'),
    started, and stopped after."""
    from tests.conftest import new_stack

    stack = new_stack(tmp_path_factory.mktemp(name), env=env).start()
    try:
        yield stack
    finally:
        stack.stop()
