"""Both storage backends, through the same tests: the file one in tmp_path, the S3 one against moto."""

import base64
import json
import os
import uuid
from collections.abc import AsyncIterator

import boto3
import httpx
import pytest
from genrail_storage.media_urls import (
    MediaTokenExpired,
    MediaTokenInvalid,
    sign_media_token,
    verify_media_token,
)
from genrail_storage.store import (
    FileStorage,
    InvalidKey,
    ObjectNotFound,
    ObjectTooLarge,
    S3Storage,
    Storage,
    open_storage,
)
from moto.server import ThreadedMotoServer

BUCKET = "genrail-media"
CREDENTIALS = {"region": "us-east-1", "access_key_id": "testing", "secret_access_key": "testing"}
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def s3_endpoint() -> str:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


@pytest.fixture(params=["file", "s3"])
async def storage(request, tmp_path) -> AsyncIterator[Storage]:
    if request.param == "file":
        store = open_storage(tmp_path.as_uri())
    else:
        endpoint = request.getfixturevalue("s3_endpoint")
        store = open_storage(f"s3://{BUCKET}/run-{uuid.uuid4().hex}", endpoint_url=endpoint, **CREDENTIALS)
    yield store
    await store.close()


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_put_get_overwrite(storage):
    await storage.put("jobs/j1/out.png", b"first", "image/png")
    assert await storage.get("jobs/j1/out.png") == b"first"
    await storage.put("jobs/j1/out.png", b"second", "image/png")
    assert await storage.get("jobs/j1/out.png") == b"second"


async def test_iter_streams_the_object(storage):
    data = os.urandom(200_000)
    await storage.put("big.bin", data, "application/octet-stream")
    chunks = [chunk async for chunk in storage.iter("big.bin", chunk_size=64 * 1024)]
    assert b"".join(chunks) == data and len(chunks) > 1


async def test_exists_delete_and_missing_objects(storage):
    await storage.put("a/b.txt", b"x", "text/plain")
    assert await storage.exists("a/b.txt")
    await storage.delete("a/b.txt")
    assert not await storage.exists("a/b.txt")
    await storage.delete("a/b.txt")  # deleting twice is fine
    with pytest.raises(ObjectNotFound):
        await storage.get("a/b.txt")
    with pytest.raises(ObjectNotFound):
        async for _ in storage.iter("a/b.txt"):
            pass


async def test_size_is_read_without_the_content_and_none_when_missing(storage):
    await storage.put("a/sized.bin", b"x" * 1234, "application/octet-stream")
    assert await storage.size("a/sized.bin") == 1234
    assert await storage.size("a/missing.bin") is None


async def test_put_stream_under_the_cap(storage):
    size = await storage.put_stream(
        "s.bin", _chunks(b"ab", b"", b"cde"), "application/octet-stream", max_bytes=5
    )
    assert size == 5 and await storage.get("s.bin") == b"abcde"


async def test_put_stream_over_the_cap_stores_nothing(storage):
    await storage.put("kept.bin", b"old", "application/octet-stream")
    with pytest.raises(ObjectTooLarge):
        await storage.put_stream("new.bin", _chunks(b"abc", b"def"), "application/octet-stream", max_bytes=5)
    with pytest.raises(ObjectTooLarge):
        await storage.put_stream("kept.bin", _chunks(b"abcdef"), "application/octet-stream", max_bytes=5)
    assert not await storage.exists("new.bin")
    assert await storage.get("kept.bin") == b"old"


@pytest.mark.parametrize(
    "key", ["", "/etc/passwd", "../x", "a/../../x", "a//b", "a/./b", ".hidden", "a\\b", "a\x00b", "x" * 1100]
)
async def test_unsafe_keys_are_refused(storage, key):
    with pytest.raises(InvalidKey):
        await storage.put(key, b"x", "text/plain")
    with pytest.raises(InvalidKey):
        await storage.get(key)


async def test_file_backend_is_atomic_and_never_escapes_its_root(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    outside.mkdir()
    store = FileStorage(root)
    await store.put("ok/one.txt", b"1", "text/plain")
    with pytest.raises(ObjectTooLarge):
        await store.put_stream("ok/two.txt", _chunks(b"12345"), "text/plain", max_bytes=2)
    assert sorted(p.name for p in (root / "ok").iterdir()) == ["one.txt"]  # no temporary files left
    (root / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InvalidKey):
        await store.put("link/escaped.txt", b"x", "text/plain")
    assert not any(outside.iterdir())
    assert await store.presigned_get_url("ok/one.txt", 60) is None
    assert await store.presigned_post("ok/one.txt", 60, "text/plain", max_bytes=10) is None


async def test_s3_presigned_urls_work_over_plain_http(s3_endpoint):
    store = S3Storage(BUCKET, "presign", endpoint_url=s3_endpoint, **CREDENTIALS)
    try:
        post = await store.presigned_post("up/photo.png", 300, "image/png", max_bytes=4096)
        async with httpx.AsyncClient() as http:
            uploaded = await http.post(post.url, data=post.fields, files={"file": ("photo.png", b"\x89PNG...")})
            assert uploaded.status_code in (200, 204), uploaded.text
            get_url = await store.presigned_get_url("up/photo.png", 300)
            downloaded = await http.get(get_url)
        assert downloaded.status_code == 200 and downloaded.content == b"\x89PNG..."
        assert "X-Amz-Signature" in get_url and "/presign/up/photo.png" in get_url
    finally:
        await store.close()


async def test_s3_presigned_post_signs_the_key_type_and_declared_size(s3_endpoint):
    """What S3 (and MinIO) enforce is the signed policy; moto accepts any form, so the test
    reads the policy the storage will check."""
    store = S3Storage(BUCKET, "presign", endpoint_url=s3_endpoint, **CREDENTIALS)
    try:
        post = await store.presigned_post("up/big.png", 300, "image/png", max_bytes=4096)
    finally:
        await store.close()
    policy = json.loads(base64.b64decode(post.fields["policy"]))
    assert ["content-length-range", 1, 4096] in policy["conditions"]
    assert {"Content-Type": "image/png"} in policy["conditions"]
    assert {"key": "presign/up/big.png"} in policy["conditions"] and post.fields["key"] == "presign/up/big.png"
    assert {"bucket": BUCKET} in policy["conditions"] and "x-amz-signature" in post.fields


async def test_s3_large_streams_use_multipart_and_abort_past_the_cap(s3_endpoint):
    store = S3Storage(BUCKET, "multipart", endpoint_url=s3_endpoint, **CREDENTIALS)
    chunk = os.urandom(MiB)
    try:
        size = await store.put_stream(
            "big.bin", _chunks(*[chunk] * 11), "application/octet-stream", max_bytes=12 * MiB
        )
        assert size == 11 * MiB and await store.get("big.bin") == chunk * 11
        with pytest.raises(ObjectTooLarge):
            await store.put_stream(
                "too-big.bin", _chunks(*[chunk] * 11), "application/octet-stream", max_bytes=10 * MiB
            )
        assert not await store.exists("too-big.bin")
        s3 = await store._s3()
        assert not (await s3.list_multipart_uploads(Bucket=BUCKET, Prefix="multipart/")).get("Uploads")
    finally:
        await store.close()


@pytest.mark.parametrize(
    "url", ["file://relative/path", "file:relative", "ftp://x/y", "s3:///prefix", "memory://"]
)
def test_unsupported_storage_urls_are_refused(url):
    with pytest.raises(ValueError):
        open_storage(url)


def test_file_urls_take_no_s3_options(tmp_path):
    with pytest.raises(ValueError):
        open_storage(tmp_path.as_uri(), endpoint_url="http://127.0.0.1:9000")


def test_s3_urls_split_bucket_and_prefix():
    store = open_storage("s3://media/env/prod/", endpoint_url="http://127.0.0.1:9000")
    assert isinstance(store, S3Storage) and (store.bucket, store.prefix) == ("media", "env/prod")


def test_media_tokens_round_trip_and_expire():
    token = sign_media_token("jobs/j1/out.png", expires_at=1_000, secret="s3cret")
    assert token.isascii() and "/" not in token and "+" not in token
    assert verify_media_token(token, "s3cret", now=999) == "jobs/j1/out.png"
    with pytest.raises(MediaTokenExpired):
        verify_media_token(token, "s3cret", now=1_000)
    with pytest.raises(MediaTokenInvalid):
        verify_media_token(token, "other", now=999)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t.replace(".1000.", ".9999."),
        lambda t: "am9icy9qMi9vdXQucG5n" + t[t.index(".") :],
        lambda t: t[:-2],
        lambda t: t + ".x",
        lambda t: "garbage",
    ],
)
def test_tampered_media_tokens_are_invalid(mangle):
    token = sign_media_token("jobs/j1/out.png", expires_at=1_000, secret="s3cret")
    with pytest.raises(MediaTokenInvalid):
        verify_media_token(mangle(token), "s3cret", now=999)


def test_media_tokens_only_name_valid_keys():
    with pytest.raises(InvalidKey):
        sign_media_token("../etc/passwd", expires_at=1_000, secret="s3cret")


async def test_genrail_init_makes_the_bucket_and_the_streams_once(s3_endpoint, nats_server):
    import subprocess
    import sys

    from genrail_events import streams

    env = {**os.environ, "STORAGE_URL": "s3://genrail-init-test/media", "S3_ENDPOINT_URL": s3_endpoint,
           "S3_ACCESS_KEY_ID": "testing", "S3_SECRET_ACCESS_KEY": "testing", "S3_REGION": "us-east-1"}
    command = [sys.executable, "-m", "genrail_cli.main", "init", "--nats-url", nats_server.url]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0 and "storage s3://genrail-init-test/media: created" in first.stdout, first.stderr
    assert second.returncode == 0 and "already there" in second.stdout, second.stderr
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").head_bucket(Bucket="genrail-init-test")
    import nats

    nc = await nats.connect(nats_server.url)
    try:
        names = [info.config.name async for info in _stream_infos(nc)]
    finally:
        await nc.close()
    assert sorted(names) == sorted(s.name for s in streams.ALL)


async def _stream_infos(nc):
    for info in await nc.jetstream().streams_info():
        yield info
