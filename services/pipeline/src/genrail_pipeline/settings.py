from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from genrail_platform.settings import CommonSettings


class PipelineSettings(CommonSettings):
    pipeline_max_deliver: int = Field(3, description="Deliveries of a job before it fails and goes to the DLQ")
    pipeline_ack_wait_s: float = Field(60.0, description="A delivery not acked by then is redelivered")
    pipeline_batch_size: int = Field(64, description="Jobs fetched per pull; handled concurrently")

    copy_provider: Literal["local", "openai"] = Field("local", description="Who writes ad copy")
    openai_base_url: str = Field("https://api.openai.com/v1", description="OpenAI-compatible API base")
    openai_api_key: SecretStr = Field(SecretStr(""), description="Key for the OpenAI-compatible API")
    openai_chat_model: str = Field("gpt-4o-mini", description="Chat model for ad copy")

    scrape_max_bytes: int = Field(2_000_000, description="Largest page a scrape downloads")
    scrape_timeout_s: float = Field(10.0, description="Timeout of one scrape fetch")

    # Failpoint for crash tests: die after a job's effects are on the log but before the ack,
    # once (the marker file records that it happened).
    pipeline_failpoint_crash_before_ack_once: Path | None = None
