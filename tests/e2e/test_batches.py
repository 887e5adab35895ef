"""Batch image editing: uploads checked by content, one debit per batch, one job per image,
each failed image refunded on its own, live progress over SSE, and a ZIP of the results."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from datetime import datetime

import httpx
import pytest
from PIL import Image, PngImagePlugin

from genrail_events.ledger import signed_amount
from genrail_pipeline.settings import PipelineSettings
from tests.helpers import User, drained, grant, ledger_events, register, wait_until

pytestmark = pytest.mark.e2e


def png(color: tuple[int, int, int], *, reject: bool = False, size: tuple[int, int] = (64, 48)) -> bytes:
    info = PngImagePlugin.PngInfo()
    if reject:  # the local provider refuses such an image, as a safety system would
        info.add_text("genrail-test", "reject")
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


async def upload(api, user: User, data: bytes, name: str = "photo.png") -> httpx.Response:
    return await api.post("/api/uploads", headers=user.headers, files={"file": (name, data, "image/png")})


async def wait_batch_done(api, user: User, batch_id: str, timeout_s: float = 60) -> dict:
    async def done() -> dict | None:
        batch = (await api.get(f"/api/batches/{batch_id}", headers=user.headers)).json()
        return batch if batch["status"] != "processing" else None

    return await wait_until(done, timeout_s=timeout_s, interval_s=0.1)


async def test_a_batch_of_twenty_with_some_failing_edits_counts_refunds_and_zips_right(api, log):
    user = await register(api)
    await grant(log, user, 10)
    rejected = {3, 7, 11, 19}
    keys = []
    for i in range(20):
        answer = await upload(api, user, png((i * 10, 100, 200 - i * 5), reject=i in rejected), f"shot-{i}.png")
        assert answer.status_code == 201, answer.text
        keys.append(answer.json()["key"])
    created = await api.post("/api/batches", headers=user.headers,
                             json={"prompt": "make it grayscale and add caption 'Sale'", "image_keys": keys})
    assert created.status_code == 202, created.text
    assert created.json()["total"] == 20 and created.json()["cost"] == 20
    batch = await wait_batch_done(api, user, created.json()["id"])
    assert batch["status"] == "completed_with_errors"
    assert batch["counts"] == {"completed": 16, "failed": 4} and batch["progress"] == 1.0
    failed = {i["index"] for i in batch["images"] if i["status"] == "failed"}
    assert failed == rejected
    assert all("safety" in i["error"] for i in batch["images"] if i["status"] == "failed")

    async def refunds() -> list:
        return await ledger_events(log, user.id, "refunded")

    await drained(log)  # every failed image's refund is on the log, and no other is on its way
    events = await ledger_events(log, user.id)
    debits = [e for e in events if e.data.kind == "debited"]
    assert [(d.data.job_id, d.data.amount) for d in debits] == [(batch["id"], 20)]
    assert sorted(e.data.job_id for e in await refunds()) == sorted(
        i["job_id"] for i in batch["images"] if i["status"] == "failed")
    assert sum(signed_amount(e) for e in events) == 10 + 10 - 20 + 4
    assert (await api.get("/api/credits", headers=user.headers)).json()["balance"] == 4

    one = next(i for i in batch["images"] if i["status"] == "completed")
    edited = Image.open(io.BytesIO(httpx.get(one["output_url"]).content))
    assert edited.mode in ("L", "LA") or len(set(edited.convert("RGB").getpixel((5, 5)))) == 1

    archive = await api.get(f"/api/batches/{batch['id']}/download", headers=user.headers)
    assert archive.status_code == 200 and archive.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(archive.content)) as zipped:
        names = zipped.namelist()
        assert len(names) == 16
        assert all(Image.open(zipped.open(n)).format == "PNG" for n in names)
    assert not any(name.startswith(f"{i + 1:03d}-") for i in rejected for name in names)


async def test_the_event_stream_delivers_progress_to_the_end_for_a_client_that_joins_mid_batch(api, log):
    user = await register(api)
    await grant(log, user, 30)
    keys = [(await upload(api, user, png((200, i * 8, 50), size=(900, 900)))).json()["key"] for i in range(24)]
    batch_id = (await api.post("/api/batches", headers=user.headers,
                               json={"prompt": "blur, sharpen and rotate 90", "image_keys": keys})).json()["id"]

    async def started() -> bool:  # some images are done, not all: the client joins in the middle
        batch = (await api.get(f"/api/batches/{batch_id}", headers=user.headers)).json()
        return 0 < batch["progress"] < 0.5

    await wait_until(started, interval_s=0.01)
    events: list[tuple[str, dict]] = []
    async with api.stream("GET", f"/api/batches/{batch_id}/events", headers=user.headers) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        name = None
        async for line in stream.aiter_lines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((name, json.loads(line.split(":", 1)[1])))
                if name == "done":
                    break
    assert events[-1][0] == "done" and events[-1][1]["status"] == "completed"
    assert events[-1][1]["counts"] == {"completed": 24}
    progress = [e[1]["progress"] for e in events]
    assert 0 < progress[0] < 1, progress  # it joined mid-batch, and was told where the batch stood
    assert progress == sorted(progress) and progress[-1] == 1.0


async def test_two_users_batches_at_once_stay_apart_and_the_per_user_limit_holds(api, log, stack):
    alice, bob = await register(api), await register(api)
    colors = {alice.id: (250, 0, 0), bob.id: (0, 0, 250)}
    keys = {}
    for user in (alice, bob):
        red, _, blue = colors[user.id]
        keys[user.id] = [(await upload(api, user, png((red, i, blue), size=(400, 300)))).json()["key"]
                         for i in range(10)]
    stolen = await api.post("/api/batches", headers=bob.headers,
                            json={"prompt": "invert", "image_keys": keys[alice.id][:1]})
    assert stolen.status_code == 422 and "not one of your uploads" in stolen.json()["detail"]
    a, b = await asyncio.gather(*(api.post("/api/batches", headers=u.headers,
                                           json={"prompt": "sharpen and rotate 90", "image_keys": keys[u.id]})
                                  for u in (alice, bob)))
    a_id, b_id = a.json()["id"], b.json()["id"]
    await asyncio.gather(wait_batch_done(api, alice, a_id), wait_batch_done(api, bob, b_id))
    assert (await api.get(f"/api/batches/{a_id}", headers=bob.headers)).status_code == 404
    assert (await api.get(f"/api/batches/{a_id}/download", headers=bob.headers)).status_code == 404
    assert [b["id"] for b in (await api.get("/api/batches", headers=bob.headers)).json()["items"]] == [b_id]
    limit = PipelineSettings(**{k.lower(): v for k, v in stack.env.items()
                                if k.lower() in PipelineSettings.model_fields}).pipeline_max_per_user
    for user, batch_id in ((alice, a_id), (bob, b_id)):
        batch = (await api.get(f"/api/batches/{batch_id}", headers=user.headers)).json()
        assert batch["status"] == "completed"
        for image in batch["images"]:  # each user's results are made from that user's own images
            edited = Image.open(io.BytesIO(httpx.get(image["output_url"]).content)).convert("RGB")
            red, _, blue = edited.getpixel((edited.width // 2, edited.height // 2))
            assert (red > blue) == (colors[user.id][0] > colors[user.id][2]), (user.id, red, blue)
        # 10 images, `limit` at a time: never more, and the pipeline did run that many at once
        assert await _most_processing_at_once(log, [i["job_id"] for i in batch["images"]]) == limit


async def _most_processing_at_once(log, job_ids: list[str]) -> int:
    """From the log: the most jobs of the list that were `processing` at the same moment."""
    edges: list[tuple[datetime, int]] = []
    for job_id in job_ids:
        for stored in await log.read(f"job.transitioned.*.{job_id}"):
            if stored.event.data.to == "processing":
                edges.append((stored.event.occurred_at, 1))
            elif stored.event.data.from_status == "processing":
                edges.append((stored.event.occurred_at, -1))
    running = most = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):
        running += step
        most = max(most, running)
    return most


@pytest.mark.parametrize(("data", "name", "status", "message"), [
    (b"hello, not an image", "notes.txt", 422, "JPEG, PNG"),
    (b"GIF89a" + b"\x00" * 64, "anim.gif", 422, "GIF files are not accepted"),
    (png((1, 2, 3))[:-40], "cut.png", 422, "truncated or corrupt"),
    (b"", "empty.png", 422, "empty"),
])
async def test_uploads_that_are_not_images_or_are_truncated_are_refused_and_nothing_is_stored(
        api, stack, data, name, status, message):
    user = await register(api)
    answer = await upload(api, user, data, name)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["detail"]
    assert not (stack.data_dir / "media" / "uploads" / user.id).exists()


async def test_an_upload_over_the_size_limit_is_a_413_and_nothing_is_stored(api, stack):
    user = await register(api)
    answer = await upload(api, user, b"\x89PNG" + b"\x00" * (11 * 1024 * 1024), "huge.png")
    assert answer.status_code == 413
    assert not (stack.data_dir / "media" / "uploads" / user.id).exists()


async def test_a_batch_the_user_cannot_pay_for_charges_nothing_and_creates_nothing(api, log):
    user = await register(api)
    keys = [(await upload(api, user, png((i, i, i)))).json()["key"] for i in range(11)]
    refused = await api.post("/api/batches", headers=user.headers, json={"prompt": "invert", "image_keys": keys})
    assert refused.status_code == 402 and refused.json() == {
        "type": "urn:genrail:problem:insufficient-credits", "title": "Insufficient credits", "status": 402,
        "detail": "insufficient credits: balance 10, cost 11", "balance": 10, "cost": 11}
    assert [e.data.kind for e in await ledger_events(log, user.id)] == ["granted"]
    assert (await api.get("/api/batches", headers=user.headers)).json()["items"] == []
    same_key_twice = await api.post("/api/batches", headers=user.headers,
                                    json={"prompt": "invert", "image_keys": [keys[0], keys[0]]})
    assert same_key_twice.status_code == 422


async def test_the_same_idempotency_key_names_the_same_batch_and_charges_once(api, log):
    user = await register(api)
    keys = [(await upload(api, user, png((9, i, 9)))).json()["key"] for i in range(3)]
    body = {"prompt": "mirror", "image_keys": keys, "idempotency_key": "catalog-7"}
    answers = await asyncio.gather(*(api.post("/api/batches", headers=user.headers, json=body) for _ in range(10)))
    assert {a.status_code for a in answers} == {202} and len({a.json()["id"] for a in answers}) == 1
    debits = await ledger_events(log, user.id, "debited")
    assert len(debits) == 1 and debits[0].data.amount == 3
