"""Webhooks genrail sends: a job that names a `webhook`, and an account's endpoints, have
their events delivered to a local receiver, which verifies them with the Standard Webhooks
reference library; a receiver answering 500 three times gets the event on the fourth try,
with one webhook-id, and the delivery log shows each try; a receiver that never answers is
given up on after the retries (an endpoint is then disabled, with the reason), while another
job's receiver hears of its job at once; a rotated secret signs beside the old one during
its overlap; a failed delivery is sent again on request. Retries are a fraction of a second
apart here (OUTGOING_WEBHOOK_RETRY_S)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict

import pytest
from genrail_client import AsyncGenrail, verify
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
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

    await deliveries(receiver, "dead", RETRIES + 1, timeout_s=60)
    [failed] = await delivery_log(api, user, lambda d: d["status"] == "failed")
    assert failed["attempts"] == RETRIES + 1 and failed["endpoint_id"] is None
    assert all(not t["delivered"] and t["status_code"] is None for t in failed["tries"])
    await asyncio.sleep(1.5)
    assert len(receiver.got["dead"]) == RETRIES + 1  # given up: nothing more is sent


async def delivery_log(api, user, done, timeout_s: float = 20, **params) -> list[dict]:
    """The user's deliveries once `done` holds for every one of them (the projection catches up)."""
    async def settled() -> list[dict] | None:
        answer = await api.get("/v1/webhooks/deliveries", headers=user.headers, params=params)
        assert answer.status_code == 200, answer.text
        items = answer.json()["items"]
        return items if items and all(done(d) for d in items) else None

    return await wait_until(settled, timeout_s=timeout_s, interval_s=0.1)


async def add_endpoint(api, user, url: str, **body) -> dict:
    answer = await api.post("/v1/webhooks/endpoints", headers=user.headers, json={"url": url, **body})
    assert answer.status_code == 201, answer.text
    return answer.json()


async def test_the_delivery_log_shows_every_try_of_a_flaky_receiver(system, receiver):
    api, _ = system
    user = await register(api)
    receiver.plan["logged"] = [500, 503]
    job = (await api.post("/v1/generate/copy", headers=user.headers,
                          json={"product_name": "Boots", "webhook": f"{receiver.url}/logged"})).json()
    [delivery] = await delivery_log(api, user, lambda d: d["status"] == "delivered")
    assert delivery["job_id"] == job["id"] and delivery["event_type"] == "job.completed"
    assert [t["status_code"] for t in delivery["tries"]] == [500, 503, 200]
    assert all(t["latency_ms"] >= 0 and t["outcome"].startswith("HTTP") for t in delivery["tries"])
    [(headers, body, _)] = receiver.got["logged"][-1:]
    assert headers["webhook-id"] == delivery["id"]
    one = (await api.get(f"/v1/webhooks/deliveries/{delivery['id']}", headers=user.headers)).json()
    assert one["body"].encode() == body


async def test_an_endpoint_hears_of_every_job_of_its_account_signed_with_its_own_secret(system, receiver):
    api, _ = system
    user, other = await register(api), await register(api)
    endpoint = await add_endpoint(api, user, f"{receiver.url}/account", events=["start", "completed"],
                                  description="orders")
    assert endpoint["secret"].startswith("whsec_") and endpoint["status"] == "enabled"
    listed = (await api.get("/v1/webhooks/endpoints", headers=user.headers)).json()["items"]
    assert [e["id"] for e in listed] == [endpoint["id"]] and "secret" not in listed[0]
    assert (await api.get("/v1/webhooks/endpoints", headers=other.headers)).json()["items"] == []
    await asyncio.sleep(0.3)  # the sender's view of endpoints follows the log
    mine = (await api.post("/v1/generate/tts", headers=user.headers, json={"text": "Hi"})).json()
    await api.post("/v1/generate/copy", headers=other.headers, json={"product_name": "Not yours"})
    got = await deliveries(receiver, "account", 2)
    events = [Webhook(endpoint["secret"]).verify(body, headers) for headers, body, _ in got]
    assert [e["type"] for e in events] == ["job.start", "job.completed"]
    assert {e["data"]["id"] for e in events} == {mine["id"]}
    await asyncio.sleep(1)
    assert len(receiver.got["account"]) == 2  # nothing of the other account's job, no output event
    logged = await delivery_log(api, user, lambda d: d["status"] == "delivered", endpoint_id=endpoint["id"])
    assert {d["event_type"] for d in logged} == {"job.start", "job.completed"}
    assert (await api.get(f"/v1/webhooks/deliveries/{logged[0]['id']}", headers=other.headers)).status_code == 404


async def test_a_rotated_secret_signs_beside_the_old_one_until_the_overlap_ends(system, receiver):
    api, _ = system
    user = await register(api)
    endpoint = await add_endpoint(api, user, f"{receiver.url}/rotating", events=["completed"])
    rotated = (await api.post(f"/v1/webhooks/endpoints/{endpoint['id']}/rotate-secret", headers=user.headers,
                              json={"overlap_s": 3600})).json()
    assert rotated["secret"] != endpoint["secret"] and rotated["secret_version"] == 2
    await asyncio.sleep(0.3)
    await api.post("/v1/generate/copy", headers=user.headers, json={"product_name": "Boots"})
    [(headers, body, _)] = await deliveries(receiver, "rotating", 1)
    assert Webhook(endpoint["secret"]).verify(body, headers) == Webhook(rotated["secret"]).verify(body, headers)

    again = (await api.post(f"/v1/webhooks/endpoints/{endpoint['id']}/rotate-secret", headers=user.headers,
                            json={"overlap_s": 0})).json()
    await asyncio.sleep(0.3)
    await api.post("/v1/generate/copy", headers=user.headers, json={"product_name": "Lamp"})
    (headers, body, _) = (await deliveries(receiver, "rotating", 2))[1]
    Webhook(again["secret"]).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(rotated["secret"]).verify(body, headers)


async def test_an_endpoint_that_never_answers_is_disabled_then_resent_to_when_back(system, receiver):
    api, _ = system
    user = await register(api)
    receiver.hang.add("down")
    endpoint = await add_endpoint(api, user, f"{receiver.url}/down", events=["completed"])
    await asyncio.sleep(0.3)
    await api.post("/v1/generate/copy", headers=user.headers, json={"product_name": "Boots"})
    await deliveries(receiver, "down", RETRIES + 1, timeout_s=60)

    async def disabled() -> dict | None:
        found = (await api.get(f"/v1/webhooks/endpoints/{endpoint['id']}", headers=user.headers)).json()
        return found if found["status"] == "disabled" else None

    found = await wait_until(disabled, timeout_s=30)
    assert "no 2xx in 5 tries" in found["disabled_reason"] and found["disabled_at"]
    [failed] = await delivery_log(api, user, lambda d: d["status"] == "failed")
    resent = await api.post(f"/v1/webhooks/deliveries/{failed['id']}/resend", headers=user.headers)
    assert resent.status_code == 409 and "disabled" in resent.json()["detail"]

    await api.post("/v1/generate/copy", headers=user.headers, json={"product_name": "Lamp"})
    await asyncio.sleep(1.5)
    assert len(receiver.got["down"]) == RETRIES + 1  # a disabled endpoint is sent nothing

    receiver.hang.discard("down")
    enabled = await api.patch(f"/v1/webhooks/endpoints/{endpoint['id']}", headers=user.headers,
                              json={"enabled": True})
    assert enabled.status_code == 200 and enabled.json()["status"] == "enabled"
    await asyncio.sleep(0.3)
    resent = await api.post(f"/v1/webhooks/deliveries/{failed['id']}/resend", headers=user.headers)
    assert resent.status_code == 202, resent.text
    (headers, body, _) = (await deliveries(receiver, "down", RETRIES + 2))[-1]
    assert headers["webhook-id"] == failed["id"]
    Webhook(endpoint["secret"]).verify(body, headers)
    [again] = await delivery_log(api, user, lambda d: d["status"] == "delivered", endpoint_id=endpoint["id"])
    assert again["attempts"] == RETRIES + 2 and again["tries"][-1]["delivered"]


async def test_endpoint_requests_an_attacker_might_send_are_refused_and_change_nothing(system):
    api, _ = system
    user, other = await register(api), await register(api)
    for body in ({"url": "ftp://example.com/x"}, {"url": "https://example.com/x", "events": ["everything"]},
                 {"url": "https://example.com/x", "events": []}, {"url": "https://example.com/x", "secret": "mine"}):
        answer = await api.post("/v1/webhooks/endpoints", headers=user.headers, json=body)
        assert answer.status_code == 422, (body, answer.text)
    endpoint = await add_endpoint(api, user, "https://example.com/hook")
    path = f"/v1/webhooks/endpoints/{endpoint['id']}"
    assert (await api.get(path, headers=other.headers)).status_code == 404
    assert (await api.patch(path, headers=other.headers, json={"url": "https://evil.example/"})).status_code == 404
    assert (await api.post(f"{path}/rotate-secret", headers=other.headers)).status_code == 404
    assert (await api.delete(path, headers=other.headers)).status_code == 404
    assert (await api.get(path, headers=user.headers)).json()["url"] == "https://example.com/hook"
    assert (await api.delete(path, headers=user.headers)).status_code == 204
    assert (await api.get(path, headers=user.headers)).status_code == 404
    assert (await api.patch(path, headers=user.headers, json={"enabled": True})).status_code == 404
    bad = await api.get("/v1/webhooks/deliveries", headers=user.headers, params={"status": "lost"})
    assert bad.status_code == 422


async def test_the_same_idempotency_key_adds_one_endpoint(system):
    api, _ = system
    user = await register(api)
    headers = {**user.headers, "Idempotency-Key": "hook-1"}
    first = await api.post("/v1/webhooks/endpoints", headers=headers, json={"url": "https://example.com/a"})
    again = await api.post("/v1/webhooks/endpoints", headers=headers, json={"url": "https://example.com/a"})
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true" and again.json()["id"] == first.json()["id"]
    other = await api.post("/v1/webhooks/endpoints", headers=headers, json={"url": "https://example.com/b"})
    assert other.status_code == 422


async def test_the_client_manages_endpoints_and_reads_the_delivery_log(webhook_stack, receiver):
    async with AsyncGenrail(base_url=webhook_stack.api_url) as genrail:
        await genrail.register(f"client-{uuid.uuid4().hex[:8]}@example.com")
        endpoint = await genrail.add_webhook_endpoint(f"{receiver.url}/client", events=["completed"])
        assert endpoint.secret and [e.id for e in await genrail.webhook_endpoints()] == [endpoint.id]
        rotated = await genrail.rotate_webhook_secret(endpoint.id, overlap_s=60)
        assert rotated.secret != endpoint.secret and rotated.secret_version == 2
        await asyncio.sleep(0.3)
        job = await genrail.wait(await genrail.copy("Boots"))
        [(headers, body, _)] = await deliveries(receiver, "client", 1)
        assert verify(rotated.secret, headers, body)["data"]["id"] == job.id

        async def delivered() -> list | None:
            found = await genrail.webhook_deliveries(endpoint_id=endpoint.id, status="delivered")
            return found or None

        [delivery] = await wait_until(delivered)
        assert delivery.job_id == job.id and delivery.tries[0].status_code == 200
        resent = await genrail.resend_webhook(delivery.id)
        assert resent.status == "pending"
        assert (await deliveries(receiver, "client", 2))[1][0]["webhook-id"] == delivery.id
        off = await genrail.update_webhook_endpoint(endpoint.id, enabled=False)
        assert off.status == "disabled" and off.disabled_reason == "turned off by its owner"
        await genrail.delete_webhook_endpoint(endpoint.id)
        assert await genrail.webhook_endpoints() == []
