"""Uploads straight into object storage (presigned POST on S3, here moto's server) are
checked as an attacker would try them: a 5 GB declaration is refused before anything is
signed, and an object whose content does not keep the promise (too big, a pixel bomb, not
an image) is refused when a batch names it, charging nothing and creating nothing.

Real S3 and MinIO refuse an upload larger than the declared size themselves (the signed
policy's content-length-range); moto does not, which lets this test put the oversized
object there and prove the API's own check behind it."""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import AsyncIterator

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer
from PIL import Image

from tests.helpers import api_process, ledger_events, register

pytestmark = pytest.mark.e2e
BUCKET = "genrail-direct"
CREDENTIALS = {"S3_ACCESS_KEY_ID": "testing", "S3_SECRET_ACCESS_KEY": "testing", "S3_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3_endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


@pytest.fixture
async def s3_api(stack, s3_endpoint) -> AsyncIterator[httpx.AsyncClient]:
    proc, url = await api_process(stack, {"STORAGE_URL": f"s3://{BUCKET}/e2e-{uuid.uuid4().hex[:8]}",
                                          "S3_ENDPOINT_URL": s3_endpoint, **CREDENTIALS})
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        yield client
    proc.terminate()
    proc.wait(timeout=30)


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("1", (width, height)).save(out, "PNG")  # a blank bitmap compresses to almost nothing
    return out.getvalue()


async def presigned_upload(api: httpx.AsyncClient, headers: dict, content: bytes, declared: int) -> str:
    answer = await api.post("/api/uploads/presign", headers=headers,
                            json={"content_type": "image/png", "size_bytes": declared})
    assert answer.status_code == 200, answer.text
    form = answer.json()
    async with httpx.AsyncClient(timeout=30) as storage:
        stored = await storage.post(form["url"], data=form["fields"], files={"file": ("x.png", content)})
    assert stored.status_code in (200, 204), stored.text
    return form["key"]


async def test_a_5_gb_declaration_is_refused_before_anything_is_signed(s3_api, log):
    user = await register(s3_api)
    answer = await s3_api.post("/api/uploads/presign", headers=user.headers,
                               json={"content_type": "image/png", "size_bytes": 5 * 1024**3})
    assert answer.status_code == 413 and "larger than" in answer.json()["detail"]
    assert "url" not in answer.json()


async def test_direct_uploads_that_break_their_promise_are_refused_by_the_batch(s3_api, log):
    user = await register(s3_api)
    oversized = await presigned_upload(s3_api, user.headers, os.urandom(11 * 1024 * 1024), declared=1000)
    bomb = await presigned_upload(s3_api, user.headers, png(12_000, 12_000), declared=100_000)
    not_an_image = await presigned_upload(s3_api, user.headers, b"<?php system($_GET['c']); ?>", declared=100)
    fine = await presigned_upload(s3_api, user.headers, png(64, 48), declared=1000)

    for key, status, words in ((oversized, 413, "larger than"), (bomb, 422, "pixels"),
                               (not_an_image, 422, "not an image")):
        answer = await s3_api.post("/api/batches", headers=user.headers,
                                   json={"prompt": "make it sepia", "image_keys": [fine, key]})
        assert answer.status_code == status, answer.text
        assert key in answer.json()["detail"] and words in answer.json()["detail"], answer.text

    assert await ledger_events(log, user.id, "debited") == []  # nothing was charged
    assert (await s3_api.get("/api/jobs", headers=user.headers)).json()["items"] == []
