"""A Python client for the genrail API.

    from genrail_client import AsyncGenrail

    async with AsyncGenrail(api_key, base_url="https://api.example.com") as genrail:
        job = await genrail.wait(await genrail.copy("Trailblazer 2 hiking boots", tone="bold"))
        print(job.output["headline"])

`Genrail` is the same for code that is not async. Verifying a webhook: `verify(secret,
headers, body)`.
"""

from .client import AsyncGenrail, Genrail
from .errors import GenrailError, InsufficientCredits, InvalidRequest, NotFound, Unavailable, WaitTimeout
from .models import Account, Batch, Credits, Delivery, Job, JobPage, Pack, Upload, WebhookEndpoint
from .webhooks import InvalidSignature, verify

__all__ = ["Account", "AsyncGenrail", "Batch", "Credits", "Delivery", "Genrail", "GenrailError",
           "InsufficientCredits", "InvalidRequest", "InvalidSignature", "Job", "JobPage", "NotFound", "Pack",
           "Unavailable", "Upload", "WaitTimeout", "WebhookEndpoint", "verify"]
