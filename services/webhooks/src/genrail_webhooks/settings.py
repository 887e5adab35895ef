from __future__ import annotations

from pydantic import Field

from genrail_platform.settings import CommonSettings


class WebhooksSettings(CommonSettings):
    webhooks_host: str = Field("127.0.0.1", description="Address the webhook receiver listens on")
    webhooks_port: int = Field(8001, description="Port the webhook receiver listens on")
    webhooks_max_body_bytes: int = Field(1024 * 1024, description="Largest callback body accepted")
