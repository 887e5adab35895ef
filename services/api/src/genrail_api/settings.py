"""The API's settings: every value can be set by an environment variable of the same name."""

from __future__ import annotations

from pydantic import Field, SecretStr

from genrail_events.jobs import JobType
from genrail_platform.settings import CommonSettings


class ApiSettings(CommonSettings):
    api_host: str = Field("127.0.0.1", description="Address the API listens on")
    api_port: int = Field(8000, description="Port the API listens on")
    public_url: str = Field("http://127.0.0.1:8000", description="Base URL users reach the API at")
    cost_copy: int = 1
    cost_scrape: int = 1
    cost_static_ad: int = 3
    cost_ugc_video: int = 5
    cost_tts: int = 2
    cost_image_edit: int = 1
    max_body_bytes: int = Field(64 * 1024, description="Largest JSON request body accepted")
    read_your_writes_timeout_s: float = Field(5.0, description="How long registration waits for its grant")
    admin_token: SecretStr | None = Field(None, description="Bearer token for /api/admin/*; unset disables admin")

    def cost(self, job_type: JobType) -> int:
        return int(getattr(self, f"cost_{job_type.value}"))
