"""Shared fixtures: the whole stack as `genrail up` runs it, on embedded servers (or on the
servers NATS_URL / DATABASE_URL name), on free loopback ports, for the whole session.
Tests keep out of each other's way by registering users of their own."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from genrail_cli.stack import Ports, Stack
from genrail_cli.embedded import free_port
from genrail_eventlog.store import EventStore, connect

from tests.helpers import STRIPE_WEBHOOK_SECRET

# Short windows so the tests exercise the paths that must not depend on them: a 2 s
# message-id window (idempotency is proven past it) and a 3 s redelivery timeout.
TEST_ENV = {
    "STREAM_DUPLICATE_WINDOW_S": "2",
    "PIPELINE_ACK_WAIT_S": "3",
    "LOG_LEVEL": "INFO",
    "ADMIN_TOKEN": "test-admin-token-5f2c9e1a7b3d",
    # tests.sites.PUBLIC_STAND_IN: the shop sites scraped, and serving provider outputs, in tests
    "FETCH_ALLOW": "127.0.0.2/32", "PROVIDER_OUTPUT_HOSTS": "127.0.0.2",
    "SIGNUPS_PER_HOUR_PER_ADDRESS": "0",  # tests register hundreds of users from one address
    # No outgoing webhooks, but in tests/e2e/test_outgoing_webhooks.py: the fuzzer's webhook URLs
    # name hosts anywhere, and tests only ever reach loopback.
    "OUTGOING_WEBHOOK_KEY": "",
    "STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRET, "LOCALPROVIDER_STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRET,
}


def new_stack(data_dir: Path, env: dict[str, str] | None = None) -> Stack:
    ports = Ports(api=free_port(), webhooks=free_port(), localprovider=free_port(), nats=free_port(),
                  postgres=free_port(), ledger_metrics=free_port(), projector_metrics=free_port(),
                  pipeline_metrics=free_port(), mailcatcher=free_port())
    return Stack(data_dir=data_dir, ports=ports, nats_url=os.environ.get("NATS_URL") or None,
                 database_url=os.environ.get("DATABASE_URL") or None, env={**TEST_ENV, **(env or {})})


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory):
    # GENRAIL_TEST_DATA_DIR keeps the session's log after the tests, for CI's `genrail audit`.
    kept = os.environ.get("GENRAIL_TEST_DATA_DIR")
    running = new_stack(Path(kept) if kept else tmp_path_factory.mktemp("stack")).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def nats_server(tmp_path_factory: pytest.TempPathFactory):
    """A nats-server of the test module's own, for tests that need JetStream but not the stack."""
    from genrail_cli.embedded import EmbeddedNats

    server = EmbeddedNats(tmp_path_factory.mktemp("nats"), port=free_port()).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory):
    """A PostgreSQL of the test module's own, for tests that need the database but not the stack."""
    from genrail_cli.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(tmp_path_factory.mktemp("postgres"), port=free_port()).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
async def log(stack: Stack):
    nc = await connect(stack.nats_url, "tests")
    yield EventStore(nc)
    await nc.close()


@pytest.fixture(scope="session")
async def api(stack: Stack):
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30,
                                 limits=httpx.Limits(max_connections=300)) as client:
        yield client


@pytest.fixture(scope="session")
def shop():
    from tests.sites import ShopSite

    site = ShopSite().start()
    yield site
    site.stop()
