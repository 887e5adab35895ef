"""Where media lives, as configuration every service that touches media reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


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
        from .store import open_storage

        return open_storage(self.storage_url, **self.s3_options())
