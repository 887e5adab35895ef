"""deploy/nats/users.conf, on a real nats-server: the whole stack runs with one NATS user per
service and every kind of job, cancel, refund, admin adjustment and outgoing webhook (an
endpoint's messages, tries and disabling) goes through without a single permission violation; and a service's user cannot write what another service owns,
nor delete a stream."""

from __future__ import annotations

import asyncio
import io
import secrets
from pathlib import Path

import httpx
import nats
import pytest
from PIL import Image

from genrail_cli.embedded import EmbeddedNats, free_port
from genrail_cli.stack import Ports, Stack
from tests.conftest import TEST_ENV
from tests.helpers import register, wait_for_job

USERS_CONF = Path(__file__).resolve().parents[2] / "deploy" / "nats" / "users.conf"
SERVICES = ("api", "pipeline", "webhooks", "ledger", "projector")
# A letter first: nats-server reads an environment value that starts with a digit as a number
# (and fails to start when the rest is not one), as deploy/README.md's `openssl rand -hex` could.
PASSWORDS = {user: "pw" + secrets.token_hex(12) for user in (*SERVICES, "operator")}
ADMIN = {"Authorization": f"Bearer {TEST_ENV['ADMIN_TOKEN']}"}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    root = tmp_path_factory.mktemp("guarded")
    server = EmbeddedNats(root / "nats", port=free_port(), include=USERS_CONF,
                          env={f"NATS_{user.upper()}_PASSWORD": password for user, password in PASSWORDS.items()})
    server.start()

    def url(user: str) -> str:
        return f"nats://{user}:{PASSWORDS[user]}@127.0.0.1:{server.port}"

    ports = Ports(api=free_port(), webhooks=free_port(), localprovider=free_port(), nats=server.port,
                  postgres=free_port(), ledger_metrics=free_port(), projector_metrics=free_port(),
                  pipeline_metrics=free_port())
    env = {**TEST_ENV, "OUTGOING_WEBHOOK_KEY": "permissions-test-key", "OUTGOING_WEBHOOK_RETRY_S": "0.2,0.2"}
    stack = Stack(data_dir=root / "stack", ports=ports, nats_url=url("operator"), env=env,
                  service_env={name: {"NATS_URL": url(name)} for name in SERVICES}).start()
    yield stack, server, url
    stack.stop()
    server.stop()


def violations(server: EmbeddedNats) -> list[str]:
    text = (server.data_dir / "nats-server.log").read_text(errors="replace")
    return [line for line in text.splitlines() if "Violation" in line]


async def test_the_whole_stack_runs_with_a_user_per_service(guarded, shop):
    stack, server, _ = guarded
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as api:
        user = await register(api)
        adjusted = await api.post(f"/api/admin/users/{user.id}/credits", headers=ADMIN,
                                  json={"amount": 20, "reason": "permissions test"})
        assert adjusted.status_code == 201, adjusted.text
        # The shop answers no POST: the endpoint's deliveries fail and the pipeline disables it.
        endpoint = (await api.post("/v1/webhooks/endpoints", headers=user.headers,
                                   json={"url": shop.url("/hooks"), "events": ["completed"]})).json()
        await asyncio.sleep(0.3)
        copy = (await api.post("/api/generate/copy", headers=user.headers,
                               json={"product_name": "Trailblazer 2"})).json()["id"]
        ad = (await api.post("/api/generate/static-ad", headers=user.headers,
                             json={"headline": "Go far", "cta": "Shop", "style": "vibrant",
                                   "product_image_url": shop.url("/img/product.png")})).json()["id"]
        refused = (await api.post("/api/generate/scrape", headers=user.headers,
                                  json={"url": "http://127.0.0.1:9/"})).json()["id"]  # loopback: fails, refunded
        video = (await api.post("/api/generate/ugc-video", headers=user.headers,
                                json={"script": "cancel me", "duration_s": 8})).json()["id"]
        assert (await api.post(f"/api/jobs/{video}/cancel", headers=user.headers)).status_code == 200
        picture = io.BytesIO()
        Image.new("RGB", (64, 48), (10, 120, 200)).save(picture, "PNG")
        key = (await api.post("/api/uploads", headers=user.headers,
                              files={"file": ("p.png", picture.getvalue(), "image/png")})).json()["key"]
        batch = (await api.post("/api/batches", headers=user.headers,
                                json={"prompt": "sepia", "image_keys": [key]})).json()["id"]
        for job_id, status in ((copy, "completed"), (ad, "completed"), (refused, "failed"), (video, "canceled")):
            assert (await wait_for_job(api, user, job_id, {status, "failed", "expired"}, timeout_s=60))["status"] \
                == status
        for _ in range(300):
            if (await api.get(f"/api/batches/{batch}", headers=user.headers)).json()["status"] != "processing":
                break
            await asyncio.sleep(0.1)
        assert (await api.get(f"/api/batches/{batch}", headers=user.headers)).json()["status"] == "completed"

        async def refunded() -> int:
            return (await api.get("/api/credits", headers=user.headers)).json()["balance"]

        for _ in range(200):  # signup 10 + 20 - copy 1 - ad 3 - batch 1 (the failed and canceled are refunded)
            if await refunded() == 25:
                break
            await asyncio.sleep(0.1)
        assert await refunded() == 25
        for _ in range(200):
            found = (await api.get(f"/v1/webhooks/endpoints/{endpoint['id']}", headers=user.headers)).json()
            if found["status"] == "disabled":
                break
            await asyncio.sleep(0.1)
        assert found["status"] == "disabled", found
        delivery = (await api.get("/v1/webhooks/deliveries", headers=user.headers)).json()["items"][0]
        assert (await api.post(f"/v1/webhooks/deliveries/{delivery['id']}/resend",
                               headers=user.headers)).status_code in (202, 409)
    assert violations(server) == []


@pytest.mark.parametrize("user, subject", [
    ("api", "ledger.u1.refunded.j1.1"),         # only the ledger refunds
    ("api", "payment.succeeded.p1"),            # only webhooks record payments
    ("pipeline", "ledger.u1.granted.signup"),   # workers never touch credits
    ("webhooks", "job.created.copy.j1"),        # only the API (and the ledger's recovery) create jobs
    ("projector", "job.transitioned.completed.j1"),
    ("pipeline", "webhook.endpoint.created.u1.we_1"),   # only the API adds an account's endpoints
    ("api", "webhook.message.attempted.u1.msg_1"),      # only the sender records its tries
])
async def test_a_service_cannot_write_what_another_owns(guarded, user, subject):
    _, server, url = guarded
    nc = await nats.connect(url(user))
    try:
        with pytest.raises(Exception):
            await nc.jetstream().publish(subject, b"{}", timeout=1)
        with pytest.raises(Exception):
            await nc.jetstream().delete_stream("LEDGER")
    finally:
        await nc.close()
    assert any(subject in line for line in violations(server))
