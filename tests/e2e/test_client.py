"""genrail-client against the running stack, as an integrator's backend would use it: every
job type followed to its end, a batch uploaded, followed live and downloaded, idempotent
replays, errors as exceptions, the synchronous twin, and webhook signatures checked the
way the Standard Webhooks reference library makes them."""

from __future__ import annotations

import asyncio
import io
import time
import uuid
import zipfile
from datetime import UTC, datetime

import httpx
import pytest
from genrail_client import AsyncGenrail, Genrail, InsufficientCredits, InvalidSignature, NotFound, verify
from PIL import Image
from standardwebhooks import Webhook

from tests.helpers import User, grant

pytestmark = pytest.mark.e2e


def png(color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (48, 32), color).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
async def genrail(stack, log):
    async with AsyncGenrail(base_url=stack.api_url) as client:
        account = await client.register(f"client-{uuid.uuid4().hex[:10]}@example.com")
        await grant(log, User(account.user_id, account.email, account.api_key), 40)
        yield client


async def test_every_job_type_followed_to_its_end(genrail, shop):
    copy, scrape, ad, video, speech = await asyncio.gather(
        genrail.copy("Trailblazer 2 hiking boots", tone="bold"),
        genrail.scrape(shop.url("/product")),
        genrail.static_ad("Built for the long way round", cta="Shop now", product_image_url=shop.url("/img/product.png")),
        genrail.ugc_video("Dry feet on a wet day", duration_s=1),
        genrail.tts("Dry feet, any trail.", duration_s=1.0))
    done = await asyncio.gather(*(genrail.wait(job, timeout_s=90) for job in (copy, scrape, ad, video, speech)))
    assert [job.status for job in done] == ["completed"] * 5
    assert done[0].output["headline"] and done[1].output["title"]
    async with httpx.AsyncClient() as http:
        for job in done[2:]:
            [url] = job.file_urls
            assert (await http.get(url)).status_code == 200
    credits = await genrail.credits()
    assert credits.balance == 50 - (1 + 1 + 3 + 5 + 2)


async def test_a_batch_uploaded_followed_live_and_downloaded(genrail):
    uploads = await genrail.upload_many([png((200, 40, 40)), png((40, 200, 40)), png((40, 40, 200))])
    batch = await genrail.create_batch("make it sepia", [u.key for u in uploads])
    events = [event async for event in genrail.batch_events(batch.id)]
    assert events[-1]["event"] == "done"
    finished = await genrail.wait_batch(batch)
    assert finished.status == "completed" and finished.counts == {"completed": 3}
    archive = zipfile.ZipFile(io.BytesIO(await genrail.download_batch(batch.id)))
    assert len(archive.namelist()) == 3


async def test_a_key_names_one_job_and_errors_are_exceptions(genrail):
    first = await genrail.copy("Aurora bottle", idempotency_key="order-77")
    again = await genrail.copy("Aurora bottle", idempotency_key="order-77")
    assert again.id == first.id and (first.replayed, again.replayed) == (False, True)
    with pytest.raises(NotFound) as missing:
        await genrail.job(str(uuid.uuid4()))
    assert missing.value.kind == "not-found" and missing.value.status == 404
    with pytest.raises(InsufficientCredits) as poor:
        for _ in range(20):
            await genrail.ugc_video("Too many videos", duration_s=1)
    assert poor.value.cost == 5 and poor.value.balance < 5
    assert (await genrail.credits()).balance == poor.value.balance  # the refused one charged nothing


def test_the_synchronous_client_does_the_same(stack):
    with Genrail(base_url=stack.api_url) as genrail:
        genrail.register(f"sync-{uuid.uuid4().hex[:10]}@example.com")
        job = genrail.wait(genrail.copy("Lantern 3 camping light"), timeout_s=60)
        assert job.status == "completed" and job.output["headline"]
        for _ in range(100):  # the job list is a read model: it follows the log within moments
            if listed := [j.id for j in genrail.iter_jobs()]:
                break
            time.sleep(0.1)
        assert listed == [job.id]
        assert {p.id for p in genrail.packs()} == {"starter", "pro"}


def test_webhook_signatures_agree_with_the_reference_library():
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"type":"job.completed","data":{"id":"5f0c"}}'
    msg_id, timestamp = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", str(int(time.time()))
    signed = Webhook(secret).sign(msg_id, datetime.fromtimestamp(int(timestamp), UTC), body.decode())
    headers = {"webhook-id": msg_id, "webhook-timestamp": timestamp, "webhook-signature": signed}
    assert verify(secret, headers, body) == {"type": "job.completed", "data": {"id": "5f0c"}}
    for tampered in ({**headers, "webhook-id": "msg_other"}, {**headers, "webhook-timestamp": str(int(timestamp) - 600)}):
        with pytest.raises(InvalidSignature):
            verify(secret, tampered, body)
    with pytest.raises(InvalidSignature):
        verify(secret, headers, body.replace(b"5f0c", b"6a1d"))
