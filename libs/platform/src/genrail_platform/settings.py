"""Settings every service shares. Each service has its own class that extends this one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    nats_url: str = Field("nats://127.0.0.1:4222", description="NATS server with JetStream")
    database_url: str = Field("postgresql+asyncpg://genrail@127.0.0.1:5432/genrail",
                              description="PostgreSQL holding the projections")
    log_level: str = Field("INFO", description="Log level of the service")
    stream_replicas: int = Field(1, description="Replicas of each stream (3 in a cluster)")
    stream_duplicate_window_s: float = Field(120.0, description="How long JetStream remembers message ids")
    metrics_host: str = Field("127.0.0.1", description="Address of a worker's Prometheus endpoint")
    metrics_port: int = Field(0, description="Port of a worker's Prometheus /metrics (0: none; the API and "
                                             "the webhook receiver serve /metrics on their own port)")
    telemetry_spans_dir: Path | None = Field(None, description="Tests: every finished span is written to "
                                                               "<dir>/<service>.jsonl")


class StorageSettings(BaseSettings):
    """Where media lives: `file:///abs/path` (the local default) or `s3://bucket/prefix`."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    storage_url: str = Field(default_factory=lambda: f"file://{Path('.genrail/media').resolve()}",
                             description="file:///path or s3://bucket/prefix")
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint (R2, MinIO); unset for AWS")
    s3_region: str | None = Field(None, description="S3 region")
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None

    def s3_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"endpoint_url": self.s3_endpoint_url, "region": self.s3_region}
        if self.s3_access_key_id and self.s3_secret_access_key:
            options["access_key_id"] = self.s3_access_key_id.get_secret_value()
            options["secret_access_key"] = self.s3_secret_access_key.get_secret_value()
        return {k: v for k, v in options.items() if v is not None}

    def open(self):  # -> Storage; imported lazily so settings stay cheap to import
        from .storage import open_storage

        return open_storage(self.storage_url, **self.s3_options())
