from __future__ import annotations

from pathlib import Path
from typing import Literal

from genrail_events.jobs import JobType
from pydantic import Field, SecretStr

from genrail_runtime.settings import CommonSettings, FetchSettings, OutgoingWebhookSettings
from genrail_storage.settings import StorageSettings


class PipelineSettings(CommonSettings, StorageSettings, FetchSettings, OutgoingWebhookSettings):
    pipeline_provider_attempts: int = Field(3, description="Provider failures of an attempt before the job fails "
                                                            "and its message goes to the DLQ")
    pipeline_max_deliver: int = Field(200, description="Safety net: deliveries (deferrals included) before the DLQ")
    pipeline_max_concurrent: int = Field(64, description="Jobs handled at once by one pipeline process")
    pipeline_max_per_user: int = Field(4, description="Jobs of one user handled at once by one process")
    pipeline_max_image_edits: int = Field(8, description="Image edits in flight at once (provider rate limit)")
    pipeline_max_scrapes: int = Field(16, description="Scrapes in flight at once")
    pipeline_slot_wait_s: float = Field(2.0, description="How long a job waits in memory for a free slot "
                                        "before it is deferred")
    pipeline_max_waiting_per_user: int = Field(16, description="Jobs of one user waiting in memory for a slot; "
                                                "more are deferred at once")
    pipeline_defer_s: float = Field(0.5, description="How long a deferred job (no free slot) waits in the queue")
    pipeline_ack_wait_s: float = Field(60.0, description="A delivery not acked by then is redelivered")
    pipeline_batch_size: int = Field(64, description="Jobs fetched per pull")

    copy_provider: Literal["local", "openai"] = Field("local", description="Who writes ad copy")
    openai_base_url: str = Field("https://api.openai.com/v1", description="OpenAI-compatible API base")
    openai_api_key: SecretStr = Field(SecretStr(""), description="Key for the OpenAI-compatible API")
    openai_chat_model: str = Field("gpt-4o-mini", description="Chat model for ad copy")

    openai_images_base_url: str = Field("https://api.openai.com/v1",
                                        description="Base of the OpenAI-compatible image edit API")
    openai_images_api_key: SecretStr = Field(SecretStr(""), description="Key for the image edit API")
    image_edit_model: str = Field("gpt-image-1", description="Image edit model")

    scrape_max_bytes: int = Field(2_000_000, description="Largest page a scrape downloads")
    scrape_timeout_s: float = Field(10.0, description="Timeout of one scrape fetch")

    replicate_base_url: str = Field("https://api.replicate.com", description="Replicate API origin")
    replicate_api_token: SecretStr = Field(SecretStr(""), description="Replicate API token")
    replicate_model_static_ad: str = Field("genrail/static-ad", description="Model for static ads")
    replicate_model_ugc_video: str = Field("genrail/ugc-video", description="Model for UGC videos")
    replicate_model_tts: str = Field("genrail/tts", description="Model for text-to-speech")
    webhooks_public_url: str = Field("http://127.0.0.1:8001", description="Where providers reach our webhooks")
    replicate_webhook_secret: SecretStr = Field(SecretStr(""), description="Replicate's webhook signing secret, "
                                                "as the webhooks service has it: signs each callback URL's job")
    deadline_static_ad_s: float = Field(300, description="A static ad with no result by then expires")
    deadline_ugc_video_s: float = Field(900, description="A UGC video with no result by then expires")
    deadline_tts_s: float = Field(300, description="A TTS job with no result by then expires")
    deadline_sync_s: float = Field(600, description="A copy, scrape or image edit still processing by then (its "
                                                    "message dead-lettered, say) expires")
    deadline_unstarted_s: float = Field(3600, description="A job still pending or queued by then (the pipeline "
                                                          "never took it) fails; long enough to outlast an outage")
    deadline_sweep_interval_s: float = Field(5, description="How often deadlines are checked")
    outgoing_webhook_retry_s: str = Field(
        "5,30,120,300,1800,3600,7200,14400,28800,43200,43200,43200,43200",
        description="Seconds before each retry of a webhook the receiver did not take (2xx), comma-separated: "
                    "about three days in all; then the message has failed, and an endpoint it was for is disabled")
    outgoing_webhook_timeout_s: float = Field(10, description="How long a receiver has to answer one delivery")
    max_output_bytes: int = Field(200 * 1024 * 1024, description="Largest provider output downloaded")

    def deadline_s(self, job_type: str) -> float:
        """How long a job of this type may be `processing`."""
        return float(getattr(self, f"deadline_{job_type}_s", self.deadline_sync_s))

    def webhook_retries_s(self) -> list[float]:
        return [float(part) for part in self.outgoing_webhook_retry_s.split(",") if part.strip()]

    def deadlines_s(self) -> dict[str, float]:
        return {t.value: self.deadline_s(t.value) for t in JobType}

    def replicate_model(self, job_type: str) -> str:
        return str(getattr(self, f"replicate_model_{job_type}"))

    # Failpoint for crash tests: die after a job's effects are on the log but before the ack,
    # once (the marker file records that it happened).
    pipeline_failpoint_crash_before_ack_once: Path | None = None
