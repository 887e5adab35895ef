"""The API's settings: every value can be set by an environment variable of the same name."""

from __future__ import annotations

from functools import cached_property

from pydantic import Field, SecretStr, field_validator, model_validator

from genrail_events.jobs import JobType
from genrail_events.payments import CreditPack, parse_packs
from genrail_runtime.settings import CommonSettings, HttpServerSettings, OutgoingWebhookSettings
from genrail_storage.settings import StorageSettings

LOCAL_STRIPE_API_KEY = "sk_test_genrail_local"  # what the local stack gives its Stripe emulator


class ApiSettings(CommonSettings, HttpServerSettings, StorageSettings, OutgoingWebhookSettings):
    api_host: str = Field("127.0.0.1", description="Address the API listens on")
    api_port: int = Field(8000, description="Port the API listens on")
    api_keep_alive_s: float = Field(75.0, description="How long an idle keep-alive connection stays open: longer "
                                                      "than clients' and load balancers' idle timeouts (60 s is "
                                                      "common), so the server never closes one as a request arrives")
    public_url: str = Field("http://127.0.0.1:8000", description="Base URL users reach the API at")
    cost_copy: int = Field(1, description="Credits charged for an ad copy job")
    cost_scrape: int = Field(1, description="Credits charged for a product-page scrape")
    cost_static_ad: int = Field(3, description="Credits charged for a static ad")
    cost_ugc_video: int = Field(5, description="Credits charged for a UGC video")
    cost_tts: int = Field(2, description="Credits charged for a text-to-speech job")
    cost_image_edit: int = Field(1, description="Credits charged for each image of a batch")
    media_url_secret: SecretStr = Field(SecretStr(""), description="Signs media URLs of file storage")
    media_url_ttl_s: int = Field(3600, description="How long a media URL stays valid")
    upload_max_bytes: int = Field(10 * 1024 * 1024, description="Largest image upload")
    api_max_concurrency: int = Field(2000, description="Connections and requests in hand at once; past it, 503 "
                                                       "at once (uvicorn's limit_concurrency), so an overload or "
                                                       "slow clients cannot take the process's memory")
    signups_per_hour_per_address: int = Field(20, description="Registrations from one client address per hour, "
                                                              "across API processes (0: no limit)")
    jobs_per_minute_per_user: int = Field(0, description="Jobs and batches one user may create per minute, across "
                                                         "API processes (0: no limit)")
    max_event_streams_per_user: int = Field(8, description="Open batch event streams of one user, per API process")
    max_downloads_per_user: int = Field(2, description="ZIP downloads of one user in progress, per API process")
    upload_max_pixels: int = Field(40_000_000, description="Most pixels in an uploaded image")
    batch_max_images: int = Field(50, description="Most images in one batch")
    max_body_bytes: int = Field(64 * 1024, description="Largest JSON request body accepted")
    read_your_writes_timeout_s: float = Field(5.0, description="How long registration waits for its grant")
    admin_token: SecretStr | None = Field(None, description="Bearer token for /v1/admin/*; unset disables admin")

    credit_packs: str = Field(
        "starter:100:900:usd,pro:1000:7900:usd",
        description="Credit packs on sale: comma-separated id:credits:amount_cents:currency[:name]")
    stripe_api_key: SecretStr | None = Field(
        None, description="Stripe secret key (sk_... or rk_...); unset: checkout answers 503")
    stripe_api_base: str | None = Field(
        None, description="Stripe API base URL; unset: Stripe itself (the local stack sets the local provider)")
    stripe_success_url: str | None = Field(
        None, description="Where Checkout sends a buyer who paid; may contain {CHECKOUT_SESSION_ID}. "
                          "Default: <PUBLIC_URL>/billing/success?session_id={CHECKOUT_SESSION_ID}")
    stripe_cancel_url: str | None = Field(
        None, description="Where Checkout sends a buyer who gave up. Default: <PUBLIC_URL>/billing/cancel")

    @field_validator("credit_packs")
    @classmethod
    def _packs_parse(cls, spec: str) -> str:
        parse_packs(spec)  # a ValueError naming the bad pack stops the start
        return spec

    @field_validator("stripe_api_key", "stripe_api_base", "stripe_success_url", "stripe_cancel_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _stripe_key_fits_its_api(self) -> ApiSettings:
        key = self.stripe_api_key.get_secret_value() if self.stripe_api_key else None
        if key is not None and not key.startswith(("sk_", "rk_")):
            raise ValueError("STRIPE_API_KEY must be a Stripe secret or restricted key (sk_... or rk_...)")
        if key == LOCAL_STRIPE_API_KEY and self.stripe_api_base is None:
            raise ValueError("STRIPE_API_KEY is the local emulator's key but STRIPE_API_BASE is unset (Stripe "
                             "itself): set your Stripe key, or STRIPE_API_BASE to the local provider")
        return self

    @cached_property
    def packs(self) -> dict[str, CreditPack]:
        return parse_packs(self.credit_packs)

    @property
    def checkout_success_url(self) -> str:
        default = f"{self.public_url.rstrip('/')}/billing/success?session_id={{CHECKOUT_SESSION_ID}}"
        return self.stripe_success_url or default

    @property
    def checkout_cancel_url(self) -> str:
        return self.stripe_cancel_url or f"{self.public_url.rstrip('/')}/billing/cancel"

    def cost(self, job_type: JobType) -> int:
        return int(getattr(self, f"cost_{job_type.value}"))
