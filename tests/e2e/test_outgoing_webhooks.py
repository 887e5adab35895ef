"""Webhooks genrail sends: a job that names a `webhook` has its events delivered to a local
receiver, which verifies them with the Standard Webhooks reference library; a receiver
answering 500 three times gets the event on the fourth try, with one webhook-id; a receiver
that never answers is given up on after the retries, while another job's receiver hears of
its job at once. Retries are a fraction of a second apart here (OUTGOING_WEBHOOK_RETRY_S)."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import pytest
from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.helpers import driving, own_stack, register, wait_for_job, wait_until
from tests.servers import serve_in_thread
from tests.sites import PUBLIC_STAND_IN

pytestmark = pytest.mark.e2e
RETRIES = 4


class Receiver:
    """Endpoints `/<name>` that record what they get and answer as told: a list of statuses
    to give first (then 200), or `hang` to never answer in time."""

    def __init__(self) -> None:
        self.got: dict[str, list[tuple[dict[str, str], bytes, float]]] = defaultdict(list)
        self.plan: dict[str, list[int]] = defaultdict(list)
        self.hang: set[str] = set()

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            name = request.path_params["name"]
            self.got[name].append((dict(request.headers), await request.body(), time.monotonic()))
            if name in self.hang:
                await asyncio.sleep(5)
            return Response(status_code=self.plan[name].pop(0) if self.plan[name] else 200)

        return Starlette(routes=[Route("/{name}", hook, methods=["POST"])])


@pytest.fixture(scope="module")
def receiver():
    receiver = Receiver()
    with serve_in_thread(receiver.app(), host=PUBLIC_STAND_IN) as url:
        receiver.url = url
        yield receiver


@pytest.fixture(scope="module")
def webhook_stack(tmp_path_factory):
    env = {"OUTGOING_WEBHOOK_RETRY_S": ",".join(["0.3"] * RETRIES), "OUTGOING_WEBHOOK_TIMEOUT_S": "1",
           "OUTGOING_WEBHOOK_KEY": "tests-outgoing-webhooks-2f8c1d"}
    with own_stack(tmp_path_factory, "webhooks-out", env) as stack:
        yield stack


@pytest.fixture
async def system(webhook_stack):
    async with driving(webhook_stack, "tests-webhooks-out") as (api, log):
        yield api, log


async def deliveries(receiver: Receiver, name: str, count: int, timeout_s: float = 30) -> list:
    async def enough() -> list | None:
        return receiver.got[name] if len(receiver.got[name]) >= count else None

    return await wait_until(enough, timeout_s=timeout_s, interval_s=0.05)


async def test_a_jobs_events_arrive_signed_and_verify_with_the_reference_library(system, receiver):
    api, _ = system
    user = await register(api)
    secret = (await api.get("/v1/webhooks/secret", headers=user.headers)).json()["key"]
    job = (await api.post("/v1/generate/tts", headers=user.headers,
                          json={"text": "Hello there", "webhook": f"{receiver.url}/signed",
                                "webhook_events_filter": ["start", "output", "completed"]})).json()
    await wait_for_job(api, user, job["id"], {"completed"}, timeout_s=30)
    got = await deliveries(receiver, "signed", 3)
    events = [Webhook(secret).verify(body, headers) for headers, body, _ in got]  # raises if not signed
    assert [e["type"] for e in events] == ["job.start", "job.output", "job.completed"]
    assert events[-1]["data"]["id"] == job["id"] and events[-1]["data"]["status"] == "completed"
    assert events[-1]["data"]["output"]["files"]
    assert len({headers["webhook-id"] for headers, _, _ in got}) == 3


async def test_a_receiver_failing_three_times_gets_the_event_on_the_fourth_try(system, receiver):
    api, _ = system
    user = await register(api)
    receiver.plan["flaky"] = [500, 500, 500]
    job = (await api.post("/v1/generate/copy", headers=user.headers,
                          json={"product_name": "Boots", "webhook": f"{receiver.url}/flaky"})).json()
    got = await deliveries(receiver, "flaky", 4)
    assert len({headers["webhook-id"] for headers, _, _ in got}) == 1  # one event, tried four times
    await asyncio.sleep(1)
    assert len(receiver.got["flaky"]) == 4  # and no more once it took it
    assert job["id"] in got[-1][1].decode()


async def test_a_receiver_that_never_answers_is_given_up_on_and_holds_up_no_one(system, receiver):
    api, log = system
    user, other = await register(api), await register(api)
    receiver.hang.add("dead")
    await api.post("/v1/generate/copy", headers=user.headers,
                   json={"product_name": "Boots", "webhook": f"{receiver.url}/dead"})
    await deliveries(receiver, "dead", 1)
    started = time.monotonic()
    await api.post("/v1/generate/copy", headers=other.headers,
                   json={"product_name": "Lamp", "webhook": f"{receiver.url}/alive"})
    [(_, _, arrived)] = await deliveries(receiver, "alive", 1)
    assert arrived - started < 3, "another job's webhook waited behind a dead receiver"

    async def dead_lettered() -> bool:
        try:
            last = await log.js.get_last_msg("DLQ", "dlq.JOBS.webhooks-out")
        except Exception:  # noqa: BLE001 - nothing dead-lettered yet
            return False
        return b"/dead" in last.data and b"gave no 2xx" in last.data

    await deliveries(receiver, "dead", RETRIES + 1, timeout_s=60)
    await wait_until(dead_lettered, timeout_s=30)
    await asyncio.sleep(1.5)
    assert len(receiver.got["dead"]) == RETRIES + 1  # given up: nothing more is sent
