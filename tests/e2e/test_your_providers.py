"""`genrail up` never overrides what the user configured: with REPLICATE_API_TOKEN and
REPLICATE_BASE_URL exported (here a stand-in for Replicate on loopback), the pipeline
calls that Replicate with that token and the model they named, unchanged; what the user
did not configure (Stripe, image edits) stays on the local provider."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from genrail_cli.stack import Stack
from tests.conftest import new_stack
from tests.helpers import register, wait_until
from tests.servers import serve_in_thread

pytestmark = pytest.mark.e2e
TOKEN = "r8_yours_9f3b27c1d5e84a60"
MODEL = "someone/their-tts-model"


def stand_in_replicate(seen: list[dict]) -> Starlette:
    """Answers as Replicate's create-prediction does, and remembers every call."""
    async def create(request: Request) -> JSONResponse:
        body = await request.json()
        seen.append({"path": request.url.path, "authorization": request.headers.get("authorization"), "body": body})
        return JSONResponse({"id": f"p{len(seen)}", "status": "starting", "input": body["input"],
                             "urls": {"get": "", "cancel": ""}}, status_code=201)

    return Starlette(routes=[Route("/v1/models/{owner}/{name}/predictions", create, methods=["POST"])])


def test_the_stack_adds_local_values_only_for_providers_the_user_left_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("REPLICATE_API_TOKEN", TOKEN)
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_yours")  # a secret alone keeps the local Stripe
    monkeypatch.setenv("PUBLIC_URL", "https://genrail.example.com")
    monkeypatch.setenv("NATS_URL", "")  # empty is unset
    stack = Stack(data_dir=tmp_path)  # as `genrail up` makes it: no settings of the tests
    env = stack.environment("pipeline")
    assert env["REPLICATE_API_TOKEN"] == TOKEN
    assert "REPLICATE_BASE_URL" not in env and "REPLICATE_WEBHOOK_SECRET" not in env  # Replicate itself
    assert env["STRIPE_WEBHOOK_SECRET"] == "whsec_yours" and env["STRIPE_API_BASE"] == stack.localprovider_url
    assert env["OPENAI_IMAGES_BASE_URL"] == f"{stack.localprovider_url}/v1"
    assert env["PUBLIC_URL"] == "https://genrail.example.com"
    assert stack.providers_in_use() == {"replicate": "yours", "stripe": "local", "openai-images": "local"}


async def test_exported_replicate_settings_reach_the_pipeline_unchanged(tmp_path, monkeypatch):
    seen: list[dict] = []
    with serve_in_thread(stand_in_replicate(seen)) as replicate_url:
        monkeypatch.setenv("REPLICATE_BASE_URL", replicate_url)
        monkeypatch.setenv("REPLICATE_API_TOKEN", TOKEN)
        monkeypatch.setenv("REPLICATE_MODEL_TTS", MODEL)
        stack = new_stack(tmp_path).start()
        try:
            async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as api:
                user = await register(api)
                created = await api.post("/api/generate/tts", headers=user.headers, json={"text": "Hello there"})
                assert created.status_code == 202, created.text
                await wait_until(lambda: asyncio.sleep(0, result=seen or None), timeout_s=30)
        finally:
            stack.stop()
    [call] = seen
    assert call["path"] == f"/v1/models/{MODEL}/predictions"
    assert call["authorization"] == f"Bearer {TOKEN}"
    assert call["body"]["input"]["text"] == "Hello there"
