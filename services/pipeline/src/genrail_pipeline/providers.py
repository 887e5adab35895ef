"""The providers behind each inline job type, chosen by configuration."""

from __future__ import annotations

from typing import Any

import httpx

from genrail_events.jobs import Job, JobType
from genrail_platform.localwork.copy import generate_copy
from genrail_platform.providers.openai_chat import OpenAIChatClient
from genrail_platform.providers.replicate import ReplicateClient
from genrail_platform.providers.scrape import scrape

from .settings import PipelineSettings


class Providers:
    def __init__(self, settings: PipelineSettings, http: httpx.AsyncClient):
        self.settings, self.http = settings, http
        self.chat = OpenAIChatClient(settings.openai_base_url, settings.openai_api_key.get_secret_value(), http,
                                     settings.openai_chat_model)
        self.replicate = ReplicateClient(settings.replicate_base_url,
                                         settings.replicate_api_token.get_secret_value(), http)

    async def submit_prediction(self, job: Job) -> dict[str, Any]:
        """Start an async job at Replicate; the result comes back to our signed webhook,
        whose URL names the job and attempt so it finds the job even before we record
        the prediction id."""
        webhook = (f"{self.settings.webhooks_public_url.rstrip('/')}/webhooks/replicate"
                   f"?job_id={job.id}&attempt={job.attempt}")
        return await self.replicate.create_prediction(
            self.settings.replicate_model(job.type.value), job.input, webhook=webhook,
            webhook_events_filter=("start", "completed"))

    async def run_inline(self, job: Job) -> dict[str, Any]:
        """The job's output; ProviderError when the provider could not give one."""
        if job.type is JobType.copy:
            if self.settings.copy_provider == "openai":
                return await self.chat.generate_copy(job.input)
            return generate_copy(job.input)
        if job.type is JobType.scrape:
            return await scrape(job.input["url"], self.http, max_bytes=self.settings.scrape_max_bytes,
                                timeout_s=self.settings.scrape_timeout_s)
        raise NotImplementedError(f"{job.type} jobs are not run inline")
