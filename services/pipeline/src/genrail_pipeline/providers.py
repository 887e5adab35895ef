"""The providers behind each inline job type, chosen by configuration."""

from __future__ import annotations

from typing import Any

import httpx

from genrail_events.jobs import Job, JobType
from genrail_copywriter.copy import generate_copy
from genrail_pipeline.clients.openai_chat import OpenAIChatClient
from genrail_pipeline.clients.openai_images import OpenAIImagesClient
from genrail_pipeline.clients.replicate import ReplicateClient
from genrail_pipeline.clients.scrape import scrape
from genrail_commands.predictions import callback_url
from genrail_storage.store import Storage

from .replicate_models import model_input
from .settings import PipelineSettings


class Providers:
    def __init__(self, settings: PipelineSettings, http: httpx.AsyncClient, storage: Storage,
                 fetcher: httpx.AsyncClient):
        """`http` calls the configured providers; `fetcher` (guarded) fetches URLs users and
        providers give: pages to scrape, provider outputs."""
        self.settings, self.http, self.storage, self.fetcher = settings, http, storage, fetcher
        self.images = OpenAIImagesClient(settings.openai_images_base_url,
                                         settings.openai_images_api_key.get_secret_value(), http,
                                         model=settings.image_edit_model)
        self.chat = OpenAIChatClient(settings.openai_base_url, settings.openai_api_key.get_secret_value(), http,
                                     settings.openai_chat_model)
        self.replicate = ReplicateClient(settings.replicate_base_url,
                                         settings.replicate_api_token.get_secret_value(), http)

    async def submit_prediction(self, job: Job) -> dict[str, Any]:
        """Start an async job at Replicate; the result comes back to our signed webhook,
        whose URL names the job and attempt so it finds the job even before we record
        the prediction id."""
        webhook = callback_url(self.settings.webhooks_public_url, job.id, job.attempt,
                               self.settings.replicate_webhook_secret.get_secret_value())
        model = self.settings.replicate_model(job.type.value)
        return await self.replicate.create_prediction(
            model, model_input(model, job.input), webhook=webhook, webhook_events_filter=("start", "completed"))

    async def run_inline(self, job: Job) -> dict[str, Any]:
        """The job's output; ProviderError when the provider could not give one."""
        if job.type is JobType.copy:
            if self.settings.copy_provider == "openai":
                return await self.chat.generate_copy(job.input)
            return generate_copy(job.input)
        if job.type is JobType.scrape:
            return await scrape(job.input["url"], self.fetcher, max_bytes=self.settings.scrape_max_bytes,
                                timeout_s=self.settings.scrape_timeout_s)
        if job.type is JobType.image_edit:
            return await self.edit_image(job)
        raise ValueError(f"{job.type} jobs are not run inline")

    async def edit_image(self, job: Job) -> dict[str, Any]:
        """Edit the uploaded image with the batch's prompt; the result goes to storage."""
        source_key = job.input["image_key"]
        source = await self.storage.get(source_key)
        [edited] = await self.images.edit([(source_key.rsplit("/", 1)[-1], source, job.input["content_type"])],
                                          job.input["prompt"], output_format="png")
        key = f"jobs/{job.id}/{job.attempt}/edited.png"
        await self.storage.put(key, edited, "image/png")
        return {"files": [{"key": key, "content_type": "image/png", "size": len(edited)}],
                "source_key": source_key, "index": job.input["index"]}
