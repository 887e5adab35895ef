from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from genrail_runtime.settings import CommonSettings, FetchSettings, HttpServerSettings
from genrail_storage.settings import StorageSettings


class WebhooksSettings(CommonSettings, HttpServerSettings, StorageSettings, FetchSettings):
    webhooks_host: str = Field("127.0.0.1", description="Address the webhook receiver listens on")
    webhooks_port: int = Field(8001, description="Port the webhook receiver listens on")
    webhooks_max_body_bytes: int = Field(1024 * 1024, description="Largest callback body accepted")
    replicate_webhook_secret: SecretStr = Field(
        SecretStr(""), description="Replicate's webhook signing secret (whsec_...), from its "
                                   "GET /v1/webhooks/default/secret")
    webhook_tolerance_s: float = Field(300, description="How far a webhook timestamp may be from now")
    max_output_bytes: int = Field(200 * 1024 * 1024, description="Largest provider output downloaded")
    output_download_timeout_s: float = Field(60, description="Timeout of one output download")
    stripe_webhook_secret: SecretStr | None = Field(
        None, description="Signing secret (whsec_...) of the Stripe webhook endpoint; unset: Stripe events "
                          "are answered 503 (Stripe retries them)")

    @field_validator("stripe_webhook_secret", mode="before")
    @classmethod
    def _stripe_secret_shape(cls, value: object) -> object:
        if value is None or value == "":
            return None
        raw = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        if not raw.startswith("whsec_"):
            raise ValueError("STRIPE_WEBHOOK_SECRET must be the endpoint's signing secret, starting with 'whsec_'")
        return value
