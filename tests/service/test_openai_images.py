"""OpenAIImagesClient against the local images/edits emulator, over real HTTP on loopback."""

from __future__ import annotations

import io
import socket
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from PIL import Image

from genrail_localprovider.openai_images import router
from genrail_pipeline.clients.errors import ProviderError
from genrail_pipeline.clients.openai_images import OpenAIImagesClient
from tests.servers import serve_in_thread


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    app = FastAPI()
    app.include_router(router)
    with serve_in_thread(app) as url:
        yield f"{url}/v1"


@pytest.fixture
def client(base_url: str, http: httpx.AsyncClient) -> OpenAIImagesClient:
    return OpenAIImagesClient(base_url, "sk-local-test", http)


def png(size: tuple[int, int] = (60, 40)) -> tuple[str, bytes, str]:
    image = Image.new("RGB", size, (30, 30, 220))
    image.paste((220, 30, 30), (0, 0, size[0] // 2, size[1]))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return ("photo.png", buffer.getvalue(), "image/png")


def unique(prompt: str) -> str:
    """The emulator remembers [rate-limit] prompts per process: keep each test's its own."""
    return f"{prompt} (run {uuid.uuid4().hex[:8]})"


def open_image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


async def test_a_real_edit_comes_back_applied(client: OpenAIImagesClient) -> None:
    [result] = await client.edit([png((60, 40))], "make it black and white and rotate 90")
    image = open_image(result)
    assert image.format == "PNG" and image.size == (40, 60)
    assert all(r == g == b for r, g, b in image.convert("RGB").getdata())


async def test_several_images_n_size_and_format(client: OpenAIImagesClient) -> None:
    results = await client.edit([png(), png((30, 30))], "invert", n=2, size="1024x1024", quality="low",
                                output_format="jpeg")
    assert len(results) == 2
    for result in results:
        image = open_image(result)
        assert image.format == "JPEG" and image.size == (1024, 1024)


async def test_fail_knob_is_a_transient_server_error(client: OpenAIImagesClient) -> None:
    with pytest.raises(ProviderError) as raised:
        await client.edit([png()], "[fail] invert")
    error = raised.value
    assert error.transient and error.status_code == 500
    assert "server had an error" in str(error)


async def test_rate_limit_knob_carries_the_wait_then_lets_the_same_request_through(
        client: OpenAIImagesClient) -> None:
    prompt = unique("[rate-limit] sepia")
    with pytest.raises(ProviderError) as raised:
        await client.edit([png()], prompt)
    assert raised.value.transient and raised.value.status_code == 429
    assert raised.value.retry_after_s == 0.05  # retry-after-ms wins over retry-after: 1
    assert len(await client.edit([png()], prompt)) == 1


async def test_in_call_retries_honour_retry_after(client: OpenAIImagesClient) -> None:
    started = time.monotonic()
    [result] = await client.edit([png()], unique("[rate-limit] grayscale"), max_attempts=3)
    assert time.monotonic() - started >= 0.05
    assert all(r == g == b for r, g, b in open_image(result).convert("RGB").getdata())


async def test_bad_knob_is_permanent(client: OpenAIImagesClient) -> None:
    with pytest.raises(ProviderError) as raised:
        await client.edit([png()], "[bad] invert", max_attempts=3)
    assert not raised.value.transient and raised.value.status_code == 400
    assert raised.value.retry_after_s is None


async def test_unsupported_prompt_is_permanent_and_says_what_is_supported(client: OpenAIImagesClient) -> None:
    with pytest.raises(ProviderError, match="Supported edits") as raised:
        await client.edit([png()], "paint it like Monet")
    assert not raised.value.transient and raised.value.status_code == 400


async def test_wrong_model_is_refused_in_openais_error_shape(base_url: str, http: httpx.AsyncClient) -> None:
    wrong = OpenAIImagesClient(base_url, "sk-local-test", http, model="dall-e-3")
    with pytest.raises(ProviderError, match="gpt-image-1") as raised:
        await wrong.edit([png()], "invert")
    assert not raised.value.transient and raised.value.status_code == 400

    response = await http.post(f"{base_url}/images/edits", headers={"Authorization": "Bearer sk-local-test"},
                               data={"model": "dall-e-3", "prompt": "invert"}, files=[("image", png())])
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["param"]) == ("invalid_request_error", "model")


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Basic c2stbG9jYWw6"}, {"Authorization": "Bearer"},
])
async def test_requests_without_a_bearer_key_are_refused(base_url: str, http: httpx.AsyncClient,
                                                         headers: dict[str, str]) -> None:
    response = await http.post(f"{base_url}/images/edits", headers=headers,
                               data={"model": "gpt-image-1", "prompt": "invert"}, files=[("image", png())])
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_images_must_be_declared_as_png_jpeg_or_webp(client: OpenAIImagesClient) -> None:
    name, data, _ = png()
    with pytest.raises(ProviderError, match="unsupported mimetype") as raised:
        await client.edit([(name, data, "application/octet-stream")], "invert")
    assert not raised.value.transient


async def test_connection_refused_is_transient(http: httpx.AsyncClient) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    client = OpenAIImagesClient(f"http://127.0.0.1:{closed_port}/v1", "sk-local-test", http)
    with pytest.raises(ProviderError) as raised:
        await client.edit([png()], "invert")
    assert raised.value.transient and raised.value.status_code is None


async def test_a_provider_that_never_answers_times_out_as_transient(http: httpx.AsyncClient) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:  # accepts connections, never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        client = OpenAIImagesClient(f"http://127.0.0.1:{silent.getsockname()[1]}/v1", "sk-local-test", http,
                                    timeout=httpx.Timeout(0.3))
        with pytest.raises(ProviderError, match="timed out") as raised:
            await client.edit([png()], "invert")
    assert raised.value.transient
