"""Rate limits hold across API processes (they count in PostgreSQL, not in a process):
registrations per client address, job creations per user, each answered 429 with
Retry-After past the limit, and nothing appended for a refused request."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import httpx
import pytest

from genrail_cli.stack import Stack
from tests.helpers import api_process, ledger_events

COPY = {"product_name": "Trailblazer 2 hiking boots"}


@pytest.fixture
async def two_apis(stack: Stack) -> AsyncIterator[list[httpx.AsyncClient]]:
    limits = {"SIGNUPS_PER_HOUR_PER_ADDRESS": "3", "JOBS_PER_MINUTE_PER_USER": "2"}
    started = [await api_process(stack, limits), await api_process(stack, limits)]
    clients = [httpx.AsyncClient(base_url=url, timeout=30) for _, url in started]
    yield clients
    for client in clients:
        await client.aclose()
    for proc, _ in started:
        proc.terminate()
        proc.wait(timeout=30)


async def test_limits_hold_across_two_api_processes(two_apis, log) -> None:
    first, second = two_apis
    registered = []
    for n, api in enumerate((first, second, first)):
        answer = await api.post("/api/users", json={"email": f"limited-{n}-{os.getpid()}@example.com"})
        assert answer.status_code == 201, answer.text
        registered.append(answer.json())
    refused = await second.post("/api/users", json={"email": f"limited-x-{os.getpid()}@example.com"})
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert "registrations from one address" in refused.json()["detail"]

    user = registered[0]
    headers = {"Authorization": f"Bearer {user['api_key']}"}
    assert (await first.post("/api/generate/copy", json=COPY, headers=headers)).status_code == 202
    assert (await second.post("/api/generate/copy", json=COPY, headers=headers)).status_code == 202
    third = await first.post("/api/generate/copy", json=COPY, headers=headers)
    assert third.status_code == 429 and "jobs of one user" in third.json()["detail"]
    assert len(await ledger_events(log, user["user_id"], "debited")) == 2  # the refused one charged nothing
