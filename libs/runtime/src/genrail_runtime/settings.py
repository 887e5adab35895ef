"""Settings every service shares. Each service has its own class that extends this one."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    nats_url: str = Field("nats://127.0.0.1:4222", description="NATS server with JetStream, or a comma-separated "
                                                               "list of a cluster's servers; user:password@ in a URL "
                                                               "authenticates")
    database_url: str = Field("postgresql+asyncpg://genrail@127.0.0.1:5432/genrail",
                              description="PostgreSQL holding the projections")
    log_level: str = Field("INFO", description="Log level of the service")
    stream_replicas: int = Field(1, description="Replicas of each stream (3 in a cluster)")
    stream_duplicate_window_s: float = Field(120.0, description="How long JetStream remembers message ids")
    metrics_host: str = Field("127.0.0.1", description="Address of a worker's Prometheus endpoint")
    metrics_port: int = Field(0, description="Port of the process's Prometheus /metrics (0: none for a worker; "
                                             "the API and the webhook receiver then serve /metrics on their "
                                             "public port; set, only here)")
    telemetry_spans_dir: Path | None = Field(None, description="Tests: every finished span is written to "
                                                               "<dir>/<service>.jsonl")


class HttpServerSettings(BaseSettings):
    """How an HTTP service (the API, the webhook receiver) treats slow clients."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    http_header_timeout_s: float = Field(15.0, description="A request's headers must arrive within this long of "
                                                           "the connection opening or the request starting; "
                                                           "otherwise the connection is closed (slowloris)")


class OutgoingWebhookSettings(BaseSettings):
    """Signing the webhooks genrail sends its users (the API shows each account its secret;
    the pipeline signs with it)."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    outgoing_webhook_key: SecretStr = Field(SecretStr(""), description="Each account's webhook signing secret "
                                                                       "is derived from it; unset: no outgoing "
                                                                       "webhooks (a job asking for one gets none)")


class SignupSettings(BaseSettings):
    """The free credits of a new email: the ledger grants them, and the API waits for them only
    when a grant is coming."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    signup_credits: int = Field(10, description="Credits granted to every new user (0: none)")
    signup_credits_on: Literal["registration", "verified_email"] = Field(
        "registration", description="When they are granted: at registration (POST /v1/users, which proves no "
                                    "email), or at the first sign-in by emailed link or OAuth, which proves it")

    def grants_on(self, moment: Literal["registration", "verified_email"]) -> bool:
        """Whether credits are granted at this moment of a new user's life."""
        return self.signup_credits > 0 and self.signup_credits_on == moment


class FetchSettings(BaseSettings):
    """What a service that fetches URLs someone else chose may reach (see `guarded_http`)."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    fetch_allow: str = Field("", description="Addresses fetched from although not public, comma-separated: "
                                             "networks (10.1.0.0/16) or address:port (127.0.0.1:8003). "
                                             "Empty: public addresses only")
    provider_output_hosts: str = Field("replicate.delivery,*.replicate.delivery",
                                       description="Hosts provider outputs are downloaded from, comma-separated "
                                                   "(*.example.com: its subdomains; host:port: that port only)")

    def allowed_output_hosts(self) -> tuple[str, ...]:
        return tuple(h.strip().lower() for h in self.provider_output_hosts.split(",") if h.strip())

    def fetch_allow_entries(self) -> list[str]:
        return [e.strip() for e in self.fetch_allow.split(",") if e.strip()]
