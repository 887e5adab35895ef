"""The Replicate emulator in a real uvicorn server, driven by the real ReplicateClient, calling back a
real webhook receiver; and the client's error handling against a scripted local server."""

import asyncio
import base64
import contextlib
import io
import json
import socket
import uuid
import wave
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response
from genrail_localprovider.replicate import MODELS, ReplicateEmulatorSettings, create_router
from genrail_pipeline.clients.errors import ProviderError
from genrail_pipeline.clients.replicate import ReplicateClient
from genrail_runtime.webhook_signing import new_secret, verify
from PIL import Image

TOKEN = "r8_test_token"
SECRET = new_secret()


def _bound_socket() -> tuple[socket.socket, str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


@contextlib.asynccontextmanager
async def _serve(app: FastAPI, sock: socket.socket) -> AsyncIterator[None]:
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        await task


def _emulator_app(**overrides) -> tuple[FastAPI, socket.socket, str]:
    sock, url = _bound_socket()
    settings = ReplicateEmulatorSettings(
        public_url=url,
        api_token=TOKEN,
        webhook_secret=SECRET,
        delay_s=0.1,
        webhook_retry_delay_s=0.05,
        **overrides,
    )
    app = FastAPI()
    app.include_router(create_router(settings))
    return app, sock, url


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes

    @property
    def prediction(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    url: str
    deliveries: dict[str, asyncio.Queue[Delivery]] = field(default_factory=lambda: defaultdict(asyncio.Queue))
    planned_statuses: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))

    def hook(self, *statuses: int) -> tuple[str, asyncio.Queue[Delivery]]:
        """A fresh webhook URL, answering `statuses` first and 200 afterwards, and its deliveries."""
        name = uuid.uuid4().hex
        self.planned_statuses[name].extend(statuses)
        return f"{self.url}/hooks/{name}", self.deliveries[name]


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[Receiver]:
    sock, url = _bound_socket()
    receiver = Receiver(url)
    app = FastAPI()

    @app.post("/hooks/{name}")
    async def hook(name: str, request: Request) -> Response:
        await receiver.deliveries[name].put(Delivery(dict(request.headers), await request.body()))
        planned = receiver.planned_statuses[name]
        return Response(status_code=planned.pop(0) if planned else 200)

    async with _serve(app, sock):
        yield receiver


@pytest.fixture(scope="module")
async def emulator_url() -> AsyncIterator[str]:
    app, sock, url = _emulator_app()
    async with _serve(app, sock):
        yield url


@pytest.fixture
async def client(emulator_url) -> AsyncIterator[ReplicateClient]:
    async with httpx.AsyncClient(timeout=5) as http:
        yield ReplicateClient(emulator_url, TOKEN, http)


async def _next(queue: asyncio.Queue[Delivery], timeout: float = 5) -> Delivery:
    delivery = await asyncio.wait_for(queue.get(), timeout)
    assert verify(SECRET, delivery.headers, delivery.body)
    return delivery


async def _nothing_more(queue: asyncio.Queue[Delivery], wait_s: float = 0.25) -> None:
    await asyncio.sleep(wait_s)
    assert queue.empty()


def _data_url(image: Image.Image) -> str:
    out = io.BytesIO()
    image.save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


async def _download(url: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        response = await http.get(url)
    assert response.status_code == 200
    return response


async def test_prediction_calls_back_signed_and_its_output_downloads(client, receiver):
    hook, deliveries = receiver.hook()
    created = await client.create_prediction(
        "genrail/static-ad",
        {"headline": "Fresh drop", "product_image": _data_url(Image.new("RGB", (64, 48), "red"))},
        webhook=hook,
    )
    assert created["status"] == "starting" and created["model"] == "genrail/static-ad"
    assert created["urls"]["get"].endswith(f"/v1/predictions/{created['id']}")
    assert created["urls"]["cancel"].endswith(f"/v1/predictions/{created['id']}/cancel")

    done = (await _next(deliveries)).prediction
    assert done["id"] == created["id"] and done["status"] == "succeeded" and done["error"] is None
    assert done["started_at"] and done["completed_at"] and done["metrics"]["predict_time"] >= 0
    assert done["input"]["headline"] == "Fresh drop"
    response = await _download(done["output"])
    assert response.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).size == (1080, 1080)
    assert (await client.get_prediction(created["id"])) == done
    await _nothing_more(deliveries)  # "completed" only, as filtered


async def test_start_and_completed_events_by_version_reference(client, receiver):
    hook, deliveries = receiver.hook()
    version = MODELS["genrail/tts"].version
    created = await client.create_prediction(
        f"genrail/tts:{version}",
        {"text": "Hello there", "duration_s": 1.5},
        webhook=hook,
        webhook_events_filter=("start", "completed"),
    )
    assert created["version"] == version
    first, second = await _next(deliveries), await _next(deliveries)
    assert first.prediction["status"] == "starting" and second.prediction["status"] == "succeeded"
    assert first.headers["webhook-id"] != second.headers["webhook-id"]
    wav = wave.open(io.BytesIO((await _download(second.prediction["output"])).content))
    assert wav.getnframes() / wav.getframerate() == pytest.approx(1.5)


async def test_bare_version_id_runs_the_video_model(client, receiver):
    hook, deliveries = receiver.hook()
    await client.create_prediction(
        MODELS["genrail/ugc-video"].version,
        {"script": "Best purchase this year", "duration_s": 1, "width": 128, "height": 128},
        webhook=hook,
    )
    done = (await _next(deliveries)).prediction
    video = Image.open(io.BytesIO((await _download(done["output"])).content))
    assert video.format == "WEBP" and video.is_animated


async def test_emulated_and_real_failures_call_back_failed(client, receiver):
    hook, deliveries = receiver.hook()
    await client.create_prediction("genrail/tts", {"text": "hi", "_emulator_fail": True}, webhook=hook)
    await client.create_prediction("genrail/static-ad", {"style": "bold"}, webhook=hook)
    failures = sorted([(await _next(deliveries)).prediction for _ in range(2)], key=lambda p: p["model"])
    assert [p["status"] for p in failures] == ["failed", "failed"]
    assert (
        "headline or a product_image" in failures[0]["error"] and "emulated failure" in failures[1]["error"]
    )
    assert all(p["output"] is None for p in failures)


async def test_cancel_calls_back_canceled_and_is_idempotent(client, receiver):
    hook, deliveries = receiver.hook()
    created = await client.create_prediction(
        "genrail/tts", {"text": "slow", "_emulator_delay_s": 30}, webhook=hook
    )
    canceled = await client.cancel_prediction(created["id"])
    assert canceled["status"] == "canceled" and canceled["completed_at"]
    assert (await _next(deliveries)).prediction["status"] == "canceled"
    assert (await client.cancel_prediction(created["id"]))["status"] == "canceled"
    assert (await client.get_prediction(created["id"]))["status"] == "canceled"
    await _nothing_more(deliveries)


@pytest.mark.parametrize("delay_s, expected", [(30, "aborted"), (0.4, "canceled")])
async def test_cancel_after_deadline(client, receiver, delay_s, expected):
    hook, deliveries = receiver.hook()
    await client.create_prediction(
        "genrail/tts", {"text": "late", "_emulator_delay_s": delay_s}, webhook=hook, cancel_after="300ms"
    )
    done = (await _next(deliveries, timeout=2)).prediction
    assert done["status"] == expected and done["output"] is None


async def test_duplicate_callbacks_share_one_webhook_id(client, receiver):
    hook, deliveries = receiver.hook()
    await client.create_prediction("genrail/tts", {"text": "again", "_emulator_duplicates": 3}, webhook=hook)
    copies = [await _next(deliveries) for _ in range(3)]
    assert len({c.headers["webhook-id"] for c in copies}) == 1
    assert {c.body for c in copies} == {copies[0].body}
    await _nothing_more(deliveries)


async def test_failed_deliveries_are_retried_with_the_same_webhook_id(client, receiver):
    hook, deliveries = receiver.hook(500, 503)
    await client.create_prediction("genrail/tts", {"text": "retry"}, webhook=hook)
    attempts = [await _next(deliveries) for _ in range(3)]
    assert len({a.headers["webhook-id"] for a in attempts}) == 1
    await _nothing_more(deliveries)


async def test_out_of_order_sends_a_stale_processing_after_completed(client, receiver):
    hook, deliveries = receiver.hook()
    await client.create_prediction(
        "genrail/tts", {"text": "order", "_emulator_out_of_order": True}, webhook=hook
    )
    completed, stale = await _next(deliveries), await _next(deliveries)
    assert completed.prediction["status"] == "succeeded" and stale.prediction["status"] == "processing"
    assert completed.headers["webhook-id"] != stale.headers["webhook-id"]


async def test_never_call_back_still_completes_for_polling(client, receiver):
    hook, deliveries = receiver.hook()
    created = await client.create_prediction(
        "genrail/tts", {"text": "quiet", "_emulator_never_call_back": True}, webhook=hook
    )
    await _nothing_more(deliveries, wait_s=0.4)
    assert (await client.get_prediction(created["id"]))["status"] == "succeeded"


async def test_settings_failure_rate_and_overrides():
    app, sock, url = _emulator_app(failure_rate=1.0)
    async with _serve(app, sock), httpx.AsyncClient(timeout=5) as http:
        client = ReplicateClient(url, TOKEN, http)
        failing = await client.create_prediction("genrail/tts", {"text": "x", "_emulator_delay_s": 0})
        rescued = await client.create_prediction(
            "genrail/tts", {"text": "x", "_emulator_delay_s": 0, "_emulator_fail": False}
        )
        await asyncio.sleep(0.3)
        assert (await client.get_prediction(failing["id"]))["status"] == "failed"
        assert (await client.get_prediction(rescued["id"]))["status"] == "succeeded"


def test_settings_come_from_localprovider_env(monkeypatch):
    monkeypatch.setenv("LOCALPROVIDER_DELAY_S", "2.5")
    monkeypatch.setenv("LOCALPROVIDER_FAILURE_RATE", "0.25")
    monkeypatch.setenv("LOCALPROVIDER_DUPLICATE_CALLBACKS", "3")
    monkeypatch.setenv("LOCALPROVIDER_OUT_OF_ORDER", "true")
    monkeypatch.setenv("LOCALPROVIDER_NEVER_CALL_BACK", "1")
    monkeypatch.setenv("LOCALPROVIDER_WEBHOOK_SECRET", SECRET)
    settings = ReplicateEmulatorSettings()
    assert (settings.delay_s, settings.failure_rate, settings.duplicate_callbacks) == (2.5, 0.25, 3)
    assert settings.out_of_order and settings.never_call_back and settings.webhook_secret == SECRET
    assert settings.public_url == "http://127.0.0.1:8002"


async def test_emulator_errors_reach_the_client_as_permanent_provider_errors(client, emulator_url):
    cases = [
        (client.create_prediction("someone/else", {}), 404, "not found"),
        (client.create_prediction("0" * 64, {}), 422, "Invalid version"),
        (client.create_prediction("genrail/tts", {"text": "x", "_emulator_typo": 1}), 422, "_emulator_"),
        (client.get_prediction("nosuchprediction"), 404, "Not found"),
    ]
    async with httpx.AsyncClient(timeout=5) as http:
        cases.append((ReplicateClient(emulator_url, "wrong", http).get_prediction("x"), 401, "Invalid token"))
        for call, status, detail in cases:
            with pytest.raises(ProviderError) as caught:
                await call
            assert (caught.value.status_code, caught.value.transient) == (status, False)
            assert detail in str(caught.value)
        assert (await http.get(f"{emulator_url}/v1/predictions/x")).status_code == 401


@dataclass
class ScriptedReplicate:
    """A stand-in for api.replicate.com that records requests and answers from a script."""

    url: str
    requests: list[tuple[str, str, dict[str, str], dict]] = field(default_factory=list)
    answers: list[tuple[int, dict[str, str], object]] = field(default_factory=list)


@pytest.fixture(scope="module")
async def scripted() -> AsyncIterator[ScriptedReplicate]:
    sock, url = _bound_socket()
    scripted = ScriptedReplicate(url)
    app = FastAPI()

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def anything(path: str, request: Request) -> Response:
        body = await request.body()
        scripted.requests.append(
            (request.method, "/" + path, dict(request.headers), json.loads(body or b"{}"))
        )
        status, headers, payload = scripted.answers.pop(0) if scripted.answers else (201, {}, {"id": "p1"})
        if payload == "sleep":
            await asyncio.sleep(1)
            payload = {"id": "late"}
        content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return Response(content, status_code=status, headers=headers, media_type="application/json")

    async with _serve(app, sock):
        yield scripted


@pytest.fixture
async def scripted_client(scripted) -> AsyncIterator[ReplicateClient]:
    scripted.requests.clear()
    scripted.answers.clear()
    async with httpx.AsyncClient(timeout=0.5) as http:
        yield ReplicateClient(scripted.url + "/v1", TOKEN, http)


async def test_client_speaks_replicates_routes_and_headers(scripted, scripted_client):
    await scripted_client.create_prediction(
        "acme/painter",
        {"prompt": "a"},
        webhook="https://h.example/x",
        webhook_events_filter=["start", "completed"],
        cancel_after=90,
    )
    await scripted_client.create_prediction("acme/painter:abc123", {"prompt": "b"})
    await scripted_client.create_prediction("def456", {"prompt": "c"}, cancel_after="1m30s")
    await scripted_client.get_prediction("p1")
    await scripted_client.cancel_prediction("p1")
    (m1, p1, h1, b1), (m2, p2, h2, b2), (m3, p3, h3, b3), (m4, p4, _, _), (m5, p5, _, _) = scripted.requests
    assert (m1, p1, b1) == (
        "POST",
        "/v1/models/acme/painter/predictions",
        {
            "input": {"prompt": "a"},
            "webhook": "https://h.example/x",
            "webhook_events_filter": ["start", "completed"],
        },
    )
    assert h1["authorization"] == f"Bearer {TOKEN}" and h1["cancel-after"] == "90s" and "prefer" not in h1
    assert (m2, p2, b2) == ("POST", "/v1/predictions", {"input": {"prompt": "b"}, "version": "abc123"})
    assert "cancel-after" not in h2
    assert (m3, p3, b3, h3["cancel-after"]) == (
        "POST",
        "/v1/predictions",
        {"input": {"prompt": "c"}, "version": "def456"},
        "1m30s",
    )
    assert (m4, p4, m5, p5) == ("GET", "/v1/predictions/p1", "POST", "/v1/predictions/p1/cancel")


@pytest.mark.parametrize(
    "status, headers, payload, transient, retry_after, text",
    [
        (
            429,
            {"retry-after": "7"},
            {"detail": "Request was throttled. Expected available in 7 seconds."},
            True,
            7.0,
            "throttled",
        ),
        (503, {}, {"detail": "Service unavailable"}, True, None, "Service unavailable"),
        (500, {}, b"<html>oops</html>", True, None, "oops"),
        (
            422,
            {},
            {"title": "Input validation failed", "detail": "prompt is required", "status": 422},
            False,
            None,
            "prompt is required",
        ),
        (402, {}, {"detail": "You have insufficient credit"}, False, None, "insufficient credit"),
        (201, {}, b"not json", True, None, "not JSON"),
    ],
)
async def test_client_maps_http_failures(
    scripted, scripted_client, status, headers, payload, transient, retry_after, text
):
    scripted.answers.append((status, headers, payload))
    with pytest.raises(ProviderError) as caught:
        await scripted_client.create_prediction("acme/painter", {})
    error = caught.value
    assert (error.transient, error.retry_after_s, error.status_code) == (transient, retry_after, status)
    assert text in str(error)


async def test_client_timeouts_and_refused_connections_are_transient(scripted, scripted_client):
    scripted.answers.append((201, {}, "sleep"))
    with pytest.raises(ProviderError, match="timed out") as caught:
        await scripted_client.get_prediction("p1")
    assert caught.value.transient
    sock, closed_url = _bound_socket()
    sock.close()  # nothing listens there now
    async with httpx.AsyncClient(timeout=1) as http:
        with pytest.raises(ProviderError) as caught:
            await ReplicateClient(closed_url, TOKEN, http).get_prediction("p1")
    assert caught.value.transient and caught.value.status_code is None


@pytest.mark.parametrize("model", ["", "a/b/c", "owner/name:", "has space"])
async def test_client_refuses_malformed_model_references(scripted_client, model):
    with pytest.raises(ValueError):
        await scripted_client.create_prediction(model, {})


async def test_client_refuses_unknown_webhook_events(scripted_client):
    with pytest.raises(ValueError, match="unknown webhook events"):
        await scripted_client.create_prediction(
            "acme/painter", {}, webhook="https://h.example/x", webhook_events_filter=["finished"]
        )


async def test_a_restarted_emulator_finishes_what_it_was_running_and_serves_what_it_made(receiver, tmp_path):
    """As Replicate after an outage of its own: the prediction is still known, it completes,
    its callback comes, and its output downloads, from a new process on the same data."""
    hook, deliveries = receiver.hook()
    first = _emulator_app(data_dir=tmp_path)
    async with _serve(first[0], first[1]), httpx.AsyncClient(timeout=5) as http:
        created = await ReplicateClient(first[2], TOKEN, http).create_prediction(
            "genrail/tts", {"text": "still here", "_emulator_delay_s": 1.0}, webhook=hook)
    second = _emulator_app(data_dir=tmp_path)
    async with _serve(second[0], second[1]), httpx.AsyncClient(timeout=5) as http:
        client = ReplicateClient(second[2], TOKEN, http)
        assert (await client.get_prediction(created["id"]))["status"] in ("starting", "processing")
        done = (await _next(deliveries, timeout=10)).prediction
        assert done["id"] == created["id"] and done["status"] == "succeeded"
        output = done["output"].replace(first[2], second[2])  # its files, from the new process
        assert (await _download(output)).headers["content-type"] == "audio/wav"
