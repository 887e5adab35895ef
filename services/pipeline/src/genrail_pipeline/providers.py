"""The providers behind each inline job type, chosen by configuration."""

from __future__ import annotations

from typing import Any

import httpx

from genrail_events.jobs import Job, JobType
from genrail_platform.localwork.copy import generate_copy
from genrail_platform.providers.openai_chat import OpenAIChatClient
from genrail_platform.providers.scrape import scrape

from .settings import PipelineSettings


class Providers:
    def __init__(self, settings: PipelineSettings, http: httpx.AsyncClient):
        self.settings, self.http = settings, http
        self.chat = OpenAIChatClient(settings.openai_base_url, settings.openai_api_key.get_secret_value(), http,
                                     settings.openai_chat_model)

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
