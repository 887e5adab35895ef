"""The API's settings: every value can be set by an environment variable of the same name."""

from __future__ import annotations

from functools import cached_property

from pydantic import Field, SecretStr, field_validator, model_validator

from genrail_events.jobs import JobType
from genrail_events.payments import CreditPack, parse_packs
from genrail_runtime.settings import CommonSettings, HttpServerSettings, OutgoingWebhookSettings, SignupSettings
from genrail_storage.settings import StorageSettings

LOCAL_STRIPE_API_KEY = "sk_test_genrail_local"  # what the local stack gives its Stripe emulator


class ApiSettings(CommonSettings, HttpServerSettings, StorageSettings, OutgoingWebhookSettings, SignupSettings):
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
    admin_nats_url: SecretStr | None = Field(
        None, description="NATS URL (the operator user's) that an admin's redrive in the studio publishes with: a "
                          "redrive republishes to subjects other services own. Unset: the API's own connection, "
                          "which is enough where NATS has no per-service users (genrail up)")

    # Accounts for the web studio: sessions, magic links, mail, sign-in providers (genrail_api.accounts).
    session_secret: SecretStr = Field(SecretStr(""), description="Signs session cookies, CSRF tokens and magic "
                                                                 "links; every API process needs the same one. "
                                                                 "Empty: a random one per process (sessions end "
                                                                 "when it restarts)")
    session_max_age_s: int = Field(14 * 24 * 3600, description="How long a studio session lasts")
    admin_emails: str = Field("", description="Comma-separated emails of the studio's administrators")
    magic_link_ttl_s: int = Field(900, description="How long an emailed sign-in link stays valid (used once)")
    signin_mails_per_hour_per_email: int = Field(5, description="Sign-in links mailed to one address per hour, "
                                                                "whoever asks (0: no limit): nobody can flood an "
                                                                "inbox through the sign-in form")
    smtp_host: str | None = Field(None, description="SMTP server for sign-in mails; unset: email sign-in is off")
    smtp_port: int = Field(587, description="SMTP server port")
    smtp_username: str | None = Field(None, description="SMTP user name (unset: no AUTH)")
    smtp_password: SecretStr | None = Field(None, description="SMTP password")
    smtp_starttls: bool = Field(False, description="Upgrade the SMTP connection with STARTTLS before sending")
    mail_from: str = Field("genrail <no-reply@genrail.localhost>", description="From: of sign-in mails")
    local_mailbox_dir: str | None = Field(None, description="Where the local stack's mail catcher keeps mails; "
                                                            "set: /dev/mailbox shows them (never in production)")
    github_client_id: str | None = Field(None, description="GitHub OAuth app client id; unset: no GitHub sign-in")
    github_client_secret: SecretStr | None = Field(None, description="GitHub OAuth app client secret")
    github_base_url: str = Field("https://github.com", description="Where GitHub's OAuth pages are")
    github_api_url: str = Field("https://api.github.com", description="GitHub's REST API")
    google_client_id: str | None = Field(None, description="Google OAuth client id; unset: no Google sign-in")
    google_client_secret: SecretStr | None = Field(None, description="Google OAuth client secret")
    google_discovery_url: str = Field("https://accounts.google.com/.well-known/openid-configuration",
                                      description="Google's OpenID Connect discovery document")
    oidc_name: str = Field("oidc", description="Name of the generic OpenID Connect provider, shown on its button")
    oidc_issuer: str | None = Field(None, description="Issuer URL of a generic OpenID Connect provider (its "
                                                      "discovery document is <issuer>/.well-known/openid-"
                                                      "configuration); unset: none")
    oidc_client_id: str | None = Field(None, description="Client id at the generic OpenID Connect provider")
    oidc_client_secret: SecretStr | None = Field(None, description="Client secret at the generic OIDC provider")

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

    @field_validator("stripe_api_key", "stripe_api_base", "stripe_success_url", "stripe_cancel_url", "smtp_host",
                     "smtp_username", "smtp_password", "local_mailbox_dir", "github_client_id",
                     "github_client_secret", "google_client_id", "google_client_secret", "oidc_issuer",
                     "oidc_client_id", "oidc_client_secret", "admin_nats_url", mode="before")
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
