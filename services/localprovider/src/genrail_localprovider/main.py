"""The local provider: one HTTP server speaking Replicate's, OpenAI's and Stripe's wire
protocols and doing real, deterministic work, so the whole system runs with no keys."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from genrail_runtime import logs

from . import openai_chat, openai_images, replicate, stripe


class LocalProviderSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOCALPROVIDER_", extra="ignore")

    host: str = Field("127.0.0.1", description="Address the local provider listens on")
    port: int = Field(8002, description="Port the local provider listens on")
    log_level: str = "INFO"


def create_app() -> FastAPI:
    app = FastAPI(title="genrail local provider", version="0.1.0",
                  description="Replicate predictions, OpenAI chat and image edits, and Stripe Checkout, "
                              "answered locally.")
    app.include_router(replicate.create_router(replicate.ReplicateEmulatorSettings()))
    app.include_router(openai_chat.router)
    app.include_router(openai_images.router)
    app.include_router(stripe.router)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def run() -> None:
    settings = LocalProviderSettings()
    logs.configure("localprovider", settings.log_level)
    uvicorn.run(create_app(), host=settings.host, port=settings.port, log_config=None, access_log=False)
